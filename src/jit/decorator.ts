// inferenceJit in all its forms, told apart by the arguments it receives:
//   @inferenceJit / @inferenceJit(options)   on a class (compiles `forward`) or on a method, with
//                                             standard (TC39) decorators or experimentalDecorators;
//   inferenceJit(module, options?)            function form: a callable compiled module;
//   inferenceJit(fn, options?)                function form: a compiled function.
// Per-class options live in reflect-metadata under JIT_OPTIONS_KEY, so a subclass (or jitOptions())
// can refine them; they are read on the first call, when the instance's real class is known.
import 'reflect-metadata';
import { JitRunner, type JitStats } from './runtime.js';
import { mergeOptions, validateOptions, type JitOptions } from './options.js';
import { callerFile, type ModuleLike } from '../cache/fingerprint.js';
import type { CompiledEntry } from './compile.js';

export const JIT_OPTIONS_KEY = 'inferjit:options';

/** What every compiled form exposes. */
export interface JitHandle {
  stats(): JitStats;
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

type StandardContext = { kind: string; name: string | symbol | undefined; addInitializer?: unknown };

// Bare decorator forms (`@inferenceJit` without parentheses), standard and legacy.
export function inferenceJit<C extends abstract new (...args: any[]) => any>(cls: C, context?: ClassDecoratorContext): C;
export function inferenceJit<F extends AnyFn>(method: F, context: ClassMethodDecoratorContext): F;
export function inferenceJit(target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
// Function forms and the decorator factory (`@inferenceJit(options)`).
export function inferenceJit<M extends ModuleWithForward>(module: M, options?: JitOptions): CompiledModule<M>;
export function inferenceJit<F extends AnyFn>(fn: F, options?: JitOptions): CompiledFunction<F>;
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

/** Stats of a decorated instance's compiled method (null if it has not been called). */
export function jitStats(instance: object, method = 'forward'): JitStats | null {
  return runners.get(instance)?.get(method)?.stats() ?? null;
}

/** The runtime behind a decorated instance's method, or behind a compiled handle. */
export function jitRunner(target: object, method = 'forward'): JitRunner | null {
  return handles.get(target) ?? runners.get(target)?.get(method) ?? null;
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

/** Method form: one runner per instance, created on that instance's first call. Method options
 *  override the class metadata. */
function wrapMethod(original: AnyFn, name: string, methodOptions: JitOptions, site: string | null): AnyFn {
  if (isWrapper(original)) return original;
  const wrapper = function (this: any, ...args: any[]): any {
    if (this === null || (typeof this !== 'object' && typeof this !== 'function')) {
      throw new TypeError(`inferenceJit: compiled method ${name} was called without an instance (did you detach it from its object?)`);
    }
    let byMethod = runners.get(this);
    if (!byMethod) runners.set(this, (byMethod = new Map()));
    let runner = byMethod.get(name);
    if (!runner) {
      const self = this;
      runner = new JitRunner({
        label: `${self.constructor?.name ?? 'object'}.${name}`,
        fn: original,
        thisArg: self,
        module: asModule(self),
        method: name,
        options: () => mergeOptions(getJitOptions(self.constructor), methodOptions),
        callerFile: site,
      });
      byMethod.set(name, runner);
    }
    return runner.call(args);
  };
  Object.defineProperty(wrapper, 'name', { value: name });
  wrappers.add(wrapper);
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
  const handle: JitHandle & { module: M } = {
    stats: () => runner.stats(),
    clearCache: () => runner.clear(),
    compiledEntries: () => runner.compiledEntries(),
    module,
  };
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
  Object.assign(f, {
    stats: () => runner.stats(),
    clearCache: () => runner.clear(),
    compiledEntries: () => runner.compiledEntries(),
  });
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
