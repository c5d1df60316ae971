// Seeded, reproducible random numbers. The generator is xoshiro128** (Blackman & Vigna) seeded
// through splitmix32; normals use Box-Muller on two uniforms. Only 32-bit integer math (Math.imul,
// >>>) and IEEE double ops are used, so a given seed yields the same bits on every machine.

export class Rng {
  private s0: number; private s1: number; private s2: number; private s3: number;

  constructor(seed: number) {
    let z = (seed >>> 0) ^ 0x9e3779b9;
    const next = (): number => {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b) >>> 0;
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35) >>> 0;
      return (t ^ (t >>> 16)) >>> 0;
    };
    this.s0 = next(); this.s1 = next(); this.s2 = next(); this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0; this.s3 ^= this.s1; this.s1 ^= this.s2; this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0; this.s1 >>>= 0; this.s2 >>>= 0; this.s3 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number { return this.nextU32() / 4294967296; }

  /** Standard normal via Box-Muller (uses two uniforms per sample; the second value is discarded
   *  so that sample i depends only on draws 2i and 2i+1). */
  normal(): number {
    const u1 = (this.nextU32() + 1) / 4294967297; // (0, 1]: log is finite
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}

function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }

let globalRng = new Rng(0);
/** Seeds the generator used by randn/rand when no explicit seed is given. */
export function manualSeed(seed: number): void { globalRng = new Rng(seed); }
export function defaultRng(): Rng { return globalRng; }
