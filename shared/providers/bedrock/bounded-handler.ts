import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { HttpHandlerOptions } from '@smithy/types';
import type { Readable } from 'node:stream';
import { AnswerRefused, MAX_ANSWER_BYTES, MAX_EMBEDDINGS_ANSWER_BYTES } from '../../http/answer.ts';

const { Transform, pipeline } = process.getBuiltinModule('node:stream');

type Handled = Awaited<ReturnType<NodeHttpHandler['handle']>>;
type HttpRequest = Parameters<NodeHttpHandler['handle']>[0];

/** The smallest event-stream frame: its 12-byte prelude (lengths and their checksum) and the 4-byte checksum of the whole. */
const MIN_FRAME_BYTES = 16;

/**
 * The SDK's HTTP handler, with each answer's body bounded before the SDK reads it.
 *
 * The AWS SDK's event-stream decoder allocates each frame at the length its first four bytes declare
 * (up to 4 GiB) before the frame's bytes come, and its JSON deserializers read an answer whole
 * without a limit. Bedrock sends neither, but the endpoint is configurable (a proxy, a compatible
 * server), and a broken or hostile one must not take the gateway's memory. So, as the bytes pass:
 * - an event stream's frames are checked by their preludes: a checksum that does not match, or a
 *   length under 16 bytes, is not an event stream (garbage, an HTML error page from a proxy); a
 *   length past MAX_ANSWER_BYTES (32 MiB, the bound on one SSE event too) is too large;
 * - any other body is counted: past 32 MiB (a Converse answer, a token count), or 256 MiB for
 *   InvokeModel, which carries embeddings (MAX_EMBEDDINGS_ANSWER_BYTES), it is too large.
 * Either way the body fails with an AnswerRefused (a 502 for the client, which falls back before the
 * first byte) and the connection is dropped. The bytes themselves pass through untouched.
 */
export class BoundedHttpHandler extends NodeHttpHandler {
  override async handle(request: HttpRequest, options?: HttpHandlerOptions): Promise<Handled> {
    const handled = await super.handle(request, options);
    const res = handled.response;
    const body = res.body as Readable | undefined;
    if (body && typeof body.pipe === 'function') {
      const type = String(res.headers['content-type'] ?? '');
      res.body = type.startsWith('application/vnd.amazon.eventstream') ? framesChecked(body) : sizeChecked(body, request.path.endsWith('/invoke') ? MAX_EMBEDDINGS_ANSWER_BYTES : MAX_ANSWER_BYTES);
    }
    return handled;
  }
}

/** `body` passed through `check`, which fails the stream (and drops the source) by returning an error. */
function guarded(body: Readable, check: (chunk: Buffer) => AnswerRefused | undefined): Readable {
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      done(check(chunk), chunk);
    },
  });
  // An error on either side destroys both: the upstream connection goes with a refused answer.
  pipeline(body, out, () => {});
  return out;
}

function sizeChecked(body: Readable, limit: number): Readable {
  let size = 0;
  return guarded(body, (chunk) => ((size += chunk.length) > limit ? new AnswerRefused('upstream_answer_too_large', `sent an answer larger than ${limit} bytes.`) : undefined));
}

/** The 12-byte prelude of an event-stream frame: total length, headers' length, and the checksum of those 8 bytes. */
const PRELUDE_BYTES = 12;

/**
 * An event stream whose frames each have a prelude with a valid checksum (else it is not an event
 * stream: garbage, an HTML error page from a proxy) and declare a length from 16 bytes to
 * MAX_ANSWER_BYTES. Only the preludes are read; each frame's checksum is the SDK's to check.
 */
function framesChecked(body: Readable): Readable {
  const { crc32 } = process.getBuiltinModule('node:zlib');
  /** Bytes of the current frame still to come after its prelude. */
  let rest = 0;
  const prelude = Buffer.alloc(PRELUDE_BYTES);
  let have = 0;
  return guarded(body, (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (rest > 0) {
        const skip = Math.min(rest, chunk.length - i);
        rest -= skip;
        i += skip;
        continue;
      }
      const take = Math.min(PRELUDE_BYTES - have, chunk.length - i);
      chunk.copy(prelude, have, i, i + take);
      have += take;
      i += take;
      if (have < PRELUDE_BYTES) break;
      have = 0;
      const total = prelude.readUInt32BE(0);
      const headers = prelude.readUInt32BE(4);
      if (crc32(prelude.subarray(0, 8)) !== prelude.readUInt32BE(8) || total < MIN_FRAME_BYTES || headers > total - MIN_FRAME_BYTES) {
        return new AnswerRefused('upstream_invalid_response', 'sent an answer that is not an event stream.');
      }
      if (total > MAX_ANSWER_BYTES) return new AnswerRefused('upstream_answer_too_large', `sent an event-stream frame of ${total} bytes, more than ${MAX_ANSWER_BYTES}.`);
      rest = total - PRELUDE_BYTES;
    }
    return undefined;
  });
}
