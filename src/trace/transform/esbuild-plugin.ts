// An esbuild plugin applying the dynamic-to-static transform (transform.ts) to a bundle's
// TypeScript files, for projects that bundle instead of running through the Node loader hook.
// Output is cached by content hash (cache.ts) like the hook's. Usage:
//   import { build } from 'esbuild';
//   import { inferjitD2sPlugin } from 'inferjit/esbuild';   // src/trace/transform/esbuild-plugin.ts
//   await build({ entryPoints: ['app.ts'], bundle: true, platform: 'node', format: 'esm', plugins: [inferjitD2sPlugin()] });
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'esbuild';
import { transformSource } from './transform.js';
import { TransformCache } from './cache.js';
import { LIBRARY_ROOT } from './node-compile.js';

export interface D2sPluginOptions {
  /** Files to consider (default: .ts/.tsx/.mts/.cts outside node_modules). */
  filter?: RegExp;
  /** Where transformed files import the runtime helpers from (default: this package's
   *  runtime.ts by absolute path, so the bundle shares one copy with the rest of inferjit). */
  runtimeSpecifier?: string;
  /** A cache to share, or null for none (default: a cache under defaultCacheDir()). */
  cache?: TransformCache | null;
}

export function inferjitD2sPlugin(options: D2sPluginOptions = {}): Plugin {
  // runtime.ts next to this file when running from source, runtime.js in a built package
  const here = (ext: string): string => fileURLToPath(new URL(`./runtime${ext}`, import.meta.url));
  const runtime = options.runtimeSpecifier ?? (existsSync(here('.ts')) ? here('.ts') : here('.js'));
  const cache = options.cache === undefined ? new TransformCache() : options.cache;
  return {
    name: 'inferjit-d2s',
    setup(build) {
      build.onLoad({ filter: options.filter ?? /\.(m|c)?tsx?$/ }, async (args) => {
        if (args.path.includes('/node_modules/') || args.path.startsWith(LIBRARY_ROOT)) return undefined;
        const source = await readFile(args.path, 'utf8');
        if (!/inferenceJit/.test(source)) return undefined;
        const run = (): string => {
          const t = transformSource(source, args.path, { runtimeSpecifier: runtime });
          return t.changed ? t.code : '';
        };
        const code = cache ? cache.get(TransformCache.key('esbuild', args.path, source, runtime), run) : run();
        if (code === '') return undefined;
        return { contents: code, loader: /x$/.test(args.path) ? 'tsx' : 'ts', resolveDir: dirname(args.path) };
      });
    },
  };
}
