// ONNX export of control flow: cond -> If and while_loop -> Loop, checked on the decoded model
// (graph attributes, sub-graph constants lifted to top-level initializers shared with the outer
// graph) and by running the model in ONNX Runtime against the graph interpreter on every path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromArray, full, ops, nn, type Tensor } from '../../src/index.js';
import { trace } from '../../src/trace/index.js';
import { interpret } from '../../src/backends/reference/index.js';
import { exportOnnx } from '../../src/onnx/index.js';
import { decodeModel } from '../../src/onnx/proto.js';
import { OrtSession } from '../../src/backends/onnxruntime/session.js';
import { graphIO } from '../../src/backends/onnxruntime/index.js';
import { convertIfElse, convertWhile } from '../../src/trace/transform/index.js';

const dir = mkdtempSync(join(tmpdir(), 'inferjit-d2s-onnx-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

class Loopy extends nn.Module {
  fc = new nn.Linear(3, 3, { seed: 9 });
  forward(x: Tensor): Tensor {
    let y = x;
    let k = ops.sum(x).mul(0); // traced (a concrete counter would unroll the loop in JavaScript)
    // a parameter and literals used only inside the loop body and a branch inside it
    convertWhile(() => logicalSmall(k), () => {
      convertIfElse(ops.sum(y).greater(0), () => { y = this.fc.forward(y).tanh(); }, () => { y = y.add(1.5); }, () => [y], (v) => { [y] = v as [Tensor]; }, ['y']);
      k = k.add(1);
    }, () => [y, k], (v) => { [y, k] = v as [Tensor, Tensor]; }, ['y', 'k']);
    return y.mul(this.fc.forward(x)); // the same parameter outside the loop too
  }
}
const logicalSmall = (k: Tensor): Tensor => k.less(4);

test('a loop with a branch and a parameter inside exports as Loop(If) and ONNX Runtime matches the interpreter', () => {
  const m = new Loopy();
  const r = trace((x: Tensor) => m.forward(x), [fromArray([[0.5, -1, 2]])], { module: m });
  const path = join(dir, 'loopy.onnx');
  exportOnnx(r, path);
  const model = decodeModel(readFileSync(path));
  const loop = model.graph.node.find((n) => n.op_type === 'Loop')!;
  assert.ok(loop, model.graph.node.map((n) => n.op_type).join(', '));
  const body = loop.attribute!.find((a) => a.name === 'body')!.g!;
  assert.ok(body.node.some((n) => n.op_type === 'If'), 'the branch is an If inside the loop body');
  assert.equal(body.initializer.length, 0, 'constants live at the top level');
  const inits = model.graph.initializer.map((t) => t.name);
  assert.equal(inits.filter((n) => n === 'fc.weight').length, 1, `the parameter is stored once: ${inits.join(', ')}`);
  const io = graphIO(r.graph);
  const session = new OrtSession(path, {}, io.inputs, io.outputs);
  for (const x of [[[0.5, -1, 2]], [[-3, -1, -2]], [[0, 0, 0]], [[-0.5, 0.2, 0.1]]]) {
    const input = fromArray(x);
    const want = interpret(r.graph, [input], r.constants)[0];
    const eager = m.forward(input);
    const got = session.runSync([input])[0];
    const a = got.toFlatArray(), b = want.toFlatArray(), c = eager.toFlatArray();
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i] - b[i]) < 1e-5, `x = ${JSON.stringify(x)}: onnx ${a[i]} vs interpreter ${b[i]}`);
      assert.ok(Math.abs(b[i] - c[i]) < 1e-6, `x = ${JSON.stringify(x)}: interpreter ${b[i]} vs eager ${c[i]}`);
    }
  }
  session.dispose();
});
