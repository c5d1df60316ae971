import { tensor, randn, ops, full } from '../../src/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { trace, interpret } from '../../src/trace/index.js';
import { convertIfElse, convertWhile } from '../../src/trace/transform/runtime.js';
import { optimize } from '../../src/passes/index.js';
function f(x: Tensor, w: Tensor) {
  let y = x;
  convertIfElse(ops.sum(x).greater(0), () => { y = ops.mul(x, w); }, () => { y = ops.neg(x); }, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
  let i = full([], 0, 'f32');
  convertWhile(() => ops.sum(ops.abs(y)).greater(1), () => { y = ops.mul(y, 0.5); i = i.add(1); }, () => [y, i], (v) => { [y, i] = v as [Tensor, Tensor]; }, ['y', 'i']);
  return [y, i];
}
const x = randn([3]), w = randn([3]);
const r = trace(f, [x, w]);
console.log(r.graph.print());
for (const xx of [x, x.neg()]) {
  const e = f(xx, w) as Tensor[];
  const g = interpret(r.graph, [xx, w], r.constants);
  console.log(e.map(String), g.map(String));
}
const o = optimize(r.graph);
console.log(o.print({source:false}));
console.log(r.graph.hash(), o.hash());
import { exportOnnx } from '../../src/onnx/index.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
const path = '/tmp/d2s-scratch.onnx';
exportOnnx(r, path);
const io = graphIO(r.graph);
const s = new OrtSession(path, {}, io.inputs, io.outputs);
for (const xx of [x, x.neg()]) console.log(s.runSync([xx, w]).map(String));
