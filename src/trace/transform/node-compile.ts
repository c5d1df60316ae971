// What the Node loader hook does with one file: if it holds code to convert (a class decorated
// with @inferenceJit, an inferenceJit(...) call), transform it (transform.ts) and compile the
// TypeScript to JavaScript with esbuild, the compiler tsx itself uses; the result is cached by
// content hash (cache.ts). Files with nothing to convert are left to the next loader (tsx).
import { dirname, join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';
import { ts } from 'ts-morph';
import { transformSource } from './transform.js';
import { TransformCache } from './cache.js';

/** The runtime helpers' module URL: the copy next to this file, so the transformed code and the
 *  tracer share one module instance. */
export const RUNTIME_URL = new URL('./runtime.js', import.meta.url).href;

const CONVERTIBLE = /\.(m|c)?tsx?$/;

/** inferjit's own source folder: the library is never transformed (it defines inferenceJit and
 *  its code is not user model code). */
export const LIBRARY_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Compiler options esbuild honours, from the tsconfig.json nearest to `file` (if any). */
function tsconfigFor(file: string): string {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const p = join(dir, 'tsconfig.json');
    if (existsSync(p)) {
      const parsed = ts.parseConfigFileTextToJson(p, readFileSync(p, 'utf8'));
      const o = (parsed.config?.compilerOptions ?? {}) as Record<string, unknown>;
      const keep = ['experimentalDecorators', 'useDefineForClassFields', 'target', 'verbatimModuleSyntax', 'preserveValueImports', 'importsNotUsedAsValues', 'jsx', 'jsxFactory', 'jsxFragmentFactory', 'jsxImportSource'];
      return JSON.stringify({ compilerOptions: Object.fromEntries(keep.filter((k) => k in o).map((k) => [k, o[k]])) });
    }
    if (dirname(dir) === dir) return '{}';
  }
}

/** Whether `file` is an ES module: .mts, or .ts/.tsx under a package.json with "type": "module". */
function isEsm(file: string): boolean {
  if (/\.mtsx?$/.test(file)) return true;
  if (/\.ctsx?$/.test(file)) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try { return (JSON.parse(readFileSync(p, 'utf8')) as { type?: string }).type === 'module'; } catch { return false; }
    }
    if (dirname(dir) === dir) return false;
  }
}

const warned = new Set<string>();
function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, { type: 'InferjitWarning', code: 'INFERJIT_D2S_CJS' });
}

/** The JavaScript for module `url` with its control flow converted, or null when the file has
 *  nothing to convert (or is not a local TypeScript file). */
export function compileConverted(url: string, cache: TransformCache): string | null {
  if (!url.startsWith('file:') || !CONVERTIBLE.test(new URL(url).pathname) || url.includes('/node_modules/')) return null;
  const file = fileURLToPath(url);
  if (file.startsWith(LIBRARY_ROOT)) return null;
  let source: string;
  try { source = readFileSync(file, 'utf8'); } catch { return null; }
  if (!/inferenceJit/.test(source)) return null;
  if (!isEsm(file)) {
    warnOnce(`inferjit/register: ${file} is a CommonJS module; the dynamic-to-static transform converts ES modules only ("type": "module" in package.json, or .mts), so it is loaded unchanged`);
    return null;
  }
  const tsconfig = tsconfigFor(file);
  const key = TransformCache.key(file, source, RUNTIME_URL, tsconfig, process.version);
  const out = cache.get(key, () => {
    const t = transformSource(source, file, { runtimeSpecifier: RUNTIME_URL, sourceMap: false });
    if (!t.changed) return '';
    const loader = /x$/.test(file) ? 'tsx' : 'ts';
    return transformSync(t.code, {
      loader, format: 'esm', sourcemap: 'inline', sourcefile: file, tsconfigRaw: tsconfig,
      target: `node${process.versions.node.split('.')[0]}`,
    }).code;
  });
  return out === '' ? null : out;
}

