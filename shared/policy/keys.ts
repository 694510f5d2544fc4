import { nodeCrypto } from '../node-crypto.ts';

/**
 * Gateway keys: `gwk_<id>_<secret>`, where `id` is 20 base32 characters (the key's public id, so a
 * lookup is one GetItem by id) and `secret` is 32 random bytes (256 bits) in base64url. Only the
 * SHA-256 of the whole string is stored; the plaintext is shown once, at creation.
 */
export const KEY_PREFIX = 'gwk_';
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const KEY_RE = /^gwk_([a-z2-7]{20})_([A-Za-z0-9_-]{43})$/;

export function newKeyId(): string {
  const bytes = nodeCrypto().randomBytes(20);
  let id = '';
  for (const b of bytes) id += ID_ALPHABET[b & 31];
  return id;
}

export function newKey(id = newKeyId()): { id: string; key: string; hash: string } {
  const key = `${KEY_PREFIX}${id}_${nodeCrypto().randomBytes(32).toString('base64url')}`;
  return { id, key, hash: hashKey(key) };
}

/** The key's id, or undefined when the string is not shaped like a gateway key. */
export function parseKey(key: string): string | undefined {
  return KEY_RE.exec(key)?.[1];
}

export function hashKey(key: string): string {
  return nodeCrypto().createHash('sha256').update(key, 'utf8').digest('hex');
}

export function hashesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && nodeCrypto().timingSafeEqual(x, y);
}

/** The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`. */
export function presentedKey(headers: Headers): string | undefined {
  const auth = headers.get('authorization');
  if (auth) {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1]!.trim();
  }
  const x = headers.get('x-api-key');
  return x ? x.trim() : undefined;
}

/** Whether `model` is on an allow list (`*` matches any run of characters). Absent/empty list: all. */
export function modelAllowed(allow: string[] | undefined, model: string): boolean {
  if (!allow || allow.length === 0) return true;
  return allow.some((pattern) => (pattern.includes('*') ? wildcard(pattern).test(model) : pattern === model));
}

/** A `*` pattern as a regular expression, compiled once per pattern (allow lists are checked on every request). */
const wildcards = new Map<string, RegExp>();
function wildcard(pattern: string): RegExp {
  let re = wildcards.get(pattern);
  if (!re) {
    if (wildcards.size > 10_000) wildcards.clear();
    re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    wildcards.set(pattern, re);
  }
  return re;
}
