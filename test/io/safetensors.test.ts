import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors, parseSafetensors, loadSafetensors } from '../../src/io/safetensors.js';
import { writeSafetensors, encodeSafetensorsBytes } from '../../src/io/safetensors-writer.js';
import { SafetensorsError } from '../../src/io/errors.js';
import { fromArray, Tensor } from '../../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-st-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** A file built by hand: length prefix, JSON, data. */
function handMade(header: object, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

test('parses a hand-built file with an odd header length (unaligned data section)', () => {
  const data = new Uint8Array([...new Uint8Array(new Float32Array([1, -2, 3.5]).buffer), ...new Uint8Array(new Int32Array([7]).buffer)]);
  const bytes = handMade({ __metadata__: { format: 'pt' }, b: { dtype: 'I32', shape: [1], data_offsets: [12, 16] }, a: { dtype: 'F32', shape: [3, 1], data_offsets: [0, 12] } }, data);
  const f = parseSafetensors(bytes, 'hand.safetensors');
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual(f.names, ['a', 'b']); // file order
  assert.deepEqual(f.toTensor('a').toArray(), [[1], [-2], [3.5]]);
  assert.equal(f.toTensor('b').dtype, 'i32');
  assert.deepEqual(f.toTensor('b').toArray(), [7]);
});

test('every dtype round-trips through writer and reader, lazily and in memory', () => {
  const tensors = {
    f32: fromArray([[0.5, -1], [2, 3]]),
    f16: fromArray([1, -0.25, 65504], 'f16'),
    bf16: fromArray([1.5, -3], 'bf16'),
    i8: fromArray([-128, 127], 'i8'),
    u8: fromArray([0, 255], 'u8'),
    i32: fromArray([-7, 2147483647], 'i32'),
    i64: fromArray([-5, 2 ** 40], 'i64'),
    bool: fromArray([1, 0, 1], 'bool'),
    empty: Tensor.empty('f32', [0, 4]),
  };
  const file = path.join(tmp, 'all.safetensors');
  writeSafetensors(file, tensors, { metadata: { format: 'pt', note: 'ünïcode' } });
  const raw = fs.readFileSync(file);
  const headerLen = Number(raw.readBigUInt64LE(0));
  assert.equal((8 + headerLen) % 8, 0, 'data section starts 8-byte aligned');
  for (const load of ['lazy', 'memory'] as const) {
    const f = readSafetensors(file, { load });
    assert.deepEqual(f.metadata, { format: 'pt', note: 'ünïcode' });
    assert.deepEqual(new Set(f.names), new Set(Object.keys(tensors)));
    for (const t of f.tensors) assert.equal(t.offset % { F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, I32: 4, I64: 8, BOOL: 1 }[t.dtype], 0, `${t.name} is aligned`);
    for (const [name, t] of Object.entries(tensors)) {
      const got = f.toTensor(name);
      assert.equal(got.dtype, t.dtype, name);
      assert.deepEqual(got.shape, t.shape, name);
      assert.deepEqual(got.toArray(), t.toArray(), name);
    }
    assert.equal(f.tensorInfo('i64').dtype, 'I64');
  }
  assert.deepEqual(new Set(loadSafetensors(file).keys()), new Set(Object.keys(tensors)));
});

test('sharded checkpoints load through model.safetensors.index.json', () => {
  const dir = path.join(tmp, 'sharded');
  fs.mkdirSync(dir);
  writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), { 'model.embed_tokens.weight': fromArray([[1, 2], [3, 4]]), stray: fromArray([9]) });
  writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { 'lm_head.weight': fromArray([[5, 6]]) });
  const index = {
    metadata: { total_size: 24 },
    weight_map: { 'model.embed_tokens.weight': 'model-00001-of-00002.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors' },
  };
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  for (const target of [dir, path.join(dir, 'model.safetensors.index.json')]) {
    const f = readSafetensors(target);
    assert.deepEqual(f.names, ['model.embed_tokens.weight', 'lm_head.weight']); // only what the map lists
    assert.equal(f.metadata.total_size, '24');
    assert.deepEqual(f.toTensor('lm_head.weight').toArray(), [[5, 6]]);
    assert.ok(f.tensorInfo('lm_head.weight').file.endsWith('model-00002-of-00002.safetensors'));
    assert.deepEqual(f.toTensor('model.embed_tokens.weight').toArray(), [[1, 2], [3, 4]]);
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { missing: 'model-00002-of-00002.safetensors' } }));
  assert.throws(() => readSafetensors(dir), /weight_map says tensor "missing" is in model-00002-of-00002\.safetensors, but that shard has no such tensor/);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'nope.safetensors' } }));
  assert.throws(() => readSafetensors(dir), (e: unknown) => e instanceof SafetensorsError && /nope\.safetensors: cannot open/.test(e.message));
  assert.throws(() => readSafetensors(path.join(tmp)), /directory has neither model\.safetensors nor model\.safetensors\.index\.json/);
});

test('malformed headers give a SafetensorsError with what, where and the byte offset', () => {
  const f32 = new Uint8Array(new Float32Array([1, 2]).buffer);
  const err = (bytes: Uint8Array, re: RegExp) =>
    assert.throws(() => parseSafetensors(bytes, 'bad.safetensors'), (e: unknown) => e instanceof SafetensorsError && re.test(e.message));
  err(new Uint8Array(5), /bad\.safetensors: file is 5 bytes, too short for the 8-byte header length \(at byte offset 0\)/);
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  err(huge, /header length 1099511627776 exceeds the 100000000-byte limit/);
  const short = new Uint8Array(16);
  new DataView(short.buffer).setBigUint64(0, 100n, true);
  err(short, /file is truncated: header length is 100 bytes but only 8 bytes follow/);
  const badJson = new Uint8Array(14);
  badJson.set(new TextEncoder().encode('{"a":}'), 8);
  new DataView(badJson.buffer).setBigUint64(0, 6n, true);
  err(badJson, /header is not valid JSON: .*\(at byte offset \d+\)/);
  err(handMade({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor "a": dtype F64 is not supported \(supported: F32, F16, BF16, I8, U8, I32, I64, BOOL\)/);
  err(handMade({ a: { dtype: 'Q9', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor "a": unknown dtype "Q9"/);
  err(handMade({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32), /tensor "a": F32 \[3\] needs 12 bytes but data_offsets \[0, 8\] span 8/);
  err(handMade({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 8] } }, f32), /shape \[-1\] is not a list of non-negative integers/);
  err(handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, f32), /data_offsets \[8,0\] must be \[begin, end\]/);
  const h = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
  const hdrLen = JSON.stringify(h).length;
  err(handMade(h, f32), new RegExp(`tensor "b" \\(bytes ${8 + hdrLen + 4}\\.\\.${8 + hdrLen + 8}\\) overlaps tensor "a" .*\\(at byte offset ${8 + hdrLen + 4}\\)`));
  const t = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
  err(handMade(t, f32), new RegExp(`file is truncated: tensor "a" spans bytes ${8 + JSON.stringify(t).length}\\.\\.${8 + JSON.stringify(t).length + 16} but the file is ${8 + JSON.stringify(t).length + 8} bytes long`));
  err(handMade([1] as unknown as object, new Uint8Array(0)), /header does not start with '\{'/);
  err(handMade({ __metadata__: { n: 1 } }, new Uint8Array(0)), /__metadata__ must be an object of strings/);
  assert.throws(() => readSafetensors(path.join(tmp, 'none.safetensors')), /none\.safetensors: cannot open/);
});

test('fuzz: truncations and byte flips throw only SafetensorsError', () => {
  const good = encodeSafetensorsBytes({ a: fromArray([[1, 2], [3, 4]]), b: fromArray([1, 2, 3], 'i64'), c: fromArray([1, 0], 'bool') }, { metadata: { k: 'v' } });
  const end = good.length;
  for (let n = 0; n < end; n++) assert.throws(() => parseSafetensors(good.subarray(0, n)), SafetensorsError, `truncated at ${n}`);
  let s = 3;
  const rnd = (k: number) => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % k; };
  for (let i = 0; i < 2000; i++) {
    const b = good.slice();
    b[rnd(b.length)] ^= 1 << rnd(8);
    try {
      const f = parseSafetensors(b);
      for (const name of f.names) f.toTensor(name);
    } catch (e) {
      if (!(e instanceof SafetensorsError)) throw new Error(`round ${i}: ${(e as Error).name}: ${(e as Error).message}`);
    }
  }
});

test('writes are atomic: the target is replaced whole and no temp file remains', () => {
  const dir = path.join(tmp, 'atomic');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'w.safetensors');
  fs.writeFileSync(file, 'previous');
  writeSafetensors(file, { x: fromArray([1]) });
  assert.deepEqual(fs.readdirSync(dir), ['w.safetensors']);
  assert.deepEqual(readSafetensors(file).toTensor('x').toArray(), [1]);
});

test('shard names that merely start with two dots load; names that leave the directory are refused', () => {
  const dir = path.join(tmp, 'dots');
  fs.mkdirSync(dir);
  writeSafetensors(path.join(dir, '..s1.safetensors'), { a: fromArray([1, 2]) });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '..s1.safetensors' } }));
  assert.deepEqual(readSafetensors(dir).toTensor('a').toArray(), [1, 2]);
  writeSafetensors(path.join(tmp, 'outside.safetensors'), { a: fromArray([3]) });
  for (const name of ['../outside.safetensors', path.join(tmp, 'outside.safetensors'), './../outside.safetensors', 'sub/../../outside.safetensors']) {
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: name } }));
    assert.throws(() => readSafetensors(dir), (e: unknown) => e instanceof SafetensorsError && /points outside the checkpoint directory/.test(e.message), name);
  }
});
