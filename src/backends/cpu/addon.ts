// Loads the native CPU addon (build/Release/inferjit_native.node, built by node-gyp at install)
// and describes its functions. When it is missing or cannot load, `addon` is null and
// backendInfo() says why; the SDK then runs every op on the pure-TypeScript reference kernels.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type F32 = Float32Array;
type Offsets = Float64Array | null;
/** An opaque handle to a pre-packed GEMM B operand (freed by the GC). */
export type PackedHandle = { readonly __packed: unique symbol };

export interface NativeInfo {
  isa: 'avx512' | 'avx2' | 'scalar';
  arch: string;
  simdWidth: number;
  gemmTile: string;
  threads: number;
  physicalCores: number;
}

/** The addon's functions. Sizes are element counts; every array is a tensor's own storage. */
export interface NativeAddon {
  info(): NativeInfo;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** Packs B ([K, N], or [N, K] when transB) into GEMM panels once. */
  packB(b: F32, K: number, N: number, transB: boolean): PackedHandle;
  gemm(M: number, N: number, K: number, a: F32, aOffsets: Offsets, transA: boolean, b: F32 | PackedHandle, bOffsets: Offsets,
    transB: boolean, c: F32, cOffsets: Offsets, bias: F32 | null, biasPerRow: boolean, act: number, residual: F32 | null,
    rOffsets: Offsets, alpha: number, batchCount: number): void;
  unary(op: number, x: F32, out: F32): void;
  binary(op: number, a: F32, b: F32, out: F32, shape: number[], aStrides: number[], bStrides: number[]): void;
  softmax(x: F32, out: F32, outer: number, size: number, inner: number, log: boolean): void;
  reduce(op: number, x: F32, out: F32, outer: number, size: number, inner: number): void;
  norm(rms: boolean, x: F32, residual: F32 | null, weight: F32 | null, bias: F32 | null, out: F32, sum: F32 | null,
    rows: number, cols: number, eps: number): void;
  groupNorm(x: F32, weight: F32 | null, bias: F32 | null, out: F32, n: number, c: number, spatial: number, groups: number, eps: number): void;
  rotary(x: F32, cos: F32, sin: F32, out: F32, rows: number, seq: number, d: number, half: number, interleaved: boolean): void;
  permute(x: ArrayBufferView, out: ArrayBufferView, shape: readonly number[], perm: readonly number[]): void;
  /** Returns undefined, or the first out-of-range index. */
  gather(x: ArrayBufferView, indices: Int32Array | BigInt64Array, out: ArrayBufferView, outer: number, size: number, inner: number,
    allowNegative: boolean): number | undefined;
  conv2d(x: F32, weight: F32, bias: F32 | null, out: F32, xShape: number[], wShape: number[], geometry: number[], groups: number, act: number): void;
  sdpa(q: F32, k: F32, v: F32, mask: F32 | Uint8Array | null, maskIsBool: boolean, maskStrides: number[], out: F32,
    dims: number[], scale: number, causal: boolean): void;
  /** XXH64 of the bytes (16 hex digits). */
  xxh64(bytes: Uint8Array, seed: number): string;
}

// Op codes: one numbering for eager calls and plan kernels (generated from scripts/kernel-table.mjs).
export { BINARY_CODES, REDUCE_CODES, UNARY_CODES } from './plan/kernel-table.gen.js';
export { ACTIVATION_CODES as ACTIVATIONS } from './plan/kernel-table.gen.js';
export type Activation = keyof typeof import('./plan/kernel-table.gen.js').ACTIVATION_CODES;

export interface BackendInfo {
  /** Whether eager ops run on native kernels. */
  native: boolean;
  /** Why the native backend is not available (when native is false). */
  reason?: string;
  /** The addon's file, when found. */
  path: string;
  /** SIMD path compiled in, -march value, GEMM register tile, and pool size (when native). */
  isa?: string;
  arch?: string;
  gemmTile?: string;
  threads?: number;
}

// INFERJIT_NATIVE_ADDON points at another build (e.g. a portable x86-64-v3 one under test).
const addonPath = process.env.INFERJIT_NATIVE_ADDON || fileURLToPath(new URL('../../../build/Release/inferjit_native.node', import.meta.url));

function load(): { addon: NativeAddon | null; reason?: string } {
  if (process.env.INFERJIT_DISABLE_NATIVE === '1') return { addon: null, reason: 'disabled by INFERJIT_DISABLE_NATIVE=1' };
  if (!existsSync(addonPath)) {
    return { addon: null, reason: `native addon not built (${addonPath} is missing); run \`npm rebuild inferjit\` in your project (\`npm run build:native\` in an inferjit checkout) and check its output` };
  }
  try {
    const require = createRequire(import.meta.url);
    return { addon: require(addonPath) as NativeAddon };
  } catch (e) {
    return { addon: null, reason: `native addon failed to load: ${(e as Error).message}` };
  }
}

const loaded = load();
/** The loaded addon, or null (then `loadFailure` says why). */
export const addon: NativeAddon | null = loaded.addon;
export const loadFailure: string | undefined = loaded.reason;

export function backendInfo(): BackendInfo {
  if (!addon) return { native: false, reason: loadFailure, path: addonPath };
  const i = addon.info();
  return { native: true, path: addonPath, isa: i.isa, arch: i.arch, gemmTile: i.gemmTile, threads: addon.getNumThreads() };
}
