// Fuzz target: GGUF model files. Seeded mutations of a tiny Llama GGUF's header (metadata, tensor
// infos: bit flips, extreme values, truncation, and targeted changes of type ids, counts, dims,
// offsets and hyper-parameters) are loaded, run and sampled. Each must give a specific error, or a
// model whose logits equal the unmutated model's; only a mutation of a hyper-parameter value or a
// type id may change them, and then they must still be finite. Never a crash, a hang or NaN.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseGguf } from '../../src/io/gguf/index.js';
import { loadLlamaGguf, tokenizerFromGguf, Sampler } from '../../src/llm/index.js';
import { InvalidTokenIdError, NonFiniteLogitsError } from '../../src/llm/errors.js';
import { CompiledSequence } from '../llm/compiled-sequence.js';
import { PagedLlama } from '../../src/llm/index.js';
import { writeTinyLlamaGguf } from '../llm/llama-fixtures.js';
import { ggufLayout, withU32, withU64, withF32 } from '../io/gguf-layout.js';
import { fuzzTarget, mutateBytes, isSpecificError, hasNaN, sameFloats, type FuzzRng, type Outcome } from '../io/fuzz-harness.js';

const IDS = [1, 17, 93, 40, 5];
let fixture: { bytes: Uint8Array; dataOffset: number; semantic: [number, number][]; layout: ReturnType<typeof ggufLayout>; logits: Float32Array } | null = null;

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-fuzz-gguf-'));
  try {
    const file = path.join(dir, 'm.gguf');
    writeTinyLlamaGguf(file, { seed: 21, dim: 32, heads: 4, kvHeads: 2, ffn: 64, layers: 2 });
    const bytes = new Uint8Array(fs.readFileSync(file));
    const f = parseGguf(bytes);
    const layout = ggufLayout(bytes);
    // Values whose change gives a different but valid model: hyper-parameters and type ids.
    const semantic: [number, number][] = [];
    for (const [k, v] of layout.values) if (k.startsWith('llama.')) semantic.push([v.at, v.at + 8]);
    for (const t of layout.tensors.values()) semantic.push([t.typeAt, t.typeAt + 4]);
    fixture = { bytes, dataOffset: f.dataOffset, semantic, layout, logits: runModel(bytes) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return fixture;
}

function runModel(bytes: Uint8Array): Float32Array {
  const f = parseGguf(bytes, 'mutated.gguf');
  const tok = tokenizerFromGguf(f);
  const ids = tok.encode('the quick brown fox');
  for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) throw new Error(`tokenizer produced id ${id}`);
  tok.decode(ids);
  const m = loadLlamaGguf(f);
  // the model's own step, eagerly (the compiled step equals it: test/llm/step-engine.test.ts)
  const logits = new CompiledSequence(new PagedLlama(m.config, m.weights, { maxPositions: 16 }), { blockSize: 8, compile: false }).forward(IDS);
  new Sampler({ temperature: 0 }).sample(logits); // NaN logits would raise here
  return logits;
}

/** One mutation: raw bytes in the header, or a targeted field change. */
function mutate(rng: FuzzRng, fx: NonNullable<typeof fixture>): { bytes: Uint8Array; at: number; end: number; what: string } {
  const { bytes, layout } = fx;
  const tensors = [...layout.tensors.entries()];
  const values = [...layout.values.entries()].filter(([k]) => k.startsWith('llama.'));
  switch (rng.int(6)) {
    case 0: case 1: return mutateBytes(rng, bytes, 0, fx.dataOffset);
    case 2: { // a tensor's type id
      const [name, t] = rng.pick(tensors);
      const id = rng.pick([0, 1, 2, 3, 6, 7, 8, 10, 12, 14, 24, 25, 26, 27, 28, 30, 4, 5, 31, 39, 40, 1000]);
      return { bytes: withU32(bytes, t.typeAt, id), at: t.typeAt, end: t.typeAt + 4, what: `type of ${name} = ${id}` };
    }
    case 3: { // the tensor count, a dim or an offset
      const which = rng.int(3);
      if (which === 0) { const v = tensors.length + rng.pick([-2, -1, 1, 2]); return { bytes: withU64(bytes, layout.tensorCountAt, v), at: layout.tensorCountAt, end: layout.tensorCountAt + 8, what: `tensor_count = ${v}` }; }
      const [name, t] = rng.pick(tensors);
      const at = which === 1 ? t.typeAt - 8 : t.offsetAt; // the last dim, or the data offset
      const v = rng.pick([0, 1, 16, 32, 64, 2 ** 31, 2 ** 40]);
      return { bytes: withU64(bytes, at, v), at, end: at + 8, what: `${which === 1 ? 'last dim' : 'offset'} of ${name} = ${v}` };
    }
    case 4: { // a hyper-parameter value
      const [key, v] = rng.pick(values);
      if (v.type === 6) {
        const x = rng.pick([0, -1, NaN, Infinity, -Infinity, 1e-30, 1e30, 3.5]);
        return { bytes: withF32(bytes, v.at, x), at: v.at, end: v.at + 4, what: `${key} = ${x}` };
      }
      const x = rng.pick([0, 1, 2, 3, 5, 7, 16, 1000, 0x7fffffff, 0xffffffff]);
      return { bytes: withU32(bytes, v.at, x), at: v.at, end: v.at + 4, what: `${key} = ${x}` };
    }
    default: return mutateBytes(rng, bytes); // anywhere, truncation included
  }
}

fuzzTarget(import.meta.url, {
  name: 'gguf',
  defaultCases: 300,
  caseTimeoutMs: 5000,
  run(rng, index): Outcome {
    const fx = fixture ?? setup();
    const m = mutate(rng, fx);
    const inData = m.at >= fx.dataOffset && !m.what.startsWith('truncate');
    let logits: Float32Array;
    try {
      logits = runModel(m.bytes);
    } catch (e) {
      if (isSpecificError(e, [InvalidTokenIdError])) return 'refused';
      // A weight corrupted into NaN/Inf is valid GGUF (llama.cpp does not check data either): the
      // sampler's refusal of the NaN logits is the specific error then.
      if (inData && e instanceof NonFiniteLogitsError) return 'refused';
      throw new Error(`${m.what}: ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
    }
    if (hasNaN(logits)) throw new Error(`${m.what}: NaN logits`);
    if (sameFloats(logits, fx.logits)) return 'same';
    const semantic = fx.semantic.some(([a, b]) => m.at < b && m.end > a);
    if (!semantic && !inData) throw new Error(`case ${index}: ${m.what}: the model loaded but its logits changed, without an error`);
    return 'changed';
  },
});
