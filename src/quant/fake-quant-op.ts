// fake_quant: the activation side of simulated quantization as one graph op. It quantizes x to
// int8 or FP8 E4M3 and returns the dequantized f32 values, so a quantized model runs on the
// ordinary f32 kernels while computing exactly what an integer / FP8 kernel would see:
//   granularity 'token':  one dynamic absmax scale per row of the last dim (per token)
//   granularity 'tensor': one dynamic absmax scale for the whole tensor
//   granularity 'static': calibrated scales from input `scale` [S]; value i uses
//                         scale[floor(i / lastDim) % S] (S = 1: per tensor; S = kvHeads on
//                         [tokens, kvHeads, headDim] rows: per head, as the INT8 KV cache)
// Defined once here (shape inference + reference kernel), so eager runs, the tracer and the graph
// interpreter all know it; there is no native kernel (a real W8A8 kernel quantizes inside its
// GEMM; see src/quant/README section in README.md).
import { defineOp, getOp, hasOp } from '../ops/registry.js';
import { values, tensorFrom, concrete } from '../ops/kernel-utils.js';
import { numel } from '../tensor/shape.js';
import { type ActFormat, fakeQuantRows, fakeQuantValue } from './numerics.js';

export interface FakeQuantAttrs { format: ActFormat; granularity: 'token' | 'tensor' | 'static' }

export const FAKE_QUANT = 'fake_quant';

function define(): void {
  defineOp<FakeQuantAttrs>({
    name: FAKE_QUANT,
    kind: 'other',
    inputs: ['x', 'scale?'],
    attrs: {
      format: { type: 'string', oneOf: ['int8', 'fp8'], required: true },
      granularity: { type: 'string', oneOf: ['token', 'tensor', 'static'], required: true },
    },
    doc: 'Quantize x to int8 / FP8 E4M3 (per token, per tensor, or with static scales [S] over rows of the last dim) and dequantize.',
    infer([x, scale], { granularity }) {
      if (!x || x.dtype !== 'f32') throw new TypeError(`fake_quant: x must be f32, got ${x ? x.dtype : 'nothing'}`);
      if (x.shape.length < 1) throw new RangeError('fake_quant: x must have at least one dim');
      if (granularity === 'static') {
        if (!scale || scale.dtype !== 'f32' || scale.shape.length !== 1) throw new TypeError('fake_quant: granularity "static" needs an f32 scale [S] input');
      } else if (scale) throw new TypeError(`fake_quant: granularity "${granularity}" computes its scales; pass no scale input`);
      return [{ dtype: 'f32', shape: x.shape }];
    },
    reference([x, scale], { format, granularity }, [out]) {
      const shape = concrete(out.shape);
      const v = new Float32Array(values(x!));
      const last = shape[shape.length - 1];
      if (granularity === 'token') { if (last > 0) fakeQuantRows(v, last, format); }
      else if (granularity === 'tensor') { if (v.length > 0) fakeQuantRows(v, v.length, format); }
      else {
        const s = values(scale!);
        const S = s.length;
        for (let i = 0; i < numel(shape); i++) v[i] = fakeQuantValue(v[i], s[Math.floor(i / last) % S], format);
      }
      return [tensorFrom(out, v)];
    },
  });
}

// idempotent: src/quant may be imported through several entry points
if (!hasOp(FAKE_QUANT)) define();
export const fakeQuantDef = () => getOp(FAKE_QUANT);
