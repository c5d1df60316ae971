// Text generation: prefill the prompt in one native call, then one native call per decode step,
// sampling each next token; streamed as an async iterator of (token, text) chunks, with stop
// tokens, stop strings, a token budget and prefill/decode timings.
import { type Tokenizer } from './tokenizer/index.js';
import { type LlamaEngine } from './engine.js';
import { Sampler, type SamplingOptions, SAMPLING_OPTION_NAMES } from './sampling.js';
import { checkOptionNames } from './errors.js';

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 128). */
  maxTokens?: number;
  /** Token ids that end generation (default: the tokenizer's end-of-generation tokens, or the model's eos). */
  stopTokens?: readonly number[];
  /** Strings that end generation; the text is cut before the first match. */
  stop?: readonly string[];
  /** Keep generating past end-of-generation tokens (benchmarks). */
  ignoreEos?: boolean;
  /** Add the BOS token when encoding a string prompt (default: the tokenizer's setting). */
  addBos?: boolean;
  /** Yield to the event loop every N tokens (default 0: only microtask boundaries, fastest). */
  yieldEvery?: number;
  signal?: AbortSignal;
}

/** Every option generate() accepts (unknown names are errors). */
export const GENERATE_OPTION_NAMES: readonly (keyof GenerateOptions)[] = [
  ...SAMPLING_OPTION_NAMES, 'maxTokens', 'stopTokens', 'stop', 'ignoreEos', 'addBos', 'yieldEvery', 'signal',
];

export interface GenerationChunk {
  token: number;
  /** Text this token completed (may be '' while a multi-byte character or a possible stop string is pending). */
  text: string;
}

export type FinishReason = 'stop-token' | 'stop-string' | 'length' | 'abort' | 'context';

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  /** Prompt tokens per second of the prefill call. */
  prefillTokensPerSecond: number;
  /** Generated tokens per second over the decode steps (the first token comes from the prefill). */
  decodeTokensPerSecond: number;
  finishReason: FinishReason;
  /** The sampling seed (the given one, or the random one drawn): pass it as `seed` to reproduce the run. */
  seed: number;
  tokens: number[];
  text: string;
}

/** A running generation: iterate it for chunks; `stats` is set once iteration ends. */
export class Generation implements AsyncIterable<GenerationChunk> {
  stats: GenerationStats | null = null;
  private started = false;

  constructor(
    private readonly engine: LlamaEngine,
    private readonly tokenizer: Tokenizer | null,
    private readonly prompt: string | readonly number[],
    private readonly options: GenerateOptions,
  ) {
    // Checked at the call, not at the first iteration, so a typo or a bad value fails where it was written.
    checkOptionNames('generate', options, GENERATE_OPTION_NAMES);
    const samplingOptions: Record<string, unknown> = {};
    for (const k of SAMPLING_OPTION_NAMES) if (options[k] !== undefined) samplingOptions[k] = options[k];
    this.sampler = new Sampler(samplingOptions as SamplingOptions);
  }
  private readonly sampler: Sampler;

  async *[Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    if (this.started) throw new Error('generate: a Generation can be iterated once');
    this.started = true;
    yield* this.run();
  }

  /** Runs to the end and returns the stats (text included). */
  async complete(): Promise<GenerationStats> {
    for await (const _ of this) { /* drain */ }
    return this.stats!;
  }

  private async *run(): AsyncGenerator<GenerationChunk> {
    const { engine, tokenizer, options: o } = this;
    let promptIds: number[];
    if (typeof this.prompt === 'string') {
      if (!tokenizer) throw new TypeError('generate: a string prompt needs a tokenizer');
      promptIds = tokenizer.encode(this.prompt, o.addBos === undefined ? {} : { addBos: o.addBos });
    } else {
      promptIds = [...this.prompt];
    }
    if (promptIds.length === 0) throw new RangeError('generate: the prompt has no tokens');
    const maxTokens = o.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`generate: maxTokens must be a non-negative integer, got ${maxTokens}`);
    const stopTokens = new Set<number>(o.ignoreEos ? [] : (o.stopTokens ?? defaultStops(engine, tokenizer)));
    const stops = (o.stop ?? []).filter((s) => s.length > 0);
    const longestStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
    const sampler = this.sampler;
    const decoder = tokenizer?.streamDecoder({ stripDummyPrefix: false }) ?? null;
    const seq = engine.newSequence();
    const history = [...promptIds];
    const generated: number[] = [];
    let text = '';
    let emitted = 0; // chars of `text` already handed out
    let finish: FinishReason = 'length';
    let prefillMs = 0, decodeMs = 0;
    const capacity = Math.min(engine.cache.capacity, engine.config.maxPositionEmbeddings);
    try {
      if (promptIds.length + 1 > capacity) throw new RangeError(`generate: the prompt has ${promptIds.length} tokens; the KV cache holds ${capacity}`);
      let t0 = performance.now();
      let logits = engine.forward(seq, promptIds);
      prefillMs = performance.now() - t0;
      t0 = performance.now();
      for (let i = 0; i < maxTokens; i++) {
        if (o.signal?.aborted) { finish = 'abort'; break; }
        const token = sampler.sample(logits, history);
        if (stopTokens.has(token)) { finish = 'stop-token'; break; }
        generated.push(token);
        history.push(token);
        let piece = decoder ? decoder.push(token) : '';
        text += piece;
        let stopped = false;
        if (stops.length > 0) {
          const from = Math.max(0, emitted - longestStop);
          let cut = -1;
          for (const s of stops) { const at = text.indexOf(s, from); if (at >= 0 && (cut < 0 || at < cut)) cut = at; }
          if (cut >= 0) { text = text.slice(0, cut); stopped = true; }
          // Hold back a tail that could still grow into a stop string.
          const safe = stopped ? text.length : Math.max(emitted, text.length - (longestStop - 1));
          piece = text.slice(emitted, safe);
          emitted = safe;
        } else {
          emitted = text.length;
        }
        yield { token, text: piece };
        if (stopped) { finish = 'stop-string'; break; }
        if (i + 1 === maxTokens) break;
        if (history.length >= capacity) { finish = 'context'; break; }
        if (o.yieldEvery && (i + 1) % o.yieldEvery === 0) await new Promise((r) => setImmediate(r));
        logits = engine.forward(seq, [token]);
      }
      decodeMs = performance.now() - t0;
      if (decoder && finish !== 'stop-string') {
        text += decoder.flush();
        if (emitted < text.length) { yield { token: -1, text: text.slice(emitted) }; emitted = text.length; }
      }
    } finally {
      engine.releaseSequence(seq);
    }
    // Decode steps = generated tokens after the first (the prefill produced the first token's logits).
    const steps = Math.max(0, generated.length - (finish === 'length' ? 1 : 0));
    this.stats = {
      promptTokens: promptIds.length,
      generatedTokens: generated.length,
      prefillMs,
      decodeMs,
      prefillTokensPerSecond: prefillMs > 0 ? (promptIds.length / prefillMs) * 1000 : 0,
      decodeTokensPerSecond: decodeMs > 0 && steps > 0 ? (steps / decodeMs) * 1000 : 0,
      finishReason: finish,
      seed: sampler.seed,
      tokens: generated,
      text,
    };
  }
}

function defaultStops(engine: LlamaEngine, tokenizer: Tokenizer | null): number[] {
  if (tokenizer) return [...tokenizer.eogIds];
  const eos = engine.config.eosTokenId;
  return eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
}

/** Starts generating from `prompt` (text, or token ids). Iterate the result for streamed chunks. */
export function generate(engine: LlamaEngine, tokenizer: Tokenizer | null, prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
  return new Generation(engine, tokenizer, prompt, options);
}

/** Greedy decoding of `count` tokens after `prompt` (ids), synchronously; ignores end-of-generation tokens. */
export function greedyTokens(engine: LlamaEngine, prompt: readonly number[], count: number): number[] {
  const seq = engine.newSequence();
  try {
    const out: number[] = [];
    const greedy = new Sampler({ temperature: 0 }); // refuses NaN logits rather than picking token 0
    let logits = engine.forward(seq, prompt);
    for (let i = 0; i < count; i++) {
      const best = greedy.sample(logits);
      out.push(best);
      if (i + 1 < count) logits = engine.forward(seq, [best]);
    }
    return out;
  } finally {
    engine.releaseSequence(seq);
  }
}
