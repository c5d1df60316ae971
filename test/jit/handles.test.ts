// Every compiled form has the same handle: stats() and describe() on the function and module
// forms, and through jitHandle / jitStats / jitDescribe for anything compiled (decorated instances
// are covered in decorators.test.ts, under both decorator flavours). Bad option objects fail with
// the option named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, randn, inferenceJit, jitHandle, jitStats, jitDescribe, type Tensor } from '../../src/index.js';

for (const k of Object.keys(process.env)) if (k.startsWith('INFERJIT_')) delete process.env[k];

const x = randn([1, 8], { seed: 1 });

test('function form: stats() and describe() on the handle, and through jitStats / jitDescribe', () => {
  const f = inferenceJit(function double(t: Tensor) { return t.mul(2); }, { cache: 'memory', device: 'reference' });
  assert.match(f.describe(), /^double: nothing compiled yet/);
  f(x);
  f(x);
  assert.equal(f.stats().hits, 1);
  assert.equal(jitStats(f)!.hits, 1); // was null for the function form
  assert.equal(f.describe(), 'double: 1 signature in memory (device reference, precision fp32, cache memory)\n  f32[1,8] -> reference interpreter (1 nodes after passes)');
  assert.equal(jitDescribe(f), f.describe());
  assert.equal(jitHandle(f)!.stats().calls, 2);
});

test('module form: describe() names the backend path per signature, most recent first', () => {
  const m = new nn.Linear(8, 8, { seed: 2 });
  const fast = inferenceJit(m, { cache: 'memory', autoDynamic: false });
  fast(x);
  fast(randn([3, 8], { seed: 3 }));
  const lines = fast.describe().split('\n');
  assert.match(lines[0], /^Linear\.forward: 2 signatures in memory \(device cpu, precision fp32, cache memory\)$/);
  assert.match(lines[1], /^ {2}f32\[3,8\] -> (cpu plan|cpu interpreter)/);
  assert.match(lines[2], /^ {2}f32\[1,8\] -> (cpu plan|cpu interpreter)/);
  assert.equal(lines[1].slice(lines[1].indexOf('->') + 3, lines[1].lastIndexOf(' (')), fast.compiledEntries()[0].executable.describe!());
  assert.equal(jitDescribe(fast), fast.describe());
});

test('a graph break shows in describe() as a split signature, with its pieces', async () => {
  const f = inferenceJit((t: Tensor) => (t.sum().item() > 0 ? t : t.neg()), { cache: 'memory', fallback: 'eager' });
  const prev = process.listeners('warning');
  process.removeAllListeners('warning'); // the expected graph-break warning (emitted on the next tick)
  try {
    f(x);
    await new Promise((r) => setImmediate(r));
  } finally {
    for (const l of prev) process.on('warning', l);
  }
  assert.match(f.describe(), /\n {2}f32\[1,8\] -> split \(graph break: .*\n {4}split at item at .*: piece 1 \(1 ops before the break/);
});

test('objects that are not compiled have no handle', () => {
  assert.equal(jitHandle(new nn.Linear(2, 2)), null);
  assert.equal(jitStats({}), null);
  assert.equal(jitDescribe(() => 1), null);
});

test('a bad options argument fails naming what is wrong', () => {
  const m = new nn.Linear(2, 2);
  const jit = inferenceJit as (...a: unknown[]) => unknown;
  assert.throws(() => jit(m, 'cpu'), /inferenceJit options: options must be an object such as \{ device: 'cpu' \}, got "cpu"/);
  assert.throws(() => jit(m, null), /options must be an object such as \{ device: 'cpu' \}, got null/);
  assert.throws(() => jit((t: Tensor) => t, 42), /got 42/);
  class Opts { device = 'cpu'; }
  assert.throws(() => jit(m, new Opts()), /options must be a plain object such as \{ device: 'cpu' \}, got an instance of Opts/);
  assert.throws(() => jit(m, { devcie: 'cpu' }), /inferenceJit options: unknown option "devcie" \(did you mean "device"\?\); valid options: /);
  assert.throws(() => jit({ devcie: 'cpu' }), /unknown option "devcie"/); // decorator factory form
  assert.throws(() => jit(m, { cache: 'off' }), /cache 'off' is no longer an option .*cache: 'memory'/);
});

test('the types reject a bad options object at the call (checked by tsc over test/)', () => {
  const m = new nn.Linear(2, 2);
  const jit = (): unknown => [
    // @ts-expect-error an unknown option name is a type error, reported against the options
    inferenceJit(m, { devcie: 'cpu' }),
    // @ts-expect-error 'off' is no longer a cache mode
    inferenceJit((t: Tensor) => t, { cache: 'off' }),
  ];
  assert.throws(jit, /unknown option "devcie"/); // and at run time, for JavaScript callers
});
