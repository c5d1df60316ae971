// Fuzz target: Hugging Face checkpoints (config.json + model.safetensors). Seeded mutations of the
// safetensors header (raw bytes, and JSON-level changes of dtypes, shapes, offsets and names), of
// the data and of config.json (values set to null, 0, negative, huge, wrong types; keys removed;
// rope scaling with missing fields; the whole config replaced) are loaded and run. Each must give a
// specific error or a model whose logits equal the unmutated one's (a changed config value, dtype or
// weight byte may change them, but they must stay finite). Never a crash, a hang or NaN.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Tensor } from '../../src/tensor/tensor.js';
import { encodeSafetensorsBytes } from '../../src/io/safetensors-writer.js';
import { loadLlamaSafetensors, PagedLlama, Sampler } from '../../src/llm/index.js';
import { NonFiniteLogitsError } from '../../src/llm/errors.js';
import { tinyLlamaTensors } from '../llm/llama-fixtures.js';
import { CompiledSequence } from '../llm/compiled-sequence.js';
import { fuzzTarget, mutateBytes, isSpecificError, hasNaN, sameFloats, type FuzzRng, type Outcome } from '../io/fuzz-harness.js';

const IDS = [1, 17, 93, 40, 5];
const V = 97;

interface Fixture { dir: string; weights: Uint8Array; headerEnd: number; config: Record<string, unknown>; logits: Float32Array }
let fixture: Fixture | null = null;

function setup(): Fixture {
  const { D, L, H, Hkv, Fh, w, ones } = tinyLlamaTensors({ seed: 5, dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 2 });
  const hd = D / H;
  const t = new Map<string, Tensor>([['model.embed_tokens.weight', w([V, D], 0.5)], ['model.norm.weight', ones(D)], ['lm_head.weight', w([V, D])]]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    t.set(`${p}input_layernorm.weight`, ones(D));
    t.set(`${p}self_attn.q_proj.weight`, w([H * hd, D]));
    t.set(`${p}self_attn.k_proj.weight`, w([Hkv * hd, D]));
    t.set(`${p}self_attn.v_proj.weight`, w([Hkv * hd, D]));
    t.set(`${p}self_attn.o_proj.weight`, w([D, H * hd]));
    t.set(`${p}post_attention_layernorm.weight`, ones(D));
    t.set(`${p}mlp.gate_proj.weight`, w([Fh, D]).cast('f16'));
    t.set(`${p}mlp.up_proj.weight`, w([Fh, D]).cast('bf16'));
    t.set(`${p}mlp.down_proj.weight`, w([D, Fh]));
  }
  const config = {
    model_type: 'llama', vocab_size: V, hidden_size: D, intermediate_size: Fh, num_hidden_layers: L, num_attention_heads: H,
    num_key_value_heads: Hkv, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 64, tie_word_embeddings: false,
  };
  const weights = encodeSafetensorsBytes(t);
  const headerEnd = 8 + Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-fuzz-st-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  fixture = { dir, weights, headerEnd, config, logits: new Float32Array(0) };
  fixture.logits = runModel(JSON.stringify(config), weights);
  return fixture;
}

function runModel(configText: string, weights: Uint8Array): Float32Array {
  const { dir } = fixture!;
  fs.writeFileSync(path.join(dir, 'config.json'), configText);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), weights);
  const m = loadLlamaSafetensors(dir);
  // the model's own step, eagerly (the compiled step equals it: test/llm/step-engine.test.ts)
  const logits = new CompiledSequence(new PagedLlama(m.config, m.weights, { maxPositions: 16 }), { blockSize: 8, compile: false }).forward(IDS);
  new Sampler({ temperature: 0 }).sample(logits);
  return logits;
}

const VALUES: unknown[] = [null, 0, -1, 1, 2, 3, 7, 1.5, 1e9, 2 ** 53, 'NaN', '4', true, [], {}, 64, 10000, 1e-30];

/** Re-encodes a header object (the data section unchanged, the length field updated). */
function withHeader(fx: Fixture, header: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + (fx.weights.length - fx.headerEnd));
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(fx.weights.subarray(fx.headerEnd), 8 + json.length);
  return out;
}

interface Mutation { config: string; weights: Uint8Array; what: string; mayChange: boolean }

function mutate(rng: FuzzRng, fx: Fixture): Mutation {
  const same = { config: JSON.stringify(fx.config), weights: fx.weights };
  switch (rng.int(6)) {
    case 0: { const m = mutateBytes(rng, fx.weights, 0, fx.headerEnd); return { ...same, weights: m.bytes, what: `header: ${m.what}`, mayChange: false }; }
    case 1: { const m = mutateBytes(rng, fx.weights); return { ...same, weights: m.bytes, what: `file: ${m.what}`, mayChange: m.at >= fx.headerEnd && !m.what.startsWith('truncate') }; }
    case 2: { // one field of one tensor entry
      const header = JSON.parse(new TextDecoder().decode(fx.weights.subarray(8, fx.headerEnd))) as Record<string, { dtype: string; shape: unknown; data_offsets: unknown }>;
      const names = Object.keys(header).filter((n) => n !== '__metadata__');
      const name = rng.pick(names);
      const e = header[name];
      let what: string, mayChange = false;
      switch (rng.int(6)) {
        case 0: e.dtype = rng.pick(['F32', 'F16', 'BF16', 'I32', 'I8', 'U8', 'BOOL', 'I64', 'F64', 'XX', '']); what = `dtype = ${e.dtype}`; mayChange = true; break;
        case 1: { const s = [...(e.shape as number[])]; s[rng.int(s.length)] = rng.pick(VALUES) as number; e.shape = s; what = `shape = ${JSON.stringify(s)}`; break; }
        case 2: e.shape = rng.pick([[], [1], [...(e.shape as number[])].reverse(), [...(e.shape as number[]), 1]]); what = `shape = ${JSON.stringify(e.shape)}`; break;
        case 3: { const o = [...(e.data_offsets as number[])]; o[rng.int(2)] += rng.pick([-4, -1, 1, 4, 1e6]); e.data_offsets = o; what = `data_offsets = ${JSON.stringify(o)}`; break; }
        case 4: { const to = name.replace(/layers\.\d+/, `layers.${rng.pick([0, 1, 2, 9])}`).replace(/weight$/, rng.chance(0.3) ? 'bias' : 'weight'); header[to] = e; if (to !== name) delete header[name]; what = `rename ${name} -> ${to}`; break; }
        default: delete header[name]; what = `delete ${name}`; break;
      }
      return { ...same, weights: withHeader(fx, header), what: `${name}: ${what}`, mayChange };
    }
    case 3: case 4: { // one config value
      const c: Record<string, unknown> = { ...fx.config };
      const key = rng.pick([...Object.keys(c), 'head_dim', 'rope_scaling']);
      if (key === 'rope_scaling') {
        const rs: Record<string, unknown> = { rope_type: rng.pick(['llama3', 'linear', 'yarn', 'default', 7]), factor: rng.pick([8, 0, -1, 'x', null]), low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
        for (const k of Object.keys(rs)) if (rng.chance(0.2)) delete rs[k];
        c.rope_scaling = rng.chance(0.1) ? rng.pick(VALUES) : rs;
      } else if (rng.chance(0.2)) delete c[key];
      else c[key] = rng.pick(VALUES);
      return { ...same, config: JSON.stringify(c), what: `config ${key} = ${JSON.stringify(c[key])}`, mayChange: true };
    }
    default: { // the whole config
      const text = rng.pick(['null', '[]', '"x"', '42', '{', '', '{"model_type": "llama"}', JSON.stringify({ ...fx.config, model_type: 'gpt2' })]);
      return { ...same, config: text, what: `config.json = ${JSON.stringify(text)}`, mayChange: false };
    }
  }
}

fuzzTarget(import.meta.url, {
  name: 'safetensors',
  defaultCases: 250,
  caseTimeoutMs: 5000,
  run(rng): Outcome {
    const fx = fixture ?? setup();
    const m = mutate(rng, fx);
    let logits: Float32Array;
    try {
      logits = runModel(m.config, m.weights);
    } catch (e) {
      if (isSpecificError(e)) return 'refused';
      // A weight corrupted into NaN/Inf is a valid file: refusing its NaN logits is the specific error.
      if (m.mayChange && e instanceof NonFiniteLogitsError) return 'refused';
      throw new Error(`${m.what}: ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
    }
    if (hasNaN(logits)) throw new Error(`${m.what}: NaN logits`);
    if (sameFloats(logits, fx.logits)) return 'same';
    if (!m.mayChange) throw new Error(`${m.what}: the model loaded but its logits changed, without an error`);
    return 'changed';
  },
});
