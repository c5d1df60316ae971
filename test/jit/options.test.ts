import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { configure, resetConfig, resolveOptions, envOptions, validateOptions, parseBytes, mergeOptions } from '../../src/jit/options.js';
import { registerPass, unregisterPass, listPassNames } from '../../src/passes/index.js';
import { Graph } from '../../src/ir/index.js';

test('defaults: cpu, fp32, disk cache under ~/.cache/inferjit, eager fallback, 8 entries', () => {
  resetConfig();
  const o = resolveOptions({}, {});
  assert.equal(o.device, 'cpu');
  assert.equal(o.precision, 'fp32');
  assert.equal(o.cache, 'disk');
  assert.equal(o.fallback, 'eager');
  assert.equal(o.maxEntries, 8);
  assert.equal(o.cacheDir, join(homedir(), '.cache', 'inferjit'));
  assert.equal(resolveOptions({}, { XDG_CACHE_HOME: '/xdg' }).cacheDir, '/xdg/inferjit');
});

test('deploy-time options: env > configure() > call site; model options: call site > configure()', () => {
  resetConfig();
  const site = { device: 'reference' as const, cacheDir: '/site', inputSpec: [{ shape: ['b', 4] }], maxEntries: 3 };
  assert.equal(resolveOptions(site, {}).device, 'reference');
  configure({ device: 'cpu', cacheDir: '/configured', maxEntries: 5, inputSpec: [null] });
  let o = resolveOptions(site, {});
  assert.equal(o.device, 'cpu');
  assert.equal(o.cacheDir, '/configured');
  assert.equal(o.maxEntries, 3); // the model's own choice stays
  assert.deepEqual(o.inputSpec, [{ shape: ['b', 4] }]);
  o = resolveOptions(site, { INFERJIT_DEVICE: 'reference', INFERJIT_CACHE_DIR: '/env', INFERJIT_CACHE: 'memory', INFERJIT_FALLBACK: 'error', INFERJIT_DEBUG: '/dbg', INFERJIT_CACHE_MAX_BYTES: '2G' });
  assert.equal(o.device, 'reference');
  assert.equal(o.cacheDir, '/env');
  assert.equal(o.cache, 'memory');
  assert.equal(o.fallback, 'error');
  assert.equal(o.debug, '/dbg');
  assert.equal(o.cacheMaxBytes, 2 * 1024 ** 3);
  resetConfig();
});

test('bad options and bad environment values fail with the option or variable named', () => {
  assert.throws(() => validateOptions({ device: 'gpu' } as never, 'inferenceJit options'), /inferenceJit options: device must be one of 'cpu', 'reference', 'onnxruntime', 'tensorrt', got "gpu"/);
  assert.throws(() => validateOptions({ devcie: 'cpu' } as never, 'x'), /x: unknown option "devcie" \(did you mean "device"\?\); valid options: device, precision, /);
  assert.throws(() => validateOptions({ zzz: 1 } as never, 'x'), (e: Error) => /unknown option "zzz"; valid options: device/.test(e.message) && !/did you mean/.test(e.message));
  assert.throws(() => validateOptions({ onnxruntime: 'fast' } as never, 'x'), /x: onnxruntime must be an object of onnxruntime session options, got "fast"/);
  assert.throws(() => validateOptions(null as never, 'x'), /x: options must be an object such as \{ device: 'cpu' \}, got null/);
  assert.throws(() => validateOptions({ maxEntries: 0 }, 'x'), /maxEntries must be a positive integer/);
  assert.throws(() => validateOptions({ inputSpec: [{ shape: [2, 'bad dim'] }] }, 'x'), /inputSpec\[0\].shape has invalid dim "bad dim"/);
  assert.throws(() => validateOptions({ inputSpec: [{ shape: [2], dtype: 'f64' as never }] }, 'x'), /inputSpec\[0\].dtype "f64" is not a dtype/);
  assert.throws(() => envOptions({ INFERJIT_DEVICE: 'tpu' }), /INFERJIT_DEVICE: device must be one of/);
  assert.throws(() => envOptions({ INFERJIT_CACHE: 'sometimes' }), /INFERJIT_CACHE: cache must be one of 'memory', 'disk', got "sometimes"/);
  assert.throws(() => configure({ precision: 'fp64' as never }), /configure\(\): precision must be one of/);
  assert.equal(parseBytes('512M'), 512 * 1024 ** 2);
  assert.equal(parseBytes('1048576'), 1048576);
  assert.throws(() => parseBytes('lots'), /cannot read "lots" as a size/);
});

test("cache: 'off' is refused with an error naming 'memory' (no disk cache, memory cache kept)", () => {
  assert.throws(() => validateOptions({ cache: 'off' } as never, 'inferenceJit options'), /inferenceJit options: cache 'off' is no longer an option .*use cache: 'memory'/);
  assert.throws(() => envOptions({ INFERJIT_CACHE: 'off' }), /INFERJIT_CACHE: cache 'off' is no longer an option .*cache: 'memory'/);
});

test('passes.disable is checked against the registered passes', () => {
  const defaults = listPassNames();
  assert.ok(defaults.includes('cse') && defaults.includes('gemm-epilogue'), `default pipeline: ${defaults.join(', ')}`);
  validateOptions({ passes: { disable: ['cse'] } }, 'inferenceJit options');
  assert.throws(() => validateOptions({ passes: { disable: ['cse-typo'] } }, 'inferenceJit options'), /passes.disable names unknown pass "cse-typo"; registered passes: simplify, cse/);
  registerPass({ name: 'test-identity', description: 'returns its input', run: (_g: Graph) => 0 });
  try {
    validateOptions({ passes: { disable: ['test-identity'] } }, 'x');
    assert.throws(() => registerPass({ name: 'test-identity', description: '', run: (_g: Graph) => 0 }), /already registered/);
    assert.throws(() => validateOptions({ passes: { disable: ['nope'] } }, 'x'), /registered passes: .*test-identity/);
  } finally {
    unregisterPass('test-identity');
  }
  assert.deepEqual(mergeOptions({ passes: { disable: ['a'] } }, { passes: { disable: ['b'] }, device: 'cpu' }), { passes: { disable: ['a', 'b'] }, device: 'cpu' });
});
