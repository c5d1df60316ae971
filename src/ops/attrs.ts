// Attribute schemas: each op declares its attributes' types and defaults; dispatch validates
// user-supplied attributes against the schema so kernels and passes can trust them.
import { isDType } from '../tensor/dtype.js';

export type AttrType = 'int' | 'float' | 'bool' | 'string' | 'ints' | 'floats' | 'dtype' | 'dims';
export interface AttrSpec { type: AttrType; default?: AttrValue; required?: boolean; oneOf?: readonly string[] }
export type AttrSchema = Record<string, AttrSpec>;
export type AttrValue = number | boolean | string | readonly number[] | readonly (number | string)[];
export type AttrValues = Record<string, AttrValue>;

function checkType(op: string, name: string, spec: AttrSpec, v: unknown): AttrValue {
  const bad = (want: string): never => {
    throw new TypeError(`${op}: attribute "${name}" must be ${want}, got ${JSON.stringify(v)}`);
  };
  switch (spec.type) {
    case 'int': if (!Number.isInteger(v)) bad('an integer'); return v as number;
    case 'float': if (typeof v !== 'number' || Number.isNaN(v)) bad('a number'); return v as number;
    case 'bool': if (typeof v !== 'boolean') bad('a boolean'); return v as boolean;
    case 'string':
      if (typeof v !== 'string') bad('a string');
      if (spec.oneOf && !spec.oneOf.includes(v as string)) bad(`one of ${spec.oneOf.map((s) => `"${s}"`).join(', ')}`);
      return v as string;
    case 'dtype': if (!isDType(v)) bad('a dtype name'); return v as string;
    case 'ints':
      if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) bad('an array of integers');
      return Object.freeze([...(v as number[])]);
    case 'floats':
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) bad('an array of numbers');
      return Object.freeze([...(v as number[])]);
    case 'dims':
      if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) || (typeof x === 'string' && x.length > 0))) {
        bad('an array of integers or symbolic dim names');
      }
      return Object.freeze([...(v as (number | string)[])]);
  }
}

/** Returns a frozen, complete attribute object: defaults filled in, unknown names rejected. */
export function normalizeAttrs(op: string, schema: AttrSchema, given: Record<string, unknown> | undefined): AttrValues {
  const out: AttrValues = {};
  const g = given ?? {};
  for (const key of Object.keys(g)) {
    if (!(key in schema)) {
      const known = Object.keys(schema);
      throw new TypeError(`${op}: unknown attribute "${key}"; ${known.length ? `expected ${known.join(', ')}` : 'this op takes no attributes'}`);
    }
  }
  for (const [name, spec] of Object.entries(schema)) {
    const v = g[name];
    if (v === undefined) {
      if (spec.default !== undefined) out[name] = spec.default;
      else if (spec.required !== false) throw new TypeError(`${op}: missing required attribute "${name}" (${spec.type})`);
      continue;
    }
    out[name] = checkType(op, name, spec, v);
  }
  return Object.freeze(out);
}
