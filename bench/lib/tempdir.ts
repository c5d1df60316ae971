// Scratch directories for benchmark exports (the SD UNet's ONNX export is 3.4 GB) that do not
// outlive the run: removed on normal exit, on SIGINT / SIGTERM / SIGHUP, and, for a run killed
// outright (SIGKILL, out of memory), by the next run, which sweeps directories whose process is gone.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** A fresh directory `<tmp>/<prefix>-<pid>-XXXXXX`, after removing this prefix's leftovers from
 *  runs whose process no longer exists. */
export function benchTempDir(prefix: string): string {
  const root = os.tmpdir();
  for (const name of readdirSync(root)) {
    const m = new RegExp(`^${prefix}-(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      rmSync(join(root, name), { recursive: true, force: true });
      console.error(`${prefix}: removed ${join(root, name)}, left behind by an interrupted run`);
    }
  }
  const dir = mkdtempSync(join(root, `${prefix}-${process.pid}-`));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  process.on('exit', remove);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      remove();
      process.kill(process.pid, signal); // the default action (exit with the signal's status) now that the handler is gone
    });
  }
  return dir;
}
