import { readFileSync } from 'node:fs';
import { transformSource } from './src/trace/transform/transform.js';
const r = transformSource(readFileSync('test/d2s/fixtures/models.ts', 'utf8'), 'models.ts', { runtimeSpecifier: 'RT', sourceMap: false });
console.log(r.code); console.log(r.conversions);
