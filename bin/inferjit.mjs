#!/usr/bin/env node
// `inferjit` command. Installed from npm it runs the built JavaScript in dist/ with plain node. In a
// checkout of the repository (src/ is there) it runs the TypeScript sources through tsx instead, so
// edits take effect without a build. tsx is otherwise needed only to load a TypeScript model file
// (`inferjit export model.ts`); it is an optional peer dependency, registered only then.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const devMain = new URL('../src/cli/main.ts', import.meta.url);
const distMain = new URL('../dist/cli/main.js', import.meta.url);
const TYPESCRIPT_FILE = /\.(c|m)?tsx?$/i;

/** Registers tsx's ESM loader; false (after saying why and what to do) when tsx is not installed. */
async function registerTsx(why) {
  let api;
  try { api = await import('tsx/esm/api'); } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
    console.error(`inferjit: ${why} needs tsx, which is not installed.\n`
      + 'Install it next to inferjit (`npm install --save-dev tsx`), or give a JavaScript (.js/.mjs) model file.');
    return false;
  }
  api.register();
  return true;
}

let main;
if (existsSync(devMain)) {
  if (!await registerTsx('running inferjit from its TypeScript sources')) process.exit(1);
  main = devMain;
} else if (existsSync(distMain)) {
  const tsFile = args.find((a) => TYPESCRIPT_FILE.test(a) && existsSync(a));
  if (tsFile !== undefined && !await registerTsx(`loading the TypeScript file ${tsFile}`)) process.exit(1);
  main = distMain;
} else {
  console.error(`inferjit: neither ${fileURLToPath(distMain)} nor the TypeScript sources are there; `
    + 'in a checkout of the repository run `npm install` (it builds dist/ with `npm run build`).');
  process.exit(1);
}
const { runCli } = await import(main.href);
const code = await runCli(args);
// `serve` returns once the server has closed everything it owns (listeners, the engine, the Redis
// connections). A Redis blocking read that ioredis stranded across a dropped connection keeps its
// commandTimeout timer (up to 11 s) with nothing left to settle: exit now rather than wait for it.
if (args[0] === 'serve') process.exit(code);
process.exitCode = code;
