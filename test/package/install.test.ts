// The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), then an empty
// application installs the tarball with npm's network switched off (`npm ci --offline`, from the
// npm cache the repository's own install filled), and uses it with plain `node` (no tsx) and its
// own `tsc` under strict + noUncheckedIndexedAccess + exactOptionalPropertyTypes.
//
// Why a lockfile: without one, npm 11 fetches full package documents for every dependency, which
// the repository's lockfile-driven install never caches, so an offline `npm install <tarball>`
// cannot resolve even inferjit's three dependencies. The application's lockfile is the repository's
// lockfile entries for inferjit's runtime dependencies (the same versions and integrity hashes),
// which is what a real application with a lockfile has. onnxruntime-node and tsx are optional peer
// dependencies and are not installed: the application runs without them.
//
// Compiling the addon in the application would take minutes here, so the install reuses the
// repository's build through INFERJIT_NATIVE_PREBUILT; it still goes through the package's real
// install script (scripts/build-native.mjs), which copies the binary into the installed package and
// loads it to check it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const repoPkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  name: string; version: string; license: string; dependencies: Record<string, string>;
  peerDependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, unknown>; bin: Record<string, string>; engines: Record<string, string>;
};
const repoAddon = join(repo, 'build', 'Release', 'inferjit_native.node');
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const nodeTypes = join(repo, 'node_modules', '@types');

let work = '';
let app = '';
let tarball = '';
let packedFiles: string[] = [];

/** Environment for child processes: no npm lifecycle variables of the `npm test` that runs this
 *  file (they name the repository as the current package), no tsx loader, no inferjit overrides. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(package|lifecycle|command|config_local_prefix)/i.test(k) || k === 'INIT_CWD' || k === 'NODE_OPTIONS' || k.startsWith('INFERJIT_')) continue;
    env[k] = v;
  }
  return { ...env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...extra };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = childEnv()): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw r.error;
  return r;
}

function mustRun(what: string, cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const r = run(cmd, args, cwd, env);
  assert.equal(r.status, 0, `${what} failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** npm: the one running `npm test` when there is one, else the one on PATH. */
function npm(args: string[], cwd: string, env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const cli = process.env.npm_execpath;
  return cli && /npm-cli\.js$/.test(cli) ? mustRun(`npm ${args.join(' ')}`, process.execPath, [cli, ...args], cwd, env) : mustRun(`npm ${args.join(' ')}`, 'npm', args, cwd, env);
}

/** The application's lockfile: inferjit from the tarball, its runtime dependencies as the repository locked them. */
function applicationLock(spec: string): object {
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'inferjit-consumer', version: '1.0.0', dependencies: { inferjit: spec } },
    'node_modules/inferjit': {
      version: repoPkg.version, resolved: spec, integrity, hasInstallScript: true, license: repoPkg.license,
      dependencies: repoPkg.dependencies, bin: repoPkg.bin, engines: repoPkg.engines,
      peerDependencies: repoPkg.peerDependencies, peerDependenciesMeta: repoPkg.peerDependenciesMeta,
    },
  };
  // [dependent's lock key ('' for inferjit), dependency name]; resolved as Node does: the nearest
  // node_modules from the dependent up (npm nests a version that conflicts with the hoisted one).
  const todo: [string, string][] = Object.keys(repoPkg.dependencies).map((name) => ['', name]);
  while (todo.length > 0) {
    const [parent, name] = todo.pop()!;
    let key: string | undefined;
    for (let p = parent; ; p = p.slice(0, Math.max(0, p.lastIndexOf('/node_modules/')))) {
      const k = `${p ? `${p}/` : ''}node_modules/${name}`;
      if (lock.packages[k]) { key = k; break; }
      if (!p) break;
    }
    assert.ok(key, `package-lock.json has no entry for ${name} (a runtime dependency of ${parent || 'inferjit'}); run npm install`);
    if (packages[key]) continue;
    const entry = lock.packages[key];
    const { dev: _dev, devOptional: _devOptional, peer: _peer, ...rest } = entry;
    packages[key] = rest;
    todo.push(...Object.keys((entry.dependencies as Record<string, string> | undefined) ?? {}).map((d): [string, string] => [key!, d]));
  }
  return { name: 'inferjit-consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

const APP_MJS = `
import { nn, inferenceJit, randn, backendInfo } from 'inferjit';
import { exportModel, ONNX_OPSET } from 'inferjit/onnx';
import { loadCausalLM, generate } from 'inferjit/llm';
import { readGguf } from 'inferjit/io';

const [cacheDir, onnxFile, ggufFile] = process.argv.slice(2);

class Tiny extends nn.Module {
  constructor() { super(); this.fc = new nn.Linear(8, 4, { seed: 1 }); }
  forward(x) { return this.fc.forward(x).relu(); }
}
const model = new Tiny();
const x = randn([3, 8], { seed: 2 });
const eager = model.forward(x).toFlatArray();
const fast = inferenceJit(model, { device: 'cpu', cacheDir, fallback: 'error', inputSpec: [{ shape: ['batch', 8] }] });
const first = fast.forward(x).toFlatArray();
const second = fast(randn([5, 8], { seed: 3 }));
const again = fast.forward(x).toFlatArray();
const maxDiff = Math.max(...eager.map((v, i) => Math.abs(v - first[i])), ...eager.map((v, i) => Math.abs(v - again[i])));

let ortError = null;
try { inferenceJit(new Tiny(), { device: 'onnxruntime', cacheDir, fallback: 'error' }).forward(x); } catch (e) { ortError = e.message; }

exportModel(model, [x], onnxFile, { inputSpec: [{ shape: ['batch', 8] }] });

const { engine, tokenizer } = loadCausalLM(ggufFile, { maxContext: 64 });
const run = generate(engine, tokenizer, 'hello', { maxTokens: 4, temperature: 0 });
for await (const _ of run) { /* stream */ }

console.log(JSON.stringify({
  backend: backendInfo(), maxDiff, eagerLength: eager.length, secondShape: second.shape, stats: fast.stats(), ortError,
  opset: ONNX_OPSET, ggufTensors: readGguf(ggufFile).tensors.length, generated: run.stats.generatedTokens,
}));
`;

// Uses the API the way a TypeScript application does; type-checked only (and, with
// experimentalDecorators, compiled and run).
const APP_TS = `
import { nn, Tensor, inferenceJit, randn, fromArray, type JitOptions, type JitStats, type InputSpec } from 'inferjit';
import { exportModel, type OnnxExportOptions } from 'inferjit/onnx';
import { generate, type GenerateOptions, type Tokenizer } from 'inferjit/llm';
import { readGguf, type GgufFile } from 'inferjit/io';

class Mlp extends nn.Module {
  up = new nn.Linear(8, 16, { seed: 1 });
  down = new nn.Linear(16, 4, { seed: 2 });
  forward(x: Tensor): Tensor { return this.down.forward(this.up.forward(x).relu()); }
}

@inferenceJit({ device: 'cpu', cache: 'memory', inputSpec: [{ shape: ['batch', 8] }] })
class DecoratedMlp extends Mlp {}

const spec: InputSpec[] = [{ shape: ['batch', 8] }];
const options: JitOptions = { device: 'cpu', cache: 'memory', inputSpec: spec, fallback: 'error' };
const fast = inferenceJit(new Mlp(), options);
const x: Tensor = randn([2, 8], { seed: 3 });
const y: Tensor = fast.forward(x);
const z: Tensor = fast(x);
const stats: JitStats = fast.stats();
const fn = inferenceJit((a: Tensor, b: Tensor): Tensor => a.add(b), { cache: 'memory' });
const sum: Tensor = fn(fromArray([1, 2, 3]), fromArray([4, 5, 6]));
const decorated: Tensor = new DecoratedMlp().forward(x);
const firstRow: number | undefined = y.toFlatArray()[0];
const exportOptions: OnnxExportOptions = {};
const generateOptions: GenerateOptions = { maxTokens: 4, temperature: 0 };
export type TypesUsed = [Tokenizer, GgufFile];
export const uses = [z, stats.misses, sum, decorated, firstRow, exportOptions, generateOptions, exportModel, generate, readGguf];
console.log(JSON.stringify({ diff: Math.max(...y.toFlatArray().map((v, i) => Math.abs(v - (decorated.toFlatArray()[i] ?? NaN)))), misses: stats.misses, sum: sum.toArray() }));
`;

function tsconfig(extra: Record<string, unknown>): string {
  return JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022'],
      strict: true, noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true,
      // check inferjit's declarations too (skipLibCheck would hide errors in them)
      skipLibCheck: false,
      typeRoots: [nodeTypes], types: ['node'],
      ...extra,
    },
    files: ['app.ts'],
  }, null, 2);
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'inferjit-package-'));
  mkdirSync(join(work, 'pack'));
  app = join(work, 'app');
  mkdirSync(app);

  // npm pack runs `prepare` (the build); --json lists what the tarball holds.
  // (the build's own output comes first on stdout; the JSON report starts at a line holding "[")
  const packOut = npm(['pack', '--json', '--pack-destination', join(work, 'pack')], repo).stdout;
  const packed = JSON.parse(packOut.slice(packOut.search(/^\[$/m))) as { filename: string; files: { path: string }[] }[];
  const info = packed[0]!;
  tarball = join(work, 'pack', info.filename);
  packedFiles = info.files.map((f) => f.path);

  const spec = `file:../pack/${info.filename}`;
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'inferjit-consumer', version: '1.0.0', private: true, type: 'module',
    dependencies: { inferjit: spec },
    // npm 11 runs unreviewed install scripts with a notice; approving inferjit's (its native build) silences it
    allowScripts: { [spec]: true },
  }, null, 2));
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify(applicationLock(spec), null, 2));
  const env = existsSync(repoAddon) ? childEnv({ INFERJIT_NATIVE_PREBUILT: repoAddon }) : childEnv({ INFERJIT_SKIP_NATIVE: '1' });
  npm(['ci', '--offline', '--foreground-scripts'], app, env);
}, { timeout: 10 * 60_000 });

after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

test('the tarball holds the built JavaScript, declarations, native sources and the install script, and no TypeScript sources', () => {
  for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/llm/index.js', 'dist/llm/index.d.ts', 'dist/onnx/index.js', 'dist/io/index.d.ts',
    'dist/cli/main.js', 'bin/inferjit.mjs', 'binding.gyp', 'scripts/build-native.mjs', 'native/addon.cc', 'docs/examples/make-tiny-llama.mjs', 'package.json', 'README.md']) {
    assert.ok(packedFiles.includes(f), `${f} is missing from the tarball`);
  }
  const sources = packedFiles.filter((f) => f.startsWith('src/') || f.startsWith('test/') || (f.endsWith('.ts') && !f.endsWith('.d.ts')));
  assert.deepEqual(sources, []);
  const installed = JSON.parse(readFileSync(join(app, 'node_modules', 'inferjit', 'package.json'), 'utf8')) as { exports: Record<string, { types?: string; default?: string }> };
  for (const [sub, target] of Object.entries(installed.exports)) {
    if (sub === './package.json') continue;
    assert.match(target.types ?? '', /^\.\/dist\/.*\.d\.ts$/, `exports["${sub}"].types`);
    assert.match(target.default ?? '', /^\.\/dist\/.*\.js$/, `exports["${sub}"].default`);
  }
  assert.ok(!existsSync(join(app, 'node_modules', 'onnxruntime-node')), 'onnxruntime-node is an optional peer dependency and must not be installed');
  assert.ok(!existsSync(join(app, 'node_modules', 'tsx')), 'tsx is an optional peer dependency and must not be installed');
});

test('docs/API.md matches the declarations the package ships', () => {
  // dist/ was just built by npm pack's prepare
  const r = run(process.execPath, [join(repo, 'scripts', 'build-api-docs.mjs'), '--check'], repo);
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

test('plain node runs inferjit, inferjit/onnx, inferjit/llm and inferjit/io from the installed package', () => {
  writeFileSync(join(app, 'app.mjs'), APP_MJS);
  const gguf = join(app, 'tiny.gguf');
  // the README's way to make a small model file, run from the installed package
  mustRun('make-tiny-llama.mjs', process.execPath, [join(app, 'node_modules', 'inferjit', 'docs', 'examples', 'make-tiny-llama.mjs'), gguf], app);
  const r = mustRun('node app.mjs', process.execPath, ['app.mjs', join(work, 'cache'), join(app, 'tiny.onnx'), gguf], app);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    backend: { native: boolean; path: string; reason?: string }; maxDiff: number; eagerLength: number; secondShape: number[];
    stats: { misses: number; hits: number; captures: number }; ortError: string | null; opset: number; ggufTensors: number; generated: number;
  };
  assert.equal(out.eagerLength, 12);
  assert.ok(out.maxDiff < 1e-5, `compiled output differs from eager by ${out.maxDiff}`);
  assert.deepEqual(out.secondShape, [5, 4]);
  assert.equal(out.stats.misses, 1, 'one compile serves both batch sizes (dynamic dim)');
  assert.ok(out.stats.hits >= 2);
  assert.equal(out.stats.captures, 1);
  if (existsSync(repoAddon)) {
    assert.equal(out.backend.native, true, `the native addon did not load: ${out.backend.reason}`);
    assert.equal(out.backend.path, join(app, 'node_modules', 'inferjit', 'build', 'Release', 'inferjit_native.node'));
  } else {
    assert.equal(out.backend.native, false);
  }
  assert.match(out.ortError ?? '', /onnxruntime-node/);
  assert.match(out.ortError ?? '', /npm install onnxruntime-node/);
  assert.ok(existsSync(join(app, 'tiny.onnx')), 'exportModel wrote no file');
  assert.equal(out.opset, 18);
  assert.equal(out.ggufTensors, 21);
  assert.equal(out.generated, 4);
});

test('the inferjit command runs from dist/ with plain node; a TypeScript model file without tsx gets a clear error', () => {
  const bin = join(app, 'node_modules', '.bin', 'inferjit');
  const info = mustRun('inferjit cache info', process.execPath, [bin, 'cache', 'info', '--dir', join(work, 'cache'), '--json'], app);
  const parsed = JSON.parse(info.stdout) as { root: string; inferjit: string };
  assert.equal(parsed.root, join(work, 'cache'));
  assert.equal(parsed.inferjit, repoPkg.version);

  writeFileSync(join(app, 'model.mjs'), `import { nn, randn } from 'inferjit';
export default { model: new nn.Linear(8, 4, { seed: 1 }), args: [randn([2, 8], { seed: 2 })], inputSpec: [{ shape: ['batch', 8] }] };\n`);
  mustRun('inferjit export model.mjs', process.execPath, [bin, 'export', 'model.mjs', '--out', 'cli.onnx'], app);
  assert.ok(existsSync(join(app, 'cli.onnx')));

  writeFileSync(join(app, 'model.ts'), readFileSync(join(app, 'model.mjs'), 'utf8'));
  const ts = run(process.execPath, [bin, 'export', 'model.ts', '--out', 'ts.onnx'], app);
  assert.equal(ts.status, 1);
  assert.match(ts.stderr, /loading the TypeScript file model\.ts needs tsx, which is not installed/);
  assert.match(ts.stderr, /npm install --save-dev tsx/);
});

test("the application's tsc reads only declarations and accepts them under strict + noUncheckedIndexedAccess + exactOptionalPropertyTypes", () => {
  writeFileSync(join(app, 'app.ts'), APP_TS);
  writeFileSync(join(app, 'tsconfig.json'), tsconfig({ noEmit: true }));
  const r = run(process.execPath, [tsc, '--noEmit', '-p', 'tsconfig.json', '--listFiles'], app);
  assert.equal(r.status, 0, `tsc reported errors:\n${r.stdout}\n${r.stderr}`);
  const inferjitFiles = r.stdout.split('\n').filter((l) => l.includes('/node_modules/inferjit/'));
  assert.ok(inferjitFiles.some((f) => f.endsWith('/dist/index.d.ts')), 'tsc did not read dist/index.d.ts');
  assert.deepEqual(inferjitFiles.filter((f) => !f.endsWith('.d.ts')), []);
});

test('with experimentalDecorators + emitDecoratorMetadata, the application compiles with tsc and runs with plain node', () => {
  writeFileSync(join(app, 'app.ts'), APP_TS);
  writeFileSync(join(app, 'tsconfig.legacy.json'), tsconfig({ experimentalDecorators: true, emitDecoratorMetadata: true, outDir: 'out-legacy' }));
  const r = run(process.execPath, [tsc, '-p', 'tsconfig.legacy.json'], app);
  assert.equal(r.status, 0, `tsc reported errors:\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(mustRun('node out-legacy/app.js', process.execPath, [join('out-legacy', 'app.js')], app).stdout.trim()) as { diff: number; misses: number; sum: number[] };
  assert.ok(out.diff < 1e-5, `decorated and function-form outputs differ by ${out.diff}`);
  assert.equal(out.misses, 1);
  assert.deepEqual(out.sum, [5, 7, 9]);
});
