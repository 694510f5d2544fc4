import type { EventSourceMessage } from 'eventsource-parser';
import { boundedSseParser } from '../http/sse.ts';
import type { ChatMessage, ContentPart, ThinkingBlock, ToolCall, Usage } from '../core/types.ts';
import { GatewayError } from '../http/errors.ts';

/** Helpers every wire API shares. */

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A 400 for a bad request parameter: `invalid_value` naming the parameter, else `invalid_request` (or the door's own code). */
export function bad(message: string, param: string | null = null, code = param ? 'invalid_value' : 'invalid_request'): GatewayError {
  return new GatewayError('invalid_request', message, { param, code });
}

/** A 400 for a request a provider's wire API cannot carry (the same code whichever provider rejects it). */
export function unsupported(message: string, param: string): GatewayError {
  return bad(message, param, 'unsupported_parameter');
}

/** An optional number within [min, max] (null counts as absent); a 400 naming the key otherwise. */
export function optNumber(body: Json, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw bad(`'${key}' must be a number between ${min} and ${max}.`, key);
  return v;
}

/** An optional integer within [min, max]; a 400 naming the key otherwise. */
export function optInteger(body: Json, key: string, min: number, max: number): number | undefined {
  const v = optNumber(body, key, min, max);
  if (v !== undefined && !Number.isInteger(v)) throw bad(`'${key}' must be an integer.`, key);
  return v;
}

/**
 * An OpenAI usage object (Chat: `prompt_tokens`..., Responses: `input_tokens`...) under its API's
 * field names; undefined without an input count. Cached tokens are part of the input count there.
 */
export function readOpenAIUsage(u: unknown, input: string, output: string, details: string): Usage | undefined {
  if (!isObject(u) || typeof u[input] !== 'number') return undefined;
  const d = u[details];
  const usage: Usage = { inputTokens: u[input], outputTokens: typeof u[output] === 'number' ? u[output] : 0 };
  if (isObject(d) && typeof d.cached_tokens === 'number') usage.cacheReadTokens = d.cached_tokens;
  return usage;
}

/** An assistant turn of the neutral model: its content, and its tool calls and thinking when it has any. */
export function assistantTurn(content: ContentPart[], toolCalls: ToolCall[], thinking: ThinkingBlock[]): ChatMessage {
  const msg: ChatMessage = { role: 'assistant', content };
  if (toolCalls.length) msg.toolCalls = toolCalls;
  if (thinking.length) msg.thinking = thinking;
  return msg;
}

/** The text parts joined (images dropped). */
export function textOf(parts: ContentPart[]): string {
  return parts.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** An upstream SSE body read piece by piece: each read gives the events it completed (all the rest once the body ended). */
export class SseReader {
  /** The body has ended (the last read gave what remained). */
  done = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly text = new TextDecoder();
  private queue: EventSourceMessage[] = [];
  private readonly parser = boundedSseParser((e) => this.queue.push(e));

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
  }

  async read(): Promise<EventSourceMessage[]> {
    const { done, value } = await this.reader.read();
    this.done = done;
    this.parser.feed(done ? `${this.text.decode()}\n\n` : this.text.decode(value, { stream: true }));
    const batch = this.queue;
    this.queue = [];
    return batch;
  }

  /** Let go of the upstream body (at the end, or when the reader stops early). */
  cancel(): void {
    this.reader.cancel().catch(() => {});
  }
}
