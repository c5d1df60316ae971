// Fuzz target: PNG images. Seeded mutations of small encoded images (raw bytes anywhere, and chunk-
// level changes with the CRC recomputed so they reach the decoder's logic: IHDR fields, chunk order,
// duplicated or dropped chunks, replaced IDAT data, including zlib streams that inflate far past the
// image size) are decoded. Each must give a PngError or the original image exactly; never a crash,
// a hang, or a decode that inflates more than the header allows.
import { deflateSync } from 'node:zlib';
import { encodePng, decodePng, crc32, type Image } from '../../src/io/png.js';
import { fuzzTarget, mutateBytes, isSpecificError, FuzzRng, type Outcome } from '../io/fuzz-harness.js';

interface Chunk { type: string; body: Uint8Array }

function chunksOf(png: Uint8Array): Chunk[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: Chunk[] = [];
  for (let pos = 8; pos + 12 <= png.length;) {
    const len = view.getUint32(pos);
    out.push({ type: String.fromCharCode(...png.subarray(pos + 4, pos + 8)), body: png.slice(pos + 8, pos + 8 + len) });
    pos += 12 + len;
  }
  return out;
}

function assemble(chunks: Chunk[]): Uint8Array {
  const parts: Buffer[] = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])];
  for (const { type, body } of chunks) {
    const c = Buffer.alloc(12 + body.length);
    c.writeUInt32BE(body.length, 0);
    c.write(type.padEnd(4, ' ').slice(0, 4), 4, 'latin1');
    c.set(body, 8);
    c.writeUInt32BE(crc32(c.subarray(4, 8 + body.length)), 8 + body.length);
    parts.push(c);
  }
  return Buffer.concat(parts);
}

function image(rng: FuzzRng): Image {
  const width = 1 + rng.int(9), height = 1 + rng.int(9), channels = rng.pick([1, 2, 3, 4] as const);
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  return { width, height, channels, data };
}

function mutate(rng: FuzzRng, png: Uint8Array, img: Image): { bytes: Uint8Array; what: string } {
  if (rng.chance(0.4)) { const m = mutateBytes(rng, png); return { bytes: m.bytes, what: m.what }; }
  const chunks = chunksOf(png);
  const ihdr = chunks[0].body;
  switch (rng.int(7)) {
    case 0: { // an IHDR field (CRC fixed)
      const b = ihdr.slice();
      const field = rng.int(6);
      const view = new DataView(b.buffer);
      if (field < 2) view.setUint32(field * 4, rng.pick([0, 1, img.width + 1, 0x7fffffff, 0x80000000, 0xffffffff, 65536]));
      else b[6 + field] = rng.pick([0, 1, 2, 3, 4, 6, 8, 16, 255]);
      return { bytes: assemble([{ type: 'IHDR', body: b }, ...chunks.slice(1)]), what: `IHDR field ${field}` };
    }
    case 1: { const i = rng.int(chunks.length); const c = [...chunks]; c.splice(i + rng.int(2), 0, chunks[i]); return { bytes: assemble(c), what: `duplicate ${chunks[i].type}` }; }
    case 2: { const i = rng.int(chunks.length); return { bytes: assemble(chunks.filter((_, k) => k !== i)), what: `drop ${chunks[i].type}` }; }
    case 3: { const c = [...chunks].reverse(); return { bytes: assemble(c), what: 'reverse chunk order' }; }
    case 4: { // a zlib stream much larger than the image (a bomb), or smaller
      const n = rng.pick([0, 1, (img.width * img.channels + 1) * img.height - 1, (img.width * img.channels + 1) * img.height + 1, 1 << 20, 16 << 20]);
      return { bytes: assemble([chunks[0], { type: 'IDAT', body: deflateSync(new Uint8Array(n)) }, { type: 'IEND', body: new Uint8Array(0) }]), what: `IDAT inflating to ${n} bytes` };
    }
    case 5: { // an IDAT split in two, and an ancillary chunk: the same image
      const idat = chunks.find((c) => c.type === 'IDAT')!.body;
      const cut = rng.int(idat.length + 1);
      return { bytes: assemble([chunks[0], { type: 'tEXt', body: new TextEncoder().encode('k\0v') }, { type: 'IDAT', body: idat.subarray(0, cut) }, { type: 'IDAT', body: idat.subarray(cut) }, { type: 'IEND', body: new Uint8Array(0) }]), what: `IDAT split at ${cut}` };
    }
    default: { // an unknown chunk, critical or ancillary
      const type = rng.pick(['ABCD', 'abcd', 'PLTE', 'tRNS', 'IDAT', 'IEND']);
      const c = [...chunks];
      c.splice(rng.int(c.length + 1), 0, { type, body: Uint8Array.from([1, 2, 3]) });
      return { bytes: assemble(c), what: `insert ${type}` };
    }
  }
}

fuzzTarget(import.meta.url, {
  name: 'png',
  defaultCases: 600,
  caseTimeoutMs: 3000,
  run(rng): Outcome {
    const img = image(rng);
    const png = encodePng(img, { filter: rng.pick(['none', 'sub', 'up', 'average', 'paeth', 'adaptive'] as const) });
    const m = mutate(rng, png, img);
    let out: Image;
    try {
      out = decodePng(m.bytes, 'fuzz.png');
    } catch (e) {
      if (isSpecificError(e)) return 'refused';
      throw new Error(`${m.what}: ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
    }
    const same = out.width === img.width && out.height === img.height && out.channels === img.channels &&
      out.data.length === img.data.length && out.data.every((v, i) => v === img.data[i]);
    if (!same) throw new Error(`${m.what}: decoded without an error to a different image (${out.width}×${out.height}×${out.channels})`);
    return 'same';
  },
});
