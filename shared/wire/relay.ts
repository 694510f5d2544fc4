import type { FrontDoor } from '../core/types.ts';
import { MAX_ANSWER_BYTES } from '../http/answer.ts';
import { bodyReader, BytesResponse, headerOf, parsedJsonOf, readNowOf, rebodied, responseBytes } from '../http/bytes.ts';
import { GatewayError } from '../http/errors.ts';
import { eventData, SSE_HEADERS, SseSplitter } from '../http/sse.ts';
import { framedResponse } from './stream.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { isObject, type Json } from './common.ts';

/** The upstream API whose answers a same-format door relays (Bedrock's InvokeModel door relays Anthropic's). */
export type AnswerFormat = 'openai-chat' | 'openai-responses' | 'anthropic-messages';

export function answerFormatOf(door: FrontDoor): AnswerFormat | undefined {
  switch (door) {
    case 'openai-chat':
    case 'openai-responses':
    case 'anthropic-messages':
      return door;
    case 'bedrock-invoke':
      return 'anthropic-messages';
    default:
      return undefined;
  }
}

/**
 * A complete non-streamed answer of `format`, checked: its parse when it is a well-formed answer of
 * that API, else what is wrong with it as a string (the gateway checks this before it commits to a
 * target, so a broken answer falls back like a 5xx). The parse goes on with the answer
 * (`keepParsedJson`), so the relay need not parse it again.
 */
export function checkJsonAnswer(format: AnswerFormat, body: string | Uint8Array): Json | string {
  let json: unknown;
  try {
    json = JSON.parse(typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    return 'The upstream answer was not valid JSON.';
  }
  if (!isObject(json)) return 'The upstream answer was not a JSON object.';
  return answerShapeProblem(format, json) ?? json;
}

function answerShapeProblem(format: AnswerFormat, json: Json): string | undefined {
  switch (format) {
    case 'openai-chat':
      return Array.isArray(json.choices) ? undefined : 'The upstream answer was not a chat completion (no choices).';
    case 'openai-responses':
      return json.object === 'response' || Array.isArray(json.output) ? undefined : 'The upstream answer was not a response object.';
    case 'anthropic-messages':
      return json.type === 'message' && Array.isArray(json.content) ? undefined : 'The upstream answer was not a message.';
  }
}

export interface EventCheck {
  /** The event is not one of this API's SSE events (garbage, or data that is not its JSON). */
  problem?: string;
  /** The event carries data (not only a comment or a keep-alive). */
  data: boolean;
  /** The upstream reported an error in the stream (its own error event). */
  upstreamError?: string;
  /** The event ends the stream (`[DONE]`, `message_stop`, `response.completed`, an error...). */
  terminal: boolean;
  /** The event's data as parsed here (absent for `[DONE]` and events without data), so relays need not parse it again. */
  json?: Record<string, unknown>;
}

/**
 * The start of a line (lines split at `\n` or `\r\n`) that is neither blank, nor a comment, nor an
 * SSE field: one test per event, without splitting it into lines.
 */
const NOT_SSE_LINE = /(?:^|\n)(?!\r?\n|$|:|(?:data|event|id|retry)(?::|\r?\n|$))/;

/**
 * Checks a same-format stream event by event (each event's text as SseSplitter gives it): every
 * line an SSE field or comment, every `data:` this API's JSON; and remembers whether the stream's
 * terminal event came, so a stream that ends without it is known to be cut.
 */
export class SseChecker {
  /** The stream's terminal event came (`[DONE]` or a finish reason for Chat Completions). */
  complete = false;

  constructor(private readonly format: AnswerFormat) {}

  check(event: string): EventCheck {
    if (NOT_SSE_LINE.test(event)) return { problem: 'The upstream stream sent something that is not a server-sent event.', data: false, terminal: false };
    const data = eventData(event);
    if (data === undefined) return { data: false, terminal: false };
    if (this.format === 'openai-chat' && data === '[DONE]') {
      this.complete = true;
      return { data: true, terminal: true };
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return { problem: 'The upstream stream sent an event whose data is not JSON.', data: true, terminal: false };
    }
    if (!isObject(json)) return { problem: 'The upstream stream sent an event whose data is not a JSON object.', data: true, terminal: false };
    switch (this.format) {
      case 'openai-chat': {
        if (isObject(json.error)) return { json, data: true, terminal: true, upstreamError: errorMessage(json.error) };
        if (!Array.isArray(json.choices)) return { problem: 'The upstream stream sent an event that is not a chat completion chunk.', data: true, terminal: false };
        if (json.choices.some((c) => isObject(c) && typeof c.finish_reason === 'string')) this.complete = true;
        return { json, data: true, terminal: false };
      }
      case 'openai-responses': {
        const type = json.type;
        if (typeof type !== 'string') return { problem: 'The upstream stream sent an event without a type.', data: true, terminal: false };
        if (type === 'error') return { json, data: true, terminal: true, upstreamError: errorMessage(json) };
        if (type === 'response.failed') return { json, data: true, terminal: true, upstreamError: errorMessage(isObject(json.response) ? json.response.error : undefined) };
        if (type === 'response.completed' || type === 'response.incomplete') {
          this.complete = true;
          return { json, data: true, terminal: true };
        }
        return { json, data: true, terminal: false };
      }
      case 'anthropic-messages': {
        const type = json.type;
        if (typeof type !== 'string') return { problem: 'The upstream stream sent an event without a type.', data: true, terminal: false };
        if (type === 'error') return { json, data: true, terminal: true, upstreamError: errorMessage(json.error) };
        if (type === 'message_stop') {
          this.complete = true;
          return { json, data: true, terminal: true };
        }
        return { json, data: true, terminal: false };
      }
    }
  }
}

function errorMessage(e: unknown): string {
  return isObject(e) && typeof e.message === 'string' ? e.message.slice(0, 500) : 'The upstream reported an error.';
}

/** The error for a broken upstream answer: a 502 that falls back before the first byte, an error event after it. */
export function brokenAnswer(message: string, code = 'upstream_invalid_response'): GatewayError {
  return new GatewayError('upstream', message, { status: 502, code });
}

/** A relayed OpenAI answer's headers: the door's, then SSE's for a stream, else the upstream's content type. */
export function relayHeaders(doorHeaders: Record<string, string>, upstream: Response, stream: boolean): Record<string, string> {
  return Object.assign({}, doorHeaders, stream ? SSE_HEADERS : { 'content-type': headerOf(upstream, 'content-type') ?? 'application/json' });
}

/** The error for a relayed stream that stopped before this API's terminal event. */
export function truncatedStream(): GatewayError {
  return brokenAnswer('The upstream stream ended before it was complete.', 'upstream_stream_truncated');
}

/**
 * A same-format JSON answer relayed: its bytes go to the client as they arrive; once all have
 * gone, `inspect` gets the parsed body (for usage; the body checked before commit is not parsed
 * again), and a body that is not JSON is logged as an error. An answer already whole (read and
 * checked before commit) goes on as those bytes, with no stream.
 */
export function relayJson(upstream: Response, trace: RequestTrace, init: { status: number; headers: Record<string, string> }, inspect: (body: Json) => void, beforeEnd?: () => void): Response {
  const whole = responseBytes(upstream);
  if (whole) {
    trace.firstByte();
    inspectJson(whole, trace, inspect, parsedJsonOf(upstream));
    beforeEnd?.();
    trace.end();
    // The upstream's answer object goes on with the door's headers (no second Response).
    return init.status === upstream.status ? rebodied(upstream, whole, init.headers) : new BytesResponse(whole, init);
  }
  const reader = bodyReader(upstream);
  // Kept for `inspect` up to the bound a whole answer is read within. Past it (an answer relayed
  // unchecked) only its last bytes are kept, where the APIs put `usage`, and only that is inspected.
  let parts: Uint8Array[] | undefined = [];
  let size = 0;
  const tail = new TailBytes(USAGE_TAIL_BYTES);
  return framedResponse(
    {
      async next() {
        const { done, value } = await reader.read();
        if (!done) {
          size += value.byteLength;
          if (parts && size <= MAX_ANSWER_BYTES) parts.push(value);
          else {
            if (parts) for (const p of parts) tail.push(p);
            parts = undefined;
            tail.push(value);
          }
          return value;
        }
        if (parts) inspectJson(parts.length === 1 ? parts[0]! : Buffer.concat(parts), trace, inspect);
        else {
          const usage = usageFromTail(tail.text());
          if (usage) inspect({ usage });
        }
        return undefined;
      },
      fail(err) {
        trace.fail('stream_error', err);
        return err;
      },
      release: (why) => reader.cancel(why),
      beforeEnd,
    },
    trace,
    init,
    { closedMessage: 'The client closed the connection.', failed: (err) => (err instanceof GatewayError ? err : new GatewayError('upstream', 'The upstream response failed.', { cause: err })) },
  );
}

/** How much of the end of an answer too large to keep is kept, to read its `usage`. */
const USAGE_TAIL_BYTES = 64 * 1024;

/** The last `max` bytes (at least) of a stream, in the chunks they came in. */
class TailBytes {
  private chunks: Uint8Array[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
    while (this.chunks.length > 1 && this.size - this.chunks[0]!.byteLength >= this.max) this.size -= this.chunks.shift()!.byteLength;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/**
 * The answer's `usage` object, from the end of its text: the last `"usage":` key followed by an
 * object (a quote inside a JSON string is always escaped, so the key is one of the answer's own;
 * the last is the top level's, which the APIs write after the content). Undefined when none is there.
 */
export function usageFromTail(text: string): Json | undefined {
  const at = text.lastIndexOf('"usage":');
  if (at < 0) return undefined;
  const open = text.indexOf('{', at + 8);
  if (open < 0 || text.slice(at + 8, open).trim()) return undefined;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 123) depth++;
    else if (c === 125 && --depth === 0) {
      try {
        const u: unknown = JSON.parse(text.slice(open, i + 1));
        return isObject(u) ? u : undefined;
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** A relayed JSON answer's body to `inspect` (its parse from the check before commit when it has one); a body that is not JSON is logged as an error. */
function inspectJson(bytes: Uint8Array, trace: RequestTrace, inspect: (body: Json) => void, parsed?: unknown): void {
  try {
    inspect((parsed as Json | undefined) ?? (JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as Json));
  } catch {
    trace.fail('error', { kind: 'upstream', message: 'The upstream answer was not valid JSON.' });
  }
}

/** What a door does with a same-format stream as it is relayed. */
export interface SseRelayHooks {
  /** An event the checker passed: the text to send on ('' drops it); notes usage, errors and the end. */
  event(text: string, check: EventCheck): string;
  /** The ending for a stream the upstream broke ('' when none is due); records the failure on the trace. */
  failure(err: GatewayError): string;
  /** What follows the last event of a stream that ended ('' when it was complete, else the door's ending); `complete`: this API's terminal event came. */
  end(complete: boolean): string;
  /** Runs just before the trace ends (e.g. to report usage gathered on the way). */
  beforeEnd?(): void;
}

/**
 * The one SSE relay every same-format door uses: the upstream's events go to the client as they
 * arrive (never held back past the end of an event), each checked as this API's; a stream that
 * breaks, sends garbage or stops early ends in the door's own error ending, never a clean end.
 */
export function relaySse(format: AnswerFormat, upstream: Response, trace: RequestTrace, init: ResponseInit, hooks: SseRelayHooks, closedMessage?: string): Response {
  const reader = bodyReader(upstream);
  // What the upstream already delivered is taken without a promise (the attempt's watched body: a
  // wait there still runs under its idle and total limits).
  const readNow = readNowOf(reader);
  const splitter = new SseSplitter();
  const checker = new SseChecker(format);
  let ended = false;
  let broken: GatewayError | undefined;
  return framedResponse(
    {
      async next() {
        if (broken) throw broken;
        while (!ended) {
          const r = readNow?.() ?? (await reader.read());
          if (r.done) {
            ended = true;
            // An unterminated last event is kept only when it is a whole event (its blank line missing).
            const rest = splitter.end();
            if (!rest.trim()) return undefined;
            const last = rest.endsWith('\n') ? `${rest}\n` : `${rest}\n\n`;
            const c = checker.check(last);
            return c.problem || !c.data ? undefined : hooks.event(last, c) || undefined;
          }
          let out = '';
          // An event past the splitter's bound throws: the frame ends the stream in the door's ending and lets the upstream go.
          for (const ev of splitter.push(r.value)) {
            const c = checker.check(ev);
            if (c.problem) {
              // What came before the broken event goes out; then the door's ending, and the upstream is let go.
              broken = brokenAnswer(c.problem);
              reader.cancel().catch(() => {});
              break;
            }
            out += hooks.event(ev, c);
          }
          if (out) return out;
          if (broken) throw broken;
        }
        return undefined;
      },
      end: () => hooks.end(checker.complete),
      fail(err) {
        // An unfinished event is dropped (as an SSE client would drop it at the end of a stream).
        splitter.end();
        return hooks.failure(err);
      },
      release: (why) => reader.cancel(why),
      beforeEnd: hooks.beforeEnd,
    },
    trace,
    init,
    { closedMessage },
  );
}
