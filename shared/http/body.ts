import { takeRequestBytes } from './bytes.ts';
import { GatewayError } from './errors.ts';

/**
 * A request's whole body, bounded: the one reader of request bodies in the core. A body the shell
 * already read whole comes as it is (no stream); any other is read chunk by chunk and refused with
 * `tooLarge()` as soon as it passes `limit` bytes (or declares more), without reading the rest.
 */
export async function readBodyBytes(request: Request, limit: number, tooLarge: () => Error): Promise<Buffer> {
  return heldBody(request, limit, tooLarge) ?? readStreamedBody(request, limit, tooLarge);
}

/** The body the shell already read whole (checked against `limit`, declared length first), or undefined when it must be read. */
function heldBody(request: Request, limit: number, tooLarge: () => Error): Buffer | undefined {
  const declared = Number(request.headers.get('content-length') ?? NaN);
  if (declared > limit) throw tooLarge();
  const held = takeRequestBytes(request);
  if (!held) return undefined;
  if (held.byteLength > limit) throw tooLarge();
  return Buffer.from(held.buffer, held.byteOffset, held.byteLength);
}

async function readStreamedBody(request: Request, limit: number, tooLarge: () => Error): Promise<Buffer> {
  if (!request.body) return Buffer.alloc(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await reader.read();
    } catch (err) {
      // The shells fail the body when the client goes away before sending all of it.
      throw new GatewayError('invalid_request', 'The client closed the connection before the request body was complete.', { status: 499, code: 'client_closed', cause: err });
    }
    if (r.done) break;
    size += r.value.byteLength;
    if (size > limit) {
      reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(r.value);
  }
  return chunks.length === 1 ? Buffer.from(chunks[0]!.buffer, chunks[0]!.byteOffset, chunks[0]!.byteLength) : Buffer.concat(chunks);
}

/**
 * Whether a Content-Type names JSON: `application/json` or any `+json` type, parameters allowed.
 * A request without a Content-Type is read as JSON (documented in the README): only a type that
 * names something else (curl -d's form type, text/plain) is refused.
 */
function isJsonContentType(value: string | null, alsoAccept: readonly string[] = []): boolean {
  if (value === null || value === 'application/json') return true;
  const type = value.split(';', 1)[0]!.trim().toLowerCase();
  return type === 'application/json' || /^[a-z0-9!#$&^_.-]+\/[a-z0-9!#$&^_.-]+\+json$/.test(type) || alsoAccept.includes(type);
}

/**
 * Read a JSON request body, refusing bodies over `limit` bytes without reading them whole, and
 * bodies sent as another media type (415). A body the shell read whole is parsed at once: the
 * value itself, not a promise (await it either way; failures throw then).
 */
export function readJsonBody(request: Request, limit: number, opts: { alsoAccept?: readonly string[] } = {}): unknown {
  const type = request.headers.get('content-type');
  if (!isJsonContentType(type, opts.alsoAccept)) {
    throw new GatewayError('invalid_request', `The request body must be JSON, sent with Content-Type: application/json (this one was sent as '${type!.slice(0, 100)}').`, { status: 415, code: 'unsupported_media_type' });
  }
  const tooBig = () => tooLarge(limit);
  const held = heldBody(request, limit, tooBig);
  return held ? parseJsonBody(held) : readStreamedBody(request, limit, tooBig).then(parseJsonBody);
}

function parseJsonBody(bytes: Buffer): unknown {
  const text = bytes.toString('utf8');
  if (!text.trim()) throw new GatewayError('invalid_request', 'The request body is empty; send a JSON object.', { code: 'invalid_json' });
  // Nesting is bounded before anything walks the body: every recursive pass (JSON.stringify of a
  // tool schema, token estimates, pass-through) would otherwise overflow the stack on a small body.
  if (nestingExceeds(text, MAX_JSON_DEPTH)) {
    throw new GatewayError('invalid_request', `The JSON body is nested more than ${MAX_JSON_DEPTH} levels deep.`, { code: 'json_too_deep' });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new GatewayError('invalid_request', 'We could not parse the JSON body of your request. Check that it is valid JSON.', { code: 'invalid_json' });
  }
}

/** How deep a request body's arrays and objects may nest (tool schemas in practice stay under 20). */
const MAX_JSON_DEPTH = 128;

/** Whether the brackets of a JSON text nest deeper than `max` (one linear pass, strings skipped). */
function nestingExceeds(text: string, max: number): boolean {
  if (text.length <= max * 2) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('request_too_large', `The request body is larger than the gateway's limit of ${limit} bytes.`, { code: 'request_too_large' });
}
