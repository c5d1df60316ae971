// Benchmark timing helpers: warm up, then repeat until a time budget is spent, and report the
// median of per-iteration times (robust to the odd slow iteration on a shared machine).
import { Rng } from '../../src/tensor/random.js';

export interface Timing { medianMs: number; minMs: number; iterations: number }

export async function timeIt(fn: () => unknown | Promise<unknown>, budgetMs = 1500, minIters = 5, warmup = 2): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minIters || performance.now() - start < budgetMs) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
    if (times.length >= 1000) break;
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0], iterations: times.length };
}

/** Lets peer thread pools (ORT spins after a run) go idle before timing the next contender. */
export const settle = (ms = 100): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A markdown table from rows of cells. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(cells[0]), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

/** Times two contenders in alternating rounds (so background load hits both alike) and keeps
 *  each one's best round median. */
export async function compare(a: () => unknown, b: () => unknown, rounds = 6, roundMs = 400): Promise<[Timing, Timing]> {
  let ta: Timing | null = null, tb: Timing | null = null;
  for (let r = 0; r < rounds; r++) {
    await settle(50);
    const x = await timeIt(a, roundMs, 3, r === 0 ? 2 : 1);
    await settle(50);
    const y = await timeIt(b, roundMs, 3, r === 0 ? 2 : 1);
    if (!ta || x.medianMs < ta.medianMs) ta = x;
    if (!tb || y.medianMs < tb.medianMs) tb = y;
  }
  return [ta!, tb!];
}

/** Median of a sample (mean of the middle two for an even count). */
export const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The median over rounds of a[r] / b[r]: a ratio that drifting machine load mostly cancels out of. */
export const pairedRatio = (a: number[], b: number[]): number => median(a.map((v, r) => v / b[r]));

/** Each round runs every contender once, so neighbouring samples of different contenders see the
 *  same background load, in a fresh seeded-random order: a fixed order would always put the same
 *  predecessor (e.g. eager's garbage) before a contender. ORT's intra-op workers keep spinning after
 *  a run returns; on a 2-core machine they slowed whatever ran next by up to 40% at a 0 ms gap and
 *  ~8% at 20 ms, so every run waits `pauseMs` first, as it would in an app that uses one engine.
 *  Returns samples[contender][round] in ms. */
export async function timeRounds<X>(contenders: readonly { run(x: X): unknown }[], x: X, rounds: number, pauseMs = 100): Promise<number[][]> {
  const samples = contenders.map(() => new Array<number>(rounds).fill(0));
  const rng = new Rng(rounds);
  for (let r = 0; r < rounds; r++) {
    const order = contenders.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.nextU32() % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const i of order) {
      await settle(pauseMs);
      const t0 = performance.now();
      contenders[i].run(x);
      samples[i][r] = performance.now() - t0;
    }
  }
  return samples;
}
