import { boundedSseParser } from '../../http/sse.ts';
import type { StopReason, StreamEvent, Usage } from '../../core/types.ts';
import { GatewayError } from '../../http/errors.ts';
import { bodyReader, hasBody } from '../../http/bytes.ts';
import { isObject, readOpenAIUsage, type Json } from '../common.ts';
import { answerTooLarge, MAX_ANSWER_BYTES } from '../../http/answer.ts';

/**
 * An OpenAI Chat Completions answer (JSON, or SSE chunks ending in `data: [DONE]`) decoded into
 * neutral StreamEvents. A stream that breaks, carries an error chunk, or ends before `[DONE]` makes
 * the iterator throw a GatewayError, which the client's front door turns into its own error event.
 */

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function mapFinishReason(r: unknown): StopReason {
  switch (r) {
    case 'length':
      return 'length';
    case 'tool_calls':
    case 'function_call':
      return 'tool_calls';
    case 'content_filter':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/** Chat Completions usage; `inputTokens` is `prompt_tokens` (cached ones included), as OpenAI counts. */
export function readChatUsage(u: unknown): Usage | undefined {
  return readOpenAIUsage(u, 'prompt_tokens', 'completion_tokens', 'prompt_tokens_details');
}

function midStreamError(provider: string, payload: unknown): GatewayError {
  const e = isObject(payload) ? payload : {};
  const message = str(e.message);
  const rate = e.code === 'rate_limit_exceeded' || e.type === 'rate_limit_error';
  return new GatewayError(rate ? 'rate_limit' : 'upstream', `Provider "${provider}" failed mid-response${message ? `: ${message}` : '.'}`, { code: str(e.code) ?? 'upstream_stream_error' });
}

function asGatewayError(err: unknown, provider: string): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('upstream', `The connection to provider "${provider}" failed mid-response.`, { code: 'upstream_stream_error', cause: err });
}

/**
 * Turns chunks into events. Tool calls get neutral indexes in order of appearance: OpenAI numbers
 * them per choice, but some compatible servers send every call with index 0 (told apart by id) or
 * repeat the id on each fragment, so a new id opens a new call and a repeated one does not.
 */
class ChatChunkDecoder {
  private started = false;
  private readonly ids: string[] = [];
  private readonly byUpstreamIndex = new Map<number, number>();
  private last: number | undefined;
  private usage: Usage | undefined;

  /**
   * @param fallbackModel the model id when the upstream names none
   * @param reasoning pass on the reasoning some compatible servers stream (`reasoning_content`,
   *   `reasoning`) as thinking events; only when the client asked for thinking
   */
  constructor(
    private readonly fallbackModel: string,
    private readonly reasoning = false,
  ) {}

  private *thinking(m: Json): Generator<StreamEvent> {
    if (!this.reasoning) return;
    const r = str(m.reasoning_content) ?? str(m.reasoning);
    if (r) yield { type: 'thinking', delta: r };
  }

  *chunk(c: Json): Generator<StreamEvent> {
    const choices = Array.isArray(c.choices) ? c.choices : [];
    if (!this.started) {
      // Azure OpenAI opens with a chunk of prompt filter results: no id, no model, no choices.
      if (!choices.length && !isObject(c.usage) && !str(c.id)) return;
      this.started = true;
      yield { type: 'start', id: str(c.id) || 'chatcmpl-gateway', model: str(c.model) || this.fallbackModel };
    }
    const choice = choices.find((ch) => isObject(ch) && (ch.index ?? 0) === 0) as Json | undefined;
    if (choice) {
      const delta = isObject(choice.delta) ? choice.delta : {};
      yield* this.thinking(delta);
      if (typeof delta.content === 'string' && delta.content) yield { type: 'text', delta: delta.content };
      if (typeof delta.refusal === 'string' && delta.refusal) yield { type: 'text', delta: delta.refusal };
      if (Array.isArray(delta.tool_calls)) for (const tc of delta.tool_calls) if (isObject(tc)) yield* this.toolDelta(tc);
      if (choice.finish_reason) yield { type: 'finish', reason: this.reason(choice.finish_reason) };
    }
    const usage = readChatUsage(c.usage);
    if (usage) this.usage = usage;
  }

  /** The usage, once, at the end (some servers repeat it on every chunk). */
  *end(): Generator<StreamEvent> {
    if (this.usage) yield { type: 'usage', usage: this.usage };
  }

  /** A whole (non-streaming) chat.completion object. */
  *completion(json: Json): Generator<StreamEvent> {
    yield { type: 'start', id: str(json.id) || 'chatcmpl-gateway', model: str(json.model) || this.fallbackModel };
    this.started = true;
    const choices = Array.isArray(json.choices) ? json.choices : [];
    const choice = (choices.find((ch) => isObject(ch) && (ch.index ?? 0) === 0) ?? {}) as Json;
    const message = isObject(choice.message) ? choice.message : {};
    yield* this.thinking(message);
    if (typeof message.content === 'string' && message.content) yield { type: 'text', delta: message.content };
    if (typeof message.refusal === 'string' && message.refusal) yield { type: 'text', delta: message.refusal };
    if (Array.isArray(message.tool_calls)) {
      for (const tc of message.tool_calls) {
        if (!isObject(tc) || !isObject(tc.function)) continue;
        const index = this.ids.length;
        const id = str(tc.id) ?? `call_gateway_${index}`;
        this.ids.push(id);
        yield { type: 'tool_call', index, id, name: str(tc.function.name) ?? '' };
        const args = argumentsText(tc.function.arguments);
        if (args) yield { type: 'tool_args', index, delta: args };
      }
    }
    yield { type: 'finish', reason: this.reason(choice.finish_reason) };
    const usage = readChatUsage(json.usage);
    if (usage) yield { type: 'usage', usage };
  }

  /** Some compatible servers (Ollama among them) finish a tool-calling turn with 'stop'. */
  private reason(r: unknown): StopReason {
    const mapped = mapFinishReason(r);
    return mapped === 'stop' && this.ids.length > 0 ? 'tool_calls' : mapped;
  }

  private *toolDelta(tc: Json): Generator<StreamEvent> {
    const upstreamIndex = typeof tc.index === 'number' ? tc.index : undefined;
    const fn = isObject(tc.function) ? tc.function : {};
    const id = str(tc.id) || undefined;
    let n = upstreamIndex !== undefined ? this.byUpstreamIndex.get(upstreamIndex) : this.last;
    if ((id && (n === undefined || this.ids[n] !== id)) || (n === undefined && str(fn.name))) {
      n = this.ids.length;
      const callId = id ?? `call_gateway_${n}`;
      this.ids.push(callId);
      if (upstreamIndex !== undefined) this.byUpstreamIndex.set(upstreamIndex, n);
      this.last = n;
      yield { type: 'tool_call', index: n, id: callId, name: str(fn.name) ?? '' };
    }
    if (n === undefined) return; // arguments for a call that was never opened: nothing to attach them to
    this.last = n;
    const args = argumentsText(fn.arguments);
    if (args) yield { type: 'tool_args', index: n, delta: args };
  }
}

function argumentsText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  return JSON.stringify(v);
}

/**
 * The events of an upstream Chat Completions response (status 2xx). `return()` cancels the
 * upstream body at once, even while a read is pending.
 */
export function chatCompletionEvents(res: Response, stream: boolean, provider: string, fallbackModel: string, reasoning = false): AsyncIterableIterator<StreamEvent> {
  if (!hasBody(res)) throw new GatewayError('upstream', `Provider "${provider}" sent an empty answer.`, { code: 'upstream_empty' });
  const reader = bodyReader(res);
  let cancelled = false;
  const decoder = new ChatChunkDecoder(fallbackModel, reasoning);
  const gen = stream ? decodeStream(reader, decoder, provider, () => cancelled) : decodeJson(reader, decoder, provider, () => cancelled);
  const it: AsyncIterableIterator<StreamEvent> = {
    next: () => gen.next(),
    async return(value?: unknown) {
      cancelled = true;
      await reader.cancel().catch(() => {});
      return gen.return(value as undefined);
    },
    [Symbol.asyncIterator]() {
      return it;
    },
  };
  return it;
}

/** The next piece of an upstream body; undefined once the gateway itself stopped reading (a read error then is ours). */
async function readPiece(reader: ReadableStreamDefaultReader<Uint8Array>, provider: string, isCancelled: () => boolean): Promise<ReadableStreamReadResult<Uint8Array> | undefined> {
  try {
    return await reader.read();
  } catch (err) {
    if (isCancelled()) return undefined;
    throw asGatewayError(err, provider);
  }
}

async function* decodeStream(reader: ReadableStreamDefaultReader<Uint8Array>, decoder: ChatChunkDecoder, provider: string, isCancelled: () => boolean): AsyncGenerator<StreamEvent> {
  const text = new TextDecoder();
  const pending: string[] = [];
  const parser = boundedSseParser((e) => pending.push(e.data));
  let sawDone = false;
  for (;;) {
    const r = await readPiece(reader, provider, isCancelled);
    if (!r) return;
    if (r.done) {
      parser.feed(text.decode());
      parser.reset({ consume: true });
    } else parser.feed(text.decode(r.value, { stream: true }));
    while (pending.length && !sawDone) {
      const data = pending.shift()!;
      if (data === '[DONE]') {
        sawDone = true;
        break;
      }
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        throw new GatewayError('upstream', `Provider "${provider}" sent a stream chunk that is not JSON.`, { code: 'upstream_bad_chunk' });
      }
      if (!isObject(chunk)) continue;
      if (chunk.error !== undefined && chunk.error !== null) throw midStreamError(provider, chunk.error);
      yield* decoder.chunk(chunk);
    }
    pending.length = 0;
    if (sawDone) {
      yield* decoder.end();
      // Whatever follows [DONE] is not ours to read; let the connection go.
      reader.cancel().catch(() => {});
      return;
    }
    if (r.done) {
      if (isCancelled()) return;
      throw new GatewayError('upstream', `Provider "${provider}" ended the stream before it was complete.`, { code: 'upstream_stream_truncated' });
    }
  }
}

async function* decodeJson(reader: ReadableStreamDefaultReader<Uint8Array>, decoder: ChatChunkDecoder, provider: string, isCancelled: () => boolean): AsyncGenerator<StreamEvent> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const r = await readPiece(reader, provider, isCancelled);
    if (!r) return;
    if (r.done) break;
    if ((size += r.value.byteLength) > MAX_ANSWER_BYTES) {
      reader.cancel().catch(() => {});
      throw answerTooLarge(provider);
    }
    parts.push(r.value);
  }
  if (isCancelled()) return;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    throw new GatewayError('upstream', `Provider "${provider}" sent an answer that is not JSON.`, { code: 'upstream_bad_json' });
  }
  if (!isObject(json)) throw new GatewayError('upstream', `Provider "${provider}" sent an answer that is not a JSON object.`, { code: 'upstream_bad_json' });
  if (json.error !== undefined && json.error !== null) throw midStreamError(provider, json.error);
  if (!Array.isArray(json.choices)) throw new GatewayError('upstream', `Provider "${provider}" sent an answer that is not a chat completion.`, { code: 'upstream_bad_json' });
  yield* decoder.completion(json);
}
