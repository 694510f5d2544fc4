import type { EventSourceMessage } from 'eventsource-parser';
import { markedSystemContent, type ChatMessage, type ChatRequest, type ContentPart, type StreamEvent } from '../../core/types.ts';
import { AnthropicUsage, fromAnthropicStopReason, readErrorEvent } from './wire.ts';
import { isObject, SseReader, type Json } from '../common.ts';
import { GatewayError, type ErrorKind } from '../../http/errors.ts';
import { unsupported } from '../common.ts';
import { readAnswerJson } from '../../http/answer.ts';

/**
 * The neutral request as an Anthropic Messages body, and Anthropic's answers (SSE or JSON) as
 * neutral events. Used when a client that does not speak Anthropic's API reaches an Anthropic model.
 */

function contentBlock(part: ContentPart, param: string): Json | undefined {
  if (part.type === 'text') return part.text ? { type: 'text', text: part.text } : undefined;
  if (part.data !== undefined) {
    if (!part.mediaType) throw unsupported(`'${param}': an inline image needs its media type.`, param);
    return { type: 'image', source: { type: 'base64', media_type: part.mediaType, data: part.data } };
  }
  if (part.url) return { type: 'image', source: { type: 'url', url: part.url } };
  return undefined;
}

function contentBlocks(parts: ContentPart[], param: string): Json[] {
  const out: Json[] = [];
  parts.forEach((p, i) => {
    const b = contentBlock(p, `${param}[${i}]`);
    if (b) out.push(b);
  });
  return out;
}

function toolInput(args: string, param: string): Json {
  if (!args.trim()) return {};
  let v: unknown;
  try {
    v = JSON.parse(args);
  } catch {
    throw unsupported(`'${param}' must be a JSON object (the tool call's arguments); Anthropic models take tool input as an object.`, param);
  }
  if (!isObject(v)) throw unsupported(`'${param}' must be a JSON object (the tool call's arguments).`, param);
  return v;
}

/** The neutral conversation as Anthropic messages: tool results go in the user turn that follows the tool calls. */
function toAnthropicMessages(messages: ChatMessage[]): Json[] {
  const out: { role: 'user' | 'assistant'; content: Json[] }[] = [];
  /** The user turn being built from tool results, which a following user message joins. */
  let toolTurn: { role: 'user'; content: Json[] } | undefined;
  messages.forEach((m, i) => {
    const param = `messages[${i}]`;
    if (m.role === 'tool') {
      const content = contentBlocks(m.content, `${param}.content`);
      const block: Json = { type: 'tool_result', tool_use_id: m.toolCallId };
      if (content.length === 1 && content[0]!.type === 'text') block.content = content[0]!.text;
      else if (content.length) block.content = content;
      if (m.isError) block.is_error = true;
      if (!toolTurn) {
        toolTurn = { role: 'user', content: [] };
        out.push(toolTurn);
      }
      toolTurn.content.push(block);
      return;
    }
    if (m.role === 'user') {
      // A mid-conversation system message: a marked user turn (Anthropic takes system text only up front).
      const content = contentBlocks(m.fromSystem ? markedSystemContent(m.content) : m.content, `${param}.content`);
      if (toolTurn) toolTurn.content.push(...content);
      else if (content.length) out.push({ role: 'user', content });
      toolTurn = undefined;
      return;
    }
    toolTurn = undefined;
    const content: Json[] = [];
    for (const t of m.thinking ?? []) {
      // Only blocks an Anthropic model signed can go back; others are dropped.
      if (t.redactedData !== undefined) content.push({ type: 'redacted_thinking', data: t.redactedData });
      else if (t.signature) content.push({ type: 'thinking', thinking: t.text ?? '', signature: t.signature });
    }
    content.push(...contentBlocks(m.content, `${param}.content`));
    (m.toolCalls ?? []).forEach((c, j) => {
      content.push({ type: 'tool_use', id: c.id, name: c.name, input: toolInput(c.arguments, `${param}.tool_calls[${j}].function.arguments`) });
    });
    if (content.length) out.push({ role: 'assistant', content });
  });
  // Anthropic rejects empty user turns; a turn made only of empty text is left out above.
  return out;
}

/**
 * A ChatRequest as an Anthropic Messages body. Parameters Anthropic cannot take are rejected with
 * a 400 naming them; `max_tokens` defaults to `defaultMaxTokens` (Anthropic requires it).
 */
export function toAnthropicBody(req: ChatRequest, upstreamModel: string, defaultMaxTokens: number): Json {
  if (req.temperature !== undefined && req.temperature > 1) throw unsupported(`'temperature' must be between 0 and 1 for Anthropic models (got ${req.temperature}).`, 'temperature');
  const body: Json = {
    model: upstreamModel,
    max_tokens: req.maxTokens ?? defaultMaxTokens,
    messages: toAnthropicMessages(req.messages),
  };
  if (req.system) body.system = req.system;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.topP !== undefined) body.top_p = req.topP;
  if (req.topK !== undefined) body.top_k = req.topK;
  if (req.stop?.length) body.stop_sequences = req.stop;
  if (req.tools?.length) {
    body.tools = req.tools.map((t) => {
      const schema = { ...t.parameters };
      if (schema.type === undefined) schema.type = 'object';
      const tool: Json = { name: t.name, input_schema: schema };
      if (t.description) tool.description = t.description;
      return tool;
    });
  }
  if (req.toolChoice !== undefined && (req.tools?.length || req.toolChoice === 'none')) {
    const c = req.toolChoice;
    body.tool_choice = c === 'auto' ? { type: 'auto' } : c === 'required' ? { type: 'any' } : c === 'none' ? { type: 'none' } : { type: 'tool', name: c.name };
  }
  // At most one tool call per turn: Anthropic says so on tool_choice (not on `none`, which calls nothing).
  if (req.parallelToolCalls === false && req.tools?.length && req.toolChoice !== 'none') {
    body.tool_choice = { ...((body.tool_choice as Json | undefined) ?? { type: 'auto' }), disable_parallel_tool_use: true };
  }
  if (req.user) body.metadata = { user_id: req.user };
  if (req.thinking) {
    body.thinking = req.thinking.type === 'enabled' ? { type: 'enabled', budget_tokens: req.thinking.budgetTokens } : { type: req.thinking.type };
  }
  if (req.stream) body.stream = true;
  return body;
}

const errorKinds: Record<string, ErrorKind> = {
  invalid_request_error: 'invalid_request',
  authentication_error: 'upstream',
  permission_error: 'upstream',
  not_found_error: 'not_found',
  request_too_large: 'request_too_large',
  rate_limit_error: 'rate_limit',
  overloaded_error: 'overloaded',
  timeout_error: 'timeout',
  api_error: 'upstream',
};

/** An `error` event received mid-stream, as a GatewayError. */
function streamError(provider: string, data: string): GatewayError {
  const e = readErrorEvent(data);
  const type = e.type ?? 'api_error';
  const message = e.message ?? `Provider "${provider}" sent an error mid-stream.`;
  const kind = errorKinds[type] ?? 'upstream';
  return new GatewayError(kind, message, { code: `upstream_${type}`, status: kind === 'invalid_request' || kind === 'not_found' ? 502 : undefined });
}

/** Turns Anthropic's events (stream or one message) into neutral events. */
class Decoder {
  private readonly usage = new AnthropicUsage();
  /** Anthropic content-block index -> neutral tool call index. */
  private readonly tools = new Map<number, number>();
  private nextTool = 0;
  stopped = false;

  constructor(private readonly provider: string) {}

  *message(msg: Json): Generator<StreamEvent> {
    yield { type: 'start', id: String(msg.id ?? ''), model: String(msg.model ?? '') };
    this.usage.read(msg.usage);
    const content = Array.isArray(msg.content) ? msg.content : [];
    for (const block of content) {
      if (!isObject(block)) continue;
      if (block.type === 'text' && typeof block.text === 'string') yield { type: 'text', delta: block.text };
      else if (block.type === 'thinking') yield { type: 'thinking', delta: String(block.thinking ?? ''), signature: typeof block.signature === 'string' ? block.signature : undefined };
      else if (block.type === 'redacted_thinking') yield { type: 'thinking', redactedData: String(block.data ?? '') };
      else if (block.type === 'tool_use') {
        const index = this.nextTool++;
        yield { type: 'tool_call', index, id: String(block.id ?? ''), name: String(block.name ?? '') };
        yield { type: 'tool_args', index, delta: JSON.stringify(block.input ?? {}) };
      }
    }
    yield { type: 'finish', reason: fromAnthropicStopReason(msg.stop_reason), stopSequence: typeof msg.stop_sequence === 'string' ? msg.stop_sequence : undefined };
    yield { type: 'usage', usage: this.usage.toUsage() };
    this.stopped = true;
  }

  *event(ev: EventSourceMessage): Generator<StreamEvent> {
    const name = ev.event;
    if (name === 'ping' || !ev.data) return;
    if (name === 'error') throw streamError(this.provider, ev.data);
    let data: Json;
    try {
      data = JSON.parse(ev.data) as Json;
    } catch {
      throw new GatewayError('upstream', `Provider "${this.provider}" sent an event that is not JSON.`, { code: 'upstream_bad_event' });
    }
    const type = name ?? data.type;
    switch (type) {
      case 'message_start': {
        const msg = isObject(data.message) ? data.message : {};
        this.usage.read(msg.usage);
        yield { type: 'start', id: String(msg.id ?? ''), model: String(msg.model ?? '') };
        return;
      }
      case 'content_block_start': {
        const block = isObject(data.content_block) ? data.content_block : {};
        const index = Number(data.index);
        if (block.type === 'text' && typeof block.text === 'string' && block.text) yield { type: 'text', delta: block.text };
        else if (block.type === 'thinking' && typeof block.thinking === 'string' && block.thinking) yield { type: 'thinking', delta: block.thinking };
        else if (block.type === 'redacted_thinking') yield { type: 'thinking', redactedData: String(block.data ?? '') };
        else if (block.type === 'tool_use') {
          const tool = this.nextTool++;
          this.tools.set(index, tool);
          yield { type: 'tool_call', index: tool, id: String(block.id ?? ''), name: String(block.name ?? '') };
          if (isObject(block.input) && Object.keys(block.input).length) yield { type: 'tool_args', index: tool, delta: JSON.stringify(block.input) };
        }
        return;
      }
      case 'content_block_delta': {
        const d = isObject(data.delta) ? data.delta : {};
        if (d.type === 'text_delta' && typeof d.text === 'string') yield { type: 'text', delta: d.text };
        else if (d.type === 'input_json_delta' && typeof d.partial_json === 'string') {
          const tool = this.tools.get(Number(data.index));
          if (tool !== undefined && d.partial_json) yield { type: 'tool_args', index: tool, delta: d.partial_json };
        } else if (d.type === 'thinking_delta' && typeof d.thinking === 'string') yield { type: 'thinking', delta: d.thinking };
        else if (d.type === 'signature_delta' && typeof d.signature === 'string') yield { type: 'thinking', signature: d.signature };
        return;
      }
      case 'message_delta': {
        const d = isObject(data.delta) ? data.delta : {};
        this.usage.read(data.usage);
        if (d.stop_reason !== undefined && d.stop_reason !== null) {
          yield { type: 'finish', reason: fromAnthropicStopReason(d.stop_reason), stopSequence: typeof d.stop_sequence === 'string' ? d.stop_sequence : undefined };
        }
        return;
      }
      case 'message_stop':
        yield { type: 'usage', usage: this.usage.toUsage() };
        this.stopped = true;
        return;
      default:
        return; // content_block_stop, and event types added later
    }
  }
}

/** Neutral events from an Anthropic SSE response, as they arrive. Ends with an error if the stream stops before `message_stop`. */
export async function* decodeAnthropicStream(res: Response, provider: string): AsyncGenerator<StreamEvent> {
  const sse = new SseReader(res.body!);
  const decoder = new Decoder(provider);
  try {
    while (!sse.done) {
      for (const e of await sse.read()) {
        yield* decoder.event(e);
        if (decoder.stopped) return;
      }
    }
    throw new GatewayError('upstream', `The stream from provider "${provider}" ended before it was complete.`, { code: 'upstream_stream_truncated' });
  } finally {
    sse.cancel();
  }
}

/** Neutral events from an Anthropic JSON message. */
export async function* decodeAnthropicMessage(res: Response, provider: string): AsyncGenerator<StreamEvent> {
  let msg: unknown;
  try {
    msg = await readAnswerJson(res, provider);
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw new GatewayError('upstream', `Provider "${provider}" answered with a body that is not JSON.`, { code: 'upstream_bad_response' });
  }
  if (!isObject(msg) || !Array.isArray(msg.content)) throw new GatewayError('upstream', `Provider "${provider}" answered with an unexpected body.`, { code: 'upstream_bad_response' });
  yield* new Decoder(provider).message(msg);
}
