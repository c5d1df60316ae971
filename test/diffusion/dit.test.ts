// DiT model tests: checkpoint names and shapes equal facebookresearch/DiT's, the fixed embeddings
// equal their formulas, patch layout, one block against a float64 loop implementation, adaLN-Zero,
// the learnSigma output and the classifier-free-guidance arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, randn, zeros, type Tensor } from '../../src/index.js';
import {
  DiT, DiTBlock, createDiT, ditConfig, applyCfg, sincosPosEmbed2d, DIT_MODEL_NAMES,
} from '../../examples/diffusion/dit.js';
import { assertClose, layerNormLoop, linearLoop } from '../nn/util.js';

const tiny = { inputSize: 8, patchSize: 2, hiddenSize: 64, depth: 2, numHeads: 4, numClasses: 10 };

/** The state dict of models.py's DiT for DiT-S/2 at 256×256 (input_size 32, num_classes 1000,
 *  learn_sigma, class_dropout_prob 0.1), written out from the module definitions there, in
 *  PyTorch's registration order. */
function originalDiTS2StateDict(): [string, number[]][] {
  const D = 384, out: [string, number[]][] = [
    ['pos_embed', [1, 256, D]],
    ['x_embedder.proj.weight', [D, 4, 2, 2]], ['x_embedder.proj.bias', [D]],
    ['t_embedder.mlp.0.weight', [D, 256]], ['t_embedder.mlp.0.bias', [D]],
    ['t_embedder.mlp.2.weight', [D, D]], ['t_embedder.mlp.2.bias', [D]],
    ['y_embedder.embedding_table.weight', [1001, D]],
  ];
  for (let i = 0; i < 12; i++) {
    const b = `blocks.${i}`;
    out.push(
      [`${b}.attn.qkv.weight`, [3 * D, D]], [`${b}.attn.qkv.bias`, [3 * D]],
      [`${b}.attn.proj.weight`, [D, D]], [`${b}.attn.proj.bias`, [D]],
      [`${b}.mlp.fc1.weight`, [4 * D, D]], [`${b}.mlp.fc1.bias`, [4 * D]],
      [`${b}.mlp.fc2.weight`, [D, 4 * D]], [`${b}.mlp.fc2.bias`, [D]],
      [`${b}.adaLN_modulation.1.weight`, [6 * D, D]], [`${b}.adaLN_modulation.1.bias`, [6 * D]],
    );
  }
  out.push(
    ['final_layer.linear.weight', [2 * 2 * 8, D]], ['final_layer.linear.bias', [32]],
    ['final_layer.adaLN_modulation.1.weight', [2 * D, D]], ['final_layer.adaLN_modulation.1.bias', [2 * D]],
  );
  return out;
}

test('DiT-S/2 state dict has the original checkpoint names, shapes and order', () => {
  const model = createDiT('DiT-S/2', {}, { seed: 0 });
  const got = [...model.stateDict()].map(([name, t]): [string, number[]] => [name, [...t.shape]]);
  assert.deepEqual(got, originalDiTS2StateDict());
  // The paper's 33M parameters for DiT-S counts pos_embed (a frozen Parameter in PyTorch).
  const total = got.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
  assert.equal(total, 32_963_360);
  assert.equal(model.numParameters() + 256 * 384, total);
  assert.ok(model.namedBuffers().some(([n]) => n === 't_embedder.freqs'), 'the frequency table is a buffer');
  assert.ok(!model.stateDict().has('t_embedder.freqs'), '...and not persistent');
});

test('configs: the paper sizes at every patch size', () => {
  assert.equal(DIT_MODEL_NAMES.length, 12);
  const table = { S: [12, 384, 6], B: [12, 768, 12], L: [24, 1024, 16], XL: [28, 1152, 16] };
  for (const [size, [depth, hidden, heads]] of Object.entries(table)) {
    for (const p of [2, 4, 8]) {
      const c = ditConfig(`DiT-${size}/${p}` as 'DiT-S/2');
      assert.deepEqual([c.depth, c.hiddenSize, c.numHeads, c.patchSize, c.inputSize, c.numClasses, c.learnSigma], [depth, hidden, heads, p, 32, 1000, true]);
    }
  }
  assert.throws(() => ditConfig('DiT-M/2' as 'DiT-S/2'), /unknown model "DiT-M\/2"/);
  assert.throws(() => new DiT({ ...tiny, inputSize: 9 }), /inputSize \(9\) must be divisible by patchSize \(2\)/);
  assert.throws(() => new DiT({ ...tiny, numHeads: 5 }), /hiddenSize \(64\) must be divisible by numHeads \(5\)/);
});

test('pos_embed equals the MAE/DiT 2-D sin-cos table (numpy-style computation)', () => {
  // get_2d_sincos_pos_embed written the numpy way: meshgrid(w, h) puts the column index first; each
  // half is a 1-D table [sin(pos·ω) | cos(pos·ω)] with ω = 1/10000^(k/(dim/2)).
  const oneD = (dim: number, pos: number): number[] => {
    const omega = Array.from({ length: dim / 2 }, (_, k) => 1 / 10000 ** (k / (dim / 2)));
    return [...omega.map((w) => Math.sin(pos * w)), ...omega.map((w) => Math.cos(pos * w))];
  };
  const dim = 16, grid = 4;
  const table = sincosPosEmbed2d(dim, grid);
  for (let h = 0; h < grid; h++) {
    for (let w = 0; w < grid; w++) {
      const expected = [...oneD(dim / 2, w), ...oneD(dim / 2, h)];
      assertClose(table.subarray((h * grid + w) * dim, (h * grid + w + 1) * dim), expected, 1e-15, `token (${h}, ${w})`);
    }
  }
  // Two rows of numpy's get_2d_sincos_pos_embed(8, 3), printed with numpy 2.4 (tokens 5 and 7).
  const np5 = [0.9092974268256817, 0.01999866669333308, -0.4161468365471424, 0.9998000066665778, 0.8414709848078965, 0.009999833334166664, 0.5403023058681398, 0.9999500004166653];
  const np7 = [0.8414709848078965, 0.009999833334166664, 0.5403023058681398, 0.9999500004166653, 0.9092974268256817, 0.01999866669333308, -0.4161468365471424, 0.9998000066665778];
  const small = sincosPosEmbed2d(8, 3);
  assertClose(small.subarray(40, 48), np5, 1e-15, 'numpy token 5');
  assertClose(small.subarray(56, 64), np7, 1e-15, 'numpy token 7');
  // The model holds it as [1, T, D] in f32.
  const model = new DiT(tiny, { seed: 1 });
  assert.deepEqual(model.pos_embed.shape, [1, 16, 64]);
  assertClose(model.pos_embed.toFlatArray(), sincosPosEmbed2d(64, 4), 1e-7, 'pos_embed (f32 rounding)');
});

test('timestep embedding is [cos(t·f) | sin(t·f)] with f_k = exp(-ln(10000)·k/128), then the MLP', () => {
  const model = new DiT(tiny, { seed: 2 });
  const ts = [0, 1, 37.25, 999.5];
  const emb = model.t_embedder.timestepEmbedding(fromArray(ts, [4])).toFlatArray();
  const expected: number[] = [];
  for (const t of ts) {
    const f = Array.from({ length: 128 }, (_, k) => Math.exp((-Math.log(10000) * k) / 128));
    expected.push(...f.map((w) => Math.cos(t * w)), ...f.map((w) => Math.sin(t * w)));
  }
  // f32 arguments: t·f is rounded to ~6e-8 relative, i.e. up to 6e-5 absolute at t≈1000.
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(emb[i] - expected[i]) < 2e-4, `emb[${i}] ${emb[i]} vs ${expected[i]}`);
  // t_embedder = Linear(256, D) -> SiLU -> Linear(D, D) on that embedding.
  const l0 = model.t_embedder.mlp.at(0) as unknown as { weight: Tensor; bias: Tensor };
  const l2 = model.t_embedder.mlp.at(2) as unknown as { weight: Tensor; bias: Tensor };
  const h = linearLoop(expected, l0.weight.toFlatArray(), l0.bias.toFlatArray(), 4, 256, 64).map((v) => v / (1 + Math.exp(-v)));
  const out = linearLoop(h, l2.weight.toFlatArray(), l2.bias.toFlatArray(), 4, 64, 64);
  assertClose(model.t_embedder.forward(fromArray(ts, [4])).toFlatArray(), out, 1e-4, 't_embedder (f32 layers)');
});

test('unpatchify places token (i, j) as the p×p patch at row i, column j; patchify inverts it', () => {
  const model = new DiT({ ...tiny, learnSigma: true }, { seed: 3 }); // outChannels 8
  const n = 2, g = 4, p = 2, c = 8;
  const code = (b: number, i: number, j: number, pr: number, pc: number, ch: number): number => ((((b * 10 + i) * 10 + j) * 10 + pr) * 10 + pc) * 10 + ch;
  const tokens = new Float64Array(n * g * g * p * p * c);
  let k = 0;
  for (let b = 0; b < n; b++) for (let i = 0; i < g; i++) for (let j = 0; j < g; j++) for (let pr = 0; pr < p; pr++) for (let pc = 0; pc < p; pc++) for (let ch = 0; ch < c; ch++) tokens[k++] = code(b, i, j, pr, pc, ch);
  const x = fromArray(tokens, [n, g * g, p * p * c], 'i32');
  const img = model.unpatchify(x);
  assert.deepEqual(img.shape, [n, c, g * p, g * p]);
  const v = img.toFlatArray();
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let y = 0; y < g * p; y++) for (let xx = 0; xx < g * p; xx++) {
    const want = code(b, Math.floor(y / p), Math.floor(xx / p), y % p, xx % p, ch);
    assert.equal(v[((b * c + ch) * g * p + y) * g * p + xx], want);
  }
  assert.deepEqual(model.patchify(img).toFlatArray(), tokens);
});

test('a DiT block equals a float64 loop implementation of adaLN-Zero attention + MLP', () => {
  const D = 16, H = 2, hd = 8, N = 2, T = 3;
  const block = new DiTBlock(D, H, 4, { seed: 4 });
  const x = randn([N, T, D], { seed: 5 }), c = randn([N, D], { seed: 6 });
  const got = block.forward(x, c).toFlatArray();

  const w = (l: { weight: Tensor; bias: Tensor | null }) => [l.weight.toFlatArray(), l.bias!.toFlatArray()] as const;
  const [wa, ba] = w(block.adaLN_modulation.at(1) as unknown as { weight: Tensor; bias: Tensor });
  const [wqkv, bqkv] = w(block.attn.qkv), [wproj, bproj] = w(block.attn.proj);
  const [w1, b1] = w(block.mlp.fc1), [w2, b2] = w(block.mlp.fc2);
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  const xs = x.toFlatArray(), cs = c.toFlatArray();
  const expected = new Float64Array(N * T * D);
  for (let b = 0; b < N; b++) {
    const mod = linearLoop(cs.subarray(b * D, (b + 1) * D).map(silu), wa, ba, 1, D, 6 * D);
    const [shiftA, scaleA, gateA, shiftM, scaleM, gateM] = [0, 1, 2, 3, 4, 5].map((k) => mod.subarray(k * D, (k + 1) * D));
    const modulate = (h: Float64Array, shift: Float64Array, scale: Float64Array) => h.map((v, i) => v * (1 + scale[i % D]) + shift[i % D]);
    let h = Float64Array.from(xs.subarray(b * T * D, (b + 1) * T * D));
    // attention branch
    const a = modulate(layerNormLoop(h, D, null, null, 1e-6), shiftA, scaleA);
    const qkv = linearLoop(a, wqkv, bqkv, T, D, 3 * D);
    const attnOut = new Float64Array(T * D);
    for (let head = 0; head < H; head++) {
      for (let i = 0; i < T; i++) {
        const scores = Array.from({ length: T }, (_, j) => {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qkv[i * 3 * D + head * hd + d] * qkv[j * 3 * D + D + head * hd + d];
          return s / Math.sqrt(hd);
        });
        const m = Math.max(...scores), e = scores.map((s) => Math.exp(s - m)), z = e.reduce((p, q) => p + q, 0);
        for (let d = 0; d < hd; d++) {
          let o = 0;
          for (let j = 0; j < T; j++) o += (e[j] / z) * qkv[j * 3 * D + 2 * D + head * hd + d];
          attnOut[i * D + head * hd + d] = o;
        }
      }
    }
    const proj = linearLoop(attnOut, wproj, bproj, T, D, D);
    h = h.map((v, i) => v + gateA[i % D] * proj[i]);
    // MLP branch
    const m = modulate(layerNormLoop(h, D, null, null, 1e-6), shiftM, scaleM);
    const mlp = linearLoop(linearLoop(m, w1, b1, T, D, 4 * D).map(geluTanh), w2, b2, T, 4 * D, D);
    h = h.map((v, i) => v + gateM[i % D] * mlp[i]);
    expected.set(h, b * T * D);
  }
  // Every intermediate is stored in f32 (~6e-8 relative) through a few dozen ops.
  assertClose(got, expected, 2e-5, 'DiTBlock');
});

test('adaLN-Zero: with zeroed modulation every block is the identity', () => {
  const model = new DiT(tiny, { seed: 7 });
  const x = randn([2, 16, 64], { seed: 8 }), c = randn([2, 64], { seed: 9 });
  for (const block of model.blocks) {
    assert.notDeepEqual(block.forward(x, c).toFlatArray(), x.toFlatArray(), 'the random init is not the identity');
    const lin = block.adaLN_modulation.at(1) as unknown as { weight: Tensor; bias: Tensor };
    lin.weight.copyFrom(zeros(lin.weight.shape));
    lin.bias.copyFrom(zeros(lin.bias.shape));
    assert.deepEqual(block.forward(x, c).toFlatArray(), x.toFlatArray());
  }
  // The original init zeroes the adaLN layers and the final projection: the output is exactly zero.
  const original = new DiT(tiny, { seed: 7, init: 'original' });
  const out = original.forward(randn([2, 4, 8, 8], { seed: 10 }), fromArray([3, 700], [2]), fromArray([1, 10], [2], 'i64'));
  assert.ok(out.toFlatArray().every((v) => v === 0));
  // ...and its other layers follow initialize_weights: zero Linear biases, N(0, 0.02) label table.
  assert.ok(original.blocks.at(0).attn.qkv.bias!.toFlatArray().every((v) => v === 0));
  const table = original.y_embedder.embedding_table.weight.toFlatArray();
  const std = Math.sqrt(table.reduce((s, v) => s + v * v, 0) / table.length);
  assert.ok(std > 0.017 && std < 0.023, `label table std ${std}`);
});

test('forward: learnSigma doubles the output channels; labels and timesteps change the output', () => {
  const model = new DiT(tiny, { seed: 11 });
  const x = randn([2, 4, 8, 8], { seed: 12 });
  const t = fromArray([10, 500], [2]), y = fromArray([3, 10], [2], 'i64'); // 10 is the null class
  const out = model.forward(x, t, y);
  assert.deepEqual(out.shape, [2, 8, 8, 8]);
  assert.ok(out.toFlatArray().every(Number.isFinite));
  assert.equal(model.nullClass, 10);
  assert.deepEqual(model.y_embedder.embedding_table.weight.shape, [11, 64]);
  assert.deepEqual(model.forward(x, t, y).toFlatArray(), out.toFlatArray(), 'deterministic');
  assert.notDeepEqual(model.forward(x, t, fromArray([4, 10], [2], 'i64')).toFlatArray(), out.toFlatArray());
  assert.notDeepEqual(model.forward(x, fromArray([11, 500], [2]), y).toFlatArray(), out.toFlatArray());
  const plain = new DiT({ ...tiny, learnSigma: false }, { seed: 11 });
  assert.deepEqual(plain.forward(x, t, y).shape, [2, 4, 8, 8]);
  // The same seed builds the same weights.
  assert.deepEqual(new DiT(tiny, { seed: 11 }).forward(x, t, y).toFlatArray(), out.toFlatArray());
});

test('classifier-free guidance: uncond + s·(cond − uncond) on the first 3 channels, both halves', () => {
  const B = 2, C = 8, HW = 4;
  const out = randn([2 * B, C, 2, 2], { seed: 13 });
  const v = out.toFlatArray();
  for (const guided of [3, 4, 8]) {
    const g = applyCfg(out, 4, guided).toFlatArray();
    for (let b = 0; b < 2 * B; b++) for (let ch = 0; ch < C; ch++) for (let s = 0; s < HW; s++) {
      const at = (bb: number) => v[(bb * C + ch) * HW + s];
      const cond = at(b % B), uncond = at((b % B) + B);
      const want = ch < guided ? uncond + 4 * (cond - uncond) : at(b);
      assert.ok(Math.abs(g[(b * C + ch) * HW + s] - want) < 1e-5, `b${b} c${ch} s${s}: ${g[(b * C + ch) * HW + s]} vs ${want}`);
    }
  }
  // forwardWithCfg runs the first half of x for both halves of the labels, then applies that.
  const model = new DiT(tiny, { seed: 14 });
  const x = randn([4, 4, 8, 8], { seed: 15 });
  const half = randn([2, 4, 8, 8], { seed: 15 }); // same seed and count: the first half of x
  assert.deepEqual(half.toFlatArray(), x.toFlatArray().subarray(0, half.size));
  const t = fromArray([900, 900, 900, 900], [4]), y = fromArray([1, 2, 10, 10], [4], 'i64');
  const combined = fromArray([...half.toFlatArray(), ...half.toFlatArray()], [4, 4, 8, 8]);
  const expected = applyCfg(model.forward(combined, t, y), 1.5, 3).toFlatArray();
  assert.deepEqual(model.forwardWithCfg(x, t, y, 1.5).toFlatArray(), expected);
  assert.throws(() => model.forwardWithCfg(randn([3, 4, 8, 8]), t, y, 2), /batch must hold a conditional and an unconditional half, got batch 3/);
});
