// Tokenizers for LLMs: SentencePiece-style BPE (Llama 1/2, TinyLlama, Mistral) and byte-level BPE
// (GPT-2, Llama 3), loaded from GGUF metadata or a Hugging Face tokenizer.json.
export { Tokenizer, TokenStreamDecoder, TokenType, type TokenTypeId, type EncodeOptions, type DecodeOptions, type SpecialTokenIds, type VocabSpec } from './vocab.js';
export { SpmTokenizer, SPM_SPACE, type SpmSpec } from './spm.js';
export { BpeTokenizer, BYTE_TO_UNICODE, UNICODE_TO_BYTE, PRETOKENIZER_PATTERNS, GGUF_PRETOKENIZERS, pretokenize, type BpeSpec } from './bpe.js';
export { tokenizerFromGguf, tokenizerFromHuggingFace, convertHfPattern, type HfTokenizerOptions } from './load.js';
