// Finds the user's source line for a traced op or a graph break: the first stack frame that is not
// inside this package's src/ directory and not Node's own code.
import { fileURLToPath } from 'node:url';
import { dirname, relative, isAbsolute, sep } from 'node:path';

/** This package's src/ directory (this file lives in src/trace/). */
const SRC_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

// "    at fn (/abs/file.ts:12:5)", "    at /abs/file.ts:12:5", "    at async fn (file:///abs/file.ts:3:1)"
const FRAME = /\(?((?:file:\/\/)?[^()\s]+?):(\d+):(\d+)\)?\s*$/;

/** "file:line:col" of the innermost frame of user code on the current stack, with the file
 *  relative to the working directory when it lies below it; undefined when there is none. */
export function userSourceLine(): string | undefined {
  const limit = Error.stackTraceLimit;
  // Ops are reached through several layers (Tensor method, api, dispatch, tracer hook), and nn
  // modules add more: the default limit of 10 frames can stop short of the user's code.
  Error.stackTraceLimit = 64;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  for (const line of stack.split('\n').slice(1)) {
    const m = FRAME.exec(line);
    if (!m) continue;
    let file = m[1];
    if (file.startsWith('node:') || file.startsWith('internal/') || file === 'native') continue;
    if (file.startsWith('file://')) {
      try { file = fileURLToPath(file); } catch { continue; }
    }
    if (file.startsWith(SRC_ROOT + sep)) continue;
    const rel = relative(process.cwd(), file);
    if (rel && !rel.startsWith('..') && !isAbsolute(rel)) file = rel.split(sep).join('/');
    return `${file}:${m[2]}:${m[3]}`;
  }
  return undefined;
}
