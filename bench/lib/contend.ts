// Contention for benchmarks: busy-looping child processes that keep cores busy for the duration
// (issue 15: llama.cpp degrades gracefully when another process holds a core; a pool that waits
// for every worker does not). The children are killed (by their own ids) on stop and on exit.
import { spawn, type ChildProcess } from 'node:child_process';

export interface Contention { readonly pids: number[]; stop(): void }

/** Starts `count` busy loops; resolves once they run. */
export async function startContention(count: number): Promise<Contention> {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`contention: count must be a whole number ≥ 1, got ${count}`);
  const children: ChildProcess[] = Array.from({ length: count }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  const stop = () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); };
  process.once('exit', stop);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { stop(); process.exit(130); });
  await new Promise((r) => setTimeout(r, 200)); // past node's start-up: the loops are spinning
  const dead = children.find((c) => c.exitCode !== null || c.pid === undefined);
  if (dead) { stop(); throw new Error('contention: a busy-loop child process did not start'); }
  return { pids: children.map((c) => c.pid!), stop };
}
