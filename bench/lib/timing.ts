// Benchmark timing helpers: warm up, then repeat until a time budget is spent, and report the
// median of per-iteration times (robust to the odd slow iteration on a shared machine).

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
