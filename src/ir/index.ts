// The graph IR's public surface: Graph (values, nodes, inputs, outputs, constants; verify, print,
// JSON, hash) and the symbolic-dim helpers passes and backends use to reason about shapes.
export {
  Graph, GraphVerifyError, IR_FORMAT, IR_VERSION, formatType, encodeNumber, signatureOf, subgraphsOf,
  type Value, type Node, type GraphInput, type GraphOutput, type Constant, type ConstantKind,
  type GraphJSON, type JSONNumber, type JSONAttr,
} from './graph.js';
export {
  parseDim, canonicalDim, dimsEqual, shapesEqual, dimSymbols, evalDim, evalShape, DimSyntaxError, DIM_NAME,
  type DimPoly, type DimBindings,
} from './dims.js';
