// The LLaVA image encoder against an independent float64 implementation written from transformers'
// modeling_clip.py / modeling_llava.py in plain loops over the checkpoint's tensors (by name, no nn
// modules, no ops): patch conv as a sum over (channel, row, col), class token first, position
// embeddings, pre_layrnorm, pre-LN blocks (q scaled by head_dim^-0.5, softmax, out_proj; fc1,
// QuickGELU, fc2), hidden_states[-2], class token dropped, linear_1, exact GELU, linear_2. A weight
// read under the wrong name, transposed, or a block wired differently shows up here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randn } from '../../../src/index.js';
import { readSafetensors } from '../../../src/io/safetensors.js';
import { loadLlava } from '../../../src/llm/vision/llava.js';
import { writeTinyLlava } from '../../../examples/llm/llava-tiny.js';

/** erf to ~1e-7 absolute (Abramowitz & Stegun 7.1.26 is 1.5e-7; good against a 1e-4 bound). */
function erf(x: number): number {
  const s = Math.sign(x), a = Math.abs(x), t = 1 / (1 + 0.3275911 * a);
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}

test('image encoder == a float64 loop implementation of transformers\' CLIP + LLaVA projector', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-clipref-'));
  try {
    // odd sizes: 3 heads of 8, 5×5 patches of 4 on a 20-pixel image
    writeTinyLlava(dir, { visionHidden: 24, visionHeads: 3, visionLayers: 3, imageSize: 20, patchSize: 4, textHidden: 40 });
    const llava = loadLlava(dir, { compile: false, compileEncoder: false });
    const st = readSafetensors(dir);
    const w = (n: string): Float64Array => Float64Array.from(st.toTensor(n).toFlatArray());
    const { hiddenSize: D, numHeads: H, intermediateSize: I, patchSize: P, imageSize: S } = llava.config.vision;
    const G = S / P, N = G * G + 1, hd = D / H, T = llava.config.text.hiddenSize;
    const px = randn([1, 3, S, S], { seed: 4 });
    const pix = px.toFlatArray();

    const lin = (x: Float64Array, rows: number, inF: number, outF: number, name: string): Float64Array => {
      const W = w(`${name}.weight`), b = w(`${name}.bias`), y = new Float64Array(rows * outF);
      for (let r = 0; r < rows; r++) for (let o = 0; o < outF; o++) {
        let s = b[o];
        for (let k = 0; k < inF; k++) s += x[r * inF + k] * W[o * inF + k]; // transformers' Linear: weight [out, in]
        y[r * outF + o] = s;
      }
      return y;
    };
    const ln = (x: Float64Array, rows: number, name: string): Float64Array => {
      const g = w(`${name}.weight`), b = w(`${name}.bias`), y = new Float64Array(x.length);
      for (let r = 0; r < rows; r++) {
        let m = 0, v = 0;
        for (let k = 0; k < D; k++) m += x[r * D + k] / D;
        for (let k = 0; k < D; k++) v += (x[r * D + k] - m) ** 2 / D;
        for (let k = 0; k < D; k++) y[r * D + k] = ((x[r * D + k] - m) / Math.sqrt(v + 1e-5)) * g[k] + b[k];
      }
      return y;
    };
    const vm = 'vision_tower.vision_model.';
    // embeddings
    const conv = w(`${vm}embeddings.patch_embedding.weight`), cls = w(`${vm}embeddings.class_embedding`), pos = w(`${vm}embeddings.position_embedding.weight`);
    let x = new Float64Array(N * D);
    for (let d = 0; d < D; d++) x[d] = cls[d] + pos[d];
    for (let gy = 0; gy < G; gy++) for (let gx = 0; gx < G; gx++) {
      const t = 1 + gy * G + gx;
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let c = 0; c < 3; c++) for (let i = 0; i < P; i++) for (let j = 0; j < P; j++) {
          s += conv[((d * 3 + c) * P + i) * P + j] * pix[(c * S + gy * P + i) * S + gx * P + j];
        }
        x[t * D + d] = s + pos[t * D + d];
      }
    }
    x = ln(x, N, `${vm}pre_layrnorm`);
    // hidden_states[-2] of 3 layers: 2 blocks
    for (let l = 0; l < 2; l++) {
      const p = `${vm}encoder.layers.${l}.`;
      const h1 = ln(x, N, `${p}layer_norm1`);
      const q = lin(h1, N, D, D, `${p}self_attn.q_proj`), k = lin(h1, N, D, D, `${p}self_attn.k_proj`), v = lin(h1, N, D, D, `${p}self_attn.v_proj`);
      const att = new Float64Array(N * D);
      for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) {
        const sc = new Float64Array(N);
        let mx = -Infinity;
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[i * D + h * hd + e] * hd ** -0.5 * k[j * D + h * hd + e];
          sc[j] = s; mx = Math.max(mx, s);
        }
        let z = 0;
        for (let j = 0; j < N; j++) { sc[j] = Math.exp(sc[j] - mx); z += sc[j]; }
        for (let e = 0; e < hd; e++) { let s = 0; for (let j = 0; j < N; j++) s += (sc[j] / z) * v[j * D + h * hd + e]; att[i * D + h * hd + e] = s; }
      }
      const o = lin(att, N, D, D, `${p}self_attn.out_proj`);
      const r1 = x.map((a, i) => a + o[i]);
      const f = lin(ln(r1, N, `${p}layer_norm2`), N, D, I, `${p}mlp.fc1`).map((a) => a / (1 + Math.exp(-1.702 * a)));
      const f2 = lin(f, N, I, D, `${p}mlp.fc2`);
      x = r1.map((a, i) => a + f2[i]);
    }
    const patches = x.slice(D); // the class token dropped
    const g = lin(patches, N - 1, D, T, 'multi_modal_projector.linear_1').map((a) => 0.5 * a * (1 + erf(a / Math.SQRT2)));
    const want = lin(g, N - 1, T, T, 'multi_modal_projector.linear_2');

    const got = llava.encoder.forward(px);
    assert.deepEqual([...got.shape], [1, N - 1, T]);
    const gf = got.toFlatArray();
    let worst = 0, scale = 0;
    for (let i = 0; i < want.length; i++) { worst = Math.max(worst, Math.abs(gf[i] - want[i])); scale = Math.max(scale, Math.abs(want[i])); }
    // f32 through 2 blocks + projector vs float64: ~1e-6 relative in practice; 1e-4 of the largest output
    assert.ok(worst < 1e-4 * Math.max(1, scale), `max |encoder - reference| = ${worst} (max |out| ${scale})`);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});
