// quantize(model, options): post-training quantization of a paged decoder (src/llm/models).
//  1. calibrate: trace the step, expose every linear's input and every KV write (observer pass),
//     run the calibration tokens through the graph, collect statistics (calibrate.ts);
//  2. per site (linears sharing one activation), in graph order: the shift z (OS+), the smoothing
//     factors s (SmoothQuant, PSS or AWQ, search.ts), folded exactly: W ← W·diag(s), b ← b + W z,
//     the producer's weight ← /s (an RMSNorm gain, or the rows of the SwiGLU up projection), or,
//     with no producer to fold into, a mul by 1/s the activation quantizer would absorb;
//     with option rotate, a rotated site (the down projection's input, or every site) is then
//     multiplied by a Hadamard H in the graph and its smoothed weights by H (rotation.ts); its
//     factors are searched with the rotation in the site's error;
//  3. every consumer weight quantized (absmax round-to-nearest or GPTQ on the transformed
//     Hessian), after all folds so no quantized weight is rescaled;
//  4. KV cache: calibrated per-head scales for each cache write;
// and returns a QuantizedDecoder running the rewritten graph (decoder.ts).
import { Tensor } from '../tensor/tensor.js';
import { fromArray } from '../tensor/creation.js';
import { calibrate, type QuantizableDecoder, type LinearStats } from './calibrate.js';
import { checkQuantizeOptions, kvOnPools, w8a8Applies, type QuantizeOptions, type QuantizeProgress } from './options.js';
import { smoothQuantFactors, pssSearch, awqSearch, weightColumnAbsMax, siteError, type SiteProblem } from './search.js';
import { absmaxQuantize, gptqQuantize, dequantMatrix, type QuantizedMatrix } from './gptq.js';
import { formatMax } from './numerics.js';
import { packedWeight, encodeCodes } from './packing.js';
import { isNativeAvailable, getEagerBackend } from '../ops/dispatch.js';
import { QuantizedDecoder, type SiteReport } from './decoder.js';
import { WorkingParams } from './working-params.js';
import type { QuantPlan, SitePlan } from './graph-passes.js';
import { withoutWeightPacking } from '../backends/cpu/packed.js';
import { selectPssSites, type PssBuild, type SelectOptions } from './pss-select.js';
import { hadamardMatrix, rotateWeight, rotateRow } from './rotation.js';
import { W8_ACT_GROUP } from './w8-linear-op.js';

const f32 = (v: ArrayLike<number>, shape: number[]): Tensor => fromArray(v instanceof Float32Array ? v : Float32Array.from(v), shape, 'f32');

/** `selection` tunes PSS's model-level step (pss-select.ts); its default is the fast exact path. */
export function quantize(model: QuantizableDecoder, options: QuantizeOptions, selection: SelectOptions = {}): QuantizedDecoder {
  // calibration and scoring run every weight more than once: caching their packed forms would hold a
  // second copy of the model in native memory for the whole call
  return withoutWeightPacking(() => quantizeModel(model, options, selection));
}

function quantizeModel(model: QuantizableDecoder, options: QuantizeOptions, selection: SelectOptions): QuantizedDecoder {
  const checked = checkQuantizeOptions(options);
  const native = isNativeAvailable() && getEagerBackend() !== 'reference';
  const o = { ...checked, kernel: checked.kernel ?? defaultKernel(checked, native) };
  if (o.kernel === 'qgemm' && !native) {
    throw new Error("quantize: option \"kernel\" 'qgemm' needs the native CPU kernels (the reference quant_linear does not quantize activations); build them with `npm run build:native`, or use kernel 'simulated'");
  }
  const progress: Progress | null = options.onProgress ? (phase, done, total) => options.onProgress!({ phase, done, total }) : null;
  const stats = calibrate(model, o.calibration, { hessian: o.method === 'gptq', maxSamples: o.maxSamples, rotate: o.rotate, lmHead: o.lmHead, onSequence: progress && ((done, total) => progress('calibrate', done, total)) });
  // build() re-validates the options it is given: hand it the resolved kernel, not the caller's
  // undefined (and not the progress callback: the options are kept with the quantized model)
  const { onProgress: _, ...unobserved } = options;
  const resolved: QuantizeOptions = { ...unobserved, kernel: o.kernel as QuantizeOptions['kernel'] };
  if (o.smoothing !== 'pss') return build(model, resolved, stats, null, progress);
  // PSS: the per-site searches once (cached), then the model-level choice per site (pss-select.ts).
  // Only the first build runs the searches and quantizes every weight: it alone reports 'sites' and 'weights'.
  const cache: PssBuild['cache'] = new Map();
  return selectPssSites(model, o.calibration, (choice, memo) => build(model, resolved, stats, { choice, cache, memo }, cache.size === 0 ? progress : null),
    selection, progress && ((done, total) => progress('select', done, total)));
}

/** quantize()'s progress callback, one argument per field. */
type Progress = (phase: QuantizeProgress['phase'], done: number, total: number) => void;

/** The kernel when none is asked for: the real 8-bit kernels where they apply and are built, else
 *  simulated quantization (per-group activation scales run on the w8a8 kernel only: its reference
 *  form where the native one is not built); none with no linear quantized (weights and activations
 *  null): an int8 KV cache then runs on the engine's int8 pools (kvOnPools). */
function defaultKernel(o: QuantizeOptions, native: boolean): QuantizeOptions['kernel'] {
  if (o.weights === null && o.activations === null) return undefined;
  return o.activationScheme === 'per-group' || (native && w8a8Applies(o)) ? 'w8a8' : 'simulated';
}

/** quantize() after calibration; for PSS, `pss` says which sites take PSS's factors (the others SmoothQuant's). */
function build(model: QuantizableDecoder, options: QuantizeOptions, stats: ReturnType<typeof calibrate>, pss: PssBuild | null, progress: Progress | null): QuantizedDecoder {
  const o = checkQuantizeOptions(options);
  const widest = Math.max(...stats.linears.map((l) => l.K));
  if (o.method === 'gptq' && stats.tokens < widest) {
    // fewer samples than channels: X^T X is rank-deficient and GPTQ fits the calibration set's subspace
    throw new RangeError(`quantize: method 'gptq' needs at least as many calibration tokens as the widest linear input (${widest} channels), got ${stats.tokens}; add calibration sequences (several times ${widest} tokens is better) or use method 'absmax'`);
  }
  const work = new WorkingParams(model.namedParameters());
  const memo = pss?.memo ?? null;
  const added = new Map<string, Tensor>();
  const group = o.weights === 'int4' ? int4Group(stats.linears, o.groupSize) : 32;

  const plan: QuantPlan = { sites: [], kv: null };
  const report: SiteReport[] = [];
  const hessians = new Map<string, Float64Array>();
  for (const [index, st] of stats.linears.entries()) {
    const K = st.K;
    const z = o.shift ? Float64Array.from(st.min, (mn, j) => (Number.isFinite(mn) ? (mn + st.max[j]) / 2 : 0)) : null;
    const aAbs = z ? Float64Array.from(z, (zj, j) => Math.max(Math.abs(st.max[j] - zj), Math.abs(st.min[j] - zj))) : st.absMax;
    for (const w of st.weights) {
      const shape = work.shape(w);
      if (shape[1] !== K) throw new Error(`quantize: weight "${w}" is [${shape}] but its input has ${K} channels`);
      if (o.weights && K % (o.weights === 'int4' ? group : 1) !== 0) throw new RangeError(`quantize: weight "${w}" has K = ${K}, not a multiple of the int4 group ${group}`);
    }
    // the search problem (sampled rows, the weights' current values) and its scorer, built when a
    // search runs: a PSS trial build reuses the searches' results and reads no weight here
    let problem: SiteProblem | null = null;
    const problemOf = (): SiteProblem => {
      if (problem) return problem;
      const R = st.samples.length;
      const X = new Float32Array(R * K);
      st.samples.forEach((row, r) => X.set(row, r * K));
      if (z) for (let i = 0; i < X.length; i++) X[i] -= z[i % K];
      return problem = {
        K, R, X, weights: st.weights.map((w) => ({ W: work.values(w), N: work.shape(w)[0] })),
        act: o.activations ? { format: o.activations, perTensor: o.activationScheme === 'per-tensor', absMax: aAbs, block: o.kernel === 'qgemm' || o.activationScheme === 'per-group' ? W8_ACT_GROUP : undefined } : null,
        weight: o.weights ? { format: o.weights, group } : null,
        rotate: st.rotated,
      };
    };
    // one scorer per site: it computes the reference outputs and keeps its scratch buffers once
    let scorer: ((s: Float64Array) => number) | null = null;
    const score = (f: Float64Array): number => (scorer ??= siteError(problemOf()))(f);
    let s = new Float64Array(K).fill(1);
    let alphas: number[] = [];
    let error: number | null = null;
    let baselineError: number | null = null;
    const ones = new Float64Array(K).fill(1);
    if (o.smoothing === 'smoothquant') {
      baselineError = score(ones);
      s = smoothQuantFactors(aAbs, weightColumnAbsMax(problemOf()), o.alpha);
      alphas = [o.alpha];
      error = score(s);
    } else if (o.smoothing === 'pss') {
      let c = pss!.cache.get(st.key);
      if (!c) {
        const sq = smoothQuantFactors(aAbs, weightColumnAbsMax(problemOf()), o.alpha);
        c = { pss: pssSearch(problemOf(), aAbs, o.pieces, o.alpha, { error: score }), sq, sqError: score(sq), baselineError: score(ones) };
        pss!.cache.set(st.key, c);
      }
      baselineError = c.baselineError;
      const choice = pss!.choice(index);
      if (choice === 'pss') { s = c.pss.s; alphas = c.pss.alphas; error = c.pss.error; } else if (choice === 'smoothquant') { s = c.sq; alphas = [o.alpha]; error = c.sqError; } else { alphas = []; error = baselineError; }
    } else if (o.method === 'awq') {
      baselineError = score(ones);
      const meanAbs = z ? aAbs : Float64Array.from(st.sumAbs, (v) => v / Math.max(1, st.rows));
      const r = awqSearch(problemOf(), meanAbs, { error: score });
      s = r.s; alphas = [r.alpha]; error = r.error;
    }
    // what the edits below are named by in the parameters' provenance: the site and its factors' source
    const tag = (kind: string): string => `${kind}@${index}:${pss ? pss.choice(index) : o.smoothing}`;
    const sorted = [...aAbs].sort((a, b) => a - b);
    report.push({ key: st.key, fold: st.fold.kind, rotated: st.rotated, alphas, error, baselineError, outlierRatio: sorted[K - 1] / Math.max(1e-30, sorted[Math.floor(K / 2)]) });

    const site: SitePlan = { key: st.key };
    const smoothed = s.some((v) => v !== 1);
    // the shift's bias correction uses the weights before smoothing: W (x − z) + (b + W z) = W x + b
    if (z) {
      site.biases = {};
      st.weights.forEach((w, c) => {
        const W = work.values(w), N = work.shape(w)[0];
        const b = new Float32Array(N);
        const old = st.biases[c] ? work.values(st.biases[c]!) : null;
        for (let n = 0; n < N; n++) {
          let acc = old ? old[n] : 0;
          for (let k = 0; k < K; k++) acc += W[n * K + k] * z[k];
          b[n] = acc;
        }
        const name = `quant.${w}.bias`;
        added.set(name, f32(b, [N]));
        site.biases![w] = name;
      });
      const name = `quant.${st.weights[0]}.shift`;
      added.set(name, f32(Float64Array.from(z, (zj, j) => zj / s[j]), [K]));
      site.shift = name;
    }
    if (smoothed) {
      const f = s;
      for (const w of st.weights) {
        work.edit(w, tag('columns'), (W) => {
          for (let r = 0; r < W.length; r += K) for (let k = 0; k < K; k++) W[r + k] *= f[k];
        });
      }
      if (st.fold.kind === 'norm') {
        work.edit(st.fold.param, tag('gain'), (g) => { for (let j = 0; j < K; j++) g[j] /= f[j]; });
      } else if (st.fold.kind === 'linear') {
        const Kp = work.shape(st.fold.weight)[1];
        work.edit(st.fold.weight, tag('rows'), (P) => { for (let n = 0; n < K; n++) for (let k = 0; k < Kp; k++) P[n * Kp + k] /= f[n]; });
        // the producer's bias scales with its rows: its own, or the one an earlier site's shift gave it
        const shifted = added.get(`quant.${st.fold.weight}.bias`);
        const divide = (bias: Float32Array): void => { for (let n = 0; n < K; n++) bias[n] /= f[n]; };
        if (shifted) divide(shifted.data as Float32Array);
        else if (st.fold.bias) work.edit(st.fold.bias, tag('rows'), divide);
      } else {
        const name = `quant.${st.weights[0]}.inverse_scale`;
        added.set(name, f32(Float64Array.from(s, (v) => 1 / v), [K]));
        site.inverseScale = name;
      }
    }
    // rotation after the smoothing and the shift: x' = ((x − z) / s)·H, W' = W·diag(s)·H, so
    // x'·W'ᵀ = ((x − z) / s)·H·Hᵀ·diag(s)·Wᵀ = (x − z)·Wᵀ. Smoothing comes first because the outliers
    // it removes are per channel, in x's own basis (after H one channel's outlier is spread over all
    // of them and no per-channel factor can take it out again); the rotation then evens out what is
    // left within each token, where the per-token int8 scale is set.
    if (st.rotated) {
      for (const w of st.weights) {
        const N = work.shape(w)[0];
        work.edit(w, tag('rotation'), (W) => rotateWeight(W, N, K));
      }
      const name = `quant.${st.weights[0]}.rotation`;
      added.set(name, fromArray(hadamardMatrix(K), [K, K], 'f32'));
      site.rotation = name;
    }
    // qgemm (per 32 values) and w8a8 (per token, or per 32 values) quantize activations inside the kernel: no fake_quant node
    if (o.activations && o.kernel !== 'qgemm' && o.kernel !== 'w8a8') {
      if (o.activationScheme === 'per-tensor') {
        let m = 0;
        for (let j = 0; j < K; j++) m = Math.max(m, aAbs[j] / s[j]);
        const name = `quant.${st.weights[0]}.act_scale`;
        added.set(name, f32([Math.fround(m / formatMax(o.activations)) || 1e-30], [1]));
        site.act = { format: o.activations, granularity: 'static', scale: name };
      } else site.act = { format: o.activations, granularity: 'token' };
    }
    if (st.hessian) hessians.set(st.key, transformHessian(st, z, s, st.rotated));
    plan.sites.push(site);
    progress?.('sites', index + 1, stats.linears.length);
  }

  // weights last: every fold above has landed in the f32 values
  // (a PSS trial build takes each weight whose provenance an earlier build saw from the memo)
  const quantized = new Map<string, QuantizedMatrix>();
  const replaced = new Map<string, Tensor>();
  // the kernels' tensors of each weight (packed panels, or codes and scales): kept apart from
  // `added`, whose small tensors are matched by content below; these come from the memo as they are
  const kernelTensors = new Map<string, Tensor>();
  const onQgemm = (q: QuantizedMatrix): q is QuantizedMatrix & { format: 'int8' | 'int4' } => o.kernel === 'qgemm' && (q.format === 'int8' || q.format === 'int4');
  const onW8a8 = (q: QuantizedMatrix): q is QuantizedMatrix & { format: 'int8' | 'fp8' } => o.kernel === 'w8a8' && (q.format === 'int8' || q.format === 'fp8');
  if (o.weights) {
    const total = stats.linears.reduce((n, st) => n + st.weights.length, 0);
    let done = 0;
    for (const st of stats.linears) {
      for (const w of st.weights) {
        const [N, K] = work.shape(w);
        const make = (): QuantizedWeight => {
          const W = work.values(w);
          const H = hessians.get(st.key);
          const values = new Float32Array(N * K);
          const q = o.method === 'gptq' && H ? dequantInto(gptqQuantize(W, N, K, H, o.weights!, group), values) : absmaxQuantize(W, N, K, o.weights!, group, { values });
          work.release(w); // the folded f32 is consumed: the build keeps q and its dequantized values
          // the tensor owns `values` (no copy: at 1B scale a copy is seconds of page faults)
          const made: QuantizedWeight = { q, dequantized: Tensor.fromStorage('f32', [N, K], values), added: [] };
          if (onQgemm(q)) made.added.push([`quant.${w}.packed`, packedWeight(q)]);
          if (onW8a8(q)) made.added.push([`quant.${w}.codes`, encodeCodes(q)], [`quant.${w}.scales`, f32(q.scales, [N])]);
          return made;
        };
        const { q, dequantized, added: tensors } = memo
          ? memo.get(w, `${o.method} ${work.provenance(w)}`, make, (m) => [m.dequantized, ...m.added.map(([, t]) => t)])
          : make();
        quantized.set(w, q);
        replaced.set(w, dequantized);
        for (const [name, t] of tensors) kernelTensors.set(name, t);
        if (onQgemm(q)) {
          (plan.quantLinear ??= {})[w] = { param: `quant.${w}.packed`, format: q.format, N, K, group: q.group };
        }
        if (onW8a8(q)) {
          (plan.w8Linear ??= {})[w] = { codes: `quant.${w}.codes`, scales: `quant.${w}.scales`, weights: q.format, activations: o.activations ?? 'none', ...(o.activationScheme === 'per-group' ? { actGroup: W8_ACT_GROUP } : {}) };
        }
        progress?.('weights', ++done, total);
      }
    }
  }
  for (const [i, kv] of stats.kv.entries()) {
    // int8 on the real kernels: the engine's int8 page pools quantize each row at write (kvDtype below), no fake_quant
    if (!o.kvCache || kvOnPools(o)) break;
    plan.kv ??= { format: o.kvCache, scales: [] };
    const name = `quant.kv.${i}.scale`;
    added.set(name, f32(Array.from(kv.absMax, (a) => Math.fround(a / formatMax(o.kvCache!)) || 1e-30), [kv.heads]));
    plan.kv.scales.push(name);
  }

  const params = new Map<string, Tensor>();
  // every weight quantized (a memo hit reads none) and every other parameter read or edited
  for (const name of new Set([...replaced.keys(), ...work.names()])) {
    const make = (): Tensor => Tensor.fromStorage('f32', work.shape(name), work.values(name)); // the build's own copy
    params.set(name, replaced.get(name) ?? (memo ? memo.get(name, work.provenance(name), make, (t) => [t]) : make()));
  }
  for (const [name, t] of added) params.set(name, memo ? memo.stable(name, t) : t);
  for (const [name, t] of kernelTensors) params.set(name, t);
  const { calibration, ...rest } = options;
  return new QuantizedDecoder(model, plan, params, quantized,
    { ...rest, activationScheme: o.activationScheme, kernel: o.kernel, alpha: o.alpha, pieces: o.pieces, maxSamples: o.maxSamples, groupSize: o.weights === 'int4' ? group : undefined, calibrationTokens: stats.tokens }, report);
}

const dequantInto = (q: QuantizedMatrix, values: Float32Array): QuantizedMatrix => { dequantMatrix(q, values); return q; };

/** A weight's quantization: codes and scales, the dequantized f32 tensor, and the kernel's tensors (packed panels, or codes and scales). */
interface QuantizedWeight { q: QuantizedMatrix; dequantized: Tensor; added: [string, Tensor][] }

/** Largest int4 group (128, 64, 32) dividing every quantized linear's K, or the one asked for. */
function int4Group(linears: LinearStats[], asked: number | undefined): number {
  const Ks = [...new Set(linears.map((l) => l.K))];
  if (asked !== undefined) {
    const bad = Ks.find((K) => K % asked !== 0);
    if (bad !== undefined) throw new RangeError(`quantize: option "groupSize" ${asked} does not divide a linear's input size ${bad}; use 32, 64 or 128 dividing ${Ks.join(', ')}`);
    return asked;
  }
  const g = [128, 64, 32].find((c) => Ks.every((K) => K % c === 0));
  if (!g) throw new RangeError(`quantize: int4 weights need input sizes divisible by 32; this model has ${Ks.join(', ')}`);
  return g;
}

/** Σ x' x'ᵀ for the transformed input x' = (x − z) / s (then ·H when rotated: Hᵀ·Σ·H), from Σ x xᵀ and Σ x. */
function transformHessian(st: LinearStats, z: Float64Array | null, s: Float64Array, rotated: boolean): Float64Array {
  const K = st.K, H = Float64Array.from(st.hessian!), n = st.rows;
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      let h = H[i * K + j];
      if (z) h += -st.sum[i] * z[j] - z[i] * st.sum[j] + n * z[i] * z[j];
      H[i * K + j] = h / (s[i] * s[j]);
    }
  }
  if (rotated) {
    // x'·Had: Σ ← Hadᵀ·Σ·Had = Had·Σ·Had (Sylvester's matrix is symmetric): rotate Σ's rows,
    // transpose, rotate the rows again, transpose back
    const row = new Float64Array(K);
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < K; i++) {
        for (let j = 0; j < K; j++) row[j] = H[i * K + j];
        rotateRow(row, K);
        for (let j = 0; j < K; j++) H[i * K + j] = row[j];
      }
      for (let i = 0; i < K; i++) for (let j = i + 1; j < K; j++) { const t = H[i * K + j]; H[i * K + j] = H[j * K + i]; H[j * K + i] = t; }
    }
  }
  return H;
}
