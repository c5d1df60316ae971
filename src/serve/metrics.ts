// Prometheus metrics named as vLLM names them (so existing vLLM dashboards work), on a registry of
// the server's own (two servers in one process do not collide).
import { Registry, Counter, Gauge, Histogram } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

export interface MetricsSource { numRunning: number; numWaiting: number; kvUsage: number; plansBuilt?: number }

export class ServeMetrics {
  readonly registry = new Registry();
  readonly ttft: Histogram<'model_name'>;
  readonly interToken: Histogram<'model_name'>;
  readonly timePerOutputToken: Histogram<'model_name'>;
  readonly e2e: Histogram<'model_name'>;
  readonly promptTokens: Counter<'model_name'>;
  readonly generationTokens: Counter<'model_name'>;
  readonly preemptions: Counter<'model_name'>;
  readonly prefixQueries: Counter<'model_name'>;
  readonly prefixHits: Counter<'model_name'>;
  readonly success: Counter<'model_name' | 'finished_reason'>;
  /** inferjit's own: how long steps take by what they carry (a running stream waits one step per token). */
  readonly stepDuration: Histogram<'model_name' | 'kind'>;
  readonly stepPrefillTokens: Histogram<'model_name'>;

  /** The `model_name` label: the served model's name (set once it is loaded). */
  modelName: string;

  constructor(modelName: string, source: () => MetricsSource | null) {
    this.modelName = modelName;
    const self = this;
    const registers = [this.registry];
    const labelNames = ['model_name'] as const;
    const gauge = (name: string, help: string, pick: (s: MetricsSource) => number) => new Gauge({
      name, help, labelNames, registers,
      collect() { const s = source(); this.reset(); this.set({ model_name: self.modelName }, s ? pick(s) : 0); },
    });
    gauge('vllm:num_requests_running', 'Sequences running (in the batch) now.', (s) => s.numRunning);
    gauge('vllm:num_requests_waiting', 'Sequences waiting to be scheduled.', (s) => s.numWaiting);
    gauge('vllm:gpu_cache_usage_perc', 'KV cache usage (fraction of blocks in use, 0 to 1; CPU memory here).', (s) => s.kvUsage);
    gauge('vllm:kv_cache_usage_perc', 'KV cache usage (fraction of blocks in use, 0 to 1); newer vLLM name of vllm:gpu_cache_usage_perc.', (s) => s.kvUsage);
    this.ttft = new Histogram({ name: 'vllm:time_to_first_token_seconds', help: 'Time to first token in seconds.', labelNames, registers, buckets: LATENCY_BUCKETS });
    this.interToken = new Histogram({ name: 'vllm:inter_token_latency_seconds', help: 'Time between consecutive tokens in seconds.', labelNames, registers, buckets: TOKEN_BUCKETS });
    this.timePerOutputToken = new Histogram({ name: 'vllm:time_per_output_token_seconds', help: 'Time per output token in seconds (older vLLM name of inter-token latency).', labelNames, registers, buckets: TOKEN_BUCKETS });
    this.e2e = new Histogram({ name: 'vllm:e2e_request_latency_seconds', help: 'End-to-end request latency in seconds.', labelNames, registers, buckets: LATENCY_BUCKETS });
    this.promptTokens = new Counter({ name: 'vllm:prompt_tokens_total', help: 'Prompt tokens processed.', labelNames, registers });
    this.generationTokens = new Counter({ name: 'vllm:generation_tokens_total', help: 'Tokens generated.', labelNames, registers });
    this.preemptions = new Counter({ name: 'vllm:num_preemptions_total', help: 'Sequences preempted (by recompute).', labelNames, registers });
    this.prefixQueries = new Counter({ name: 'vllm:prefix_cache_queries_total', help: 'Prompt tokens looked up in the prefix cache (at admission, and re-admission after a preemption).', labelNames, registers });
    this.prefixHits = new Counter({ name: 'vllm:prefix_cache_hits_total', help: 'Prompt tokens found in the prefix cache (their prefill was skipped).', labelNames, registers });
    this.stepDuration = new Histogram({
      name: 'inferjit:step_duration_seconds', help: "Duration of one batched step, by kind: 'decode' (only running streams' next tokens), 'mixed' (decodes and prefill chunks), 'prefill' (prompts only).",
      labelNames: ['model_name', 'kind'], registers, buckets: TOKEN_BUCKETS,
    });
    this.stepPrefillTokens = new Histogram({
      name: 'inferjit:step_prefill_tokens', help: 'Prompt tokens one step prefilled (bounded by the scheduler\'s prefillChunk while streams decode).',
      labelNames, registers, buckets: [0, 1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048],
    });
    new Gauge({
      name: 'inferjit:plans_built', help: 'Step shapes compiled (native plans lowered) so far; it should not move after the start-up warm-up.', labelNames, registers,
      collect() { const s = source(); this.reset(); this.set({ model_name: self.modelName }, s?.plansBuilt ?? 0); },
    });
    this.success = new Counter({ name: 'vllm:request_success_total', help: 'Finished sequences by finish reason.', labelNames: ['model_name', 'finished_reason'], registers });
  }

  get labels(): { model_name: string } { return { model_name: this.modelName }; }
}
