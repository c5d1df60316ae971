// The one description of the CPU kernels' interface across the TypeScript/C++ boundary: the codes
// (dtypes, elementwise ops, reductions, activations, operand kinds) and, for every plan kernel, its
// named operands and its named int and float fields. scripts/gen-kernel-table.mjs turns it into
// src/backends/cpu/plan/kernel-table.gen.ts (codes + typed encoders) and
// native/plan/kernel_table.gen.h (enums + named structs and decoders); both are checked in, and
// test/backends/cpu/kernel-table.test.ts fails when they drift from this file.
//
// A kernel's ints are its fields in order. A field is a scalar ({ name }) or an array
// ({ name, len }) whose length is a number, another (earlier) scalar field's name, or a list of
// those multiplied. A scalar that is the whole length of some array is filled in by the TS encoder
// from that array's length. Operands are refs in order; { name, len } is a list of operands.
// Adding a plan kernel: add a row here, run `node scripts/gen-kernel-table.mjs`, write its C++
// body (native/plan/kernels.cc) and its lowering rule (src/backends/cpu/plan/rules/).

/** Element dtypes (f16 and bf16 are only stored, moved and cast, never computed on). */
export const DTYPES = { f32: 0, i32: 1, i64: 2, bool: 3, i8: 4, u8: 5, f16: 6, bf16: 7 };

/** Elementwise ops: one numbering for the eager addon (unary, binary) and plan programs. */
export const UNARY = { neg: 0, abs: 1, relu: 2, exp: 3, log: 4, sqrt: 5, rsqrt: 6, tanh: 7, sigmoid: 8, silu: 9, gelu: 10, gelu_tanh: 11, erf: 12, sin: 13, cos: 14 };
export const BINARY = { add: 20, sub: 21, mul: 22, div: 23, maximum: 24, minimum: 25, pow: 26 };
/** Comparisons (f32 operands, bool result) and where (bool condition) exist only in plan programs. */
export const COMPARE = { equal: 40, less: 41, greater: 42 };
export const SELECT = { where: 60 };

/** Reductions over the middle axis of [outer, size, inner] (eager reduce and the plan's reduce kernel). */
export const REDUCE = { sum: 0, mean: 1, max: 2, min: 3 };

/** GEMM / conv epilogue activations (native/simd.h enum Act; the header asserts they agree). */
export const ACTIVATIONS = { none: 0, relu: 1, gelu: 2, gelu_tanh: 3, silu: 4 };

/** Where a plan operand lives. */
export const REFS = { none: 0, arena: 1, input: 2, output: 3, constant: 4 };

/** pad modes. */
export const PAD_MODES = { constant: 0, reflect: 1, replicate: 2 };

export const KERNELS = [
  {
    name: 'copy', code: 1, doc: 'dst = src over shape, element strides on both sides (any element size)',
    refs: ['src', 'dst'],
    ints: [{ name: 'elemSize' }, { name: 'rank' }, { name: 'shape', len: 'rank' }, { name: 'srcStrides', len: 'rank' }, { name: 'dstStrides', len: 'rank' }],
  },
  {
    name: 'elementwise', code: 2, doc: 'a program of elementwise instructions over strided (broadcast) inputs; registers are inputs, then results',
    refs: [{ name: 'inputs', len: 'nIn' }, 'out'],
    ints: [
      { name: 'nIn' }, { name: 'rank' }, { name: 'outDtype' }, { name: 'shape', len: 'rank' },
      { name: 'inDtypes', len: 'nIn' }, { name: 'inStrides', len: ['nIn', 'rank'] },
      { name: 'nInstr' }, { name: 'opcodes', len: 'nInstr' }, { name: 'args', len: ['nInstr', 3] },
    ],
  },
  {
    name: 'gemm', code: 3, doc: 'out = act(alpha·A·B + bias) + residual, optionally batched with per-batch element offsets',
    refs: ['a', 'b', 'bias', 'residual', 'out'],
    ints: [
      { name: 'M' }, { name: 'N' }, { name: 'K' }, { name: 'transA' }, { name: 'transB' }, { name: 'act' }, { name: 'count' },
      { name: 'lda' }, { name: 'ldb' }, { name: 'ldc' }, { name: 'ldr' },
      { name: 'nOffsets' }, { name: 'aOffsets', len: 'nOffsets' }, { name: 'bOffsets', len: 'nOffsets' },
      { name: 'cOffsets', len: 'nOffsets' }, { name: 'rOffsets', len: 'nOffsets' },
    ],
    floats: ['alpha'],
  },
  {
    name: 'norm', code: 4, doc: 'row-wise layer / RMS norm, optionally after a residual add and before adaLN modulation',
    refs: ['x', 'residual', 'weight', 'bias', 'shift', 'scale', 'out', 'sum'],
    ints: [{ name: 'rms' }, { name: 'rows' }, { name: 'cols' }, { name: 'rowsPerSample' }, { name: 'shiftStride' }, { name: 'scaleStride' }],
    floats: ['eps'],
  },
  {
    name: 'softmax', code: 5, doc: 'softmax / log_softmax along the middle axis of [outer, size, inner]',
    refs: ['x', 'out'],
    ints: [{ name: 'outer' }, { name: 'size' }, { name: 'inner' }, { name: 'log' }],
  },
  {
    name: 'reduce', code: 6, doc: 'REDUCE op over the middle axis of [outer, size, inner]',
    refs: ['x', 'out'],
    ints: [{ name: 'op' }, { name: 'outer' }, { name: 'size' }, { name: 'inner' }],
  },
  {
    name: 'attention', code: 7, doc: 'flash attention over strided [batch, head, position] views (bf16 products when bf16 = 1)',
    refs: ['q', 'k', 'v', 'mask', 'out'],
    ints: [
      { name: 'B' }, { name: 'Hq' }, { name: 'Hkv' }, { name: 'Lq' }, { name: 'Lk' }, { name: 'D' }, { name: 'Dv' },
      { name: 'causal' }, { name: 'maskIsBool' },
      { name: 'qStrides', len: 3 }, { name: 'kStrides', len: 3 }, { name: 'vStrides', len: 3 }, { name: 'outStrides', len: 3 },
      { name: 'maskStrides', len: 4 }, { name: 'bf16' },
    ],
    floats: ['scale'],
  },
  {
    name: 'conv2d', code: 8, doc: 'NCHW conv2d with groups, stride, padding, dilation and a fused activation',
    refs: ['x', 'weight', 'bias', 'out'],
    ints: [
      { name: 'N' }, { name: 'C' }, { name: 'H' }, { name: 'W' }, { name: 'O' }, { name: 'kh' }, { name: 'kw' },
      { name: 'sh' }, { name: 'sw' }, { name: 'ph' }, { name: 'pw' }, { name: 'dh' }, { name: 'dw' }, { name: 'groups' }, { name: 'act' },
    ],
  },
  {
    name: 'gather', code: 9, doc: 'out[o, j] = x[o, idx[j]] for x [outer, size, inner] (embedding: no negative ids)',
    refs: ['x', 'indices', 'out'],
    ints: [{ name: 'elemSize' }, { name: 'outer' }, { name: 'size' }, { name: 'inner' }, { name: 'indexBytes' }, { name: 'count' }, { name: 'allowNegative' }, { name: 'embedding' }],
  },
  {
    name: 'cast', code: 10, doc: 'elementwise dtype conversion of n elements',
    refs: ['x', 'out'],
    ints: [{ name: 'from' }, { name: 'to' }, { name: 'n' }],
  },
  {
    name: 'pad', code: 11, doc: 'pads a contiguous tensor by pads [b0, e0, b1, e1, ...] with a constant, its mirror image or its edge',
    refs: ['x', 'out'],
    ints: [{ name: 'elemSize' }, { name: 'dtype' }, { name: 'mode' }, { name: 'rank' }, { name: 'inShape', len: 'rank' }, { name: 'pads', len: ['rank', 2] }],
    floats: ['value'],
  },
  {
    name: 'group_norm', code: 12, doc: 'group norm of a contiguous [N, C, spatial] with per-channel weight and bias; with a residual, of sum = x + residual',
    refs: ['x', 'residual', 'weight', 'bias', 'out', 'sum'],
    ints: [{ name: 'N' }, { name: 'C' }, { name: 'spatial' }, { name: 'groups' }],
    floats: ['eps'],
  },
  {
    name: 'upsample_nearest2d', code: 13, doc: 'nearest-neighbour upsampling of a contiguous [planes, H, W] by integer factors',
    refs: ['x', 'out'],
    ints: [{ name: 'elemSize' }, { name: 'planes' }, { name: 'H' }, { name: 'W' }, { name: 'sh' }, { name: 'sw' }],
  },
  {
    name: 'rotary', code: 14, doc: 'rotary embedding of x [outer, seq, d] at position s; cos/sin [seq, half]; x and out strided over (outer, seq) in elements, rows of d contiguous',
    refs: ['x', 'cos', 'sin', 'out'],
    ints: [{ name: 'outer' }, { name: 'seq' }, { name: 'd' }, { name: 'half' }, { name: 'interleaved' }, { name: 'xStrides', len: 2 }, { name: 'outStrides', len: 2 }],
  },
  {
    name: 'argmax', code: 15, doc: 'i64 index of the largest f32 along the middle axis of [outer, size, inner] (first on ties, NaN largest)',
    refs: ['x', 'out'],
    ints: [{ name: 'outer' }, { name: 'size' }, { name: 'inner' }],
  },
  {
    name: 'top_k', code: 16, doc: 'the k largest (smallest) f32 along the middle axis of [outer, size, inner]: values and i64 indices',
    refs: ['x', 'values', 'indices'],
    ints: [{ name: 'outer' }, { name: 'size' }, { name: 'inner' }, { name: 'k' }, { name: 'largest' }, { name: 'sorted' }],
  },
  {
    name: 'kv_write', code: 17, doc: 'writes f32 rows [tokens, kvHeads, headDim] (token rows rowStride elements apart, heads contiguous within one) into the page pool [blocks, kvHeads, blockSize, headDim] in place at slot_mapping slots (-1: skipped); kvDtype 0 f32, 1 f16, 2 int8 (rows quantized, per-row scales after each tile)',
    refs: ['rows', 'slots', 'pool'],
    ints: [{ name: 'tokens' }, { name: 'kvHeads' }, { name: 'headDim' }, { name: 'blockSize' }, { name: 'numBlocks' }, { name: 'kvDtype' }, { name: 'rowStride' }],
  },
  {
    name: 'paged_attention', code: 18, doc: 'ragged causal GQA of q [tokens, heads, headDim] over paged K/V pools (block tables, context lengths, query offsets per sequence); kvDtype 0 f32, 1 f16, 2 int8 (dequantized in registers)',
    refs: ['q', 'kPool', 'vPool', 'blockTables', 'seqLens', 'queryStart', 'out'],
    ints: [
      { name: 'tokens' }, { name: 'heads' }, { name: 'kvHeads' }, { name: 'headDim' }, { name: 'blockSize' }, { name: 'numBlocks' },
      { name: 'seqs' }, { name: 'maxBlocks' }, { name: 'window' }, { name: 'kvDtype' },
    ],
    floats: ['scale', 'softcap'],
  },
  {
    name: 'qgemm', code: 40, doc: 'out = act(A·Wᵀ + bias) + residual for a quantized constant W [N, K] in a native/quant/qmatmul.h format (scales, if any, follow its blocks)',
    refs: ['a', 'weight', 'bias', 'residual', 'out'],
    ints: [{ name: 'M' }, { name: 'N' }, { name: 'K' }, { name: 'format' }, { name: 'group' }, { name: 'act' }, { name: 'lda' }, { name: 'ldr' }],
  },
  {
    name: 'w8a8_gemm', code: 70, doc: 'out = act((Σ_k q(a)·w) · sa·sw + bias) + residual: A quantized to int8 per row (group 0) or per 32 values of a row (group 32; colSum then per block) with dynamic absmax scales, int8 W [N, K] packed 16 rows × 4 k per 64 bytes (native/quant/w8a8.h), int32 accumulation (AVX-512 VNNI), per-channel scales',
    refs: ['a', 'weight', 'colSum', 'scales', 'bias', 'residual', 'out'],
    ints: [{ name: 'M' }, { name: 'N' }, { name: 'K' }, { name: 'act' }, { name: 'lda' }, { name: 'ldr' }, { name: 'group' }],
  },
  {
    name: 'fp8_gemm', code: 71, doc: 'out = act(A·Wᵀ · sw + bias) + residual for FP8 E4M3 W [N, K] packed 16 rows per k (native/quant/w8a8.h), converted to fp32 in registers; A optionally rounded to E4M3 per row (actFp8 = 1)',
    refs: ['a', 'weight', 'scales', 'bias', 'residual', 'out'],
    ints: [{ name: 'M' }, { name: 'N' }, { name: 'K' }, { name: 'actFp8' }, { name: 'act' }, { name: 'lda' }, { name: 'ldr' }],
  },
  {
    name: 'cond', code: 41, doc: 'runs sub-plan thenPlan when the one-byte bool pred is nonzero, else elsePlan, on contiguous operands into contiguous outputs (native/plan/control_flow.cc)',
    refs: ['pred', { name: 'operands', len: 'nOperands' }, { name: 'outputs', len: 'nOutputs' }],
    ints: [
      { name: 'nOperands' }, { name: 'nOutputs' }, { name: 'thenPlan' }, { name: 'elsePlan' },
      { name: 'operandBytes', len: 'nOperands' }, { name: 'outputBytes', len: 'nOutputs' },
    ],
  },
  {
    name: 'while_loop', code: 42, doc: 'while condPlan(carried, invariants): carried = bodyPlan(carried, invariants), carried values double-buffered in kernel scratch; errors after maxIterations (native/plan/control_flow.cc)',
    refs: [{ name: 'operands', len: 'nOperands' }, { name: 'outputs', len: 'nCarried' }],
    ints: [
      { name: 'nOperands' }, { name: 'nCarried' }, { name: 'condPlan' }, { name: 'bodyPlan' }, { name: 'maxIterations' },
      { name: 'operandBytes', len: 'nOperands' },
    ],
  },
  {
    name: 'moe', code: 60, doc: 'Mixtral MoE FFN: top-k routing of x [T, H] by logits [T, E] (softmax over the selected), SwiGLU experts stacked [E, F, H] (gate, up) and [E, H, F] (down) in one qmatmul.h format each, run as a grouped GEMM over each expert\'s tokens',
    refs: ['x', 'logits', 'gate', 'up', 'down', 'out'],
    ints: [
      { name: 'T' }, { name: 'H' }, { name: 'F' }, { name: 'E' }, { name: 'topK' },
      { name: 'gateFormat' }, { name: 'upFormat' }, { name: 'downFormat' }, { name: 'group' },
    ],
  },
  {
    name: 'conv2d_fused', code: 80, doc: 'NCHW conv2d as an implicit GEMM (im2col panels packed straight from x; bf16 panels when bf16 != 0), or for fp32 3×3 stride-1 convolutions with direct = 1 as a direct convolution (native/ops/conv_direct.cc), with direct = 2 / 3 (groups 1) as Winograd F(4×4, 3×3) / F(2×2, 3×3) (native/ops/conv_winograd.cc; a constant weight is transformed once at createPlan): out = act(W·im2col(x) + bias + chanBias[n]) + residual',
    refs: ['x', 'weight', 'bias', 'chanBias', 'residual', 'out'],
    ints: [
      { name: 'N' }, { name: 'C' }, { name: 'H' }, { name: 'W' }, { name: 'O' }, { name: 'kh' }, { name: 'kw' },
      { name: 'sh' }, { name: 'sw' }, { name: 'ph' }, { name: 'pw' }, { name: 'dh' }, { name: 'dw' }, { name: 'groups' }, { name: 'act' },
      { name: 'chanBiasStride' }, { name: 'bf16' }, { name: 'direct' },
    ],
  },
  {
    name: 'group_norm_act', code: 81, doc: 'group norm of a contiguous [N, C, spatial] (with a residual, of sum = x + residual, also written) followed by an activation, in one pass',
    refs: ['x', 'residual', 'weight', 'bias', 'out', 'sum'],
    ints: [{ name: 'N' }, { name: 'C' }, { name: 'spatial' }, { name: 'groups' }, { name: 'act' }],
    floats: ['eps'],
  },
];
