// The options of quantize() and their validation: every unknown name and every invalid value is
// an error naming the option, what it got and what it accepts.
import { checkOptionNames } from '../llm/errors.js';

export interface QuantizeOptions {
  /** Weight format of every linear except the LM head: int8 per output channel, int4 group-wise,
   *  FP8 E4M3 per output channel; null keeps f32 weights (to study activations or the KV alone). */
  weights: 'int8' | 'int4' | 'fp8' | null;
  /** Activation quantization before each quantized linear (null: none, weight-only). */
  activations: 'int8' | 'fp8' | null;
  /** 'per-token' (default): one dynamic scale per token; 'per-tensor': one static scale per site,
   *  calibrated (the naive scheme that outlier channels break); 'per-group': one dynamic scale per
   *  32 values of a token (llama.cpp's Q8_0 granularity), int8 weights and activations on the
   *  w8a8 kernel only — an outlier channel coarsens its own block of 32, not the whole token. */
  activationScheme?: 'per-token' | 'per-tensor' | 'per-group';
  /** KV cache: 'int8' on a real kernel ('w8a8', 'qgemm'), or alone (weights and activations null,
   *  no kernel given), runs on the engine's int8 page pools (each row of a kv head quantized at write
   *  with its own scale, dequantized inside paged attention: the decoder's kvDtype); with kernel
   *  'simulated', and for 'fp8', rows are fake-quantized with calibrated per-head scales (null: f32). */
  kvCache: 'int8' | 'fp8' | null;
  smoothing: 'none' | 'smoothquant' | 'pss';
  /** Outlier Suppression+ shift: per-channel z = (max + min) / 2 subtracted, W z moved into the bias. */
  shift: boolean;
  method: 'absmax' | 'gptq' | 'awq';
  /** Calibration token sequences (each at most the model's positions). */
  calibration: readonly (readonly number[])[];
  /** SmoothQuant's migration strength (default 0.5). */
  alpha?: number;
  /** int4 group size (32, 64 or 128; default the largest that divides every linear's K). */
  groupSize?: number;
  /** PSS: channel pieces per site (default 4). */
  pieces?: number;
  /** 'simulated': fake-quantized activations (per token / per tensor) times dequantized weights in
   *  f32. 'w8a8': the linears become w8_linear on the real 8-bit kernels (src/quant/w8-linear-op.ts):
   *  int8 weights × int8 activations (per-token or, with activationScheme 'per-group', per-32-value
   *  scales; int32 sums), or FP8 E4M3 weights with FP8
   *  or f32 activations. 'qgemm': the linears become quant_linear on int8 / int4 weights and run on
   *  the native weight-only kernel, which quantizes activations itself, dynamically per 32 values.
   *  Default: 'w8a8' where it applies (native kernels built; int8 weights with per-token int8
   *  activations, or fp8 weights with fp8 / no activation quantization), else 'simulated'; with
   *  weights and activations null there is no linear to run and no default (an int8 KV cache then
   *  runs on the int8 pools; say 'simulated' for calibrated per-head scales instead). */
  kernel?: 'simulated' | 'w8a8' | 'qgemm';
  /** Rows of each site's activation kept for the searches (default 128). */
  maxSamples?: number;
  /** Online Hadamard rotation (QuaRot-style, src/quant/rotation.ts). 'none' (default); 'down':
   *  the input of every linear site fed by an elementwise product (the SwiGLU silu(gate)·up that the
   *  down projection reads) is multiplied by an orthonormal block Hadamard H in the graph and the
   *  consumers' weights by H, exact in f32; 'all': every quantized linear site's input (q/k/v, o,
   *  gate/up and down) the same way. Smoothing (and the shift) act first, in x's own basis;
   *  their factors are searched with the rotation in the site's error. Per-token activations only. */
  rotate?: 'none' | 'down' | 'all';
  /** Also quantize the LM head (the linear that produces the logits) as a site like the others:
   *  its weights, activations, smoothing and shift as chosen above. Default false: the LM head
   *  stays f32, as is usual in PTQ; with a real kernel, true makes each decode step read a quarter
   *  of its bytes (on a 32000-token vocabulary it is the largest single weight). Refused when the
   *  LM head shares its weight with the token embedding (tied embeddings). */
  lmHead?: boolean;
  /** Called as quantize() advances: a 1B model's PSS or GPTQ build runs for minutes. Phases in order:
   *  'calibrate' (calibration sequences run), 'sites' (smoothing searches done, one per linear site),
   *  'weights' (weights quantized), and with smoothing 'pss' 'select' (sites whose model-level choice
   *  is made). `done` counts up to `total` within a phase. Not saved with the quantized model. */
  onProgress?: (progress: QuantizeProgress) => void;
}

export interface QuantizeProgress { phase: 'calibrate' | 'sites' | 'weights' | 'select'; done: number; total: number }

export const QUANTIZE_OPTION_NAMES = ['weights', 'activations', 'activationScheme', 'kvCache', 'smoothing', 'shift', 'method', 'calibration', 'alpha', 'groupSize', 'pieces', 'maxSamples', 'kernel', 'rotate', 'lmHead', 'onProgress'] as const;
const REQUIRED = ['weights', 'activations', 'kvCache', 'smoothing', 'shift', 'method', 'calibration'] as const;

function oneOf(name: string, v: unknown, allowed: readonly unknown[]): void {
  if (!allowed.includes(v)) throw new TypeError(`quantize: option "${name}" is ${JSON.stringify(v)}; expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
}

/** Whether the KV cache runs on the engine's int8 page pools (kvCache 'int8' with a real kernel,
 *  'w8a8' or 'qgemm', or with no linear quantized and no kernel asked for: each row of a kv head
 *  quantized at write with its own absmax scale and dequantized inside paged attention) rather than
 *  simulated with calibrated per-head scales (fake_quant on the cache writes: kernel 'simulated',
 *  and every 'fp8' cache). */
export function kvOnPools(o: Pick<QuantizeOptions, 'kvCache' | 'kernel' | 'weights' | 'activations'>): boolean {
  if (o.kvCache !== 'int8') return false;
  if (o.kernel === 'w8a8' || o.kernel === 'qgemm') return true;
  return o.kernel === undefined && o.weights === null && o.activations === null;
}

/** Whether kernel 'w8a8' runs these formats (what the default kernel is chosen by). */
export function w8a8Applies(o: Pick<QuantizeOptions, 'weights' | 'activations' | 'activationScheme'>): boolean {
  if (o.activationScheme === 'per-tensor') return false;
  if (o.activationScheme === 'per-group') return o.weights === 'int8' && o.activations === 'int8';
  return (o.weights === 'int8' && o.activations === 'int8') || (o.weights === 'fp8' && o.activations !== 'int8');
}

export function checkQuantizeOptions(options: QuantizeOptions): Required<Omit<QuantizeOptions, 'groupSize' | 'kernel' | 'onProgress'>> & { groupSize: number | undefined; kernel: QuantizeOptions['kernel'] } {
  if (options === null || typeof options !== 'object') throw new TypeError('quantize: options must be an object');
  checkOptionNames('quantize', options as unknown as Record<string, unknown>, QUANTIZE_OPTION_NAMES);
  for (const r of REQUIRED) {
    if ((options as unknown as Record<string, unknown>)[r] === undefined) throw new TypeError(`quantize: option "${r}" is required (say null / 'none' / false to leave that part out)`);
  }
  oneOf('weights', options.weights, ['int8', 'int4', 'fp8', null]);
  oneOf('activations', options.activations, ['int8', 'fp8', null]);
  oneOf('activationScheme', options.activationScheme ?? 'per-token', ['per-token', 'per-tensor', 'per-group']);
  if (options.activationScheme === 'per-group') {
    if (options.weights !== 'int8' || options.activations !== 'int8') throw new TypeError(`quantize: option "activationScheme" 'per-group' (int8 activation scales per 32 values) runs int8 weights with int8 activations; got weights ${JSON.stringify(options.weights)}, activations ${JSON.stringify(options.activations)}`);
    if (options.kernel !== undefined && options.kernel !== 'w8a8') throw new TypeError(`quantize: option "activationScheme" 'per-group' runs on kernel 'w8a8' (leave "kernel" out or say 'w8a8'); got kernel '${options.kernel}'${options.kernel === 'qgemm' ? ", which quantizes per 32 values by itself: leave \"activationScheme\" out" : ''}`);
  }
  oneOf('kvCache', options.kvCache, ['int8', 'fp8', null]);
  oneOf('smoothing', options.smoothing, ['none', 'smoothquant', 'pss']);
  oneOf('shift', options.shift, [true, false]);
  oneOf('method', options.method, ['absmax', 'gptq', 'awq']);
  if (options.method !== 'absmax' && options.weights === null) throw new TypeError(`quantize: option "method" is "${options.method}" but "weights" is null; GPTQ / AWQ choose quantized weights, so set weights to 'int8' or 'int4'`);
  if (options.method !== 'absmax' && options.weights === 'fp8') throw new TypeError(`quantize: option "method" "${options.method}" is for integer weights; FP8 weights use 'absmax'`);
  if (options.method === 'awq' && options.smoothing !== 'none') throw new TypeError(`quantize: option "method" 'awq' searches its own per-channel scales; set "smoothing" to 'none' (got '${options.smoothing}')`);
  oneOf('kernel', options.kernel ?? 'simulated', ['simulated', 'w8a8', 'qgemm']);
  oneOf('rotate', options.rotate ?? 'none', ['none', 'down', 'all']);
  oneOf('lmHead', options.lmHead ?? false, [true, false]);
  if ((options.rotate ?? 'none') !== 'none' && options.activationScheme === 'per-tensor') {
    // a static per-tensor scale is calibrated from per-channel abs max, which bounds nothing after the rotation
    throw new TypeError(`quantize: option "rotate" '${options.rotate}' needs per-token activation scales; "activationScheme" 'per-tensor' calibrates its static scale per channel, before the rotation`);
  }
  if (options.kernel === 'w8a8') {
    const ok = (options.weights === 'int8' && options.activations === 'int8') || (options.weights === 'fp8' && options.activations !== 'int8');
    if (!ok) throw new TypeError(`quantize: option "kernel" 'w8a8' runs int8 weights with int8 activations, or fp8 weights with fp8 / no activation quantization; got weights ${JSON.stringify(options.weights)}, activations ${JSON.stringify(options.activations)}`);
    if (options.activationScheme === 'per-tensor') throw new TypeError('quantize: option "kernel" \'w8a8\' quantizes activations per token or per 32 values; "activationScheme" \'per-tensor\' needs kernel \'simulated\'');
  }
  if (options.kernel === 'qgemm') {
    if (options.weights !== 'int8' && options.weights !== 'int4') throw new TypeError(`quantize: option "kernel" 'qgemm' runs int8 / int4 weights; "weights" is ${JSON.stringify(options.weights)}`);
    if (options.activations !== 'int8') throw new TypeError(`quantize: option "kernel" 'qgemm' always quantizes activations to int8 (per 32 values); set "activations" to 'int8' (got ${JSON.stringify(options.activations)})`);
    if (options.activationScheme !== undefined && options.activationScheme !== 'per-token') throw new TypeError('quantize: option "activationScheme" does not apply to kernel \'qgemm\' (it quantizes per 32 values); leave it out');
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new TypeError(`quantize: option "onProgress" must be a function ({ phase, done, total }) => void, got ${typeof options.onProgress}`);
  }
  const cal = options.calibration;
  if (!Array.isArray(cal) || cal.length === 0 || !cal.every((s) => Array.isArray(s) && s.length > 0)) {
    throw new TypeError('quantize: option "calibration" must be a non-empty array of non-empty token id arrays');
  }
  const alpha = options.alpha ?? 0.5;
  if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1)) throw new RangeError(`quantize: option "alpha" must be a number in [0, 1], got ${JSON.stringify(options.alpha)}`);
  if (options.groupSize !== undefined && ![32, 64, 128].includes(options.groupSize)) throw new RangeError(`quantize: option "groupSize" must be 32, 64 or 128, got ${JSON.stringify(options.groupSize)}`);
  const pieces = options.pieces ?? 4;
  if (!Number.isInteger(pieces) || pieces < 1) throw new RangeError(`quantize: option "pieces" must be a positive integer, got ${JSON.stringify(options.pieces)}`);
  const maxSamples = options.maxSamples ?? 128;
  if (!Number.isInteger(maxSamples) || maxSamples < 1) throw new RangeError(`quantize: option "maxSamples" must be a positive integer, got ${JSON.stringify(options.maxSamples)}`);
  return { ...options, activationScheme: options.activationScheme ?? 'per-token', rotate: options.rotate ?? 'none', lmHead: options.lmHead ?? false, kernel: options.kernel, alpha, groupSize: options.groupSize, pieces, maxSamples };
}
