// The kernel table is the one description of the plan kernels' interface: the checked-in TS module
// and C++ header must be exactly what scripts/gen-kernel-table.mjs generates from it, the encoders
// reject fields of the wrong length, and the native executor rejects a descriptor whose sizes do
// not match the table (instead of reading past its ints).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BINARY_CODES, KERNEL, REF_KINDS, UNARY_CODES, encodeCopy, encodeElementwise } from '../../../src/backends/cpu/plan/kernel-table.gen.js';
import { PLAN_OPS } from '../../../src/backends/cpu/plan/executable.js';
import { planAddon } from '../../../src/backends/cpu/plan/native.js';

test('checked-in kernel-table.gen.ts and kernel_table.gen.h match the table', () => {
  const r = spawnSync(process.execPath, ['scripts/gen-kernel-table.mjs', '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `generated files drifted from scripts/kernel-table.mjs:\n${r.stderr}`);
});

test('one numbering: unary and binary codes do not overlap', () => {
  const u = new Set<number>(Object.values(UNARY_CODES));
  for (const c of Object.values(BINARY_CODES)) assert.ok(!u.has(c), `code ${c} is both unary and binary`);
});

test('encoders derive length fields and reject arrays of the wrong length', () => {
  const k = encodeCopy({ src: 'a', dst: 'b', elemSize: 4, shape: [2, 3], srcStrides: [3, 1], dstStrides: [1, 2] });
  assert.deepEqual(k, { op: KERNEL.copy, refs: ['a', 'b'], ints: [4, 2, 2, 3, 3, 1, 1, 2], floats: [] });
  assert.throws(() => encodeCopy({ src: 'a', dst: 'b', elemSize: 4, shape: [2, 3], srcStrides: [1], dstStrides: [1, 2] }), /copy kernel: srcStrides has 1 entries, expected 2/);
  assert.throws(() => encodeElementwise({
    inputs: ['x'], out: 'y', outDtype: 0, shape: [4], inDtypes: [0], inStrides: [1], opcodes: [UNARY_CODES.exp], args: [0, -1],
  }), /elementwise kernel: args has 2 entries, expected 3/);
});

test('every plan op has a lowering rule, including the table-added kernels', () => {
  for (const op of ['pad', 'group_norm', 'add_group_norm', 'upsample_nearest2d', 'rotary_embedding', 'argmax', 'top_k', 'linear', 'attention_fused']) {
    assert.ok(PLAN_OPS.has(op), `${op} is not in PLAN_OPS`);
  }
});

test('createPlan rejects a kernel whose ints do not match its table row', { skip: planAddon ? false : 'native plan executor not built' }, () => {
  const f = new Float32Array(6);
  const refs = [REF_KINDS.input, 0, 0, REF_KINDS.output, 0, 0];
  const good = encodeCopy({ src: 0, dst: 0, elemSize: 4, shape: [6], srcStrides: [1], dstStrides: [1] });
  const desc = (ints: number[]) => ({ arenaBytes: 0, inputBytes: [24], outputBytes: [24], constants: [], packed: [], kernels: [{ op: good.op, name: 'copy', refs, ints, floats: [], packed: -1 }] });
  const plan = planAddon!.createPlan(desc(good.ints));
  const out = new Float32Array(6);
  f.set([1, 2, 3, 4, 5, 6]);
  planAddon!.runPlan(plan, [f], [out]);
  assert.deepEqual([...out], [1, 2, 3, 4, 5, 6]);
  assert.throws(() => planAddon!.createPlan(desc(good.ints.slice(0, -1))), /kernel 0 \(copy\): copy: ints end inside dstStrides/);
  assert.throws(() => planAddon!.createPlan(desc([...good.ints, 0])), /kernel 0 \(copy\): copy: 6 ints, expected 5/);
});
