/**
 * Client metadata tags: the `x-gateway-metadata` header holds a JSON object of string values
 * (e.g. `{"app":"search","env":"prod"}`) copied into the log record's `metadata` column, so
 * platform and finance teams can slice usage by whatever the caller labels its calls with.
 * Bounded: a header that is not such an object or is too big is ignored, and the record says why.
 */

export const METADATA_HEADER = 'x-gateway-metadata';
export const METADATA_MAX_KEYS = 16;
/** Largest header value accepted, in bytes (UTF-8). */
export const METADATA_MAX_BYTES = 1024;
const KEY = /^[A-Za-z0-9_.:-]{1,64}$/;

export type MetadataError = 'too_large' | 'invalid_json' | 'not_an_object' | 'too_many_keys' | 'invalid_key' | 'non_string_value';

export function parseMetadataHeader(value: string | null): { metadata?: Record<string, string>; metadataError?: MetadataError } {
  if (value === null || value.trim() === '') return {};
  if (Buffer.byteLength(value, 'utf8') > METADATA_MAX_BYTES) return { metadataError: 'too_large' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { metadataError: 'invalid_json' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { metadataError: 'not_an_object' };
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.length > METADATA_MAX_KEYS) return { metadataError: 'too_many_keys' };
  const metadata: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (!KEY.test(k)) return { metadataError: 'invalid_key' };
    if (typeof v !== 'string') return { metadataError: 'non_string_value' };
    metadata[k] = v;
  }
  return entries.length ? { metadata } : {};
}
