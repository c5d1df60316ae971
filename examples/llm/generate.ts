// Streams a completion from a Llama-family model:
//   npx tsx examples/llm/generate.ts --model model.gguf --prompt "Once upon a time" [--max-tokens 128]
//     [--temperature 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.1 --seed 1]
//     [--precision fp32|int8|int4 --group-size 32 --kv f32|f16 --threads N --stop "\n\n"]
//     [--chat [--system "You are terse."] [--chat-template template.jinja]]
// --chat sends the prompt as a user message (after an optional system message) through the model's
// chat template (GGUF tokenizer.chat_template / tokenizer_config.json) and prints only the reply.
// A directory argument to --model loads a Hugging Face checkpoint (config.json + safetensors; the
// tokenizer from its tokenizer.json). Ends with prefill and decode tokens/s and the process RSS.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import {
  LlamaEngine, chat, generate, loadLlama, packMatrix, packedKernelsFast, tokenizerFromGguf, tokenizerFromHuggingFace, type Tokenizer,
} from '../../src/llm/index.js';

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
