// Model and image files (the `inferjit/io` entry point): GGUF and safetensors readers and writers,
// PNG, and the errors they throw (with file names and byte offsets).
export * from './gguf/index.js';
export { SafetensorsFile, readSafetensors, parseSafetensors, loadSafetensors, SAFETENSORS_DTYPES, type SafetensorsDType, type SafetensorsTensorInfo, type ReadSafetensorsOptions } from './safetensors.js';
export { writeSafetensors, encodeSafetensors, encodeSafetensorsBytes, type WriteSafetensorsOptions } from './safetensors-writer.js';
export { readPng, writePng, decodePng, encodePng, crc32, type Image, type PngFilter, type PngEncodeOptions } from './png.js';
export { ModelFileError, SafetensorsError } from './errors.js';
