// A decoder none of the shipped families is, written here as a user would: GPT-J-style parallel
// blocks (attention and MLP both read one LayerNorm of the residual and are added together), rotary
// on only the first quarter of each head with adjacent-pair rotation, MQA, a biased untied head.
// It uses the library's building blocks (nn modules, pagedSelfAttention over the paged KV cache),
// is decorated with @inferenceJit, and must compile to one native plan with no graph break
// (fallback: 'error' makes a break throw; describe() must say "cpu plan"), giving the eager
// model's tokens when StepEngine drives it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nn, F, ops, inferenceJit, jitDescribe, jitStats, type Tensor } from '../../src/index.js';
import { StepEngine, type StepInputs } from '../../src/llm/index.js';
import { pagedSelfAttention, ropeTables, type AttentionShape } from '../../src/llm/models/index.js';
import { planAddon } from '../../src/backends/cpu/plan/native.js';

const V = 97, D = 48, H = 4, HD = D / H, FF = 96, LAYERS = 3;
const MAX_CONTEXT = 64, BLOCK = 16;
const ATTN: AttentionShape = { numHeads: H, numKvHeads: 1, headDim: HD, ropeDim: HD / 4 * 2, ropeInterleaved: true };

class ParallelBlock extends nn.Module {
  ln: nn.LayerNorm;
  q: nn.Linear; k: nn.Linear; v: nn.Linear; o: nn.Linear;
  fcIn: nn.Linear; fcOut: nn.Linear;
  constructor(seed: number) {
    super();
    this.ln = new nn.LayerNorm(D);
    this.q = new nn.Linear(D, D, { bias: false, seed: seed + 1 });
    this.k = new nn.Linear(D, HD, { bias: false, seed: seed + 2 });
    this.v = new nn.Linear(D, HD, { bias: false, seed: seed + 3 });
    this.o = new nn.Linear(D, D, { bias: false, seed: seed + 4 });
    this.fcIn = new nn.Linear(D, FF, { seed: seed + 5 });
    this.fcOut = new nn.Linear(FF, D, { seed: seed + 6 });
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, step: StepInputs, kPool: Tensor, vPool: Tensor): Tensor {
    const h = this.ln.forward(x);
    const attn = this.o.forward(pagedSelfAttention(this.q.forward(h), this.k.forward(h), this.v.forward(h), cos, sin, ATTN, step, kPool, vPool));
    const mlp = this.fcOut.forward(F.gelu(this.fcIn.forward(h), 'tanh'));
    return x.add(attn).add(mlp);
  }
}

class ParallelDecoder extends nn.Module {
  readonly config = { numLayers: LAYERS, numKvHeads: 1, headDim: HD, vocabSize: V };
  readonly maxPositions = MAX_CONTEXT;
  embed: nn.Embedding;
  blocks: nn.ModuleList<ParallelBlock>;
  lnF: nn.LayerNorm;
  head: nn.Linear;
  cos: Tensor; sin: Tensor;
  constructor() {
    super();
    this.embed = new nn.Embedding(V, D, { seed: 1 });
    this.blocks = new nn.ModuleList(Array.from({ length: LAYERS }, (_, l) => new ParallelBlock(10 * (l + 1))));
    this.lnF = new nn.LayerNorm(D);
    this.head = new nn.Linear(D, V, { seed: 99 });
    ({ cos: this.cos, sin: this.sin } = ropeTables(ATTN.ropeDim, 10000, MAX_CONTEXT));
  }
  forward(step: StepInputs, kPools: Tensor[], vPools: Tensor[]): Tensor {
    const cos = F.embedding(step.positions, this.cos), sin = F.embedding(step.positions, this.sin);
    let x = this.embed.forward(step.ids);
    let l = 0;
    for (const b of this.blocks) { x = b.forward(x, cos, sin, step, kPools[l], vPools[l]); l++; }
    return this.head.forward(this.lnF.forward(ops.gather(x, step.lastIndex, 0)));
  }
}

// The step's metadata shapes: tokens T and sequences S vary per step; pools are session state.
@inferenceJit({
  device: 'cpu', fallback: 'error', cache: 'memory',
  inputSpec: [{ shape: ['T'] }, { shape: ['T'] }, { shape: ['T'] }, { shape: ['S', MAX_CONTEXT / BLOCK] }, { shape: ['S'] }, { shape: ['S1'] }, { shape: ['S'] },
    ...new Array<null>(2 * LAYERS).fill(null)],
})
class CompiledParallelDecoder extends ParallelDecoder {}

test('a user-written parallel-block decoder compiles to one native plan with no graph break and gives the eager tokens', { skip: planAddon ? false : 'native plan executor not built' }, async () => {
  const compiled = new CompiledParallelDecoder();
  // the engine runs forward as given (compile: false): the decorator is what compiles it
  const engine = new StepEngine(compiled, { compile: false, maxContext: MAX_CONTEXT, blockSize: BLOCK });
  const eager = new StepEngine(new ParallelDecoder(), { compile: false, maxContext: MAX_CONTEXT, blockSize: BLOCK });
  const prompts = [[3, 14, 15, 92, 65, 35], [8, 9, 79]];
  const got = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 12 })));
  for (let i = 0; i < prompts.length; i++) {
    const want = await eager.generate(prompts[i], { maxTokens: 12 });
    assert.deepEqual(got[i].tokens, want.tokens, `prompt ${i}: compiled vs eager tokens`);
  }
  assert.ok(new Set(got.flatMap((g) => g.tokens)).size >= 4, 'the model generates varied tokens');
  const description = jitDescribe(compiled)!;
  assert.match(description, /-> cpu plan/, description);
  assert.doesNotMatch(description, /graph break|eager|interpreter/, description);
  assert.equal(jitStats(compiled)!.graphBreaks, 0);
});
