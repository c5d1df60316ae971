// Harness for the file-format fuzz targets in test/fuzz/. A target file calls fuzzTarget(); run by the
// test runner it forks itself as a child process that runs the seeded cases, while the parent
// watches: a case that runs past its time limit (a hang) or a child that dies (a native crash, an
// abort) fails the test naming the case, and so does any case whose outcome the target rejects.
//
// Environment:
//   INFERJIT_FUZZ_CASES  number of cases per target (default: the target's CI-sized count)
//   INFERJIT_FUZZ_SEED   base seed (default 1); case i uses seed base + i
//   INFERJIT_FUZZ_ONLY   run only this case index (to reproduce a reported failure)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ModelFileError } from '../../src/io/errors.js';

/** Seeded generator (mulberry32): every case is reproducible from its seed. */
export class FuzzRng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  chance(p: number): boolean { return this.next() < p; }
}

/** What a case did: refused the input with a specific error, or produced an output the target checked. */
export type Outcome = 'refused' | 'same' | 'changed';

export interface FuzzTarget {
  name: string;
  /** Cases in CI (keep the whole file well under 20 s). */
  defaultCases: number;
  /** Per-case time limit, ms. */
  caseTimeoutMs: number;
  /** Runs one case; throws to fail it (a non-specific error thrown from inside counts as a failure). */
  run(rng: FuzzRng, index: number): Outcome;
}

/**
 * The errors a user may get for a bad file: the project's file error classes (GGUF, safetensors,
 * PNG, model config, tokenizer file) plus the named LLM input errors. A TypeError or RangeError from
 * deep inside (a property of undefined, an invalid array length) is a bug.
 */
export function isSpecificError(e: unknown, extra: readonly (abstract new (...a: never[]) => Error)[] = []): boolean {
  if (!(e instanceof Error) || e.message.length === 0) return false;
  return e instanceof ModelFileError || extra.some((c) => e instanceof c);
}

interface Message { kind: 'start' | 'fail' | 'done'; index?: number; detail?: string; counts?: Record<Outcome, number> }

/** Declares the fuzz test (parent) or runs the cases (child). `url` is the target file's import.meta.url. */
export function fuzzTarget(url: string, target: FuzzTarget): void {
  const cases = Number(process.env.INFERJIT_FUZZ_CASES ?? target.defaultCases);
  const seed = Number(process.env.INFERJIT_FUZZ_SEED ?? 1);
  const only = process.env.INFERJIT_FUZZ_ONLY;
  if (process.env.INFERJIT_FUZZ_CHILD === target.name) { runChild(target, cases, seed, only); return; }
  test(`fuzz ${target.name}: ${only !== undefined ? `case ${only}` : `${cases} seeded cases`} give a specific error or a correct result, never a crash, hang or NaN`,
    { timeout: 600_000 }, async (t) => {
      const result = await watch(url, target, cases, seed, only);
      t.diagnostic(`outcomes: ${JSON.stringify(result.counts)}`);
      assert.deepEqual(result.failures, [], result.failures.join('\n'));
      // Both kinds of outcome must occur, or the mutations are not exercising the target.
      assert.ok(result.counts.refused > 0, `no case was refused: ${JSON.stringify(result.counts)}`);
      if (cases >= 20 && only === undefined) assert.ok(result.counts.same + result.counts.changed > 0, `no case loaded: ${JSON.stringify(result.counts)}`);
    });
}

function runChild(target: FuzzTarget, cases: number, seed: number, only: string | undefined): void {
  const send = (m: Message) => process.send!(m);
  const counts: Record<Outcome, number> = { refused: 0, same: 0, changed: 0 };
  const indices = only !== undefined ? [Number(only)] : Array.from({ length: cases }, (_, i) => i);
  for (const i of indices) {
    send({ kind: 'start', index: i });
    try {
      counts[target.run(new FuzzRng(seed + i), i)]++;
    } catch (e) {
      send({ kind: 'fail', index: i, detail: `${(e as Error).name}: ${(e as Error).message}\n${((e as Error).stack ?? '').split('\n').slice(1, 6).join('\n')}` });
    }
  }
  send({ kind: 'done', counts });
  process.disconnect();
}

function watch(url: string, target: FuzzTarget, cases: number, seed: number, only: string | undefined): Promise<{ failures: string[]; counts: Record<Outcome, number> }> {
  return new Promise((resolve) => {
    const failures: string[] = [];
    let counts: Record<Outcome, number> = { refused: 0, same: 0, changed: 0 };
    let current = -1;
    let done = false;
    const repro = (i: number) => `(reproduce: INFERJIT_FUZZ_SEED=${seed} INFERJIT_FUZZ_ONLY=${i})`;
    const child = fork(fileURLToPath(url), [], {
      env: { ...process.env, INFERJIT_FUZZ_CHILD: target.name },
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr = (stderr + String(d)).slice(-4000); });
    let timer: NodeJS.Timeout | null = null;
    // The first case also pays for loading the modules and building the fixtures.
    const arm = (ms: number) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        failures.push(current < 0 ? `${target.name}: the child did not start within ${ms} ms` : `${target.name} case ${current}: did not finish within ${ms} ms (a hang) ${repro(current)}`);
        child.kill('SIGKILL');
      }, ms);
    };
    arm(60_000);
    child.on('message', (m: Message) => {
      if (m.kind === 'start') { current = m.index!; arm(current === 0 || only !== undefined ? target.caseTimeoutMs + 30_000 : target.caseTimeoutMs); }
      else if (m.kind === 'fail') failures.push(`${target.name} case ${m.index}: ${m.detail} ${repro(m.index!)}`);
      else if (m.kind === 'done') { done = true; counts = m.counts!; }
    });
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (!done && !failures.some((f) => f.includes('did not finish'))) {
        failures.push(`${target.name} case ${current}: the process died (exit ${code}, signal ${signal}) ${repro(current)}\n${stderr}`);
      }
      resolve({ failures, counts });
    });
  });
}

// ---- byte mutations shared by the targets ----

const INTERESTING_U32 = [0, 1, 2, 3, 7, 8, 31, 32, 33, 255, 256, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Applies one random byte-level mutation inside [from, to) of a copy of `bytes`; returns it and the touched range. */
export function mutateBytes(rng: FuzzRng, bytes: Uint8Array, from = 0, to = bytes.length): { bytes: Uint8Array; at: number; end: number; what: string } {
  const out = bytes.slice();
  const span = Math.max(1, to - from);
  const at = from + rng.int(span);
  switch (rng.int(5)) {
    case 0: { const bit = rng.int(8); out[at] ^= 1 << bit; return { bytes: out, at, end: at + 1, what: `flip bit ${bit} of byte ${at}` }; }
    case 1: { const v = rng.pick([0, 0xff, 0x7f, 0x80, 1]); out[at] = v; return { bytes: out, at, end: at + 1, what: `byte ${at} = ${v}` }; }
    case 2: {
      const p = Math.min(at, bytes.length - 4);
      const v = rng.pick(INTERESTING_U32);
      new DataView(out.buffer).setUint32(p, v, true);
      return { bytes: out, at: p, end: p + 4, what: `u32 at ${p} = ${v}` };
    }
    case 3: { // truncate
      return { bytes: out.subarray(0, at), at, end: bytes.length, what: `truncate to ${at} bytes` };
    }
    default: { // a few random bytes
      const n = 1 + rng.int(4);
      for (let k = 0; k < n && at + k < out.length; k++) out[at + k] = rng.int(256);
      return { bytes: out, at, end: at + n, what: `${n} random bytes at ${at}` };
    }
  }
}

/** Whether any value is NaN. */
export function hasNaN(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (Number.isNaN(x[i])) return true;
  return false;
}

/** Bitwise equality of two float arrays. */
export function sameFloats(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!(a[i] === b[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i])))) return false;
  return true;
}
