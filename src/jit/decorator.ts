// inferenceJit in all its forms, told apart by the arguments it receives:
//   @inferenceJit / @inferenceJit(options)   on a class (compiles `forward`) or on a method, with
//                                             standard (TC39) decorators or experimentalDecorators;
//   inferenceJit(module, options?)            function form: a callable compiled module;
//   inferenceJit(fn, options?)                function form: a compiled function.
// Per-class options live in reflect-metadata under JIT_OPTIONS_KEY, so a subclass (or jitOptions())
// can refine them; they are read on the first call, when the instance's real class is known.
import 'reflect-metadata';
import { JitRunner, type JitStats } from './runtime.js';
import { describeValue, mergeOptions, validateOptions, type JitOptions } from './options.js';
import { callerFile, type ModuleLike } from '../cache/fingerprint.js';
import type { CompiledEntry } from './compile.js';

export const JIT_OPTIONS_KEY = 'inferjit:options';

/** What every compiled form exposes: the function and module forms carry these methods; for a
 *  decorated instance, `jitHandle(instance)` returns them (or use jitStats / jitDescribe). */
export interface JitHandle {
  /** Calls, cache hits and misses, recompiles and the guard that failed, captures, disk hits, times. */
  stats(): JitStats;
  /** How each compiled signature runs, one line per signature: backend and path (native plan or
   *  interpreter, and why), e.g. 'f32[1,8] -> cpu plan: 1 kernels, ...'. */
  describe(): string;
  /** Drops the in-memory compiled entries (the disk cache stays). */
  clearCache(): void;
  /** The compiled graphs, most recently used first: `.capture.graph.print()` shows what was traced. */
  compiledEntries(): CompiledEntry[];
}

type AnyFn = (...args: any[]) => any;
type ModuleWithForward = { forward(...args: any[]): any };

/** A module compiled by the function form: the module itself (fields, methods, instanceof), whose
 *  `forward` is compiled, callable directly, with the JitHandle methods. */
export type CompiledModule<M extends ModuleWithForward> = M & ((...args: Parameters<M['forward']>) => ReturnType<M['forward']>) & JitHandle & { readonly module: M };
export type CompiledFunction<F extends AnyFn> = F & JitHandle;
/** What the function form returns for a module or a function. */
export type Compiled<T> = T extends ModuleWithForward ? CompiledModule<T> : T extends AnyFn ? CompiledFunction<T> : never;

type StandardContext = { kind: string; name: string | symbol | undefined; addInitializer?: unknown };

// Bare decorator forms (`@inferenceJit` without parentheses), standard and legacy.
export function inferenceJit<C extends abstract new (...args: any[]) => any>(cls: C, context?: ClassDecoratorContext): C;
export function inferenceJit<F extends AnyFn>(method: F, context: ClassMethodDecoratorContext): F;
export function inferenceJit(target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
// Function forms (one overload for modules and functions, so that TypeScript's error for a bad
// options object names the option rather than a mismatch with another overload) and the decorator
// factory (`@inferenceJit(options)`).
export function inferenceJit<T extends ModuleWithForward | AnyFn>(target: T, options?: JitOptions): Compiled<T>;
export function inferenceJit(options?: JitOptions): <T>(target: T, ...rest: any[]) => any;
export function inferenceJit(...args: any[]): any {
  const [a, b, c] = args;
  if (args.length === 0 || (args.length === 1 && isOptionsObject(a))) {
    const options = args.length === 0 ? {} : validateOptions(a, 'inferenceJit options');
    const site = callerFile();
    return (...dargs: any[]) => applyDecorator(dargs, options, site);
  }
  if (isStandardContext(b) || isLegacyMethodCall(args) || (args.length === 1 && isClassWithForward(a))) {
    return applyDecorator(args, {}, callerFile()); // bare @inferenceJit
  }
  const compilable = typeof a === 'function' || (a && typeof a === 'object' && typeof a.forward === 'function');
  if (args.length === 2 && compilable && b !== undefined && !isOptionsObject(b)) {
    validateOptions(b, 'inferenceJit options'); // names what is wrong with it (not an object, ...)
    throw new TypeError(`inferenceJit: options must be a plain object such as { device: 'cpu' }, got ${describeValue(b)}`);
  }
  if (args.length <= 2 && (b === undefined || isOptionsObject(b))) {
    const options = b === undefined ? {} : validateOptions(b, 'inferenceJit options');
    if (isClassWithForward(a)) return decorateClass(a, options, callerFile());
    if (typeof a === 'function') return compileFunction(a, options);
    if (a && typeof a === 'object' && typeof a.forward === 'function') return compileModule(a, options);
  }
  throw new TypeError(
    `inferenceJit: cannot tell how it is used from its arguments (${args.map(describe).join(', ')}${c === undefined ? '' : ', ...'}); ` +
    'use it as @inferenceJit / @inferenceJit(options) on a class or method, or call inferenceJit(moduleOrFunction, options)',
  );
}

/** A class decorator that only records per-class options (e.g. an input spec) in metadata. */
export function jitOptions(options: JitOptions): (target: any, context?: any) => void {
  validateOptions(options, 'jitOptions');
  return (target: any) => {
    if (typeof target !== 'function') throw new TypeError('jitOptions: apply it to a class');
    Reflect.defineMetadata(JIT_OPTIONS_KEY, mergeOptions(Reflect.getMetadata(JIT_OPTIONS_KEY, target), options), target);
  };
}

/** The options stored for a class (including those inherited from its base classes). */
export function getJitOptions(cls: Function): JitOptions {
  return (Reflect.getMetadata(JIT_OPTIONS_KEY, cls) as JitOptions | undefined) ?? {};
}

/** The handle (stats, describe, clearCache, compiledEntries) of anything compiled: a decorated
 *  instance's method (`forward` by default), a compiled module or a compiled function. Null when
 *  `target` is not compiled (its `method` is not decorated). */
export function jitHandle(target: object, method = 'forward'): JitHandle | null {
  const runner = jitRunner(target, method);
  return runner ? handleOf(runner) : null;
}

/** stats() of anything compiled (see jitHandle); null when `target` is not compiled. */
export function jitStats(target: object, method = 'forward'): JitStats | null {
  return jitRunner(target, method)?.stats() ?? null;
}

/** describe() of anything compiled (see jitHandle); null when `target` is not compiled. */
export function jitDescribe(target: object, method = 'forward'): string | null {
  return jitRunner(target, method)?.describe() ?? null;
}

/** The runtime behind a compiled handle or a decorated instance's method (created on demand, so
 *  an instance that has not been called yet reports empty stats rather than nothing). */
export function jitRunner(target: object, method = 'forward'): JitRunner | null {
  const handle = handles.get(target);
  if (handle) return handle;
  const existing = runners.get(target)?.get(method);
  if (existing) return existing;
  const f = (target as Record<string, unknown>)[method];
  const info = typeof f === 'function' ? wrapperInfo.get(f) : undefined;
  return info ? runnerFor(target, info) : null;
}

function handleOf(runner: JitRunner): JitHandle {
  return {
    stats: () => runner.stats(),
    describe: () => runner.describe(),
    clearCache: () => runner.clear(),
    compiledEntries: () => runner.compiledEntries(),
  };
}

// ---- decorators ----

function applyDecorator(args: any[], options: JitOptions, site: string | null): any {
  const [target, ctx, descriptor] = args;
  if (isStandardContext(ctx)) {
    if (ctx.kind === 'class') return decorateClass(target, options, site);
    if (ctx.kind === 'method') return wrapMethod(target, String(ctx.name), options, site);
    throw new TypeError(`inferenceJit: cannot decorate a ${ctx.kind} (${String(ctx.name)}); use it on a class or a method`);
  }
  if (args.length === 1 && typeof target === 'function') return decorateClass(target, options, site);
  if (isLegacyMethodCall(args)) {
    const name = String(ctx);
    if (typeof descriptor?.value !== 'function') throw new TypeError(`inferenceJit: ${name} is not a method`);
    return { ...descriptor, value: wrapMethod(descriptor.value, name, options, site) };
  }
  throw new TypeError(`inferenceJit: unsupported decorator target (${args.map(describe).join(', ')})`);
}

/** Class form: records the options as class metadata and compiles `forward` of every instance. */
function decorateClass<C extends Function>(cls: C, options: JitOptions, site: string | null): C {
  const proto = cls.prototype as Record<string, unknown>;
  const forward = proto?.forward;
  if (typeof forward !== 'function') {
    throw new TypeError(`inferenceJit: class ${cls.name} has no forward() method to compile (decorate the method you want compiled instead)`);
  }
  Reflect.defineMetadata(JIT_OPTIONS_KEY, mergeOptions(Reflect.getMetadata(JIT_OPTIONS_KEY, cls), options), cls);
  if (!isWrapper(forward)) {
    Object.defineProperty(proto, 'forward', { value: wrapMethod(forward as AnyFn, 'forward', {}, site), writable: true, configurable: true, enumerable: false });
  }
  return cls;
}

const runners = new WeakMap<object, Map<string, JitRunner>>();
const wrappers = new WeakSet<Function>();
const isWrapper = (f: unknown): boolean => typeof f === 'function' && wrappers.has(f);

interface WrapperInfo { original: AnyFn; name: string; methodOptions: JitOptions; site: string | null }
const wrapperInfo = new WeakMap<Function, WrapperInfo>();

/** The runner of one instance's decorated method, created on first use. */
function runnerFor(self: any, info: WrapperInfo): JitRunner {
  let byMethod = runners.get(self);
  if (!byMethod) runners.set(self, (byMethod = new Map()));
  let runner = byMethod.get(info.name);
  if (!runner) {
    runner = new JitRunner({
      label: `${self.constructor?.name ?? 'object'}.${info.name}`,
      fn: info.original,
      thisArg: self,
      module: asModule(self),
      method: info.name,
      options: () => mergeOptions(getJitOptions(self.constructor), info.methodOptions),
      callerFile: info.site,
    });
    byMethod.set(info.name, runner);
  }
  return runner;
}

/** Method form: one runner per instance, created on that instance's first call. Method options
 *  override the class metadata. */
function wrapMethod(original: AnyFn, name: string, methodOptions: JitOptions, site: string | null): AnyFn {
  if (isWrapper(original)) return original;
  const info: WrapperInfo = { original, name, methodOptions, site };
  const wrapper = function (this: any, ...args: any[]): any {
    if (this === null || (typeof this !== 'object' && typeof this !== 'function')) {
      throw new TypeError(`inferenceJit: compiled method ${name} was called without an instance (did you detach it from its object?)`);
    }
    return runnerFor(this, info).call(args);
  };
  Object.defineProperty(wrapper, 'name', { value: name });
  wrappers.add(wrapper);
  wrapperInfo.set(wrapper, info);
  originals.set(wrapper, original);
  return wrapper;
}

// ---- function form ----

const handles = new WeakMap<object, JitRunner>();

function compileFunction<F extends AnyFn>(fn: F, options: JitOptions): CompiledFunction<F> {
  const site = callerFile();
  const runner = new JitRunner({
    label: fn.name || 'anonymous', fn, thisArg: undefined, module: null, method: fn.name || 'anonymous',
    options: () => options, callerFile: site,
  });
  const compiled = function (this: unknown, ...args: unknown[]) { return runner.call(args); } as unknown as CompiledFunction<F>;
  Object.defineProperty(compiled, 'name', { value: fn.name });
  attachHandle(compiled, runner);
  return compiled;
}

function compileModule<M extends ModuleWithForward>(module: M, options: JitOptions): CompiledModule<M> {
  const site = callerFile();
  // The module's own forward (the original when its class is also decorated).
  const forward = module.forward as AnyFn;
  const runner = new JitRunner({
    label: `${module.constructor?.name ?? 'module'}.forward`,
    fn: unwrap(forward),
    thisArg: module,
    module: asModule(module),
    method: 'forward',
    options: () => mergeOptions(getJitOptions(module.constructor), options),
    callerFile: site,
  });
  const call = (...args: unknown[]): unknown => runner.call(args);
  const handle: JitHandle & { module: M } = { ...handleOf(runner), module };
  // A function target makes the proxy callable; everything else reads through to the module.
  const target = function compiledModule() {} as unknown as object;
  const proxy = new Proxy(target, {
    apply: (_t, _this, args) => call(...args),
    get: (_t, prop) => {
      if (prop === 'forward' || prop === 'call') return call;
      if (Object.prototype.hasOwnProperty.call(handle, prop)) return (handle as unknown as Record<PropertyKey, unknown>)[prop];
      const v = Reflect.get(module, prop, module);
      return typeof v === 'function' ? v.bind(module) : v;
    },
    set: (_t, prop, value) => Reflect.set(module, prop, value, module),
    has: (_t, prop) => prop in handle || prop in module,
    getPrototypeOf: () => Object.getPrototypeOf(module),
  });
  handles.set(proxy, runner);
  return proxy as CompiledModule<M>;
}

function attachHandle(f: Function, runner: JitRunner): void {
  Object.assign(f, handleOf(runner));
  handles.set(f, runner);
}

/** The original forward behind a decorated class's wrapper, so the function form does not stack
 *  two runners (the decorated prototype method would otherwise compile again, per instance). */
function unwrap(f: AnyFn): AnyFn {
  return originals.get(f) ?? f;
}
const originals = new WeakMap<Function, AnyFn>();

function asModule(o: any): ModuleLike | null {
  return o && typeof o === 'object' && typeof o.namedParameters === 'function' ? (o as ModuleLike) : null;
}

// ---- argument shapes ----

function isStandardContext(x: unknown): x is StandardContext {
  return !!x && typeof x === 'object' && typeof (x as StandardContext).kind === 'string' && 'name' in (x as object) && 'addInitializer' in (x as object);
}

function isLegacyMethodCall(args: any[]): boolean {
  const [target, key, descriptor] = args;
  return args.length === 3 && target !== null && (typeof target === 'object' || typeof target === 'function') &&
    (typeof key === 'string' || typeof key === 'symbol') && (descriptor === undefined || (typeof descriptor === 'object' && descriptor !== null));
}

function isClassWithForward(x: unknown): boolean {
  return typeof x === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(x)) && typeof (x as { prototype?: { forward?: unknown } }).prototype?.forward === 'function';
}

function isOptionsObject(x: unknown): x is JitOptions {
  return !!x && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype && typeof (x as { forward?: unknown }).forward !== 'function';
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'function') return /^class[\s{]/.test(Function.prototype.toString.call(v)) ? `class ${v.name}` : `function ${v.name || '(anonymous)'}`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}
