// A small pre-norm transformer written as plain user code, shared by the eager demo, the tests and
// the benchmarks: blocks of x + attn(ln1(x)), x + mlp(ln2(x)) and a final LayerNorm.
import { nn, type Tensor } from '../../src/index.js';

export interface TransformerConfig {
  dim: number;
  heads: number;
  /** Number of blocks; default 2. */
  depth?: number;
  /** Hidden width of the MLP as a multiple of dim; default 4. */
  mlpRatio?: number;
  /** Key/value heads for grouped-query attention; default heads. */
  kvHeads?: number;
  causal?: boolean;
}

export class TransformerBlock extends nn.Module {
  ln1: nn.LayerNorm;
  attn: nn.SelfAttention;
  ln2: nn.LayerNorm;
  mlp: nn.MLP;

  constructor(dim: number, heads: number, options: { mlpRatio?: number; kvHeads?: number; causal?: boolean } = {}) {
    super();
    this.ln1 = new nn.LayerNorm(dim);
    this.attn = new nn.SelfAttention(dim, heads, { numKVHeads: options.kvHeads, causal: options.causal });
    this.ln2 = new nn.LayerNorm(dim);
    this.mlp = new nn.MLP(dim, (options.mlpRatio ?? 4) * dim, { activation: 'gelu' });
  }

  forward(x: Tensor): Tensor {
    x = x.add(this.attn.forward(this.ln1.forward(x)));
    return x.add(this.mlp.forward(this.ln2.forward(x)));
  }
}

export class TinyTransformer extends nn.Module {
  blocks: nn.ModuleList<TransformerBlock>;
  norm: nn.LayerNorm;

  constructor(readonly config: TransformerConfig) {
    super();
    const depth = config.depth ?? 2;
    const blocks: TransformerBlock[] = [];
    for (let i = 0; i < depth; i++) {
      blocks.push(new TransformerBlock(config.dim, config.heads, { mlpRatio: config.mlpRatio, kvHeads: config.kvHeads, causal: config.causal }));
    }
    this.blocks = new nn.ModuleList(blocks);
    this.norm = new nn.LayerNorm(config.dim);
  }

  /** x [batch, seq, dim] -> [batch, seq, dim]. */
  forward(x: Tensor): Tensor {
    for (const block of this.blocks) x = block.forward(x);
    return this.norm.forward(x);
  }
}
