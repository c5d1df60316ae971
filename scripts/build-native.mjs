// Builds the native CPU backend with node-gyp (run by `npm install` and `npm run build:native`).
// A failed build must not fail the install: the pure-TypeScript reference backend still works,
// so this prints a loud banner saying what failed and how to retry, and exits 0.
// Env: INFERJIT_NATIVE_ARCH (default "native"; e.g. x86-64-v3 for a portable AVX2 build),
//      INFERJIT_SKIP_NATIVE=1 to skip the build,
//      INFERJIT_NATIVE_PREBUILT=/path/to/inferjit_native.node to install an addon built elsewhere for
//      this platform, Node ABI and CPU (e.g. the repository's own build, reused by the package test)
//      instead of compiling; it is checked by loading it, and compiled from source when it does not load.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');

function banner(lines) {
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const bar = '!'.repeat(width);
  console.error(['', bar, ...lines.map((l) => `! ${l.padEnd(width - 4)} !`), bar, ''].join('\n'));
}

/** node-gyp: npm's configured one, else the copy bundled with the npm that runs node. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  const prefix = dirname(dirname(process.execPath)); // <prefix>/bin/node -> <prefix>
  candidates.push(
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), // Windows layout
    join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  return candidates.find((p) => existsSync(p));
}

if (process.env.INFERJIT_SKIP_NATIVE === '1' && !force) {
  console.log('inferjit: INFERJIT_SKIP_NATIVE=1, not building the native backend (the reference backend will be used)');
  process.exit(0);
}

const addonFile = join(root, 'build', 'Release', 'inferjit_native.node');

/** Installs a prebuilt addon (copied atomically, then loaded to check it); the reason it was not used otherwise. */
function installPrebuilt(file) {
  if (!existsSync(file)) return `${file} does not exist`;
  mkdirSync(dirname(addonFile), { recursive: true });
  const tmp = `${addonFile}.${process.pid}.tmp`;
  try {
    copyFileSync(file, tmp);
    renameSync(tmp, addonFile);
    const info = createRequire(import.meta.url)(addonFile).info();
    console.log(`inferjit: installed the prebuilt native CPU backend ${file} (${info.isa}, -march=${info.arch})`);
    return null;
  } catch (e) {
    rmSync(tmp, { force: true });
    rmSync(addonFile, { force: true });
    return e.message;
  }
}

const prebuilt = process.env.INFERJIT_NATIVE_PREBUILT;
if (prebuilt && !force) {
  const why = installPrebuilt(resolve(prebuilt));
  if (why === null) process.exit(0);
  console.error(`inferjit: INFERJIT_NATIVE_PREBUILT=${prebuilt} cannot be used (${why}); building from source instead`);
}

const arch = process.env.INFERJIT_NATIVE_ARCH || 'native';
const gyp = findNodeGyp();
let failure = null;
if (!gyp) {
  failure = 'node-gyp was not found (looked at $npm_config_node_gyp and next to npm)';
} else {
  console.log(`inferjit: building the native CPU backend (-march=${arch}) with ${gyp}`);
  const args = [gyp, 'rebuild', '--release', `-j`, 'max'];
  // Headers: npm's nodedir if configured; else the ones installed next to this node binary
  // (<prefix>/include/node), which works offline; else node-gyp downloads them.
  const prefix = dirname(dirname(process.execPath));
  const nodedir = process.env.npm_config_nodedir || (existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : '');
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, INFERJIT_NATIVE_ARCH: arch } });
  if (r.error) failure = `could not run node-gyp: ${r.error.message}`;
  else if (r.status !== 0) failure = `node-gyp exited with status ${r.status} (see the compiler output above)`;
  else if (!existsSync(addonFile)) failure = 'node-gyp succeeded but build/Release/inferjit_native.node is missing';
}

if (failure) {
  banner([
    'inferjit: THE NATIVE CPU BACKEND WAS NOT BUILT',
    `reason: ${failure}`,
    'inferjit still works, on the pure-TypeScript reference backend (much slower).',
    'backendInfo() from inferjit reports { native: false, reason }.',
    'To retry: install a C++17 compiler, python3 and make, then run `npm run build:native`',
    '(INFERJIT_NATIVE_ARCH=x86-64-v3 builds a portable AVX2 binary).',
  ]);
  process.exit(0);
}
console.log('inferjit: native CPU backend built (build/Release/inferjit_native.node)');
