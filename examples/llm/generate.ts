// Streams a completion from a causal LM (the model class picked from the file's architecture):
//   npx tsx examples/llm/generate.ts --model model.gguf --prompt "Once upon a time" [--max-tokens 128]
//     [--temperature 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.1 --presence-penalty 0
//      --frequency-penalty 0 --seed 1]
//     [--precision auto|fp32|int8|int4 --group-size 32 --kv f32|f16 --context 2048 --threads N --stop "\n\n"]
//     [--chat [--system "You are terse."] [--chat-template template.jinja]]
// --chat sends the prompt as a user message (after an optional system message) through the model's
// chat template (GGUF tokenizer.chat_template / tokenizer_config.json) and prints only the reply.
// A directory argument to --model loads a Hugging Face checkpoint (config.json + safetensors; the
// tokenizer from its tokenizer.json). Every precision runs the model's own code (src/llm/models/)
// compiled by inferenceJit and served by StepEngine: quantized GGUF weights run as stored (Q8_0,
// Q4_0, Q4_K, Q5_K, Q6_K); --precision int8/int4 quantizes f32/f16 linear weights at load; fp32
// dequantizes everything. Ends with prefill and decode tokens/s, the plan and the process RSS.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { chat, generate, loadCausalLM, type LoadPrecision } from '../../src/llm/index.js';
import { checkThreadCount, setNumThreads } from '../../src/backends/cpu/index.js';

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
    'presence-penalty': { type: 'string', default: '0' },
    'frequency-penalty': { type: 'string', default: '0' },
    seed: { type: 'string' }, // default: a random seed (printed), so sampled runs differ
    precision: { type: 'string', default: 'auto' },
    'group-size': { type: 'string', default: '32' },
    kv: { type: 'string', default: 'f32' },
    context: { type: 'string' },
    threads: { type: 'string' },
    stop: { type: 'string', multiple: true },
    'ignore-eos': { type: 'boolean', default: false },
    chat: { type: 'boolean', default: false },
    system: { type: 'string' },
    'chat-template': { type: 'string' },
  },
});

if (!values.model) {
  console.error('usage: tsx examples/llm/generate.ts --model <file.gguf | hf-dir> --prompt "..." [--max-tokens N] [sampling options]');
  process.exit(2);
}
if (values.threads !== undefined) { const n = Number(values.threads); checkThreadCount(n, '--threads'); setNumThreads(n); }

const t0 = performance.now();
const { model, tokenizer, engine, architecture } = loadCausalLM(values.model, {
  precision: values.precision as LoadPrecision,
  groupSize: Number(values['group-size']),
  kvDtype: values.kv as 'f32' | 'f16',
  maxContext: values.context === undefined ? undefined : Number(values.context),
  maxSeqs: 1,
});
if (!tokenizer) throw new Error(`${values.model}: no tokenizer.json next to the checkpoint; a text prompt needs one`);
const loadMs = performance.now() - t0;
const c = model.config as { numLayers: number; numKvHeads: number; vocabSize: number; hiddenSize?: number; numHeads?: number; intermediateSize?: number };
const paramBytes = (model as unknown as { parameters?(): { data: ArrayBufferView }[] }).parameters?.().reduce((n, t) => n + t.data.byteLength, 0) ?? 0;
console.error(`model: ${architecture}, ${c.numLayers} layers, dim ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), ffn ${c.intermediateSize}, vocab ${c.vocabSize}; ` +
  `parameters ${(paramBytes / 2 ** 20).toFixed(1)} MiB (precision ${values.precision}); context ${engine.maxContext}; loaded in ${loadMs.toFixed(0)} ms`);

const options = {
  maxTokens: Number(values['max-tokens']),
  temperature: Number(values.temperature),
  topK: Number(values['top-k']),
  topP: Number(values['top-p']),
  minP: Number(values['min-p']),
  repetitionPenalty: Number(values['repeat-penalty']),
  presencePenalty: Number(values['presence-penalty']),
  frequencyPenalty: Number(values['frequency-penalty']),
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
console.error(`prefill: ${s.promptTokens} tokens, ${s.prefillTokensPerSecond.toFixed(1)} tok/s (time to first token ${s.prefillMs.toFixed(0)} ms) | ` +
  `decode: ${s.generatedTokens} tokens, ${s.decodeTokensPerSecond.toFixed(1)} tok/s | finish: ${s.finishReason} | seed ${s.seed} | ` +
  `${engine.describe()} | rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
