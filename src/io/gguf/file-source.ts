// Byte access shared by the GGUF and safetensors readers and writers: a source that reads byte ranges
// either from an in-memory buffer (views, no copy) or from a file (each range read straight into
// its final buffer with one pread), and an atomic file writer (temp file + fsync + rename).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface ByteSource {
  /** Name used in error messages (the file path, or "<buffer>"). */
  readonly name: string;
  readonly size: number;
  /**
   * Bytes [offset, offset + length). Buffer sources return a view; file sources read into a fresh,
   * 8-byte-aligned buffer that the caller owns (so typed-array views over it are always aligned).
   * Callers check the range against `size` first.
   */
  read(offset: number, length: number): Uint8Array;
}

export function bufferSource(input: Uint8Array, name = '<buffer>'): ByteSource {
  // A Node Buffer's slice() is a view, not a copy; work on a plain Uint8Array so slice() copies.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  return {
    name,
    size: bytes.byteLength,
    read: (offset, length) => bytes.subarray(offset, offset + length),
  };
}

/**
 * A file read on demand. The file is opened for each read and closed again, so a reader object that
 * is dropped never leaks a descriptor. `size` is the size when the source was created; a read that
 * finds the file shorter (truncated since) throws `onShort(offset)`.
 */
export function fileSource(file: string, onShort: (offset: number, got: number, want: number) => Error): ByteSource {
  const size = fs.statSync(file).size;
  return {
    name: file,
    size,
    read(offset, length) {
      const out = new Uint8Array(new ArrayBuffer(length));
      const fd = fs.openSync(file, 'r');
      try {
        let done = 0;
        while (done < length) {
          // readSync moves at most 2 GiB per call; loop for larger tensors.
          const chunk = Math.min(length - done, 0x40000000);
          const n = fs.readSync(fd, out, done, chunk, offset + done);
          if (n === 0) throw onShort(offset + done, done, length);
          done += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      return out;
    },
  };
}

/** Parsing window over a file: reads the header region in growing chunks so a parser can walk it with
 *  plain offsets without reading the (possibly multi-gigabyte) tensor data. */
export class ChunkedReader {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private start = 0;

  constructor(readonly source: ByteSource, private readonly chunk = 1 << 20) {}

  /** Makes bytes [offset, offset+n) available and returns their DataView and position within it. */
  window(offset: number, n: number): { view: DataView; bytes: Uint8Array; at: number } {
    if (offset < this.start || offset + n > this.start + this.buf.byteLength) {
      const want = Math.max(n, this.chunk);
      const len = Math.min(want, this.source.size - offset);
      this.buf = this.source.read(offset, len);
      this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      this.start = offset;
    }
    return { view: this.view, bytes: this.buf, at: offset - this.start };
  }
}

/**
 * Writes a file atomically: the bytes go to a temporary file in the same directory, are flushed to
 * disk, and the temporary file is renamed over the target. Readers see the old file or the new one,
 * never a partial write. `write` receives a function that appends chunks.
 */
export function writeFileAtomic(target: string, write: (append: (chunk: Uint8Array) => void) => void): void {
  const dir = path.dirname(path.resolve(target));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    write((chunk) => {
      let done = 0;
      while (done < chunk.byteLength) done += fs.writeSync(fd, chunk, done, chunk.byteLength - done);
    });
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, target);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    try { fs.unlinkSync(tmp); } catch { /* never created or already renamed */ }
    throw e;
  }
}

/** Typed-array views assume the host is little-endian, as GGUF and safetensors data is. */
export function assertLittleEndianHost(format: string): void {
  if (os.endianness() !== 'LE') throw new Error(`${format}: big-endian hosts are not supported`);
}
