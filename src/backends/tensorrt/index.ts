// The tensorrt backend: the ONNX export run by ONNX Runtime's TensorRT execution provider, with
// engines cached in our cache folder, and CUDA then CPU providers behind it only when the caller
// allows a fallback. Where the TensorRT provider is not installed (onnxruntime-node's npm package
// ships only the CPU provider; the GPU providers are a separate download) the error names the
// missing files and how to install them.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DiskCache } from '../../cache/disk-cache.js';
import type { Graph } from '../../ir/index.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Dim } from '../../tensor/shape.js';
import type { OnnxExportOptions } from '../../onnx/export.js';
import {
  graphIO, onnxCacheKey, openCachedSession, sessionOptionsFor,
  type GraphOptimizationLevel, type OnnxRuntimeExecutable,
} from '../onnxruntime/index.js';
import { OrtSession, listOrtBackends, ortVersion } from '../onnxruntime/session.js';

const require = createRequire(import.meta.url);

export type TensorRtPrecision = 'fp32' | 'fp16' | 'int8';
export type FallbackProvider = 'cuda' | 'cpu';

/** min/opt/max sizes of one dynamic dim for TensorRT's optimization profile. */
export interface DimRange { min: number; opt: number; max: number }

export interface TensorRtOptions {
  /** Folder for the exported model and the TensorRT engines (the JIT's cache folder). */
  cacheDir?: string;
  /** The caller's key for the graph and its weights (see OnnxRuntimeOptions.cacheKey). */
  cacheKey?: string;
  /** 'fp16' and 'int8' set trt_fp16_enable / trt_int8_enable (default 'fp32'). */
  precision?: TensorRtPrecision;
  /** Providers allowed behind TensorRT: false (the default: TensorRT or an error), true (CUDA then
   *  CPU) or an explicit list. Nodes TensorRT cannot take also go to these providers. */
  fallback?: boolean | readonly FallbackProvider[];
  /** CUDA device (default 0). */
  deviceId?: number;
  /** Optimization-profile ranges per dynamic dim name (the input spec's names). Without them the
   *  TensorRT provider builds engines for the shapes it sees and rebuilds when a shape grows. */
  profiles?: Record<string, DimRange>;
  /** INT8 calibration table file (with precision 'int8'). */
  int8CalibrationTable?: string;
  /** GPU memory TensorRT may use while building engines, in bytes. */
  workspaceSize?: number;
  graphOptimizationLevel?: GraphOptimizationLevel;
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  exportOptions?: OnnxExportOptions;
  /** Where warnings go (default: process.emitWarning). */
  warn?: (message: string) => void;
}

/** Raised when TensorRT was asked for and cannot be used here. `missing` lists what is absent. */
export class TensorRtUnavailableError extends Error {
  constructor(message: string, readonly missing: readonly string[]) {
    super(message);
    this.name = 'TensorRtUnavailableError';
  }
}

// ---- what is installed ----

const PROVIDER_LIB: Record<'shared' | 'tensorrt' | 'cuda', string> = process.platform === 'win32'
  ? { shared: 'onnxruntime_providers_shared.dll', tensorrt: 'onnxruntime_providers_tensorrt.dll', cuda: 'onnxruntime_providers_cuda.dll' }
  : { shared: 'libonnxruntime_providers_shared.so', tensorrt: 'libonnxruntime_providers_tensorrt.so', cuda: 'libonnxruntime_providers_cuda.so' };

/** onnxruntime-node's folder of native libraries for this platform. */
export function ortBinaryDir(): string {
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

export interface ProviderStatus {
  /** True when the provider's libraries are in place (loading may still fail on missing CUDA/TensorRT system libraries). */
  installed: boolean;
  /** What is absent: provider library paths, or the platform. */
  missing: string[];
}

/** Whether onnxruntime-node here can load an execution provider ('tensorrt' or 'cuda'). */
export function providerStatus(provider: 'tensorrt' | 'cuda', binDir = ortBinaryDir()): ProviderStatus {
  const known = listOrtBackends().some((b) => b.name === provider);
  if (!known) return { installed: false, missing: [`a ${provider} build of onnxruntime-node for ${process.platform}/${process.arch} (its builds for this platform have: ${listOrtBackends().map((b) => b.name).join(', ')})`] };
  const missing = [PROVIDER_LIB.shared, PROVIDER_LIB[provider]].map((f) => join(binDir, f)).filter((p) => !existsSync(p));
  return { installed: missing.length === 0, missing };
}

export const TENSORRT_INSTALL_HINT = [
  'The TensorRT execution provider needs, on Linux x64 with an NVIDIA GPU:',
  '  1. NVIDIA driver, CUDA 12.x runtime, cuDNN 9 and TensorRT 10.x libraries, with their lib folders on LD_LIBRARY_PATH',
  '     (e.g. `pip install tensorrt-cu12` or NVIDIA\'s TensorRT tarball; check with `ldconfig -p | grep -E "libnvinfer|libcudart|libcudnn"`);',
  '  2. onnxruntime-node\'s GPU providers, which npm does not ship in the package:',
  '     ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install',
  '     (onnxruntime-node\'s own install script fetches them on Linux x64 unless it was skipped: ONNXRUNTIME_NODE_INSTALL=skip or an allowScripts denial).',
  'To run without TensorRT, pass fallback: true (CUDA, then CPU) or use device \'onnxruntime\'.',
].join('\n');

function unavailableMessage(missing: readonly string[]): string {
  return `tensorrt backend: the TensorRT execution provider of onnxruntime-node ${ortVersion()} is not installed; missing:\n`
    + missing.map((m) => `  - ${m}`).join('\n') + `\n${TENSORRT_INSTALL_HINT}`;
}

/** Null when the TensorRT provider is installed, else the full error message. */
export function tensorRtUnavailableReason(binDir?: string): string | null {
  const s = providerStatus('tensorrt', binDir);
  return s.installed ? null : unavailableMessage(s.missing);
}

// ---- provider options ----

/** The TensorRT optimization-profile strings ("input:1x3x224,other:...") for min, opt and max. */
export function profileShapes(inputs: readonly { name: string; shape: readonly Dim[] }[], profiles: Record<string, DimRange>): { min: string; opt: string; max: string } | null {
  const dynamic = inputs.filter((i) => i.shape.some((d) => typeof d === 'string'));
  if (dynamic.length === 0) return null;
  const needed = [...new Set(dynamic.flatMap((i) => i.shape.filter((d): d is string => typeof d === 'string')))];
  const absent = needed.filter((n) => !(n in profiles));
  if (absent.length) {
    throw new RangeError(`tensorrt backend: profiles give no range for dynamic dim${absent.length > 1 ? 's' : ''} ${absent.map((a) => `"${a}"`).join(', ')} (the model's dynamic dims are ${needed.join(', ')})`);
  }
  for (const [name, r] of Object.entries(profiles)) {
    if (!(Number.isInteger(r.min) && r.min >= 1 && r.min <= r.opt && r.opt <= r.max)) {
      throw new RangeError(`tensorrt backend: profile for "${name}" must satisfy 1 <= min <= opt <= max (integers), got ${JSON.stringify(r)}`);
    }
  }
  const one = (k: keyof DimRange) => dynamic.map((i) => `${i.name}:${i.shape.map((d) => (typeof d === 'number' ? d : profiles[d][k])).join('x')}`).join(',');
  return { min: one('min'), opt: one('opt'), max: one('max') };
}

/** The TensorRT execution provider entry with ONNX Runtime's trt_* option names. */
export function tensorRtProvider(o: { deviceId: number; precision: TensorRtPrecision; engineDir: string; profile: { min: string; opt: string; max: string } | null; int8CalibrationTable?: string; workspaceSize?: number }): Record<string, unknown> {
  const p: Record<string, unknown> = {
    name: 'tensorrt',
    deviceId: o.deviceId,
    trt_engine_cache_enable: true,
    trt_engine_cache_path: o.engineDir,
    trt_timing_cache_enable: true,
    trt_timing_cache_path: o.engineDir,
    trt_fp16_enable: o.precision === 'fp16' || o.precision === 'int8',
    trt_int8_enable: o.precision === 'int8',
  };
  if (o.int8CalibrationTable) p.trt_int8_calibration_table_name = o.int8CalibrationTable;
  if (o.workspaceSize !== undefined) p.trt_max_workspace_size = o.workspaceSize;
  if (o.profile) {
    p.trt_profile_min_shapes = o.profile.min;
    p.trt_profile_opt_shapes = o.profile.opt;
    p.trt_profile_max_shapes = o.profile.max;
  }
  return p;
}

const warned = new Set<string>();
function warnOnce(warn: (m: string) => void, message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  warn(message);
}

export interface TensorRtExecutable extends OnnxRuntimeExecutable {
  /** Providers the session was created with, in priority order. */
  readonly providers: readonly string[];
  /** Folder holding the TensorRT engine cache (null when TensorRT is not among the providers). */
  readonly engineDir: string | null;
}

function fallbackList(f: TensorRtOptions['fallback']): FallbackProvider[] {
  if (f === undefined || f === false) return [];
  if (f === true) return ['cuda', 'cpu'];
  for (const p of f) if (p !== 'cuda' && p !== 'cpu') throw new TypeError(`tensorrt backend: fallback providers must be 'cuda' or 'cpu', got ${JSON.stringify(p)}`);
  return [...f];
}

/** Compiles a graph for TensorRT through ONNX Runtime. Throws TensorRtUnavailableError when the
 *  TensorRT provider is missing and no fallback is allowed. */
export function compileTensorRt(graph: Graph, constants: ReadonlyMap<string, Tensor>, options: TensorRtOptions = {}): TensorRtExecutable {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, { code: 'INFERJIT_TENSORRT' }));
  const precision = options.precision ?? 'fp32';
  if (!['fp32', 'fp16', 'int8'].includes(precision)) throw new TypeError(`tensorrt backend: precision must be 'fp32', 'fp16' or 'int8', got ${JSON.stringify(precision)}`);
  const fallback = fallbackList(options.fallback);
  const deviceId = options.deviceId ?? 0;
  const exportOptions: OnnxExportOptions = { bf16AsFloat32: true, ...options.exportOptions };
  const { inputs } = graphIO(graph, exportOptions);
  const profile = options.profiles ? profileShapes(inputs, options.profiles) : null;

  const trt = providerStatus('tensorrt');
  const providers: (string | Record<string, unknown>)[] = [];
  const missing: string[] = [];
  if (!trt.installed) {
    if (fallback.length === 0) throw new TensorRtUnavailableError(unavailableMessage(trt.missing), trt.missing);
    missing.push(...trt.missing);
  }
  // the cache folder must be inferjit's own before anything is written into it (src/cache/cache-folder.ts)
  if (options.cacheDir !== undefined) new DiskCache(options.cacheDir).claim();
  const tempDir = options.cacheDir === undefined ? mkdtempSync(join(tmpdir(), 'inferjit-trt-')) : null;
  const modelDir = tempDir ?? join(options.cacheDir!, 'onnx', onnxCacheKey(graph, constants, exportOptions, options.cacheKey));
  let engineDir: string | null = null;
  if (trt.installed) {
    const tag = createHash('sha256').update(JSON.stringify({ precision, profile, deviceId, calib: options.int8CalibrationTable ?? null })).digest('hex').slice(0, 12);
    engineDir = join(modelDir, 'tensorrt', `${precision}-${tag}`);
    mkdirSync(engineDir, { recursive: true });
    providers.push(tensorRtProvider({ deviceId, precision, engineDir, profile, int8CalibrationTable: options.int8CalibrationTable, workspaceSize: options.workspaceSize }));
    if (precision !== 'fp32' || profile) {
      // onnxruntime-node's binding (checked up to 1.30) hands only deviceId to the TensorRT provider
      warnOnce(warn, `tensorrt backend: onnxruntime-node ${ortVersion()} passes only deviceId to the TensorRT execution provider; `
        + `${precision !== 'fp32' ? `precision '${precision}' (trt_${precision}_enable)` : ''}${precision !== 'fp32' && profile ? ' and ' : ''}${profile ? 'the optimization profiles' : ''} `
        + 'are set in the provider options but take effect only with a binding that forwards them; engines are built in fp32 for the shapes seen');
    }
  }
  for (const p of fallback) {
    if (p === 'cpu') { providers.push('cpu'); continue; }
    const cuda = providerStatus('cuda');
    if (cuda.installed) providers.push({ name: 'cuda', deviceId });
    else missing.push(...cuda.missing.filter((m) => !missing.includes(m)));
  }
  if (providers.length === 0) {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    throw new TensorRtUnavailableError(`${unavailableMessage(missing)}\nThe allowed fallback (${fallback.join(', ')}) is not installed either.`, missing);
  }
  const names = providers.map((p) => (typeof p === 'string' ? p : String(p.name)));
  if (!trt.installed) {
    warnOnce(warn, `tensorrt backend: the TensorRT execution provider is not installed (missing ${trt.missing.join(', ')}); running on ${names.join(', ')} as allowed by fallback`);
  }

  const sessionOptions = sessionOptionsFor({
    graphOptimizationLevel: options.graphOptimizationLevel,
    logSeverityLevel: options.logSeverityLevel,
    executionProviders: providers as never,
  });
  const extra: Record<string, unknown> = {};
  // without 'cpu' among the providers, a node no provider takes is an error, not a silent CPU run
  if (!names.includes('cpu')) extra.session = { disable_cpu_ep_fallback: '1' };
  let opened: { session: OrtSession; path: string; exported: boolean };
  try {
    if (engineDir) {
      // Engine cache: ONNX Runtime writes an "EP context" model next to the engine after the first
      // build (session config ep.context_*, which onnxruntime-node forwards); later sessions load
      // that model and skip the build.
      const contextModel = join(engineDir, 'model_ctx.onnx');
      const { outputs } = graphIO(graph, exportOptions);
      if (existsSync(contextModel)) {
        opened = { session: new OrtSession(contextModel, { ...sessionOptions, extra } as never, inputs, outputs, exportOptions.bf16AsFloat32), path: contextModel, exported: false };
      } else {
        extra.ep = { context_enable: '1', context_file_path: contextModel, context_embed_mode: '0' };
        opened = openCachedSession(graph, constants, modelDir, exportOptions, { ...sessionOptions, extra } as never);
      }
    } else {
      opened = openCachedSession(graph, constants, modelDir, exportOptions, { ...sessionOptions, ...(Object.keys(extra).length ? { extra } : {}) } as never);
    }
  } catch (e) {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    if (engineDir) {
      throw new TensorRtUnavailableError(`tensorrt backend: the TensorRT execution provider is installed but the session failed: ${(e as Error).message}\n${TENSORRT_INSTALL_HINT}`, []);
    }
    throw e;
  }
  const { session, path, exported } = opened;
  return {
    backend: 'tensorrt',
    modelPath: path,
    exported,
    providers: names,
    engineDir,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    runSync: (ins) => session.runSync(ins),
    run: (ins) => session.run(ins),
    dispose() {
      session.dispose();
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    },
  };
}
