// Streams a completion from a Llama-family model:
//   npx tsx examples/llm/generate.ts --model model.gguf --prompt "Once upon a time" [--max-tokens 128]
//     [--temperature 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.1 --seed 1]
//     [--engine compiled|native] [--precision fp32|int8|int4 --group-size 32 --kv f32|f16 --threads N --stop "\n\n"]
//     [--chat [--system "You are terse."] [--chat-template template.jinja]]
// --chat sends the prompt as a user message (after an optional system message) through the model's
// chat template (GGUF tokenizer.chat_template / tokenizer_config.json) and prints only the reply.
// A directory argument to --model loads a Hugging Face checkpoint (config.json + safetensors; the
// tokenizer from its tokenizer.json). Ends with prefill and decode tokens/s and the process RSS.
// --engine compiled (the default for --precision fp32) runs the model's own code (src/llm/models/:
// the family the file declares, see loadCausalLM) compiled by inferenceJit, served by StepEngine; quantized file
// weights are expanded to f32 on that path. --engine native (and int8/int4) runs the hand-written
// LlamaEngine, which keeps Q8_0/Q4_0 weights quantized.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import {
  LlamaEngine, chat, generate, loadLlama, packMatrix, packedKernelsFast, tokenizerFromGguf, tokenizerFromHuggingFace, type Tokenizer,
} from '../../src/llm/index.js';
import { loadCausalLM } from '../../src/llm/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    prompt: { type: 'string', default: 'Once upon a time' },
    'max-tokens': { type: 'string', default: '128' },
    temperature: { type: 'string', default: '0' },
    'top-k': { type: 'string', default: '0' },
    'top-p': { type: 'string', default: '1' },
    'min-p': { type: 'string', default: '0' },
    'repeat-penalty': { type: 'string', default: '1' },
    seed: { type: 'string' }, // default: a random seed (printed), so sampled runs differ
    precision: { type: 'string', default: 'fp32' },
    'group-size': { type: 'string', default: '32' },
    kv: { type: 'string', default: 'f32' },
    threads: { type: 'string' },
    stop: { type: 'string', multiple: true },
    'ignore-eos': { type: 'boolean', default: false },
    engine: { type: 'string' },
    chat: { type: 'boolean', default: false },
    system: { type: 'string' },
    'chat-template': { type: 'string' },
  },
});

if (!values.model) {
  console.error('usage: tsx examples/llm/generate.ts --model <file.gguf | hf-dir> --prompt "..." [--max-tokens N] [sampling options]');
  process.exit(2);
}
const precision = values.precision as 'fp32' | 'int8' | 'int4';
if (!['fp32', 'int8', 'int4'].includes(precision)) throw new RangeError(`--precision must be fp32, int8 or int4, got ${values.precision}`);

// chat() drives the LlamaEngine's generate(); the compiled StepEngine has no chat path yet
const engineKind = values.engine ?? (precision === 'fp32' && !values.chat ? 'compiled' : 'native');
if (engineKind !== 'compiled' && engineKind !== 'native') throw new RangeError(`--engine must be compiled or native, got ${values.engine}`);
if (engineKind === 'compiled' && values.chat) throw new RangeError('--chat runs on --engine native for now (the compiled step engine has no chat path yet)');
if (engineKind === 'compiled' && precision !== 'fp32') throw new RangeError(`--engine compiled runs fp32 weights; use --engine native for --precision ${precision}`);
if (engineKind === 'compiled') {
  await runCompiled();
  process.exit(0);
}

async function runCompiled(): Promise<void> {
  const t0 = performance.now();
  // the file's architecture picks the model class (llama, mistral, qwen2, gemma, phi3, gpt2)
  const { model, tokenizer, engine, architecture } = loadCausalLM(values.model!, { kvDtype: values.kv as 'f32' | 'f16' });
  if (!tokenizer) throw new Error(`${values.model}: no tokenizer.json next to the checkpoint; a text prompt needs one`);
  const c = model.config as typeof model.config & { hiddenSize: number; numHeads: number; intermediateSize: number };
  console.error(`model: ${architecture}, ${c.numLayers} layers, dim ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), ffn ${c.intermediateSize}, vocab ${c.vocabSize}; ` +
    `compiled paged step, context ${engine.maxContext}; loaded in ${(performance.now() - t0).toFixed(0)} ms`);
  const prompt = tokenizer.encode(values.prompt!);
  const decoder = tokenizer.streamDecoder({ stripDummyPrefix: false });
  const ac = new AbortController();
  const stops = values.stop ?? [];
  let text = '', first = 0, count = 0;
  const start = performance.now();
  process.stdout.write(values.prompt!);
  const stream = engine.stream(prompt, {
    maxTokens: Number(values['max-tokens']), temperature: Number(values.temperature), topK: Number(values['top-k']), topP: Number(values['top-p']),
    minP: Number(values['min-p']), repetitionPenalty: Number(values['repeat-penalty']), seed: values.seed === undefined ? undefined : Number(values.seed),
    stopTokens: values['ignore-eos'] ? [] : [...tokenizer.eogIds], signal: ac.signal,
  });
  let finish = 'length';
  for (;;) {
    const r = await stream.next();
    if (r.done) { finish = r.value; break; }
    if (count++ === 0) first = performance.now();
    if (tokenizer.eogIds.has(r.value) && !values['ignore-eos']) continue;
    const piece = decoder.push(r.value);
    text += piece;
    const cut = stops.map((st) => text.indexOf(st)).filter((i) => i >= 0).sort((a, b) => a - b)[0];
    if (cut !== undefined) { process.stdout.write(piece.slice(0, Math.max(0, piece.length - (text.length - cut)))); ac.abort(); finish = 'stop-string'; continue; }
    process.stdout.write(piece);
  }
  process.stdout.write(decoder.flush() + '\n');
  const end = performance.now();
  console.error(`prefill: ${prompt.length} tokens, ${((prompt.length / (first - start)) * 1000).toFixed(1)} tok/s (time to first token ${(first - start).toFixed(0)} ms) | ` +
    `decode: ${count} tokens, ${count > 1 ? (((count - 1) / (end - first)) * 1000).toFixed(1) : '0'} tok/s | finish: ${finish} | ${engine.describe()} | ` +
    `rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
}

const t0 = performance.now();
// Q8_0/Q4_0 matrices are packed for the fast kernels as they are read (the file layout is not kept).
const loaded = loadLlama(values.model, precision === 'fp32' && packedKernelsFast() ? { transform: packMatrix } : {});
let tokenizer: Tokenizer;
if (loaded.gguf) tokenizer = tokenizerFromGguf(loaded.gguf);
else {
  const file = path.join(values.model, 'tokenizer.json');
  tokenizer = tokenizerFromHuggingFace(file); // also reads tokenizer_config.json beside it (BOS/EOS flags, chat template)
}
const engine = LlamaEngine.load(loaded, {
  precision,
  groupSize: Number(values['group-size']),
  kvDtype: values.kv as 'f32' | 'f16',
  threads: values.threads ? Number(values.threads) : undefined,
});
const loadMs = performance.now() - t0;
const c = engine.config;
console.error(`model: ${c.numLayers} layers, dim ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), ffn ${c.intermediateSize}, vocab ${c.vocabSize}; ` +
  `weights ${(engine.weightBytes / 2 ** 20).toFixed(1)} MiB (${precision}); loaded in ${loadMs.toFixed(0)} ms`);

const options = {
  maxTokens: Number(values['max-tokens']),
  temperature: Number(values.temperature),
  topK: Number(values['top-k']),
  topP: Number(values['top-p']),
  minP: Number(values['min-p']),
  repetitionPenalty: Number(values['repeat-penalty']),
  seed: values.seed === undefined ? undefined : Number(values.seed),
  stop: values.stop,
  ignoreEos: values['ignore-eos'],
};
let run;
if (values.chat) {
  const messages = [...(values.system ? [{ role: 'system', content: values.system }] : []), { role: 'user', content: values.prompt! }];
  const template = values['chat-template'] ? fs.readFileSync(values['chat-template'], 'utf8') : undefined;
  try {
    run = chat(engine, tokenizer, messages, { ...options, template });
  } catch (e) {
    console.error((e as Error).message); // e.g. no chat template: the message says how to pass one
    process.exit(1);
  }
} else {
  run = generate(engine, tokenizer, values.prompt!, options);
  process.stdout.write(values.prompt!);
}
for await (const chunk of run) process.stdout.write(chunk.text);
const s = run.stats!;
process.stdout.write('\n');
console.error(`prefill: ${s.promptTokens} tokens, ${s.prefillTokensPerSecond.toFixed(1)} tok/s | ` +
  `decode: ${s.generatedTokens} tokens, ${s.decodeTokensPerSecond.toFixed(1)} tok/s | finish: ${s.finishReason} | seed ${s.seed} | ` +
  `rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
