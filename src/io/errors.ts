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

/** A PNG image is malformed, truncated, unsupported, or would decode to more data than its header allows. */
export class PngError extends ModelFileError {
  constructor(file: string, detail: string, offset?: number) {
    super('png', file, detail, offset);
    this.name = 'PngError';
  }
}

/**
 * A model's configuration (GGUF llama.* metadata, a Hugging Face config.json) holds a value the model
 * cannot run with: a missing or non-finite hyper-parameter, a tensor the architecture does not expect.
 * The message names the key and the file.
 */
export class ModelConfigError extends ModelFileError {
  constructor(file: string, detail: string) {
    super('model config', file, detail);
    this.name = 'ModelConfigError';
  }
}

/** A tokenizer file (tokenizer.json, GGUF tokenizer.ggml.* metadata) is malformed or unsafe to use. */
export class TokenizerFileError extends ModelFileError {
  constructor(file: string, detail: string) {
    super('tokenizer', file, detail);
    this.name = 'TokenizerFileError';
  }
}
