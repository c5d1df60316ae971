// Dynamic to static: the source transform, its runtime helpers, the esbuild plugin and the cache
// (the Node loader hook is src/register.ts).
export { transformSource, type TransformOptions, type TransformResult } from './transform.js';
export {
  convertIfElse, convertWhile, toBool, toPredicate, logicalAnd, logicalOr, logicalNot, isTraced, ControlFlowError,
  type GetVars, type SetVars,
} from './runtime.js';
export { inferjitD2sPlugin, type D2sPluginOptions } from './esbuild-plugin.js';
export { TransformCache, defaultCacheDir, TRANSFORM_VERSION } from './cache.js';
