// inferenceJit options: their types and defaults, validation, the INFERJIT_* environment
// variables and the global configure(), and the precedence rule that merges them.
//
// Precedence. Options split in two groups:
// - deploy-time options (device, precision, precisionFallback, cacheDir, cache, cacheMaxBytes,
//   fallback, debug) say
//   where and how a model runs on one machine. They resolve as
//       INFERJIT_* environment variable  >  configure()  >  options at the call site
//       (decorator / function form, over reflect-metadata class options)  >  defaults,
//   so an operator can move a model to another device or cache directory without touching the
//   decorator line, and a deploy script can do the same with configure().
// - model options (inputSpec, passes, maxEntries, name) describe the model itself, so the call
//   site wins: call-site options > configure() > defaults. `passes.disable` lists are united.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { DTYPES } from '../tensor/dtype.js';
import { listPassNames } from '../passes/pipeline.js';
import { PRECISIONS, PRECISION_FALLBACKS, type Precision, type PrecisionFallback } from '../backends/backend.js';
import type { InputSpec } from '../trace/index.js';

export { PRECISIONS, PRECISION_FALLBACKS, type Precision, type PrecisionFallback, type InputSpec };

export type JitDevice = 'cpu' | 'reference' | 'onnxruntime' | 'tensorrt';
export const JIT_DEVICES: readonly JitDevice[] = ['cpu', 'reference', 'onnxruntime', 'tensorrt'];
/** 'disk' (default): compiled entries in memory and on disk; 'memory': in memory only, nothing
 *  written to disk. (The former 'off', which kept nothing and recompiled every call, is refused
 *  with an error naming 'memory'.) */
export type CacheMode = 'memory' | 'disk';
export const CACHE_MODES: readonly CacheMode[] = ['memory', 'disk'];
export type FallbackMode = 'eager' | 'error';
export const FALLBACK_MODES: readonly FallbackMode[] = ['eager', 'error'];

export interface JitOptions {
  device?: JitDevice;
  precision?: Precision;
  /** Where this machine cannot run `precision` (e.g. no AVX512_BF16 for 'bf16'): 'error' (default)
   *  fails naming the missing instruction set; 'fp32' warns once and compiles in fp32 instead. */
  precisionFallback?: PrecisionFallback;
  /** Per flattened tensor input, in argument order. */
  inputSpec?: (InputSpec | null)[];
  cacheDir?: string;
  cache?: CacheMode;
  /** Size cap of the disk cache in bytes; least recently used entries are evicted beyond it. */
  cacheMaxBytes?: number;
  passes?: { disable?: string[] };
  /** Folder to dump the IR into after capture and after each pass (text and JSON). */
  debug?: string | false;
  fallback?: FallbackMode;
  /** With fallback 'eager': run a signature whose forward reads a traced value into JavaScript as
   *  compiled pieces around the read (default true; false runs the whole call eagerly). */
  splitGraphs?: boolean;
  /** Mark an undeclared input dim dynamic once calls have used two sizes of it, instead of
   *  compiling every size (default true). */
  autoDynamic?: boolean;
  /** Bound of the per-instance in-memory cache (compiled signatures kept), LRU. */
  maxEntries?: number;
  /** Name used in cache listings and debug dumps (default: the class or function name). */
  name?: string;
  /** Session options for device 'onnxruntime' (graphOptimizationLevel, intraOpNumThreads, executionProviders). */
  onnxruntime?: Record<string, unknown>;
  /** Options for device 'tensorrt' (profiles, fallback providers, workspaceSize, deviceId). */
  tensorrt?: Record<string, unknown>;
}

/** Options after merging, every field present. */
export interface ResolvedOptions {
  device: JitDevice;
  precision: Precision;
  precisionFallback: PrecisionFallback;
  inputSpec: (InputSpec | null)[] | null;
  cacheDir: string;
  cache: CacheMode;
  cacheMaxBytes: number;
  passesDisabled: string[];
  debug: string | null;
  fallback: FallbackMode;
  splitGraphs: boolean;
  autoDynamic: boolean;
  maxEntries: number;
  name: string | null;
  /** Backend-specific options, passed to the backend's lower() and part of the artifact key. */
  backendOptions: { onnxruntime?: Record<string, unknown>; tensorrt?: Record<string, unknown> };
}

/** Default disk cache cap (INFERJIT_CACHE_MAX_BYTES / cacheMaxBytes change it). */
export const DEFAULT_CACHE_MAX_BYTES = 4 * 1024 ** 3;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'inferjit');
}

const KNOWN_KEYS = new Set<string>(['device', 'precision', 'precisionFallback', 'inputSpec', 'cacheDir', 'cache', 'cacheMaxBytes', 'passes', 'debug', 'fallback', 'splitGraphs', 'autoDynamic', 'maxEntries', 'name', 'onnxruntime', 'tensorrt']);

/** Checks an options object and throws a specific error for the first bad field. `where` names
 *  the source ('inferenceJit options', 'configure()', 'INFERJIT_DEVICE'). */
export function validateOptions(o: JitOptions, where: string): JitOptions {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new TypeError(`${where}: options must be an object such as { device: 'cpu' }, got ${describeValue(o)}`);
  for (const k of Object.keys(o)) {
    if (!KNOWN_KEYS.has(k)) {
      const near = closest(k, [...KNOWN_KEYS]);
      throw new TypeError(`${where}: unknown option "${k}"${near ? ` (did you mean "${near}"?)` : ''}; valid options: ${[...KNOWN_KEYS].join(', ')}`);
    }
  }
  oneOf(where, 'device', o.device, JIT_DEVICES);
  oneOf(where, 'precision', o.precision, PRECISIONS);
  oneOf(where, 'precisionFallback', o.precisionFallback, PRECISION_FALLBACKS);
  if ((o.cache as string) === 'off') {
    throw new TypeError(`${where}: cache 'off' is no longer an option (it kept nothing and recompiled on every call). For no disk cache use cache: 'memory' (compiled graphs stay in memory, nothing is written to disk); to drop compiled graphs, call clearCache() on the compiled handle.`);
  }
  oneOf(where, 'cache', o.cache, CACHE_MODES);
  oneOf(where, 'fallback', o.fallback, FALLBACK_MODES);
  for (const k of ['splitGraphs', 'autoDynamic'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new TypeError(`${where}: ${k} must be true or false, got ${describeValue(o[k])}`);
  }
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== 'string' || o.cacheDir.length === 0)) {
    throw new TypeError(`${where}: cacheDir must be a non-empty path string, got ${JSON.stringify(o.cacheDir)}`);
  }
  if (o.debug !== undefined && o.debug !== false && (typeof o.debug !== 'string' || o.debug.length === 0)) {
    throw new TypeError(`${where}: debug must be a folder path or false, got ${JSON.stringify(o.debug)}`);
  }
  if (o.maxEntries !== undefined && (!Number.isInteger(o.maxEntries) || o.maxEntries < 1)) {
    throw new RangeError(`${where}: maxEntries must be a positive integer, got ${o.maxEntries}`);
  }
  if (o.cacheMaxBytes !== undefined && (!Number.isFinite(o.cacheMaxBytes) || o.cacheMaxBytes <= 0)) {
    throw new RangeError(`${where}: cacheMaxBytes must be a positive number, got ${o.cacheMaxBytes}`);
  }
  if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0)) {
    throw new TypeError(`${where}: name must be a non-empty string, got ${JSON.stringify(o.name)}`);
  }
  if (o.passes !== undefined) {
    if (typeof o.passes !== 'object' || o.passes === null) throw new TypeError(`${where}: passes must be { disable?: string[] }`);
    const disable = o.passes.disable ?? [];
    if (!Array.isArray(disable) || disable.some((n) => typeof n !== 'string')) {
      throw new TypeError(`${where}: passes.disable must be an array of pass names, got ${JSON.stringify(o.passes.disable)}`);
    }
    const known = listPassNames();
    for (const n of disable) {
      if (!known.includes(n)) {
        throw new RangeError(`${where}: passes.disable names unknown pass "${n}"; registered passes: ${known.length ? known.join(', ') : '(none yet)'}`);
      }
    }
  }
  for (const k of ['onnxruntime', 'tensorrt'] as const) {
    const v = o[k];
    if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) {
      throw new TypeError(`${where}: ${k} must be an object of ${k} session options, got ${describeValue(v)}`);
    }
  }
  if (o.inputSpec !== undefined) validateInputSpec(o.inputSpec, where);
  return o;
}

/** A value as an error message shows it: JSON where that says something, else its kind. */
export function describeValue(v: unknown): string {
  if (typeof v === 'function') return `function ${v.name || '(anonymous)'}`;
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype) return `an instance of ${v.constructor?.name ?? 'a class'}`;
  try { return JSON.stringify(v) ?? String(v); } catch { return String(v); }
}

/** The known name within edit distance 2 of `name` (case-insensitive), for "did you mean". */
function closest(name: string, known: readonly string[]): string | null {
  let best: string | null = null, bestD = 3;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

function validateInputSpec(spec: unknown, where: string): void {
  if (!Array.isArray(spec)) throw new TypeError(`${where}: inputSpec must be an array with one entry (or null) per tensor input`);
  spec.forEach((s, i) => {
    if (s === null) return;
    if (typeof s !== 'object' || !Array.isArray((s as InputSpec).shape)) {
      throw new TypeError(`${where}: inputSpec[${i}] must be { shape: (number | string)[], dtype? } or null, got ${JSON.stringify(s)}`);
    }
    for (const d of (s as InputSpec).shape) {
      const ok = (typeof d === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(d)) || d === -1 || (Number.isInteger(d) && (d as number) >= 0);
      if (!ok) throw new TypeError(`${where}: inputSpec[${i}].shape has invalid dim ${JSON.stringify(d)}; use a non-negative integer, -1 or an identifier such as "batch"`);
    }
    const dt = (s as InputSpec).dtype;
    if (dt !== undefined && !(DTYPES as readonly string[]).includes(dt)) {
      throw new TypeError(`${where}: inputSpec[${i}].dtype "${dt}" is not a dtype; expected one of ${DTYPES.join(', ')}`);
    }
  });
}

function oneOf<T>(where: string, key: string, v: unknown, allowed: readonly T[]): void {
  if (v !== undefined && !allowed.includes(v as T)) {
    throw new TypeError(`${where}: ${key} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(v)}`);
  }
}

// ---- global configuration ----

let globalConfig: JitOptions = {};
let configGeneration = 0;

/** Sets process-wide options (merged into what earlier calls set). Deploy-time keys override the
 *  call-site options; see the precedence note at the top of this file. */
export function configure(options: JitOptions): void {
  validateOptions(options, 'configure()');
  globalConfig = { ...globalConfig, ...options };
  configGeneration++;
}

/** Forgets everything configure() set (tests use this). */
export function resetConfig(): void {
  globalConfig = {};
  configGeneration++;
}

export const getConfig = (): Readonly<JitOptions> => globalConfig;
/** Changes whenever configure() or resetConfig() runs, so callers can cache resolved options. */
export const getConfigGeneration = (): number => configGeneration;

/** Deploy-time options read from INFERJIT_* environment variables. */
export function envOptions(env: NodeJS.ProcessEnv = process.env): JitOptions {
  const o: JitOptions = {};
  const get = (k: string): string | undefined => {
    const v = env[k];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const device = get('INFERJIT_DEVICE');
  if (device !== undefined) o.device = device as JitDevice;
  const precision = get('INFERJIT_PRECISION');
  if (precision !== undefined) o.precision = precision as Precision;
  const precisionFallback = get('INFERJIT_PRECISION_FALLBACK');
  if (precisionFallback !== undefined) o.precisionFallback = precisionFallback as PrecisionFallback;
  const dir = get('INFERJIT_CACHE_DIR');
  if (dir !== undefined) o.cacheDir = dir;
  const cache = get('INFERJIT_CACHE');
  if (cache !== undefined) o.cache = cache as CacheMode;
  const maxBytes = get('INFERJIT_CACHE_MAX_BYTES');
  if (maxBytes !== undefined) o.cacheMaxBytes = parseBytes(maxBytes);
  const fallback = get('INFERJIT_FALLBACK');
  if (fallback !== undefined) o.fallback = fallback as FallbackMode;
  const debug = get('INFERJIT_DEBUG');
  if (debug !== undefined) o.debug = debug === '0' || debug === 'false' ? false : debug;
  // Each variable is validated under its own name so the error says which one is wrong.
  for (const [k, name] of [['device', 'INFERJIT_DEVICE'], ['precision', 'INFERJIT_PRECISION'], ['precisionFallback', 'INFERJIT_PRECISION_FALLBACK'], ['cache', 'INFERJIT_CACHE'], ['fallback', 'INFERJIT_FALLBACK']] as const) {
    if (o[k] !== undefined) validateOptions({ [k]: o[k] } as JitOptions, name);
  }
  return o;
}

/** "512M", "2G", "1048576" -> bytes. */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(s.trim());
  if (!m) throw new TypeError(`INFERJIT_CACHE_MAX_BYTES: cannot read "${s}" as a size; use bytes or a suffix K, M, G, T`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

const DEPLOY_KEYS = ['device', 'precision', 'precisionFallback', 'cacheDir', 'cache', 'cacheMaxBytes', 'fallback', 'debug'] as const;

/** Merges call-site options (already combined with class metadata) with configure() and the
 *  environment following the precedence rule above. */
export function resolveOptions(callSite: JitOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  const fromEnv = envOptions(env);
  const g = globalConfig;
  const deploy: JitOptions = {};
  for (const k of DEPLOY_KEYS) {
    const v = fromEnv[k] ?? g[k] ?? callSite[k];
    if (v !== undefined) (deploy as Record<string, unknown>)[k] = v;
  }
  const disabled = [...new Set([...(g.passes?.disable ?? []), ...(callSite.passes?.disable ?? [])])].sort();
  return {
    device: deploy.device ?? 'cpu',
    precision: deploy.precision ?? 'fp32',
    precisionFallback: deploy.precisionFallback ?? 'error',
    inputSpec: callSite.inputSpec ?? g.inputSpec ?? null,
    cacheDir: resolve(deploy.cacheDir ?? defaultCacheDir(env)),
    cache: deploy.cache ?? 'disk',
    cacheMaxBytes: deploy.cacheMaxBytes ?? DEFAULT_CACHE_MAX_BYTES,
    passesDisabled: disabled,
    debug: deploy.debug ? resolve(deploy.debug) : null,
    fallback: deploy.fallback ?? 'eager',
    splitGraphs: callSite.splitGraphs ?? g.splitGraphs ?? true,
    autoDynamic: callSite.autoDynamic ?? g.autoDynamic ?? true,
    maxEntries: callSite.maxEntries ?? g.maxEntries ?? 8,
    name: callSite.name ?? null,
    backendOptions: {
      ...(callSite.onnxruntime ?? g.onnxruntime ? { onnxruntime: callSite.onnxruntime ?? g.onnxruntime } : {}),
      ...(callSite.tensorrt ?? g.tensorrt ? { tensorrt: callSite.tensorrt ?? g.tensorrt } : {}),
    },
  };
}

/** Combines two option objects, `over` winning field by field (passes.disable lists are united). */
export function mergeOptions(under: JitOptions | undefined, over: JitOptions | undefined): JitOptions {
  const out: JitOptions = { ...(under ?? {}), ...(over ?? {}) };
  const d = [...(under?.passes?.disable ?? []), ...(over?.passes?.disable ?? [])];
  if (under?.passes || over?.passes) out.passes = { disable: [...new Set(d)] };
  return out;
}
