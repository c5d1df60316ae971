// Containers: ModuleList (an indexable list of submodules) and Sequential (a chain). Children sit
// in numeric own fields, so their names are '0', '1', ... exactly as in PyTorch state dicts.
import { Module } from './module.js';

export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  [index: number]: M;
  #length = 0;

  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.push(m);
  }

  get length(): number { return this.#length; }

  push(...modules: M[]): this {
    for (const m of modules) {
      if (!(m instanceof Module)) throw new TypeError(`${this.constructor.name}: item ${this.#length} is not a Module`);
      this[this.#length++] = m;
    }
    return this;
  }

  /** The i-th module; negative i counts from the end. */
  at(i: number): M {
    const j = i < 0 ? this.#length + i : i;
    if (!Number.isInteger(j) || j < 0 || j >= this.#length) throw new RangeError(`${this.constructor.name}: index ${i} out of range for length ${this.#length}`);
    return this[j];
  }

  *[Symbol.iterator](): Iterator<M> {
    for (let i = 0; i < this.#length; i++) yield this[i];
  }

  forward(..._args: any[]): any {
    throw new Error('ModuleList has no forward(); iterate over it and call the modules');
  }
}

/** Runs its modules in order, each on the previous one's output. */
export class Sequential extends ModuleList<Module> {
  constructor(...modules: Module[]) { super(modules); }

  override forward(input: any): any {
    let x = input;
    for (const m of this) x = m.forward(x);
    return x;
  }
}
