// The source transform on its own: what is converted and where, that no line moves, that files
// without inferenceJit are untouched, that jumps it cannot lower are left to JavaScript with an
// explicit conversion, and that converted code computes exactly what the original does on JS
// values (eager semantics are kept). Plus the esbuild plugin bundling a converted model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { build } from 'esbuild';
import { transformSource, inferjitD2sPlugin, TransformCache } from '../../src/trace/transform/index.js';

const RUNTIME = new URL('../../src/trace/transform/runtime.ts', import.meta.url).href;
const dir = mkdtempSync(join(tmpdir(), 'inferjit-d2s-transform-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const tf = (code: string) => transformSource(code, 'm.ts', { runtimeSpecifier: RUNTIME, sourceMap: false });

const SAMPLE = `const inferenceJit = (o: unknown) => (c: unknown) => c;
@inferenceJit({})
export class M {
  forward(x: number, n: number): number {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      if (i % 2 === 0) continue;
      acc += i;
      if (acc > 20) break;
    }
    while (x > 1 && !(x === 7)) {
      x = x / 2;
    }
    if (x < 0) {
      return -1;
    } else if (x === 0) {
      return 0;
    }
    const sign = acc > 10 ? 1 : -1;
    return acc * sign + x;
  }
  notJumpy(a: number): number {
    for (const v of [1, 2, 3]) {
      if (v === a) return v * 100;
    }
    return a;
  }
}
export class Plain { f(x: number) { if (x) return 1; return 2; } }
`;

test('converts if/else, ternaries, loops with break/continue and early returns, keeping every line', () => {
  const r = tf(SAMPLE);
  assert.ok(r.changed);
  assert.equal(r.code.split('\n').length, SAMPLE.split('\n').length, 'no line added or removed');
  // every line that had code keeps it on the same line (a marker per line)
  const src = SAMPLE.split('\n'), out = r.code.split('\n');
  for (const [i, marker] of [[5, 'let acc = 0'], [8, 'acc += i'], [12, 'x = x / 2'], [19, 'const sign'], [20, 'acc * sign + x']] as const) {
    assert.ok(src[i - 1].includes(marker) && out[i - 1].includes(marker), `line ${i}: ${out[i - 1]}`);
  }
  assert.match(r.code, /let __brk0 = false; \{ let i = 0; __d2s\.whileLoop\(\(\) => \(__d2s\.and\(__d2s\.not\(__brk0\), \(\) => \(\(i < n\)\)\)\)/, 'for with break -> flag + whileLoop');
  assert.match(r.code, /__d2s\.whileLoop\(\(\) => \(__d2s\.and\(x > 1, \(\) => \(__d2s\.not\(\(x === 7\)\)\)\)\)/);
  assert.match(r.code, /__d2s\.ifElse\(acc > 10, \(\) => \(1\), \(\) => \(-1\)\)/);
  assert.match(r.code, /let __ret;/);
  assert.match(r.code, /\["__ret"\]/, 'early returns become a branch output');
  // a return inside a for-of cannot be lowered: left in JavaScript, with an explicit conversion
  assert.match(r.code, /if \(__d2s\.truth\(v === a\)\) return v \* 100;/);
  // the undecorated class is untouched
  assert.match(r.code, /export class Plain \{ f\(x: number\) \{ if \(x\) return 1; return 2; \} \}/);
  assert.ok(r.conversions.some((c) => c.startsWith('whileLoop (for) at line 6')), r.conversions.join(', '));
});

test('files without inferenceJit, and files where nothing is decorated, come back unchanged', () => {
  const a = 'export function f(x: number) { if (x) return 1; return 2; }\n';
  assert.deepEqual(tf(a), { code: a, changed: false, conversions: [] });
  const b = 'import { inferenceJit } from "inferjit";\nexport function f(x: number) { if (x) return 1; return 2; }\n';
  assert.equal(tf(b).changed, false);
  // an inferenceJit(...) call marks the function (or class) it is given
  const c = 'const inferenceJit = (f: unknown) => f;\nfunction g(x: number) { return x > 0 ? x : -x; }\nexport const h = inferenceJit(g);\n';
  assert.match(tf(c).code, /function g\(x: number\) \{ return __d2s\.ifElse\(x > 0, \(\) => \(x\), \(\) => \(-x\)\); \}/);
});

test('converted code computes what the original computes on JS values', async () => {
  const orig = join(dir, 'orig.ts'), conv = join(dir, 'conv.ts');
  writeFileSync(orig, SAMPLE);
  writeFileSync(conv, tf(SAMPLE).code);
  const A = (await import(pathToFileURL(orig).href)).M, B = (await import(pathToFileURL(conv).href)).M;
  const a = new A(), b = new B();
  for (const x of [-3, 0, 0.5, 7, 40, 3.5]) {
    for (const n of [0, 1, 5, 12, 30]) assert.equal(b.forward(x, n), a.forward(x, n), `forward(${x}, ${n})`);
  }
  for (const v of [0, 1, 2, 3, 4]) assert.equal(b.notJumpy(v), a.notJumpy(v));
});

test('the esbuild plugin bundles a converted model whose control flow compiles', async () => {
  const entry = join(dir, 'entry.ts');
  const models = fileURLToPath(new URL('./fixtures/models.ts', import.meta.url));
  const srcRoot = fileURLToPath(new URL('../../src/', import.meta.url));
  writeFileSync(entry, [
    `import { Shrink } from ${JSON.stringify(models)};`,
    `import { fromArray, full, jitStats } from ${JSON.stringify(join(srcRoot, 'index.ts'))};`,
    'const m = new Shrink();',
    'const y = m.forward(fromArray([3, 4]), full([], 0.5));',
    'console.log(JSON.stringify({ y: Array.from(y.toFlatArray()), captures: jitStats(m)!.captures, breaks: jitStats(m)!.graphBreaks }));',
  ].join('\n'));
  const cache = new TransformCache(null);
  const out = join(dir, 'bundle.mjs');
  // the library stays external (its native addon and data files are not bundled); the model file is bundled and converted
  const external = { name: 'library-external', setup(b: { onResolve: (o: { filter: RegExp }, f: (a: { path: string; resolveDir: string }) => unknown) => void }) {
    b.onResolve({ filter: /.*/ }, (args) => {
      const p = args.path.startsWith('.') ? join(args.resolveDir, args.path) : args.path;
      if (p.startsWith(srcRoot)) return { path: pathToFileURL(p.replace(/\.js$/, '.ts')).href, external: true };
      return undefined;
    });
  } };
  await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: out, plugins: [external as never, inferjitD2sPlugin({ cache, runtimeSpecifier: join(srcRoot, 'trace/transform/runtime.ts') })], logLevel: 'silent' });
  const text = readFileSync(out, 'utf8');
  assert.match(text, /__d2s\.whileLoop\(/, 'the bundled model was converted');
  assert.equal(cache.misses >= 1, true);
  const r = spawnSync(process.execPath, ['--import', 'tsx', out], { encoding: 'utf8', cwd: fileURLToPath(new URL('../..', import.meta.url)) });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual(res, { y: [3.375, 3.5], captures: 1, breaks: 0 });
});

test('async methods, generators, await and var inside branches are left to JavaScript', () => {
  const code = `const inferenceJit = (o: unknown) => (c: unknown) => c;
@inferenceJit({})
export class A {
  async load(x: number) { if (x) { await 0; } return x > 0 ? 1 : 2; }
  *gen(x: number) { if (x) yield 1; }
  f(x: number) { if (x > 1) { var z = 2; } return x; }
  g(x: number) { if (x > 1) { x = 2; } return x; }
}
`;
  const r = tf(code);
  assert.match(r.code, /async load\(x: number\) \{ if \(x\) \{ await 0; \} return x > 0 \? 1 : 2; \}/);
  assert.match(r.code, /\*gen\(x: number\) \{ if \(x\) yield 1; \}/);
  assert.match(r.code, /f\(x: number\) \{ if \(__d2s\.truth\(x > 1\)\) \{ var z = 2; \} return x; \}/);
  assert.match(r.code, /g\(x: number\) \{ __d2s\.ifElse\(x > 1, \(\) =>/);
});
