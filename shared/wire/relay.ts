import type { FrontDoor } from '../core/types.ts';
import { GatewayError } from '../http/errors.ts';
import { eventData } from '../http/sse.ts';
import type { RequestTrace } from '../telemetry/record.ts';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

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
 * What is wrong with a complete non-streamed answer of `format`, or undefined when it is a
 * well-formed answer of that API (the gateway checks this before it commits to a target, so a
 * broken answer falls back like a 5xx).
 */
export function jsonAnswerProblem(format: AnswerFormat, text: string): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return 'The upstream answer was not valid JSON.';
  }
  if (!isObject(json)) return 'The upstream answer was not a JSON object.';
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

const SSE_FIELD = /^(?:data|event|id|retry)(?::|$)/;

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
    for (const line of event.split(/\r?\n/)) {
      if (line === '' || line.startsWith(':') || SSE_FIELD.test(line)) continue;
      return { problem: 'The upstream stream sent something that is not a server-sent event.', data: false, terminal: false };
    }
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

/**
 * What every same-format pass-through (an upstream's answer relayed to a client of the same API)
 * shares: the upstream reader, one end of the trace, and a client's cancel recorded as
 * `client_closed` before the upstream read is cancelled.
 */
export class PassthroughRelay {
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  finished = false;

  constructor(
    upstream: Response,
    private readonly trace: RequestTrace,
    /** Runs just before the trace ends (e.g. to report usage gathered on the way). */
    private readonly beforeEnd?: () => void,
  ) {
    this.reader = upstream.body!.getReader();
  }

  finish(): void {
    this.finished = true;
    this.beforeEnd?.();
    this.trace.end();
  }

  /** An `UnderlyingSource.cancel` for the client's side. */
  cancel(message: string): (why: unknown) => Promise<void> {
    return (why) => {
      if (!this.finished) {
        this.trace.fail('client_closed', { message });
        this.finish();
      }
      return this.reader.cancel(why);
    };
  }

  /**
   * A non-streaming JSON answer: its bytes go to the client as they arrive; once all have gone,
   * `inspect` gets the parsed body (for usage), and a body that is not JSON is logged as an error.
   */
  json(status: number, headers: Record<string, string>, inspect: (body: Json) => void): Response {
    const parts: Uint8Array[] = [];
    const body = new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        try {
          const { done, value } = await this.reader.read();
          if (done) {
            try {
              inspect(JSON.parse(Buffer.concat(parts).toString('utf8')) as Json);
            } catch {
              this.trace.fail('error', { kind: 'upstream', message: 'The upstream answer was not valid JSON.' });
            }
            ctrl.close();
            this.finish();
            return;
          }
          this.trace.firstByte();
          parts.push(value);
          ctrl.enqueue(value);
        } catch (err) {
          const ge = err instanceof GatewayError ? err : new GatewayError('upstream', 'The upstream response failed.');
          this.trace.fail('stream_error', ge);
          ctrl.error(ge);
          this.finish();
        }
      },
      cancel: this.cancel('The client closed the connection.'),
    });
    return new Response(body, { status, headers });
  }
}
