// LLaVA image-encoder benchmark (issue 16): the CLIP tower (to LLaVA's penultimate layer, class token
// dropped) + the LLaVA-1.5 projector, compiled by inferenceJit to a native cpu plan, against
// onnxruntime-node on our ONNX export of the same traced graph (graphOptimizationLevel 'all', the same
// intra-op thread count), in alternating rounds in one process, batch 1, seeded random weights.
// Shapes: 'B/16-224' (ViT-B/16 at 224, 196 patch rows, projector 768→2048→2048: a small stand-in)
// and 'L/14-336' (llava-1.5-7b's encoder: ViT-L/14 at 336, 576 rows, projector 1024→4096→4096).
// Prints a markdown table and a final JSON line
//   {"bench":"llava","ratio_vs_ort":{"L/14-336": ORT ms / compiled ms, ...},"ms":{...},"threads":N}
// (ratio > 1: the compiled path is faster).
// Run: npx tsx bench/llava.ts [--shapes B/16-224,L/14-336] [--rounds 5]
import { backendInfo, getNumThreads, inferenceJit, randn, type Tensor } from '../src/index.js';
import { trace } from '../src/trace/index.js';
import { exportGraphToBytes } from '../src/onnx/export.js';
import { OrtSession, ortVersion } from '../src/backends/onnxruntime/session.js';
import { graphIO } from '../src/backends/onnxruntime/index.js';
import { LlavaImageEncoder, type ClipVisionConfig } from '../src/llm/vision/clip.js';
import { table, median, pairedRatio, timeRounds } from './lib/timing.js';

process.env.INFERJIT_CACHE = 'memory';

const SHAPES: Record<string, { vision: ClipVisionConfig; text: number }> = {
  'B/16-224': { vision: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 16, numChannels: 3, layerNormEps: 1e-5 }, text: 2048 },
  'L/14-336': { vision: { hiddenSize: 1024, intermediateSize: 4096, numLayers: 24, numHeads: 16, imageSize: 336, patchSize: 14, numChannels: 3, layerNormEps: 1e-5 }, text: 4096 },
};

function parseArgs(argv: string[]): { shapes: string[]; rounds: number } {
  const a = { shapes: Object.keys(SHAPES), rounds: 5 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--shapes') { a.shapes = v.split(','); i++; } else if (argv[i] === '--rounds') { a.rounds = Number(v); i++; } else {
      throw new RangeError(`bench/llava: unknown flag ${argv[i]}; flags: --shapes ${Object.keys(SHAPES).join(',')} --rounds N`);
    }
  }
  for (const s of a.shapes) if (!SHAPES[s]) throw new RangeError(`bench/llava: unknown shape ${s}; shapes: ${Object.keys(SHAPES).join(', ')}`);
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const threads = getNumThreads();
  const info = backendInfo() as { isa?: string };
  console.log(`inferjit ${info.isa ?? 'reference'}, ${threads} threads; onnxruntime-node ${ortVersion()} intraOpNumThreads=${threads}, graphOptimizationLevel 'all'`);
  const rows: (string | number)[][] = [];
  const ratio: Record<string, number> = {}, ms: Record<string, { compiled: number; onnxruntime: number }> = {};
  for (const name of args.shapes) {
    const { vision, text } = SHAPES[name];
    const enc = new LlavaImageEncoder(vision, { featureLayer: -2, selectStrategy: 'default', textHiddenSize: text, projectorAct: 'gelu' }, { seed: 3 });
    const S = vision.imageSize;
    const x = randn([1, 3, S, S], { seed: 1 });
    const spec = [{ shape: ['batch', 3, S, S] as (string | number)[] }];
    const compiled = inferenceJit(enc, { device: 'cpu', fallback: 'error', cache: 'memory', inputSpec: spec }) as unknown as (x: Tensor) => Tensor;
    let t0 = performance.now();
    const out = compiled(x);
    const compileMs = performance.now() - t0;
    const traced = trace((p: Tensor) => enc.forward(p), [x], { inputSpec: spec, module: enc });
    const names = { inputNames: ['pixel_values'], outputNames: ['image_embeds'] };
    const { inputs: ins, outputs: outs } = graphIO(traced.graph, names);
    t0 = performance.now();
    const ort = new OrtSession(exportGraphToBytes(traced.graph, traced.constants, names).bytes,
      { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 }, ins, outs);
    const ortOut = ort.runSync([x])[0];
    const ortSetupMs = performance.now() - t0;
    const a = out.toFlatArray(), b = ortOut.toFlatArray();
    let diff = 0, scale = 0;
    for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
    const contenders = [{ run: (p: Tensor) => compiled(p) }, { run: (p: Tensor) => ort.runSync([p]) }];
    const samples = await timeRounds(contenders, x, args.rounds);
    ort.dispose();
    const c = median(samples[0]), o = median(samples[1]);
    ratio[name] = Math.round(pairedRatio(samples[1], samples[0]) * 100) / 100;
    ms[name] = { compiled: Math.round(c * 10) / 10, onnxruntime: Math.round(o * 10) / 10 };
    rows.push([name, `[1, ${(S / vision.patchSize) ** 2}, ${text}]`, c.toFixed(1), o.toFixed(1), ratio[name].toFixed(2), `${(diff / scale).toExponential(1)}`, (compileMs / 1000).toFixed(1), (ortSetupMs / 1000).toFixed(1)]);
    console.log(`${name}: ${rows[rows.length - 1].join(' | ')}`);
  }
  console.log(table(['encoder', 'output', 'compiled ms', 'ORT ms', 'ORT / compiled', 'max diff / max |out|', 'compile s (1st call)', 'ORT setup s'], rows));
  console.log(JSON.stringify({ bench: 'llava', ratio_vs_ort: ratio, ms, rounds: args.rounds, threads }));
}

await main();
