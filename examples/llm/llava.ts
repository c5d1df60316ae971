// Image-to-text with LLaVA-1.5 as model code (src/llm/vision): the CLIP tower + projector compiled by
// inferenceJit, the image's rows spliced into the Llama decoder's prompt, generation by StepEngine.
//   npx tsx examples/llm/llava.ts                                  (a seeded tiny checkpoint + a generated image)
//   npx tsx examples/llm/llava.ts --model llava-1.5-7b-hf/ --image cat.jpg --prompt "What is in the picture?"
//     [--max-tokens 64] [--eager]
// --model is a llava-hf directory (config.json, model.safetensors or shards, tokenizer.json). The
// prompt is wrapped in llava-1.5's format "USER: <image>\n{prompt} ASSISTANT:".
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { encodePng } from '../../src/io/png.js';
import { loadLlava } from '../../src/llm/vision/llava.js';
import { readImage, clipPreprocess } from '../../src/llm/vision/image.js';
import { writeTinyLlava } from './llava-tiny.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    image: { type: 'string' },
    prompt: { type: 'string', default: 'What is in the picture?' },
    'max-tokens': { type: 'string', default: '24' },
    eager: { type: 'boolean', default: false },
  },
});

let dir = values.model;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-llava-example-'));
try {
  if (!dir) {
    dir = path.join(scratch, 'tiny-llava');
    writeTinyLlava(dir, { seed: 7 });
    console.log(`no --model: wrote a seeded tiny LLaVA checkpoint (random weights: the text is noise) to ${dir}`);
  }
  let imagePath = values.image;
  if (!imagePath) {
    // a 96×64 test card: red-green gradients with a blue disc
    const w = 96, h = 64, data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3, disc = (x - 60) ** 2 + (y - 30) ** 2 < 400;
      data[i] = Math.round((255 * x) / (w - 1)); data[i + 1] = Math.round((255 * y) / (h - 1)); data[i + 2] = disc ? 230 : 20;
    }
    imagePath = path.join(scratch, 'card.png');
    fs.writeFileSync(imagePath, encodePng({ width: w, height: h, channels: 3, data }));
    console.log(`no --image: generated ${imagePath}`);
  }
  const t0 = performance.now();
  const llava = loadLlava(dir, { compile: !values.eager, compileEncoder: !values.eager, maxSeqs: 1 });
  const tok = llava.tokenizer;
  if (!tok) throw new Error(`${dir} has no tokenizer.json; the example needs one to turn the prompt into ids`);
  const S = llava.config.vision.imageSize;
  const pixels = clipPreprocess(readImage(imagePath), { shortestEdge: S, cropSize: S });
  // "USER: <image>\n{prompt} ASSISTANT:" with <image> as its id (user text is never parsed for special tokens)
  const ids = [
    ...(tok.bosId !== null ? [tok.bosId] : []), ...tok.encode('USER: ', { addBos: false }), llava.config.imageTokenIndex,
    ...tok.encode(`\n${values.prompt} ASSISTANT:`, { addBos: false }),
  ];
  const t1 = performance.now();
  const stream = tok.streamDecoder();
  process.stdout.write(`prompt: ${JSON.stringify(values.prompt)} (${ids.length} ids, the image as ${llava.rowsPerImage} rows)\nASSISTANT:`);
  const out = await llava.generate(ids, [pixels], { maxTokens: Number(values['max-tokens']), temperature: 0, stopTokens: tok.eosId !== null ? [tok.eosId] : [] },
    (t) => { process.stdout.write(stream.push(t)); });
  process.stdout.write(stream.flush());
  const t2 = performance.now();
  console.log(`\n\n${out.tokens.length} tokens (${out.finishReason}); load ${((t1 - t0) / 1000).toFixed(1)} s, image + generation ${((t2 - t1) / 1000).toFixed(1)} s`);
  console.log(`step: ${llava.engine.describe()}`);
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
