// Native eager kernel for moe (src/ops/moe.ts): the grouped-GEMM core of native/llm/moe.cc through
// the addon's `moe`, the same code the plan kernel runs.
import { registerKernel } from '../../../ops/registry.js';
import { Tensor } from '../../../tensor/tensor.js';
import { QUANT_FORMAT_CODES } from '../../../tensor/quantized.js';
import type { ExpertFormat, MoeAttrs } from '../../../ops/moe.js';
import type { NativeAddon } from '../addon.js';
import { bytesOf } from './util.js';

type Stack = [number, ArrayBufferView];
interface MoeAddon {
  moe(x: Float32Array, logits: Float32Array, T: number, H: number, F: number, E: number, topK: number, group: number,
    gate: Stack, up: Stack, down: Stack, out: Float32Array): void;
}

/** native/quant/qmatmul.h's code of an expert format. */
export const expertFormatCode = (f: ExpertFormat): number => (f === 'f32' ? 0 : QUANT_FORMAT_CODES[f]);

export function registerMoeKernels(addon: NativeAddon): void {
  const m = addon as unknown as Partial<MoeAddon>;
  if (typeof m.moe !== 'function') return;
  const run = m.moe.bind(addon);
  registerKernel<MoeAttrs>('moe', 'cpu', ([x, logits, wg, wu, wd], a, [out]) => {
    const [T, H] = out.shape as number[];
    const y = Tensor.empty('f32', [T, H]);
    run(x!.data as Float32Array, logits!.data as Float32Array, T, H, a.ffn, a.num_experts, a.top_k, a.group,
      [expertFormatCode(a.gate_format), bytesOf(wg!)], [expertFormatCode(a.up_format), bytesOf(wu!)],
      [expertFormatCode(a.down_format), bytesOf(wd!)], y.data as Float32Array);
    return [y];
  }, (inputs) => inputs.every((t) => t !== null && (t.dtype === 'f32' || t.dtype === 'u8')));
}
