// Builds the package that consumers install: src/**/*.ts -> dist/**/*.js (ESM, one file per source
// file, same layout, so paths computed from import.meta.url — the native addon in build/Release,
// package.json, the toolchain fingerprint over dist/ — resolve as they do from src/) and
// dist/**/*.d.ts (tsc, declarations only). Run by `npm run build`, `prepare` and `prepack`.
// The repo itself runs the TypeScript sources through tsx; dist/ is only for the package.
// No source maps: with --enable-source-maps, stack frames would name src/ files the package does not
// ship, and the graph-break locator (src/trace/source.ts) would mistake inferjit's frames for user code.
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');

function sources(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

let esbuild;
try { esbuild = await import('esbuild'); } catch (e) {
  console.error(`inferjit build: esbuild is not installed (${e.message}); run \`npm install\` in the repository first`);
  process.exit(1);
}

const t0 = performance.now();
rmSync(dist, { recursive: true, force: true });
const entryPoints = sources(src);
await esbuild.build({
  entryPoints,
  outdir: dist,
  outbase: src,
  bundle: false,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  // the same class-field semantics as tsc and tsx with the repo's tsconfig (target ES2022)
  tsconfigRaw: { compilerOptions: { target: 'ES2022', useDefineForClassFields: true } },
});
const t1 = performance.now();

// Declarations: tsc from this repo's node_modules, with tsconfig.build.json (src only).
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
if (r.error || r.status !== 0) {
  console.error(`inferjit build: tsc (declarations) failed${r.error ? `: ${r.error.message}` : ` with status ${r.status}`}`);
  // `npm install` in the repository runs this through `prepare`: a type error must not stop the
  // install (the repository runs from src/ through tsx, and the type check reports it anyway).
  // Packing and publishing (npm pack, npm publish) do fail, so a broken dist/ is never shipped.
  if (['install', 'ci', 'update', 'rebuild'].includes(process.env.npm_command ?? '')) {
    console.error(`inferjit build: continuing the \`npm ${process.env.npm_command}\`; dist/ is incomplete until the errors are fixed (npm pack would fail)`);
    process.exit(0);
  }
  process.exit(1);
}
const t2 = performance.now();
console.log(`inferjit build: ${entryPoints.length} files -> dist/ (JavaScript ${((t1 - t0) / 1000).toFixed(1)} s, declarations ${((t2 - t1) / 1000).toFixed(1)} s)`);
