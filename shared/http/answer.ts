import { bodyReader, hasBody, responseBytes, utf8 } from './bytes.ts';
import { GatewayError } from './errors.ts';

/**
 * The most of one upstream answer the gateway reads whole: 32 MiB. An answer it must hold to
 * translate or pass on whole that is larger is a broken one (`answerTooLarge`); a same-format
 * answer past it is relayed as it arrives, unchecked (shared/routing/execute.ts, shared/wire/relay.ts).
 */
export const MAX_ANSWER_BYTES = 32 * 1024 * 1024;

/**
 * The most text (content, tool arguments, thinking) one translated answer may hold: 32 Mi
 * characters, far past any model's output. The gateway holds a translated answer whole where its
 * door needs it (a non-streamed client, a Responses stream's final event), so an upstream that
 * streams small events without end would otherwise hold its memory until the total timeout.
 */
export const MAX_ANSWER_CHARS = 32 * 1024 * 1024;

/**
 * The largest embeddings answer read whole: 256 MiB. Unlike a chat answer, a legitimate one can be
 * large: OpenAI takes up to 2,048 inputs a request, and 2,048 vectors of 3,072 floats come to about
 * 90-130 MB as JSON numbers (34 MB as base64). Past this it is a broken answer (502, a fallback).
 */
export const MAX_EMBEDDINGS_ANSWER_BYTES = 256 * 1024 * 1024;

/** A token count's answer (or its error) is a few bytes of JSON: one larger than this is a broken answer. */
export const MAX_COUNT_ANSWER_BYTES = 1024 * 1024;

/** The error for an answer past MAX_ANSWER_BYTES (or `limit` of `unit`): a broken upstream answer (502: it falls back like a 5xx). */
export function answerTooLarge(provider: string, limit = MAX_ANSWER_BYTES, unit = 'bytes'): GatewayError {
  return new GatewayError('upstream', `Provider "${provider}" sent an answer larger than ${limit} ${unit}.`, { status: 502, code: 'upstream_answer_too_large' });
}

/**
 * An upstream answer's bytes, read whole up to `limit`; past it the upstream is let go and the
 * answer is a broken one (`answerTooLarge`), rather than held in memory whatever its size.
 */
export async function readAnswer(res: Response, provider: string, limit = MAX_ANSWER_BYTES): Promise<Uint8Array> {
  if (!hasBody(res)) return new Uint8Array(0);
  const whole = responseBytes(res);
  if (whole) {
    if (whole.byteLength > limit) throw answerTooLarge(provider, limit);
    return whole;
  }
  const reader = bodyReader(res);
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      reader.cancel().catch(() => {});
      throw answerTooLarge(provider, limit);
    }
    parts.push(value);
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** An upstream answer read whole (`readAnswer`) and parsed as JSON (a SyntaxError when it is not). */
export async function readAnswerJson(res: Response, provider: string, limit = MAX_ANSWER_BYTES): Promise<unknown> {
  const bytes = await readAnswer(res, provider, limit);
  return JSON.parse(utf8(bytes));
}

/**
 * What an answer's byte stream fails with when the gateway stops reading it (where the reader is
 * not ours, e.g. the AWS SDK's): past a bound (`upstream_answer_too_large`), or bytes that cannot
 * be this API's answer (`upstream_invalid_response`). The provider turns it into its GatewayError.
 */
export class AnswerRefused extends Error {
  constructor(
    readonly code: 'upstream_answer_too_large' | 'upstream_invalid_response',
    /** What was wrong, to follow `Provider "<name>" `. */
    readonly what: string,
  ) {
    super(what);
    this.name = 'AnswerRefused';
  }
}
