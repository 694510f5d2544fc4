import { LOG_COLUMNS } from './schema.ts';

/**
 * Check a parsed log line against the schema: every key must be a column of LOG_COLUMNS and its
 * value must fit the column's Glue type (what Athena's JSON SerDe would read). Returns the
 * problems found (empty: the record fits). Used by the tests on the local NDJSON files, and handy
 * for anyone importing logs from elsewhere.
 */

/** Columns every record has. */
export const REQUIRED_COLUMNS = ['schemaVersion', 'requestId', 'timestamp', 'method', 'path', 'status', 'outcome', 'latencyMs'] as const;

const COLUMN_TYPES = new Map(LOG_COLUMNS.map((c) => [c.name, c.glueType]));

export function schemaProblems(record: unknown): string[] {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return ['the record is not a JSON object'];
  const problems: string[] = [];
  const obj = record as Record<string, unknown>;
  for (const name of REQUIRED_COLUMNS) if (obj[name] === undefined || obj[name] === null) problems.push(`${name}: missing`);
  for (const [key, value] of Object.entries(obj)) {
    if (value === undefined) continue; // not in the JSON
    const type = COLUMN_TYPES.get(key);
    if (type === undefined) {
      problems.push(`${key}: not a column of the log schema`);
      continue;
    }
    problems.push(...typeProblems(key, parseGlueType(type), value));
  }
  return problems;
}

type GlueType =
  | { kind: 'string' | 'int' | 'bigint' | 'double' | 'boolean' }
  | { kind: 'array'; of: GlueType }
  | { kind: 'map'; key: GlueType; value: GlueType }
  | { kind: 'struct'; fields: Map<string, GlueType> };

/** Parse a Hive type string such as `array<struct<a:string,b:int>>`. */
export function parseGlueType(text: string): GlueType {
  let i = 0;
  const ident = (): string => {
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
    if (!m) throw new Error(`bad Glue type at ${i}: ${text}`);
    i += m[0].length;
    return m[0];
  };
  const expect = (c: string) => {
    if (text[i] !== c) throw new Error(`expected '${c}' at ${i}: ${text}`);
    i++;
  };
  const type = (): GlueType => {
    const name = ident().toLowerCase();
    switch (name) {
      case 'string':
      case 'int':
      case 'bigint':
      case 'double':
      case 'boolean':
        return { kind: name };
      case 'array': {
        expect('<');
        const of = type();
        expect('>');
        return { kind: 'array', of };
      }
      case 'map': {
        expect('<');
        const key = type();
        expect(',');
        const value = type();
        expect('>');
        return { kind: 'map', key, value };
      }
      case 'struct': {
        expect('<');
        const fields = new Map<string, GlueType>();
        for (;;) {
          const f = ident();
          expect(':');
          fields.set(f, type());
          if (text[i] === ',') i++;
          else break;
        }
        expect('>');
        return { kind: 'struct', fields };
      }
      default:
        throw new Error(`unsupported Glue type ${name}: ${text}`);
    }
  };
  const t = type();
  if (i !== text.length) throw new Error(`trailing text at ${i}: ${text}`);
  return t;
}

const INT_MAX = 2 ** 31 - 1;

function typeProblems(at: string, type: GlueType, value: unknown): string[] {
  if (value === null) return []; // NULL fits any column
  switch (type.kind) {
    case 'string':
      return typeof value === 'string' ? [] : [`${at}: expected a string, got ${JSON.stringify(value)}`];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at}: expected a boolean, got ${JSON.stringify(value)}`];
    case 'int':
      return Number.isInteger(value) && Math.abs(value as number) <= INT_MAX ? [] : [`${at}: expected an int, got ${JSON.stringify(value)}`];
    case 'bigint':
      return Number.isSafeInteger(value) ? [] : [`${at}: expected a bigint, got ${JSON.stringify(value)}`];
    case 'double':
      return typeof value === 'number' && Number.isFinite(value) ? [] : [`${at}: expected a double, got ${JSON.stringify(value)}`];
    case 'array':
      return Array.isArray(value) ? value.flatMap((v, n) => typeProblems(`${at}[${n}]`, type.of, v)) : [`${at}: expected an array`];
    case 'map':
      if (typeof value !== 'object' || Array.isArray(value)) return [`${at}: expected an object (map)`];
      return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => [...typeProblems(`${at} key`, type.key, k), ...typeProblems(`${at}.${k}`, type.value, v)]);
    case 'struct': {
      if (typeof value !== 'object' || Array.isArray(value)) return [`${at}: expected an object (struct)`];
      return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => {
        const f = type.fields.get(k);
        return f ? typeProblems(`${at}.${k}`, f, v) : [`${at}.${k}: not a field of the struct`];
      });
    }
  }
}
