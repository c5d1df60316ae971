// Static check of a pre-tokenizer regex before it is compiled. The pattern comes from a model file
// (tokenizer.json's Split step), and JavaScript's backtracking engine can take exponential time on
// an ambiguous pattern: `(a+)+$` needs 22 s for 29 characters. A model file must not be able to stall
// a server, so patterns whose structure allows that are refused with the reason.
//
// Rules (conservative: every real pre-tokenizer pattern, GPT-2 / Llama 3 / Qwen 2 / GPT-4o style,
// passes them, since those repeat only single characters or character classes):
//  1. A group repeated more than once (`*`, `+`, `{n,m}` with m > 1) may not contain a variable
//     repetition or an alternation: `(a+)+`, `(a|a)*`, `(\s?x){1,30}` give the engine exponentially many
//     ways to split the same text.
//  2. In one alternative, at most one unbounded repetition may be followed by something that must
//     still match: in `\s*\s*x` the engine tries every split of a run of spaces between the two
//     repetitions before giving up, cubic in the input length overall (19 s on 3000 spaces). Real
//     patterns end an alternative with their second repetition (`\s*[\r\n]+`, `[A]*[B]+(...)?`).
//     What remains is at worst quadratic (one repetition retried from every start), as with any
//     backtracking engine, llama.cpp's std::regex included.
//  3. At most MAX_PATHS ways through the pattern's bounded choices (`?`, `{m,n}`, alternatives):
//     `a?a?a?...a?aaa...` and `(a|a)(a|a)...b` have no unbounded repetition at all, yet 2^k paths,
//     all tried before a failure. Real patterns have a few dozen.
//  4. No back-references (they make matching NP-hard in general; no tokenizer uses them).

/** Most unbounded repetitions (`*`, `+`, `{n,}`) that may be followed by a mandatory element in one alternative. */
export const MAX_BACKTRACKING_REPETITIONS = 1;
/** Most paths through the bounded choices of the pattern (see rule 3). */
export const MAX_PATHS = 10_000;

interface Quant { min: number; max: number }
type Node =
  | { kind: 'atom'; quant: Quant | null }
  | { kind: 'group'; body: Alt; quant: Quant | null };
interface Alt { branches: Node[][] }

/** Why the pattern is unsafe, or null when it passes. Syntax errors are left to the RegExp constructor. */
export function unsafePatternReason(pattern: string): string | null {
  let tree: Alt;
  try {
    tree = new Parser(pattern).parse();
  } catch (e) {
    if (e instanceof UnsafePattern) return e.message;
    // Not parseable here: usually a syntax error, which `new RegExp` then reports. A pattern that
    // JavaScript accepts but this checker cannot read is refused rather than trusted unchecked.
    try { new RegExp(pattern, 'u'); } catch { return null; }
    return `its structure could not be analysed for catastrophic backtracking (${(e as Error).message}), so it is not trusted`;
  }
  const structural = check(tree);
  if (structural) return structural;
  const paths = altPaths(tree);
  if (paths > MAX_PATHS) {
    return `its optional parts and alternatives combine into ${paths >= 1e12 ? 'more than 10^12' : paths} paths (at most ${MAX_PATHS} allowed): ` +
      'backtracking may try each of them at every position';
  }
  return null;
}

/** Paths through the bounded choices (capped at 1e12 to stay a finite number). */
function altPaths(alt: Alt): number {
  let sum = 0;
  for (const b of alt.branches) sum = Math.min(1e12, sum + seqPaths(b));
  return sum;
}
function seqPaths(nodes: Node[]): number {
  let p = 1;
  for (const n of nodes) {
    const base = n.kind === 'group' ? altPaths(n.body) : 1;
    const q = n.quant;
    let ways = base;
    if (q && q.max !== Infinity) ways = q.max <= 1 ? base + (q.min === 0 ? 1 : 0) : Math.pow(base, q.max) * (q.max - q.min + 1);
    p = Math.min(1e12, p * ways);
  }
  return p;
}

class UnsafePattern extends Error {}
class Syntax extends Error {}

class Parser {
  private i = 0;
  constructor(private readonly s: string) {}

  parse(): Alt {
    const alt = this.alt();
    if (this.i < this.s.length) throw new Syntax('unbalanced )');
    return alt;
  }

  private alt(): Alt {
    const branches: Node[][] = [this.seq()];
    while (this.s[this.i] === '|') { this.i++; branches.push(this.seq()); }
    return { branches };
  }

  private seq(): Node[] {
    const out: Node[] = [];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') {
      const node = this.atom();
      node.quant = this.quant();
      out.push(node);
    }
    return out;
  }

  /** One atom. Assertions (^, $, \b, \B) are atoms too: zero-width, but they can fail and force backtracking. */
  private atom(): Node {
    const c = this.s[this.i];
    if (c === '^' || c === '$') { this.i++; return { kind: 'atom', quant: null }; }
    if (c === '(') {
      this.i++;
      if (this.s[this.i] === '?') {
        // (?: (?= (?! (?<= (?<! (?<name>
        const rest = this.s.slice(this.i, this.i + 4);
        if (rest.startsWith('?:') || rest.startsWith('?=') || rest.startsWith('?!')) this.i += 2;
        else if (rest.startsWith('?<=') || rest.startsWith('?<!')) this.i += 3;
        else if (rest.startsWith('?<')) {
          const end = this.s.indexOf('>', this.i);
          if (end < 0) throw new Syntax('unterminated group name');
          this.i = end + 1;
        } else throw new Syntax('unknown group');
      }
      const body = this.alt();
      if (this.s[this.i] !== ')') throw new Syntax('unterminated group');
      this.i++;
      return { kind: 'group', body, quant: null };
    }
    if (c === '[') { this.skipClass(); return { kind: 'atom', quant: null }; }
    if (c === '\\') {
      const n = this.s[this.i + 1];
      if (n === undefined) throw new Syntax('trailing backslash');
      if (/[1-9]/.test(n) || n === 'k') throw new UnsafePattern('it uses a back-reference, which a tokenizer pattern does not need and which can make matching take exponential time');
      this.skipEscape();
      return { kind: 'atom', quant: null };
    }
    this.i += c.codePointAt(0)! > 0xffff ? 2 : 1;
    return { kind: 'atom', quant: null };
  }

  private skipEscape(): void {
    const n = this.s[this.i + 1];
    this.i += 2;
    if ((n === 'p' || n === 'P' || (n === 'u' && this.s[this.i] === '{')) && this.s[this.i] === '{') {
      const end = this.s.indexOf('}', this.i);
      if (end < 0) throw new Syntax('unterminated escape');
      this.i = end + 1;
    } else if (n === 'u') this.i += 4;
    else if (n === 'x') this.i += 2;
    else if (n === 'c') this.i += 1;
  }

  private skipClass(): void {
    this.i++; // [
    if (this.s[this.i] === '^') this.i++;
    if (this.s[this.i] === ']') this.i++; // a literal ] first (not valid with the u flag, but harmless here)
    while (this.i < this.s.length && this.s[this.i] !== ']') {
      if (this.s[this.i] === '\\') this.skipEscape(); else this.i++;
    }
    if (this.s[this.i] !== ']') throw new Syntax('unterminated class');
    this.i++;
  }

  private quant(): Quant | null {
    const c = this.s[this.i];
    let q: Quant | null = null;
    if (c === '*') { q = { min: 0, max: Infinity }; this.i++; }
    else if (c === '+') { q = { min: 1, max: Infinity }; this.i++; }
    else if (c === '?') { q = { min: 0, max: 1 }; this.i++; }
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      if (!m) return null; // a literal { (rejected by the u flag anyway)
      const min = Number(m[1]);
      q = { min, max: m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]) };
      this.i += m[0].length;
    }
    if (q && this.s[this.i] === '?') this.i++; // lazy: same ambiguity
    return q;
  }
}

const fmt = (q: Quant): string => q.max === Infinity ? (q.min === 0 ? '*' : q.min === 1 ? '+' : `{${q.min},}`) : q.min === q.max ? `{${q.min}}` : `{${q.min},${q.max}}`;

/** Whether a subtree holds a variable repetition or an alternation (the sources of ambiguity). */
function ambiguous(alt: Alt): string | null {
  if (alt.branches.length > 1) return 'an alternation';
  for (const b of alt.branches) {
    for (const n of b) {
      if (n.quant && n.quant.min !== n.quant.max) return `a repetition ${fmt(n.quant)}`;
      if (n.kind === 'group') { const r = ambiguous(n.body); if (r) return r; }
    }
  }
  return null;
}

interface Flat { unbounded: boolean; mandatory: boolean }

/**
 * A branch as a flat sequence of elements: groups matched once (or optionally) are inlined, so
 * `(?:\s*)(?:\s*)x` counts like `\s*\s*x`. A group with alternatives stays one element, unbounded
 * when any of its alternatives holds an unbounded repetition (conservative).
 */
function flatten(nodes: Node[], optional: boolean, out: Flat[]): Flat[] {
  for (const n of nodes) {
    const q = n.quant;
    const opt = optional || (q !== null && q.min === 0);
    if (n.kind === 'group' && (q === null || q.max <= 1) && n.body.branches.length === 1) {
      flatten(n.body.branches[0], opt, out);
      continue;
    }
    const inner = n.kind === 'group' && n.body.branches.some((b) => flatten(b, false, []).some((f) => f.unbounded));
    out.push({ unbounded: (q !== null && q.max === Infinity) || inner, mandatory: !opt });
  }
  return out;
}

/** Unbounded repetitions of a branch that a later mandatory element can force to give back characters. */
function backtrackingRepetitions(branch: Node[]): number {
  const flat = flatten(branch, false, []);
  let count = 0;
  for (let i = 0; i < flat.length; i++) {
    if (flat[i].unbounded && flat.slice(i + 1).some((f) => f.mandatory)) count++;
  }
  return count;
}

function check(alt: Alt): string | null {
  for (const branch of alt.branches) {
    const k = backtrackingRepetitions(branch);
    if (k > MAX_BACKTRACKING_REPETITIONS) {
      return `one alternative has ${k} unbounded repetitions followed by elements that must still match (at most ${MAX_BACKTRACKING_REPETITIONS} allowed): ` +
        `backtracking tries every way to split the input between them, time growing as the input length to the power ${k + 1}`;
    }
    for (const n of branch) {
      if (n.kind !== 'group') continue;
      if (n.quant && n.quant.max > 1) {
        const inner = ambiguous(n.body);
        if (inner) return `a group repeated ${fmt(n.quant)} contains ${inner} (ambiguous repetition): backtracking can take exponential time`;
      }
      const r = check(n.body);
      if (r) return r;
    }
  }
  return null;
}
