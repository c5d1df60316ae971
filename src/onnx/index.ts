// ONNX export's public surface: exportOnnx (graph + parameters -> .onnx file), exportModel (trace a
// model and export it), exportOp (one-op models), and the mapping registry ops attach to.
export {
  exportOnnx, exportGraphToBytes, writeOnnxModel, exportOp,
  ONNX_OPSET, ONNX_IR_VERSION, ONNX_EXPORTER_VERSION, DEFAULT_EXTERNAL_DATA_THRESHOLD,
  type OnnxExportOptions, type OnnxModelBytes, type ExportSource, type CompiledHandleLike, type ExportedFile, type OneOpModel, type OpInputSpec,
} from './export.js';
export { exportModel, type ExportModelOptions, type ModelLike } from './model.js';
export { parameterNames } from './names.js';
export {
  registerOnnxMapping, getOnnxMapping, onnxFloat,
  type OnnxEmitContext, type OnnxMapping, type OnnxAttrs, type OnnxAttrValue, type NodeOptions,
} from './mapping.js';
export { encodeModel, decodeModel, onnxDataType, dtypeFromOnnx, type ModelProtoObject } from './proto.js';
