// Errors for model files (GGUF, safetensors). Each names the file, what is wrong and the byte offset
// where it was found, so a truncated download or a corrupt header is diagnosed from the message alone.

/** Base class: a model file could not be read or written. */
export class ModelFileError extends Error {
  constructor(
    readonly format: string,
    readonly file: string,
    readonly detail: string,
    /** Byte offset in the file where the problem was found, when it has one. */
    readonly offset?: number,
  ) {
    super(`${format}: ${file}: ${detail}${offset !== undefined ? ` (at byte offset ${offset})` : ''}`);
    this.name = 'ModelFileError';
  }
}

/** A GGUF file is malformed, truncated, unsupported, or a requested key/tensor is missing or mistyped. */
export class GgufError extends ModelFileError {
  constructor(file: string, detail: string, offset?: number) {
    super('gguf', file, detail, offset);
    this.name = 'GgufError';
  }
}

/** A safetensors file (or its shard index) is malformed, truncated or unsupported. */
export class SafetensorsError extends ModelFileError {
  constructor(file: string, detail: string, offset?: number) {
    super('safetensors', file, detail, offset);
    this.name = 'SafetensorsError';
  }
}
