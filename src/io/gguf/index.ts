// GGUF model files: reader, writer, ggml type table and (de)quantization.
export { readGguf, parseGguf, GgufFile, type GgufTensorInfo, type ReadGgufOptions } from './reader.js';
export { writeGguf, encodeGguf, encodeGgufBytes, encodeTensorData, inferType, gguf, type GgufWriteTensor, type GgufWriteValue, type WriteGgufOptions, type GgufTypedValue } from './writer.js';
export { dequantize, quantizeQ8_0, quantizeQ4_0, quantizeQ4_K, quantizeQ5_K, quantizeQ6_K, DEQUANTIZABLE_TYPES, QK8_0, QK4_0 } from './quants.js';
export {
  GGML_TYPES, ggmlType, ggmlTypeById, isGgmlTypeName, ggmlByteSize, QK_K, GGUF_DEFAULT_ALIGNMENT,
  type GgmlTypeInfo, type GgmlTypeName, type GgufMetaValue, type GgufValueType, type GgufScalarType,
} from './types.js';
export { GgufError, ModelFileError } from '../errors.js';
