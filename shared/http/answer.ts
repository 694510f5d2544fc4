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
