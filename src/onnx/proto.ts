// The ONNX protobuf schema (the subset of onnx.proto3 an inference model uses, field numbers as in
// the ONNX spec) compiled with protobufjs, plus the ONNX element types and their inferjit dtypes.
// Encoding goes through protobufjs (a maintained protobuf library); nothing here hand-writes wire bytes.
import protobuf from 'protobufjs';
import type { DType } from '../tensor/dtype.js';

// Field numbers copied from onnx/onnx.proto3; unused fields (training info, sparse tensors, functions)
// are left out, which protobuf allows: a reader skips what it does not know.
const ONNX_PROTO = `
syntax = "proto3";
package onnx;

message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5;
    FLOATS = 6; INTS = 7; STRINGS = 8; TENSORS = 9; GRAPHS = 10;
  }
  string name = 1;
  string doc_string = 13;
  AttributeType type = 20;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
}

message ValueInfoProto {
  string name = 1;
  TypeProto type = 2;
  string doc_string = 3;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  string domain = 7;
  repeated AttributeProto attribute = 5;
  string doc_string = 6;
}

message StringStringEntryProto {
  string key = 1;
  string value = 2;
}

message ModelProto {
  int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  string producer_name = 2;
  string producer_version = 3;
  string domain = 4;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  string name = 8;
  string doc_string = 12;
  bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  enum DataLocation { DEFAULT = 0; EXTERNAL = 1; }
  DataLocation data_location = 14;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  string denotation = 6;
}

message OperatorSetIdProto {
  string domain = 1;
  int64 version = 2;
}
`;

const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
const ModelProtoType = root.lookupType('onnx.ModelProto');

/** Attribute type codes (AttributeProto.AttributeType). */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10 } as const;

/** ONNX element types (TensorProto.DataType) of the dtypes inferjit has. */
const OnnxDataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;

const TO_ONNX: Record<DType, number> = {
  f32: OnnxDataType.FLOAT, f16: OnnxDataType.FLOAT16, bf16: OnnxDataType.BFLOAT16,
  i8: OnnxDataType.INT8, u8: OnnxDataType.UINT8, i32: OnnxDataType.INT32, i64: OnnxDataType.INT64, bool: OnnxDataType.BOOL,
};

export function onnxDataType(dtype: DType): number {
  return TO_ONNX[dtype];
}

export function dtypeFromOnnx(code: number): DType {
  for (const [d, c] of Object.entries(TO_ONNX)) if (c === code) return d as DType;
  throw new TypeError(`onnx: element type ${code} has no inferjit dtype (supported: ${Object.entries(TO_ONNX).map(([d, c]) => `${d}=${c}`).join(', ')})`);
}

// ---- plain-object shapes of the messages we build (protobufjs accepts these via fromObject) ----

export interface TensorProtoObject {
  name: string;
  dims: number[];
  data_type: number;
  raw_data?: Uint8Array;
  data_location?: number;
  external_data?: { key: string; value: string }[];
}
export interface AttributeProtoObject {
  name: string;
  type: number;
  f?: number; i?: number; s?: Uint8Array; t?: TensorProtoObject; g?: GraphProtoObject;
  floats?: number[]; ints?: number[]; strings?: Uint8Array[];
}
export interface NodeProtoObject {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: AttributeProtoObject[];
  doc_string?: string;
}
interface DimensionObject { dim_value?: number; dim_param?: string }
export interface ValueInfoProtoObject {
  name: string;
  type: { tensor_type: { elem_type: number; shape: { dim: DimensionObject[] } } };
  doc_string?: string;
}
export interface GraphProtoObject {
  name: string;
  node: NodeProtoObject[];
  initializer: TensorProtoObject[];
  input: ValueInfoProtoObject[];
  output: ValueInfoProtoObject[];
  value_info?: ValueInfoProtoObject[];
  doc_string?: string;
}
export interface ModelProtoObject {
  ir_version: number;
  opset_import: { domain: string; version: number }[];
  producer_name: string;
  producer_version: string;
  doc_string?: string;
  graph: GraphProtoObject;
  metadata_props?: { key: string; value: string }[];
}

/** Serializes a model to ONNX protobuf bytes. */
export function encodeModel(model: ModelProtoObject): Uint8Array {
  const message = ModelProtoType.fromObject(model);
  const problem = ModelProtoType.verify(message);
  if (problem) throw new Error(`onnx: the model does not fit the ONNX schema: ${problem}`);
  return ModelProtoType.encode(message).finish();
}

/** Parses ONNX protobuf bytes into plain objects (int64 fields as numbers, bytes as Uint8Array). */
export function decodeModel(bytes: Uint8Array): ModelProtoObject {
  const message = ModelProtoType.decode(bytes);
  return ModelProtoType.toObject(message, { longs: Number, enums: Number, defaults: false, arrays: true }) as ModelProtoObject;
}
