// Node module-customization hooks (module.register) that apply the dynamic-to-static transform to
// the user's TypeScript files as they are imported. Registered by src/register.ts; runs in Node's
// hooks thread. Everything it does not convert goes to the next loader unchanged.
import { compileConverted } from './node-compile.js';
import { TransformCache } from './cache.js';

let cache = new TransformCache();

/** module.register(..., { data: { cacheDir } }) picks the cache folder (null: memory only); the
 *  hooks thread does not see environment changes made after it started. */
export function initialize(data?: { cacheDir?: string | null }): void {
  if (data && 'cacheDir' in data) cache = new TransformCache(data.cacheDir ?? null);
}

interface LoadContext { format?: string; conditions?: string[]; importAttributes?: Record<string, string> }
type NextLoad = (url: string, context?: LoadContext) => Promise<{ format?: string; source?: unknown; shortCircuit?: boolean }>;

export async function load(url: string, context: LoadContext, nextLoad: NextLoad): Promise<{ format?: string; source?: unknown; shortCircuit?: boolean }> {
  let js: string | null = null;
  try {
    js = compileConverted(url, cache);
  } catch (e) {
    // a file the transform cannot handle still loads, untransformed, and the reason is printed once
    process.emitWarning(`inferjit/register: could not convert ${url}: ${(e as Error).message}; loading it unchanged`, { type: 'InferjitWarning', code: 'INFERJIT_D2S_TRANSFORM' });
  }
  if (js === null) return nextLoad(url, context);
  return { format: 'module', source: js, shortCircuit: true };
}
