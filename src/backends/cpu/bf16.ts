// Reduced-precision CPU kernels from TypeScript: bf16 GEMM (AVX512_BF16 vdpbf16ps or AMX-BF16, fp32
// accumulation, fused bias/activation/residual), fp16 weight storage (f16 panels converted with F16C
// inside the fp32 GEMM), and bf16 flash attention. Activations and outputs stay f32; only the
// products' inputs are rounded. These are the building blocks of `precision: 'bf16' | 'fp16'`.
import { Tensor } from '../../tensor/tensor.js';
import { numel } from '../../tensor/shape.js';
import { addon as baseAddon, loadFailure, ACTIVATIONS, type Activation } from './addon.js';
import { broadcastStrides } from './kernels/util.js';
import { f16BitsToFloat } from '../../tensor/half.js';

/** Opaque handles to packed weights (freed by the GC); the native side checks which kind it got. */
export type PackedBf16Handle = { readonly __packedBf16: unique symbol };
export type PackedF16Handle = { readonly __packedF16: unique symbol };

type F32 = Float32Array;
type Offsets = Float64Array | null;

/** The native functions behind this file (registered by native/gemm/gemm_bf16_napi.cc). */
interface ReducedPrecisionAddon {
  /** Times the bf16 GEMM (kernel code as gemmBf16) against the fp32 GEMM on M×K×N (best of `rounds`). */
  bf16SpeedProbe(kernel: number, M: number, K: number, N: number, rounds: number): { kernel: 'amx' | 'avx512bf16'; bf16Ms: number; fp32Ms: number };
  getNumThreads(): number;
  bf16Info(): { avx512f: boolean; avx512bf16: boolean; amxBf16: boolean; amxUsable: boolean; f16c: boolean; kernel: 'amx' | 'avx512bf16' | null; missing: string | null };
  /** srcType: 0 f32, 1 bf16 bits, 2 f16 bits. B is [K, N], or stored [N, K] when transB. */
  packBf16(b: F32 | Uint16Array, srcType: number, K: number, N: number, transB: boolean): PackedBf16Handle;
  packF16(b: F32 | Uint16Array, srcType: number, K: number, N: number, transB: boolean): PackedF16Handle;
  gemmBf16(M: number, N: number, K: number, a: F32, aOffsets: Offsets, transA: boolean, b: PackedBf16Handle, c: F32, cOffsets: Offsets,
    bias: F32 | null, biasPerRow: boolean, act: number, residual: F32 | null, rOffsets: Offsets, alpha: number, batchCount: number, kernel: number): void;
  gemmF16(M: number, N: number, K: number, a: F32, aOffsets: Offsets, transA: boolean, b: PackedF16Handle, c: F32, cOffsets: Offsets,
    bias: F32 | null, biasPerRow: boolean, act: number, residual: F32 | null, rOffsets: Offsets, alpha: number, batchCount: number): void;
  packedBf16Data(h: PackedBf16Handle): [Uint16Array, number, number];
  packedF16Data(h: PackedF16Handle): [Uint16Array, number, number];
  loadPackedBf16(panels: Uint16Array, K: number, N: number): PackedBf16Handle;
  loadPackedF16(panels: Uint16Array, K: number, N: number): PackedF16Handle;
  /** strides: [q, k, v, out] × (batch, head, row) element strides; default dense [B, H, L, D]. */
  sdpaBf16(q: F32, k: F32, v: F32, mask: F32 | Uint8Array | null, maskIsBool: boolean, maskStrides: number[], out: F32, dims: number[],
    scale: number, causal: boolean, kernel: number, strides?: number[]): void;
}

const native = baseAddon as unknown as (ReducedPrecisionAddon | null);

/** Which bf16 kernel to run: 'auto' (INFERJIT_BF16_KERNEL, else AMX when usable, else AVX512_BF16). */
export type Bf16KernelChoice = 'auto' | 'avx512' | 'amx';
const KERNEL_CODES: Record<Bf16KernelChoice, number> = { auto: 0, avx512: 1, amx: 2 };

export interface ReducedPrecisionSupport {
  /** bf16 GEMM/attention can run (AVX-512 with AVX512_BF16). */
  bf16: boolean;
  /** The kernel 'auto' picks here ('amx' or 'avx512bf16'), or null. */
  bf16Kernel: 'amx' | 'avx512bf16' | null;
  avx512bf16: boolean;
  /** AMX-BF16 present and its tile state granted by the OS. */
  amx: boolean;
  /** fp16 weight storage can run (AVX-512 + F16C). */
  f16Storage: boolean;
  /** Why bf16 cannot run (names the missing instruction set), when it cannot. */
  missing?: string;
  /** Why fp16 weight storage cannot run, when it cannot. */
  f16Missing?: string;
}

/** What this machine (and build) can do in reduced precision.
 *
 *  INFERJIT_DISABLE_ISA (a comma list of avx512, avx512bf16, amx) hides instruction sets, so the
 *  errors and the fp32 fallback of machines without them can be exercised on one that has them. The
 *  native probe reads it once, when the addon first asks; this function also reads it on every call
 *  (avx512 and avx512bf16), so setting it in a running process turns reduced precision off for
 *  later compiles too. */
export function reducedPrecisionSupport(): ReducedPrecisionSupport {
  if (!native) {
    const why = `the native addon is not available (${loadFailure})`;
    return { bf16: false, bf16Kernel: null, avx512bf16: false, amx: false, f16Storage: false, missing: why, f16Missing: why };
  }
  const i = hideIsa(native.bf16Info(), process.env.INFERJIT_DISABLE_ISA);
  const f16Missing = !i.avx512f ? 'fp16 weight storage needs AVX-512 (F/BW/DQ/VL) and F16C; this CPU lacks AVX-512'
    : !i.f16c ? 'fp16 weight storage needs AVX-512 (F/BW/DQ/VL) and F16C; this CPU lacks F16C' : null;
  return {
    bf16: i.kernel !== null, bf16Kernel: i.kernel, avx512bf16: i.avx512bf16, amx: i.amxUsable, f16Storage: f16Missing === null,
    ...(i.missing ? { missing: i.missing } : {}), ...(f16Missing ? { f16Missing } : {}),
  };
}

type Bf16Info = ReturnType<ReducedPrecisionAddon['bf16Info']>;

/** The probe's answer with the instruction sets named in `disabled` removed (the same rules and
 *  messages as the native probe in native/gemm/gemm_bf16.cc). */
function hideIsa(info: Bf16Info, disabled: string | undefined): Bf16Info {
  const off = new Set((disabled ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  if (off.size === 0) return info;
  const i = { ...info };
  const why = ' (hidden by INFERJIT_DISABLE_ISA)';
  if (off.has('avx512') && i.avx512f) {
    i.avx512f = i.avx512bf16 = i.amxBf16 = i.amxUsable = false;
    i.kernel = null;
    i.missing = `bf16 kernels need AVX-512 (F/BW/DQ/VL) and AVX512_BF16 (vdpbf16ps); this CPU lacks AVX-512${why}`;
  }
  if (off.has('avx512bf16') && i.avx512bf16) {
    i.avx512bf16 = i.amxBf16 = i.amxUsable = false;
    i.kernel = null;
    i.missing = `bf16 kernels need AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16); this CPU has AVX-512 but lacks AVX512_BF16${why}`;
  }
  // 'amx' only changes which kernel runs, which the native side decides: it takes effect when set
  // before the process starts.
  return i;
}

/** How precision 'bf16' plans compute on this machine (see bf16ComputePlan). */
export interface Bf16ComputePlan {
  /** 'bf16': bf16 products on `kernel`; 'fp32': weights rounded to bf16, computed by the fp32 kernels. */
  compute: 'bf16' | 'fp32';
  /** The bf16 kernel that runs ('bf16' compute only). */
  kernel: 'amx' | 'avx512bf16' | null;
  /** The measured speed of the AVX512_BF16 GEMM relative to the fp32 GEMM (null when not measured). */
  speedRatio: number | null;
  /** Why, in one phrase, for plan descriptions. */
  reason: string;
}

/** The probe's shape: compute-bound (a DiT/UNet projection's K and N) with rows growing with the
 *  thread count, so every thread gets work; best of 3 alternating rounds (~10-50 ms in all). */
const PROBE = { K: 512, N: 512, rounds: 3, rowsPerThread: 128 };
const probed = new Map<number, { ratio: number; bf16Ms: number; fp32Ms: number; M: number }>();

/** Measures (once per process and thread count) the AVX512_BF16 GEMM's speed relative to the fp32
 *  GEMM: bf16 GFLOP/s ÷ fp32 GFLOP/s on the same shape. */
export function measureBf16Speed(): { ratio: number; bf16Ms: number; fp32Ms: number; M: number } {
  const a = requireBf16('measureBf16Speed');
  const threads = a.getNumThreads();
  let hit = probed.get(threads);
  if (!hit) {
    const M = Math.min(4096, Math.max(256, PROBE.rowsPerThread * threads));
    const r = a.bf16SpeedProbe(KERNEL_CODES.avx512, M, PROBE.K, PROBE.N, PROBE.rounds);
    hit = { ratio: r.fp32Ms / r.bf16Ms, bf16Ms: r.bf16Ms, fp32Ms: r.fp32Ms, M };
    probed.set(threads, hit);
  }
  return hit;
}

/**
 * How precision 'bf16' plans compute here. INFERJIT_BF16_KERNEL chooses: 'avx512' (or
 * 'avx512bf16') and 'amx' force that kernel, 'fp32' forces fp32 compute, 'auto' (default) takes
 * AMX when the OS grants it, else measures once whether the AVX512_BF16 GEMM beats the fp32 GEMM
 * and computes in fp32 when it does not. Some cores issue vdpbf16ps at half the FMA rate (an
 * Emerald Rapids Xeon without AMX: bf16 GEMMs at 0.5-0.6× fp32), others at the FMA rate (Zen 5:
 * 1.1-2.3× fp32); only a measurement tells them apart. fp32 compute keeps bf16 weight semantics
 * (weights are rounded to bf16, then packed for the fp32 kernels; 2× the packed weights' memory)
 * and computes activations and attention in fp32. Plans say which ran and why (describe()).
 * Throws when bf16 cannot run at all (see reducedPrecisionSupport) or the env value is unknown.
 */
export function bf16ComputePlan(): Bf16ComputePlan {
  const s = reducedPrecisionSupport();
  if (!s.bf16) throw new Error(`bf16ComputePlan: precision 'bf16' is not available on this machine: ${s.missing}`);
  const env = (process.env.INFERJIT_BF16_KERNEL ?? '').trim() || 'auto';
  const forced = `forced by INFERJIT_BF16_KERNEL=${env}`;
  switch (env) {
    case 'fp32': return { compute: 'fp32', kernel: null, speedRatio: null, reason: forced };
    case 'avx512': case 'avx512bf16': return { compute: 'bf16', kernel: 'avx512bf16', speedRatio: null, reason: forced };
    case 'amx':
      if (!s.amx) throw new Error(`bf16ComputePlan: INFERJIT_BF16_KERNEL=amx, but AMX-BF16 is not usable here (${s.avx512bf16 ? 'no AMX tiles, or the OS refused them' : s.missing})`);
      return { compute: 'bf16', kernel: 'amx', speedRatio: null, reason: forced };
    case 'auto': break;
    default: throw new RangeError(`bf16ComputePlan: INFERJIT_BF16_KERNEL must be auto, avx512, amx or fp32, got '${env}'`);
  }
  if (s.amx) return { compute: 'bf16', kernel: 'amx', speedRatio: null, reason: 'AMX-BF16' };
  const m = measureBf16Speed();
  const measured = `the AVX512_BF16 GEMM measured ${m.ratio.toFixed(2)}× the fp32 GEMM's speed on this CPU at ${m.M}×${PROBE.K}×${PROBE.N}`;
  return m.ratio >= 1
    ? { compute: 'bf16', kernel: 'avx512bf16', speedRatio: m.ratio, reason: measured }
    : { compute: 'fp32', kernel: null, speedRatio: m.ratio, reason: `${measured}, INFERJIT_BF16_KERNEL=avx512 forces it` };
}

/** The choice in a few words, for benchmark headers: the kernel, or that it computes in fp32 and why. */
export function describeBf16Compute(p: Bf16ComputePlan = bf16ComputePlan()): string {
  return p.compute === 'fp32' ? `fp32 compute on bf16-rounded weights (${p.reason})` : `${p.kernel} (${p.reason})`;
}

/** An f32 copy of `t` (f32, bf16 or f16) with every value rounded to the nearest-even bf16, as the
 *  bf16 kernels' packing rounds weights: fp32-compute bf16 plans pack these. */
export function roundedToBf16(t: Tensor): Tensor {
  if (t.dtype === 'bf16') return Tensor.fromStorage('f32', [...t.shape], bf16BitsToF32(t.data as Uint16Array));
  const src = t.dtype === 'f32' ? (t.data as F32) : t.dtype === 'f16' ? f16ToF32(t.data as Uint16Array) : null;
  if (!src) throw new TypeError(`roundedToBf16: expected an f32, bf16 or f16 tensor, got ${t.dtype}[${t.shape.join(', ')}]`);
  const out = new Float32Array(src.length);
  const i32 = new Uint32Array(src.buffer, src.byteOffset, src.length), o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < i32.length; i++) {
    const u = i32[i];
    // NaN stays a quiet NaN; otherwise round the upper 16 bits to nearest even (as floatToBf16 in gemm_bf16.cc)
    o32[i] = (u & 0x7fffffff) > 0x7f800000 ? ((u | 0x00400000) & 0xffff0000) >>> 0 : ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return Tensor.fromStorage('f32', [...t.shape], out);
}

function bf16BitsToF32(bits: Uint16Array): F32 {
  const out = new Float32Array(bits.length), o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) o32[i] = bits[i] << 16;
  return out;
}
function f16ToF32(bits: Uint16Array): F32 {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16BitsToFloat(bits[i]);
  return out;
}

function requireBf16(op: string): ReducedPrecisionAddon {
  const s = reducedPrecisionSupport();
  if (!s.bf16) throw new Error(`${op}: precision 'bf16' is not available on this machine: ${s.missing}`);
  return native!;
}
function requireF16(op: string): ReducedPrecisionAddon {
  const s = reducedPrecisionSupport();
  if (!native) throw new Error(`${op}: precision 'fp16' is not available: ${s.missing}`);
  if (!s.f16Storage) throw new Error(`${op}: ${s.f16Missing}`);
  return native;
}

/** A weight packed once for the reduced-precision GEMM, as the product's B operand [K, N]. */
export class PackedWeight {
  constructor(
    readonly precision: 'bf16' | 'f16',
    /** Reduction length and output features. */
    readonly K: number,
    readonly N: number,
    readonly handle: PackedBf16Handle | PackedF16Handle,
  ) {}
}

export interface PackOptions {
  /** true (default): the weight is stored [N, K] as nn.Linear keeps it ([out, in]); false: [K, N]. */
  transposed?: boolean;
}

function srcCode(op: string, t: Tensor, allowed: readonly string[]): number {
  if (!allowed.includes(t.dtype)) throw new TypeError(`${op}: weight must be ${allowed.join(' or ')}, got ${t.dtype}[${t.shape.join(', ')}]`);
  return t.dtype === 'f32' ? 0 : t.dtype === 'bf16' ? 1 : 2;
}
function dims2(op: string, t: Tensor, transposed: boolean): [number, number] {
  if (t.rank !== 2) throw new RangeError(`${op}: weight must be 2-D, got [${t.shape.join(', ')}]`);
  return transposed ? [t.shape[1], t.shape[0]] : [t.shape[0], t.shape[1]];
}

/** Packs a weight (f32, bf16 or f16) into bf16 GEMM panels (f32/f16 round to nearest-even bf16). */
export function packBf16Weight(weight: Tensor, { transposed = true }: PackOptions = {}): PackedWeight {
  const [K, N] = dims2('packBf16Weight', weight, transposed);
  return packWeightAs('bf16', weight, K, N, transposed);
}

/** Packs a weight (f16, or f32 rounded to f16) into f16 panels for the fp32 GEMM: an f16 model file's
 *  weights never need an fp32 copy. */
export function packF16Weight(weight: Tensor, { transposed = true }: PackOptions = {}): PackedWeight {
  const [K, N] = dims2('packF16Weight', weight, transposed);
  return packWeightAs('f16', weight, K, N, transposed);
}

/** Packs the K·N elements of `weight` (any shape) as the B operand [K, N] of a reduced-precision
 *  GEMM, reading them as [N, K] when `transposed`: what the plan executor packs its weights with. */
export function packWeightAs(precision: 'bf16' | 'f16', weight: Tensor, K: number, N: number, transposed: boolean): PackedWeight {
  const op = precision === 'bf16' ? 'packBf16Weight' : 'packF16Weight';
  const a = precision === 'bf16' ? requireBf16(op) : requireF16(op);
  const code = srcCode(op, weight, precision === 'bf16' ? ['f32', 'bf16', 'f16'] : ['f32', 'f16']);
  if (!Number.isInteger(K) || !Number.isInteger(N) || K < 0 || N < 0 || K * N !== weight.size) {
    throw new RangeError(`${op}: weight [${weight.shape.join(', ')}] cannot be read as [K=${K}, N=${N}]`);
  }
  const data = weight.data as F32 | Uint16Array;
  const handle = precision === 'bf16' ? a.packBf16(data, code, K, N, transposed) : a.packF16(data, code, K, N, transposed);
  return new PackedWeight(precision, K, N, handle);
}

/** A packed weight's panels as plain data (for the disk cache). The layout is documented in
 *  native/gemm/gemm_bf16.h and is the same on every CPU, so it loads back without repacking. */
export interface PackedWeightData { precision: 'bf16' | 'f16'; K: number; N: number; panels: Uint16Array }

export function exportPackedWeight(w: PackedWeight): PackedWeightData {
  const a = w.precision === 'bf16' ? requireBf16('exportPackedWeight') : requireF16('exportPackedWeight');
  const [panels, K, N] = w.precision === 'bf16' ? a.packedBf16Data(w.handle as PackedBf16Handle) : a.packedF16Data(w.handle as PackedF16Handle);
  return { precision: w.precision, K, N, panels };
}

export function importPackedWeight(d: PackedWeightData): PackedWeight {
  if (d.precision === 'bf16') return new PackedWeight('bf16', d.K, d.N, requireBf16('importPackedWeight').loadPackedBf16(d.panels, d.K, d.N));
  if (d.precision === 'f16') return new PackedWeight('f16', d.K, d.N, requireF16('importPackedWeight').loadPackedF16(d.panels, d.K, d.N));
  throw new TypeError(`importPackedWeight: unknown precision '${String(d.precision)}'`);
}

export interface PackedGemmOptions {
  /** [N], added to every row. */
  bias?: Tensor | null;
  activation?: Activation;
  /** Same shape as the output, added after the activation. */
  residual?: Tensor | null;
  /** Scales the product before the bias. */
  alpha?: number;
  /** bf16 only: which kernel runs. */
  kernel?: Bf16KernelChoice;
}

/** y[..., N] = act(alpha · x[..., K] · W + bias) + residual with W packed by packBf16Weight (bf16
 *  products, fp32 accumulation) or packF16Weight (fp32 products of f16-stored weights). */
export function gemmPacked(x: Tensor, w: PackedWeight, options: PackedGemmOptions = {}): Tensor {
  const op = w.precision === 'bf16' ? 'gemmBf16' : 'gemmF16';
  const a = w.precision === 'bf16' ? requireBf16(op) : requireF16(op);
  const { bias = null, activation = 'none', residual = null, alpha = 1, kernel = 'auto' } = options;
  if (x.dtype !== 'f32') throw new TypeError(`${op}: x must be f32, got ${x.dtype}[${x.shape.join(', ')}]`);
  if (x.rank < 1 || x.shape[x.rank - 1] !== w.K) {
    throw new RangeError(`${op}: inner dims differ: x is [${x.shape.join(', ')}], packed weight is [K=${w.K}, N=${w.N}]`);
  }
  const outShape = [...x.shape.slice(0, -1), w.N];
  if (bias && (bias.dtype !== 'f32' || bias.size !== w.N)) {
    throw new RangeError(`${op}: bias must be f32 with ${w.N} elements, got ${bias.dtype}[${bias.shape.join(', ')}]`);
  }
  if (residual && (residual.dtype !== 'f32' || residual.shape.length !== outShape.length || residual.shape.some((d, i) => d !== outShape[i]))) {
    throw new RangeError(`${op}: residual must be f32 [${outShape.join(', ')}], got ${residual.dtype}[${residual.shape.join(', ')}]`);
  }
  if (!(activation in ACTIVATIONS)) throw new RangeError(`${op}: unknown activation '${activation}'`);
  if (!(kernel in KERNEL_CODES)) throw new RangeError(`${op}: kernel must be 'auto', 'avx512' or 'amx', got '${kernel}'`);
  const y = Tensor.empty('f32', outShape);
  const M = numel(x.shape.slice(0, -1));
  const biasData = bias ? (bias.data as F32) : null, resData = residual ? (residual.data as F32) : null;
  if (w.precision === 'bf16') {
    a.gemmBf16(M, w.N, w.K, x.data as F32, null, false, w.handle as PackedBf16Handle, y.data as F32, null, biasData, false,
      ACTIVATIONS[activation], resData, null, alpha, 1, KERNEL_CODES[kernel]);
  } else {
    a.gemmF16(M, w.N, w.K, x.data as F32, null, false, w.handle as PackedF16Handle, y.data as F32, null, biasData, false,
      ACTIVATIONS[activation], resData, null, alpha, 1);
  }
  return y;
}

/** gemmPacked for a bf16-packed weight. */
export function gemmBf16(x: Tensor, w: PackedWeight, options: PackedGemmOptions = {}): Tensor {
  if (w.precision !== 'bf16') throw new TypeError(`gemmBf16: weight was packed as ${w.precision}; use packBf16Weight`);
  return gemmPacked(x, w, options);
}

/** gemmPacked for an f16-packed weight. */
export function gemmF16(x: Tensor, w: PackedWeight, options: PackedGemmOptions = {}): Tensor {
  if (w.precision !== 'f16') throw new TypeError(`gemmF16: weight was packed as ${w.precision}; use packF16Weight`);
  return gemmPacked(x, w, options);
}

// Packed weights cached per tensor (and version: an in-place update repacks), as packed.ts does
// for fp32, so repeated linear layers pack once.
const cache = { bf16: new WeakMap<Tensor, { version: number; w: PackedWeight }>(), f16: new WeakMap<Tensor, { version: number; w: PackedWeight }>() };

/** The cached packed form of a linear weight [out, in] in the given precision. */
export function cachedPackedLinearWeight(weight: Tensor, precision: 'bf16' | 'f16'): PackedWeight {
  const hit = cache[precision].get(weight);
  if (hit && hit.version === weight.version) return hit.w;
  const w = precision === 'bf16' ? packBf16Weight(weight) : packF16Weight(weight);
  cache[precision].set(weight, { version: weight.version, w });
  return w;
}

/** y = act(x · weightᵀ + bias) + residual for weight [out, in] in reduced precision (weight packed
 *  once and cached). */
export function linearReduced(x: Tensor, weight: Tensor, precision: 'bf16' | 'f16', options: Omit<PackedGemmOptions, 'alpha'> = {}): Tensor {
  return gemmPacked(x, cachedPackedLinearWeight(weight, precision), options);
}

export interface Bf16AttentionOptions {
  /** bool (true = visible) or f32 additive, broadcastable to [B, Hq, Lq, Lk]. */
  mask?: Tensor | null;
  /** Query i sees key j iff j <= i + Lk - Lq (aligned bottom-right). */
  causal?: boolean;
  /** Score scale; default 1/sqrt(D). */
  scale?: number;
  kernel?: Bf16KernelChoice;
  /** 'bhsd' (default): q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D|Dv], out [B, Hq, Lq, Dv]; 'bshd': sequence
   *  before heads, q [B, Lq, Hq, D], k/v [B, Lk, Hkv, D|Dv], out [B, Lq, Hq, Dv] (the layout of a QKV
   *  projection's output, read in place without transposing). */
  layout?: 'bhsd' | 'bshd';
}

/** Scaled dot-product attention with bf16 QKᵀ and PV products and an fp32 online softmax.
 *  q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] (f32; Hq a multiple of Hkv) -> [B, Hq, Lq, Dv],
 *  or all with sequence and heads swapped under layout 'bshd'. */
export function attentionBf16(q: Tensor, k: Tensor, v: Tensor, options: Bf16AttentionOptions = {}): Tensor {
  const a = requireBf16('attentionBf16');
  const { mask = null, causal = false, kernel = 'auto', layout = 'bhsd' } = options;
  if (layout !== 'bhsd' && layout !== 'bshd') throw new RangeError(`attentionBf16: layout must be 'bhsd' or 'bshd', got '${String(layout)}'`);
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.dtype !== 'f32' || t.rank !== 4) throw new TypeError(`attentionBf16: ${name} must be a 4-D f32 tensor, got ${t.dtype}[${t.shape.join(', ')}]`);
  }
  // [B, H, L, D] view of a stored tensor, with its (batch, head, row) element strides
  const bshd = layout === 'bshd';
  const logical = (s: readonly number[]): number[] => (bshd ? [s[0], s[2], s[1], s[3]] : [...s]);
  const strides = (s: readonly number[]): number[] => (bshd ? [s[1] * s[2] * s[3], s[3], s[2] * s[3]] : [s[1] * s[2] * s[3], s[2] * s[3], s[3]]);
  const [B, Hq, Lq, D] = logical(q.shape);
  const [Bk, Hkv, Lk, Dk] = logical(k.shape);
  const [Bv, Hv, Lv, Dv] = logical(v.shape);
  if (Bk !== B || Bv !== B || Hv !== Hkv || Lv !== Lk || Dk !== D || Hkv === 0 || Hq % Hkv !== 0) {
    throw new RangeError(`attentionBf16: q [${q.shape.join(', ')}], k [${k.shape.join(', ')}] and v [${v.shape.join(', ')}] do not fit together`);
  }
  const full = [B, Hq, Lq, Lk];
  if (mask) {
    if (mask.dtype !== 'bool' && mask.dtype !== 'f32') throw new TypeError(`attentionBf16: mask must be bool or f32, got ${mask.dtype}`);
    const off = full.length - mask.rank;
    if (off < 0 || mask.shape.some((d, i) => d !== 1 && d !== full[off + i])) {
      throw new RangeError(`attentionBf16: mask [${mask.shape.join(', ')}] does not broadcast to [${full.join(', ')}]`);
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const outShape = bshd ? [B, Lq, Hq, Dv] : [B, Hq, Lq, Dv];
  const y = Tensor.empty('f32', outShape);
  a.sdpaBf16(q.data as F32, k.data as F32, v.data as F32, mask ? (mask.data as F32 | Uint8Array) : null, mask?.dtype === 'bool',
    mask ? broadcastStrides(full, mask.shape) : [0, 0, 0, 0], y.data as F32, [B, Hq, Hkv, Lq, Lk, D, Dv], scale, causal, KERNEL_CODES[kernel],
    [...strides(q.shape), ...strides(k.shape), ...strides(v.shape), ...strides(outShape)]);
  return y;
}
