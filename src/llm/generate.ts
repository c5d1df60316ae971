// Text generation over the generic StepEngine (src/llm/step-engine.ts), so every model class —
// a family loadCausalLM picked, or a decoder the user wrote — and every weight precision generates
// the same way: the engine prefills the prompt and decodes in compiled steps (batched with whatever
// else it is running, off the JavaScript thread), samples with the sequence's own sampler, and
// streams token ids; this file turns them into (token, text) chunks with stop strings, default
// end-of-generation tokens, a token budget, cancellation and prefill/decode timings.
import { randomInt } from 'node:crypto';
import { type Tokenizer } from './tokenizer/index.js';
import { type StepEngine, type SequenceOptions, type StepFinishReason } from './step-engine.js';
import { type SamplingOptions, SAMPLING_OPTION_NAMES, Sampler } from './sampling.js';
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
  signal?: AbortSignal;
}

/** Every option generate() accepts (unknown names are errors). */
export const GENERATE_OPTION_NAMES: readonly (keyof GenerateOptions)[] = [
  ...SAMPLING_OPTION_NAMES, 'maxTokens', 'stopTokens', 'stop', 'ignoreEos', 'addBos', 'signal',
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

/** A running generation: iterate it for chunks; `stats` is set once iteration ends. Breaking out
 *  of the iteration cancels the sequence (its KV pages go back to the engine). */
export class Generation implements AsyncIterable<GenerationChunk> {
  stats: GenerationStats | null = null;
  private started = false;
  private readonly sampling: SamplingOptions & { seed: number };

  constructor(
    private readonly engine: StepEngine,
    private readonly tokenizer: Tokenizer | null,
    private readonly prompt: string | readonly number[],
    private readonly options: GenerateOptions,
  ) {
    // Checked at the call, not at the first iteration, so a typo or a bad value fails where it was written.
    checkOptionNames('generate', options, GENERATE_OPTION_NAMES);
    const sampling: Record<string, unknown> = {};
    for (const k of SAMPLING_OPTION_NAMES) if (options[k] !== undefined) sampling[k] = options[k];
    // a random seed when none is given, drawn here so the stats can report it (pass it back to reproduce)
    if (sampling.seed === undefined) sampling.seed = randomInt(0, 0xffffffff);
    new Sampler(sampling as SamplingOptions); // validates every sampling value now
    this.sampling = sampling as unknown as SamplingOptions & { seed: number };
    const maxTokens = options.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`generate: maxTokens must be a non-negative integer, got ${maxTokens}`);
    if (options.stop !== undefined && (!Array.isArray(options.stop) || options.stop.some((x) => typeof x !== 'string'))) {
      throw new TypeError('generate: stop must be an array of strings');
    }
  }

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
    const stopTokens = new Set<number>(o.ignoreEos ? [] : (o.stopTokens ?? defaultStops(engine, tokenizer)));
    const stops = (o.stop ?? []).filter((s) => s.length > 0);
    const longestStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
    const decoder = tokenizer?.streamDecoder({ stripDummyPrefix: false }) ?? null;
    const generated: number[] = [];
    let text = '';
    let emitted = 0; // chars of `text` already handed out
    let finish: FinishReason = 'length';
    const t0 = performance.now();
    let tFirst = t0, tLast = t0;
    // our own controller: a stop string or a consumer that stops iterating cancels the sequence
    const cancel = new AbortController();
    const forward = (): void => cancel.abort();
    if (o.signal?.aborted) cancel.abort();
    o.signal?.addEventListener('abort', forward, { once: true });
    let ended = false;
    try {
      if (maxTokens > 0 && !cancel.signal.aborted) {
        const seqOptions: SequenceOptions = { ...this.sampling, maxTokens, stopTokens: [...stopTokens], signal: cancel.signal };
        const it = engine.stream(promptIds, seqOptions);
        for (;;) {
          const r = await it.next();
          if (r.done) { finish = r.value as StepFinishReason; ended = true; break; }
          const token = r.value;
          tLast = performance.now();
          if (generated.length === 0) tFirst = tLast;
          if (stopTokens.has(token)) continue; // not part of the output; the engine ends the sequence on it
          generated.push(token);
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
        }
      }
      if (decoder && finish !== 'stop-string') {
        text += decoder.flush();
        if (emitted < text.length) { yield { token: -1, text: text.slice(emitted) }; emitted = text.length; }
      }
    } finally {
      o.signal?.removeEventListener('abort', forward);
      if (!ended) cancel.abort(); // a stop string, an error or a consumer that stopped early
    }
    const prefillMs = generated.length > 0 || finish === 'stop-token' ? tFirst - t0 : 0;
    const decodeMs = tLast - tFirst;
    // decode steps = tokens after the first (the prefill produced the first token's logits)
    const steps = Math.max(0, generated.length + (finish === 'stop-token' ? 1 : 0) - 1);
    this.stats = {
      promptTokens: promptIds.length,
      generatedTokens: generated.length,
      prefillMs,
      decodeMs,
      prefillTokensPerSecond: prefillMs > 0 ? (promptIds.length / prefillMs) * 1000 : 0,
      decodeTokensPerSecond: decodeMs > 0 && steps > 0 ? (steps / decodeMs) * 1000 : 0,
      finishReason: finish,
      seed: this.sampling.seed,
      tokens: generated,
      text,
    };
  }
}

function defaultStops(engine: StepEngine, tokenizer: Tokenizer | null): number[] {
  if (tokenizer) return [...tokenizer.eogIds];
  const eos = (engine.model.config as { eosTokenId?: number | number[] }).eosTokenId;
  return eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
}

/** Starts generating from `prompt` (text, or token ids) on any StepEngine. Iterate the result for streamed chunks. */
export function generate(engine: StepEngine, tokenizer: Tokenizer | null, prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
  return new Generation(engine, tokenizer, prompt, options);
}

/** Greedy decoding of `count` tokens after `prompt` (ids); ignores end-of-generation tokens. */
export async function greedyTokens(engine: StepEngine, prompt: readonly number[], count: number): Promise<number[]> {
  if (count === 0) return [];
  return (await engine.generate(prompt, { temperature: 0, maxTokens: count })).tokens;
}
