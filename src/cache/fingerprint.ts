// Fingerprints that let a new process find a captured graph on disk without tracing again.
// The capture key must change whenever re-tracing could give a different graph, so it covers:
// - the toolchain: inferjit's version and the contents of its own source files (op definitions,
//   shape rules, nn layers, the tracer);
// - the model's code: the source text of every class in the module tree (prototype chains
//   included) or of the compiled function, and the file that applied inferenceJit;
// - the model's configuration: primitive fields of every module (eps, numHeads, ...), parameter
//   and buffer names, dtypes and shapes;
// - the call signature and the options.
// Code in other files that forward reaches (helper functions) is covered through the graph: every
// node records the user source line that created it, and a capture entry stores the sha256 of each
// such file, which is checked before the entry is used (see compile.ts).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { isRefusal, readRegularFile } from './safe-fs.js';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../tensor/tensor.js';
import { sha256, canonicalJson } from './disk-cache.js';
import { contentHash } from './content-hash.js';
import { quantSpecOf } from '../tensor/quantized.js';

const SRC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGE_ROOT = join(SRC_DIR, '..');

let version: string | undefined;
/** inferjit's version from package.json. */
export function inferjitVersion(): string {
  if (version === undefined) {
    try { version = String(JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version); } catch { version = 'unknown'; }
  }
  return version;
}

let toolchain: string | undefined;
/** sha256 over inferjit's version and its source files (computed once per process; ~1 MB). */
export function toolchainFingerprint(): string {
  if (toolchain === undefined) {
    const h: string[] = [inferjitVersion()];
    const walk = (dir: string): void => {
      let names: string[];
      try { names = readdirSync(dir).sort(); } catch { return; }
      for (const n of names) {
        const p = join(dir, n);
        let st;
        try { st = statSync(p); } catch { continue; }
        if (st.isDirectory()) walk(p);
        else if (/\.(ts|mts|js|mjs)$/.test(n)) h.push(`${relative(SRC_DIR, p)}:${sha256(readFileSync(p))}`);
      }
    };
    walk(SRC_DIR);
    toolchain = sha256(h.join('\n'));
  }
  return toolchain;
}

/** True for paths inside inferjit's own src/ (those are covered by the toolchain fingerprint). */
export function isInferjitSource(file: string): boolean {
  return file.startsWith(SRC_DIR + sep);
}

/** Minimal view of a module: nn.Module satisfies it; so does any object with these methods. */
export interface ModuleLike {
  forward?: (...args: any[]) => unknown;
  namedParameters?(): Iterable<[string, Tensor]>;
  namedBuffers?(): Iterable<[string, Tensor]>;
  namedModules?(): Iterable<[string, unknown]>;
  training?: boolean;
}

/** Parameters and buffers by name (what the graph's named constants refer to). */
export function namedTensors(module: ModuleLike | null): [string, Tensor][] | null {
  if (!module || typeof module.namedParameters !== 'function') return null;
  const out: [string, Tensor][] = [...module.namedParameters()];
  if (typeof module.namedBuffers === 'function') {
    const seen = new Set(out.map(([, t]) => t));
    for (const [n, t] of module.namedBuffers()) if (!seen.has(t)) out.push([n, t]);
  }
  return out;
}

/** The code side of the capture key: source text of every class in the module tree (prototype
 *  chains included) and of the compiled function. Fixed for the life of a module, so computed once. */
export function codeFingerprint(target: { module: ModuleLike | null; fn: (...args: any[]) => unknown; method: string }): string {
  const classes = new Set<Function>();
  for (const [, m] of moduleTree(target.module)) {
    for (let p = Object.getPrototypeOf(m); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
      if (typeof p.constructor === 'function') classes.add(p.constructor);
    }
  }
  return sha256(canonicalJson({
    method: target.method,
    fn: sourceOf(target.fn),
    classes: [...classes].map((c) => `${c.name}:${sha256(sourceOf(c))}`),
  }));
}

/** The configuration side: each module's class name and primitive fields (eps, numHeads, causal,
 *  ...), and parameter/buffer names, dtypes and shapes. These can change between calls, so the
 *  runtime guards on this string too. */
export function configFingerprint(module: ModuleLike | null): string {
  if (!module) return '';
  const modules = moduleTree(module).map(([path, m]) => [path, (m as object).constructor?.name ?? '', primitiveFields(m as Record<string, unknown>)]);
  // a quantized weight (src/tensor/quantized.ts) is u8 bytes: its format and [N, K] are part of what it is
  const tensors = namedTensors(module)?.map(([n, t]) => { const q = quantSpecOf(t); return q ? [n, t.dtype, [...t.shape], q] : [n, t.dtype, [...t.shape]]; }) ?? [];
  return canonicalJson({ modules, tensors });
}

function moduleTree(module: ModuleLike | null): [string, object][] {
  if (!module) return [];
  const tree: [string, unknown][] = typeof module.namedModules === 'function' ? [...module.namedModules()] : [['', module]];
  return tree.filter((e): e is [string, object] => !!e[1] && typeof e[1] === 'object');
}

function sourceOf(f: Function): string {
  try { return Function.prototype.toString.call(f); } catch { return f.name; }
}

/** A module's own fields other than tensors and submodules: the configuration that shapes the
 *  traced graph (eps, numHeads, causal, a config object, an activation function). Functions count
 *  by their source text (a closure's captured variables are not seen); typed arrays by content. */
function primitiveFields(m: Record<string, unknown>): unknown {
  const seen = new Set<object>();
  const conv = (v: unknown, depth: number): unknown => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0) ? v : String(v);
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'function') return `fn:${v.name}:${fnv(sourceOf(v))}`;
    if (typeof v !== 'object' || depth > 4 || v instanceof Tensor || isModuleLike(v) || seen.has(v)) return undefined;
    if (ArrayBuffer.isView(v)) {
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      return `${v.constructor.name}:${v.byteLength}:${fnv(bytes)}`;
    }
    seen.add(v);
    let out: unknown;
    if (Array.isArray(v)) out = v.map((x) => conv(x, depth + 1) ?? null);
    else if (v instanceof Map) out = { $map: [...v.entries()].map(([k, x]) => [conv(k, depth + 1) ?? null, conv(x, depth + 1) ?? null]) };
    else if (v instanceof Set) out = { $set: [...v].map((x) => conv(x, depth + 1) ?? null) };
    else {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v)) { const c = conv((v as Record<string, unknown>)[k], depth + 1); if (c !== undefined) o[k] = c; }
      const proto = Object.getPrototypeOf(v);
      out = proto === Object.prototype || proto === null ? o : { $class: (v as object).constructor?.name ?? '', fields: o };
    }
    seen.delete(v);
    return out;
  };
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(m)) {
    const c = conv(m[k], 0);
    if (c !== undefined) out[k] = c;
  }
  return out;
}

/** Submodules are fingerprinted on their own (they appear in namedModules()). */
function isModuleLike(v: object): boolean {
  return typeof (v as ModuleLike).namedParameters === 'function' || typeof (v as ModuleLike).forward === 'function';
}

/** FNV-1a over a string's UTF-16 units or bytes: a cheap per-call content check, not a disk key. */
function fnv(data: string | Uint8Array): string {
  let h = 0x811c9dc5;
  if (typeof data === 'string') for (let i = 0; i < data.length; i++) { h ^= data.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  else for (let i = 0; i < data.length; i++) { h ^= data[i]; h = Math.imul(h, 0x01000193) >>> 0; }
  return h.toString(16).padStart(8, '0');
}

/** The user file that called inferenceJit (first stack frame outside inferjit's src/), if any. */
export function callerFile(): string | null {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of stack) {
    const file = fileOfFrame(line);
    if (file && !isInferjitSource(file)) return file;
  }
  return null;
}

/** 'at f (file:///a/b.ts:3:9)' / 'at /a/b.ts:3:9' / 'src/b.ts:3:9' -> '/a/b.ts' (relative paths are
 *  taken from the working directory, as the tracer records them); null for node internals. */
export function fileOfFrame(frame: string): string | null {
  let s = frame.trim().replace(/^at\s+/, '');
  const paren = /\(([^()]*)\)\s*$/.exec(s);
  if (paren) s = paren[1];
  if (!/:\d+(:\d+)?$/.test(s)) return null; // '(native)', '(index 0)': no file position
  s = s.replace(/:\d+(:\d+)?$/, '');
  if (s.startsWith('file://')) { try { s = fileURLToPath(s); } catch { return null; } }
  if (s.length === 0 || s.startsWith('node:') || s.startsWith('internal/') || s === 'native' || s.startsWith('<')) return null;
  return resolve(s);
}

/** A source file larger than this is not one (the names come from cache manifests too). */
const MAX_SOURCE_BYTES = 64 * 1024 * 1024;

/** sha256 of each file's contents ('missing' when it cannot be read). The names also come from a
 *  capture entry's manifest, so only regular files of a sane size are read: a name such as
 *  /dev/zero or a FIFO must not hang the process. */
export function hashFiles(files: Iterable<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of [...new Set(files)].sort()) {
    const data = readRegularFile(f, MAX_SOURCE_BYTES, { followSymlinks: true });
    out[f] = isRefusal(data) ? 'missing' : sha256(data);
  }
  return out;
}

const tensorDigests = new WeakMap<Tensor, { version: number; digest: string }>();

/** Content hash of a tensor's bytes (XXH64, or sha256 without the native addon: see
 *  content-hash.ts), remembered per tensor until its version changes: the cross-process identity of
 *  weight values (version counters only mean something inside one process). */
export function tensorDigest(t: Tensor): string {
  const hit = tensorDigests.get(t);
  if (hit && hit.version === t.version) return hit.digest;
  const digest = contentHash(t.data);
  tensorDigests.set(t, { version: t.version, digest });
  return digest;
}
