// GGUF tensor layout rules (as llama.cpp's reader): every tensor's data must sit at the running,
// aligned offset after the previous one, and nothing but padding may follow the last tensor. A
// changed type id or tensor count then fails to parse instead of loading shifted data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseGguf, encodeGgufBytes, GgufError } from '../../src/io/gguf/index.js';
import { ggufLayout, withU32, withU64 } from './gguf-layout.js';

const file = encodeGgufBytes({
  metadata: { 'general.architecture': 'test' },
  tensors: [
    { name: 'a', type: 'F32', shape: [4, 8], data: new Float32Array(32).fill(1) },
    { name: 'b', type: 'F32', shape: [16], data: new Float32Array(16).fill(2) },
    { name: 'c', type: 'F32', shape: [8], data: new Float32Array(8).fill(3) },
  ],
});
const layout = ggufLayout(file);
const gguferr = (re: RegExp) => (e: unknown) => e instanceof GgufError && re.test(e.message);

test('the unmodified file parses, tensors packed at aligned offsets', () => {
  const f = parseGguf(file);
  assert.deepEqual(f.tensors.map((t) => t.relativeOffset), [0, 128, 192]);
});

test('a tensor whose type id was changed to a smaller type is refused (its size no longer matches the gap)', () => {
  const bytes = withU32(file, layout.tensors.get('a')!.typeAt, 1); // F32 -> F16
  assert.throws(() => parseGguf(bytes, 'x.gguf'), gguferr(/tensor "b" .* has data offset 128, expected 64 \(tensors are packed in order/));
});

test('the last tensor changed to a smaller type leaves unexplained bytes after it', () => {
  // 32 -> 16 bytes: the 16 left over are fewer than the 32-byte alignment, indistinguishable from padding
  // (llama.cpp cannot tell either); a larger tensor cannot hide that way.
  const bytes = withU32(file, layout.tensors.get('c')!.typeAt, 1);
  assert.doesNotThrow(() => parseGguf(bytes));
  const wide = encodeGgufBytes({ tensors: [{ name: 'z', type: 'F32', shape: [64], data: new Float32Array(64) }] });
  const narrowed = withU32(wide, ggufLayout(wide).tensors.get('z')!.typeAt, 1); // 256 -> 128 bytes
  assert.throws(() => parseGguf(narrowed), gguferr(/128 bytes follow the last tensor's data \(at most 31 bytes of padding may\)/));
});

test('a tensor count one too small shifts the data section and is refused', () => {
  const bytes = withU64(file, layout.tensorCountAt, 2);
  assert.throws(() => parseGguf(bytes), gguferr(/bytes follow the last tensor's data .* the tensor infos \(count 2\) do not describe the whole data section/));
});

test('a data offset that skips or overlaps is refused with the expected offset', () => {
  assert.throws(() => parseGguf(withU64(file, layout.tensors.get('b')!.offsetAt, 160)), gguferr(/tensor "b" .* has data offset 160, expected 128/));
  assert.throws(() => parseGguf(withU64(file, layout.tensors.get('c')!.offsetAt, 128)), gguferr(/tensor "c" .* has data offset 128, expected 192/));
});
