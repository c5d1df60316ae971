// SentencePiece-style BPE as llama.cpp runs it for tokenizer.ggml.model = "llama" (llm_tokenizer_spm):
// spaces become U+2581 "▁", a dummy space is put in front of the text, the text is split into
// characters, and adjacent pairs whose concatenation is a vocabulary token are merged, highest token
// score first (ties: leftmost first). Characters that end up in no token fall back to their UTF-8
// bytes as <0xXX> tokens.
import { Heap } from './heap.js';
import { Tokenizer, TokenType, type VocabSpec, type SpecialTokenIds } from './vocab.js';

export const SPM_SPACE = '\u2581';

export interface SpmSpec extends VocabSpec {
  /** Put a space in front of the text (and after each special token). Default true (Llama). */
  addSpacePrefix?: boolean;
}

interface Sym { text: string; prev: number; next: number }
interface Bigram { left: number; right: number; score: number; size: number }

const utf8 = new TextEncoder();

/** Special ids with defaults for the ones not given (undefined does not override). */
export function withDefaults(given: SpecialTokenIds | undefined, defaults: SpecialTokenIds): SpecialTokenIds {
  const out: SpecialTokenIds = { ...defaults };
  for (const [k, v] of Object.entries(given ?? {})) if (v !== undefined) out[k as keyof SpecialTokenIds] = v;
  return out;
}
const hex2 = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');

export class SpmTokenizer extends Tokenizer {
  readonly kind = 'spm';
  readonly addsDummyPrefix: boolean;
  /** byte value -> token id of "<0xXX>" (or of the one-character token for ASCII), -1 when absent. */
  private readonly byteTokens = new Int32Array(256).fill(-1);
  private readonly pieceCache = new Map<number, Uint8Array>();

  constructor(spec: SpmSpec) {
    // llama.cpp's defaults for "llama" vocabularies: BOS 1, EOS 2, unknown 0, add BOS.
    // (Defaults outside a small vocabulary are dropped, as llama.cpp disables them.)
    const n = spec.tokens.length;
    const defaults: SpecialTokenIds = { bos: 1 < n ? 1 : undefined, eos: 2 < n ? 2 : undefined, unk: 0 };
    super({ ...spec, addBos: spec.addBos ?? true, special: withDefaults(spec.special, defaults) });
    this.addsDummyPrefix = spec.addSpacePrefix ?? true;
    for (let b = 0; b < 256; b++) {
      const id = this.tokenToId.get(`<0x${hex2(b)}>`) ?? (b < 0x80 ? this.tokenToId.get(String.fromCharCode(b)) : undefined);
      if (id !== undefined) this.byteTokens[b] = id;
    }
  }

  protected encodeFragment(fragment: string, afterSpecial: boolean, out: number[]): void {
    const text = ((this.addsDummyPrefix && afterSpecial ? ' ' : '') + fragment).replaceAll(' ', SPM_SPACE);
    const chars = Array.from(text); // code points, as llama.cpp splits UTF-8 characters
    const syms: Sym[] = chars.map((c, i) => ({ text: c, prev: i - 1, next: i + 1 < chars.length ? i + 1 : -1 }));
    const queue = new Heap<Bigram>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const id = this.tokenToId.get(syms[left].text + syms[right].text);
      if (id === undefined) return;
      queue.push({ left, right, score: this.scores[id], size: syms[left].text.length + syms[right].text.length });
    };
    for (let i = 1; i < syms.length; i++) tryAdd(i - 1, i);
    for (let bg = queue.pop(); bg; bg = queue.pop()) {
      const l = syms[bg.left], r = syms[bg.right];
      // Skip pairs made stale by an earlier merge of either side.
      if (l.text.length === 0 || r.text.length === 0 || l.text.length + r.text.length !== bg.size) continue;
      l.text += r.text;
      r.text = '';
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      tryAdd(l.prev, bg.left);
      tryAdd(bg.left, l.next);
    }
    for (let i = syms.length > 0 ? 0 : -1; i !== -1; i = syms[i].next) {
      const id = this.tokenToId.get(syms[i].text);
      if (id !== undefined) { out.push(id); continue; }
      for (const b of utf8.encode(syms[i].text)) {
        const bt = this.byteTokens[b];
        if (bt >= 0) out.push(bt);
        else if (this.unkId !== null) out.push(this.unkId);
      }
    }
  }

  protected pieceBytes(id: number): Uint8Array {
    let b = this.pieceCache.get(id);
    if (b) return b;
    const text = this.tokens[id];
    const type = this.types[id];
    if (type === TokenType.Byte) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
      b = m ? new Uint8Array([parseInt(m[1], 16)]) : utf8.encode(text);
    } else if (type === TokenType.Normal) {
      b = utf8.encode(text.replaceAll(SPM_SPACE, ' '));
    } else if (type === TokenType.Control || type === TokenType.Unknown || type === TokenType.UserDefined) {
      b = utf8.encode(text);
    } else {
      b = new Uint8Array(0); // unused / undefined tokens decode to nothing, as in llama.cpp
    }
    this.pieceCache.set(id, b);
    return b;
  }
}
