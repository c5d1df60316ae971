// node-llama-cpp (llama.cpp) as the independent oracle of the generation parity tests: loaded
// lazily, CPU only, never built from source; a string says why it is unavailable (the test skips).
export interface Sequence { evaluate(tokens: number[], o: object): AsyncIterable<number> }
export interface LlamaLike {
  loadModel(o: object): Promise<{ createContext(o: object): Promise<{ getSequence(): Sequence; dispose(): Promise<void> }>; dispose(): Promise<void> }>;
}

export async function loadLlama(): Promise<LlamaLike | string> {
  const entry = process.env.INFERJIT_NODE_LLAMA_CPP ?? 'node-llama-cpp';
  let mod: { getLlama(o: object): Promise<LlamaLike> };
  try { mod = await import(entry); } catch (e) { return `node-llama-cpp is not installed (${(e as Error).message.split('\n')[0]})`; }
  try { return await mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' }); } catch (e) {
    return `node-llama-cpp could not start llama.cpp: ${(e as Error).message.split('\n')[0]}`;
  }
}
