// The `inferjit` command line: for now, `inferjit cache ls|info|clear` to inspect and empty the
// disk cache. The cache folder comes from --dir, else INFERJIT_CACHE_DIR, else ~/.cache/inferjit.
import { runExportCommand } from './export.js';
import { runServeCommand } from './serve.js';
import { resolve } from 'node:path';
import { ArgReader, UsageError } from './args.js';
import { DiskCache, CACHE_FORMAT } from '../cache/disk-cache.js';
import { DEFAULT_CACHE_MAX_BYTES, defaultCacheDir, envOptions } from '../jit/options.js';
import { inferjitVersion } from '../cache/fingerprint.js';

export interface Io { out(line: string): void; err(line: string): void }
const stdio: Io = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

const USAGE = `usage: inferjit cache <command> [--dir PATH] [--json]
       inferjit export model.ts --out model.onnx   (see inferjit export --help)
       inferjit serve --model file.gguf --port 8000 (see inferjit serve --help)

commands:
  cache ls      list entries and ONNX exports, most recently used first (key, kind, size, last use, label)
  cache info    cache folder, entry count, total size, size cap
  cache clear   remove every entry and ONNX export

The cache folder is --dir, else $INFERJIT_CACHE_DIR, else ~/.cache/inferjit. inferjit only
changes folders it created (they hold an inferjit-cache.json marker) and, in them, only its own
entries/, onnx/ and inferjit-tmp/ contents; any other non-empty folder is refused.
  inferjit --version   print the version`;

/** The `inferjit` command: `export` (src/cli/export.ts; loading the model file is async) or the cache commands. */
export async function runCli(argv: readonly string[], io: Io = stdio): Promise<number> {
  if (argv[0] === 'export') return runExportCommand(argv.slice(1), io);
  if (argv[0] === 'serve') return runServeCommand(argv.slice(1), io);
  return main(argv, io);
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export function main(argv: readonly string[], io: Io = stdio): number {
  const reader = new ArgReader(argv);
  const args = reader.rest;
  const flag = (name: string): boolean => reader.flag(name);
  const option = (name: string): string | undefined => reader.option(name);
  try {
    if (flag('--help') || flag('-h')) { io.out(USAGE); return 0; }
    if (flag('--version')) { io.out(inferjitVersion()); return 0; }
    const json = flag('--json');
    const dirFlag = option('--dir');
    const [group, command, ...rest] = args;
    if (group !== 'cache') throw new UsageError(group === undefined ? 'missing command' : `unknown command "${group}"`);
    if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(' ')}`);
    const env = envOptions();
    const cache = new DiskCache(resolve(dirFlag ?? env.cacheDir ?? defaultCacheDir()), { maxBytes: env.cacheMaxBytes ?? DEFAULT_CACHE_MAX_BYTES });
    switch (command) {
      case 'ls': return ls(cache, json, io);
      case 'info': return info(cache, json, io);
      case 'clear': {
        const onnx = cache.list().filter((e) => e.folder === 'onnx').length;
        const n = cache.clear();
        const entries = Math.max(0, n - onnx);
        const what = `${entries} entr${entries === 1 ? 'y' : 'ies'}${onnx ? ` and ${onnx} ONNX export${onnx === 1 ? '' : 's'}` : ''}`;
        io.out(json ? JSON.stringify({ removed: n, entries, onnxExports: onnx, root: cache.root }) : `removed ${what} from ${cache.root}`);
        return 0;
      }
      default: throw new UsageError(command === undefined ? 'missing cache command (ls, info or clear)' : `unknown cache command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) { io.err(`inferjit: ${e.message}\n\n${USAGE}`); return 2; }
    io.err(`inferjit: ${(e as Error).message}`);
    return 1;
  }
}


function ls(cache: DiskCache, json: boolean, io: Io): number {
  const list = cache.list();
  if (json) {
    io.out(JSON.stringify(list.map((e) => ({ ...e, lastUsed: e.lastUsed.toISOString() }))));
    return 0;
  }
  if (list.length === 0) { io.out(`(no entries in ${cache.root})`); return 0; }
  const rows = list.map((e) => [e.key.slice(0, 16), e.ok ? e.kind : e.folder === 'onnx' ? 'onnx (incomplete)' : 'DAMAGED', formatBytes(e.bytes), e.lastUsed.toISOString().replace('T', ' ').slice(0, 19), e.label]);
  const head = ['key', 'kind', 'size', 'last used', 'label'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  io.out(fmt(head));
  for (const r of rows) io.out(fmt(r));
  return 0;
}

function info(cache: DiskCache, json: boolean, io: Io): number {
  const i = cache.info();
  if (json) { io.out(JSON.stringify({ ...i, inferjit: inferjitVersion() })); return 0; }
  io.out(`folder:   ${i.root}`);
  io.out(`entries:  ${i.entries}${i.onnxExports ? ` (+ ${i.onnxExports} ONNX export${i.onnxExports === 1 ? '' : 's'})` : ''}${i.damaged ? ` (${i.damaged} damaged)` : ''}`);
  io.out(`size:     ${formatBytes(i.bytes)}${i.maxBytes ? ` of ${formatBytes(i.maxBytes)} cap` : ''}`);
  io.out(`format:   ${CACHE_FORMAT} (inferjit ${inferjitVersion()})`);
  return 0;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}
