import type { ChatMessage, ChatRequest, ContentPart, StopReason, StreamEvent, ThinkingBlock, ToolCall, ToolChoice, ToolDefinition, Usage } from '../../core/types.ts';
import { anthropicErrorBody, GatewayError, jsonResponse } from '../../http/errors.ts';
import { SSE_HEADERS, sseEvent } from '../../http/sse.ts';
import type { RequestTrace } from '../../telemetry/record.ts';
import { relayJson, relaySse, truncatedStream } from '../relay.ts';
import { encodeEvents } from '../stream.ts';
import { AnthropicUsage, eventName, toAnthropicStopReason, toAnthropicUsage } from './wire.ts';
import { assistantTurn, bad as badRequest, isObject, type Json } from '../common.ts';
import type { EncodeMeta, FrontDoorCodec } from '../../formats/types.ts';
import { anthropicErrorResponse } from './errors.ts';

/**
 * Anthropic Messages: `POST /v1/messages`.
 *
 * Requests are decoded into the neutral ChatRequest. Only what the gateway itself needs (model,
 * max_tokens, stream, the shape of the message list) is checked up front (400 naming it, in
 * Anthropic's error shape). Anthropic upstreams get the client's own body (pass-through), unknown
 * fields, roles, block types and betas included; for other upstreams the parts the neutral model
 * cannot carry, and values that would be wrong there, are listed in `untranslatable` (the gateway
 * then answers 400 naming the first), and the parts that only tune Anthropic's service
 * (cache_control, context_management, ...) are dropped, as docs/translation.md says.
 */

/** A 400 in Anthropic's manner: the message names the parameter first. */
function bad(message: string, param: string): GatewayError {
  return badRequest(`${param}: ${message}`, param, 'invalid_request_error');
}

/** Top-level fields that only tune Anthropic's own service: dropped when the request is translated. */
const DROPPED_FIELDS = new Set(['context_management', 'service_tier', 'inference_geo']);
/** Top-level fields the request is decoded from (`output_config` is checked on its own). */
const KNOWN_FIELDS = new Set(['model', 'messages', 'system', 'max_tokens', 'temperature', 'top_p', 'top_k', 'stop_sequences', 'stream', 'tools', 'tool_choice', 'thinking', 'metadata', 'output_config']);

interface ParseState {
  untranslatable: { param: string; message: string }[];
  /** Tools named by `tool_reference` blocks or called in the history (deferred tools these name are offered). */
  referenced: Set<string>;
}

/**
 * What to use instead, for block types that have no translation (docs/translation.md has the table).
 * Block types not listed get the general advice.
 */
const INSTEAD: Record<string, string> = {
  document: 'send the document as text (or images of its pages)',
  search_result: 'send the search result as a text block',
  server_tool_use: "leave Anthropic's server tools out of the history",
  web_search_tool_result: "leave Anthropic's server tools out of the history",
  web_fetch_tool_result: "leave Anthropic's server tools out of the history",
  code_execution_tool_result: "leave Anthropic's server tools out of the history",
  bash_code_execution_tool_result: "leave Anthropic's server tools out of the history",
  text_editor_code_execution_tool_result: "leave Anthropic's server tools out of the history",
  mcp_tool_use: 'call MCP tools from the client (or through the gateway\'s /mcp routes) and send tool_use / tool_result blocks',
  mcp_tool_result: 'call MCP tools from the client (or through the gateway\'s /mcp routes) and send tool_use / tool_result blocks',
  container_upload: 'send the file content as text',
};

/**
 * A part of the request the neutral model cannot carry. The request still passes through to a
 * same-format upstream; a translated route answers 400 with this message (routing/execute.ts).
 */
function untranslatable(st: ParseState, param: string, what: string, instead?: string): void {
  st.untranslatable.push({ param, message: `${param}: ${what} cannot be translated for this model's provider; ${instead ? `${instead}, or use a model served by Anthropic` : 'use a model served by Anthropic, or leave it out'}.` });
}

/**
 * A value the gateway itself does not need (it only matters to the upstream): checked only when the
 * request is translated, so a same-format upstream gets it as sent and judges it itself.
 */
function invalid(st: ParseState, message: string, param: string): void {
  st.untranslatable.push({ param, message: `${param}: ${message}` });
}

function optNumber(body: Json, key: string, min: number, max: number, st: ParseState, integer = false): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) return void invalid(st, `Input should be a valid ${integer ? 'integer' : 'number'}`, key);
  if (integer && !Number.isInteger(v)) return void invalid(st, 'Input should be a valid integer', key);
  if (v < min || v > max) return void invalid(st, `Input should be between ${min} and ${max}`, key);
  return v;
}

function parseImage(block: Json, p: string, st: ParseState): ContentPart | undefined {
  const src = block.source;
  if (!isObject(src)) return void invalid(st, 'Field required', `${p}.source`);
  if (src.type === 'base64') {
    if (typeof src.media_type !== 'string') return void invalid(st, 'Field required', `${p}.source.media_type`);
    if (typeof src.data !== 'string') return void invalid(st, 'Field required', `${p}.source.data`);
    return { type: 'image', mediaType: src.media_type, data: src.data };
  }
  if (src.type === 'url') {
    if (typeof src.url !== 'string') return void invalid(st, 'Field required', `${p}.source.url`);
    return { type: 'image', url: src.url };
  }
  if (typeof src.type !== 'string') return void invalid(st, 'Field required', `${p}.source.type`);
  untranslatable(st, `${p}.source.type`, `an image source of type '${src.type}'`, 'send the image as base64 or by URL');
  return undefined;
}

/**
 * A text, image or tool_reference block; other block types are noted as untranslatable
 * (undefined). A `tool_reference` (Claude Code's ToolSearch result) becomes text naming the tool,
 * and makes that tool, if deferred (`defer_loading`), part of the tools sent upstream.
 */
function parseBlock(block: Json, bp: string, st: ParseState): ContentPart | undefined {
  if (block.type === 'text') {
    if (typeof block.text !== 'string') return void invalid(st, 'Field required', `${bp}.text`);
    return { type: 'text', text: block.text };
  }
  if (block.type === 'image') return parseImage(block, bp, st);
  if (block.type === 'tool_reference') {
    if (typeof block.tool_name !== 'string' || !block.tool_name) return void invalid(st, 'Field required', `${bp}.tool_name`);
    st.referenced.add(block.tool_name);
    return { type: 'text', text: `Tool loaded: ${block.tool_name} (it can be called now).` };
  }
  if (typeof block.type !== 'string') throw bad('Field required', `${bp}.type`);
  untranslatable(st, `${bp}.type`, `a content block of type '${block.type}'`, INSTEAD[block.type]);
  return undefined;
}

/** Text and images of a content value (a string or a list of blocks). */
function parseParts(content: unknown, p: string, st: ParseState): ContentPart[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw bad('Input should be a valid string or a list of content blocks', p);
  const out: ContentPart[] = [];
  content.forEach((block, j) => {
    if (!isObject(block)) throw bad('Input should be a valid dictionary', `${p}.${j}`);
    const part = parseBlock(block, `${p}.${j}`, st);
    if (part) out.push(part);
  });
  return out;
}

function parseSystem(system: unknown, st: ParseState): string | undefined {
  if (system === undefined || system === null) return undefined;
  if (typeof system === 'string') return system || undefined;
  if (!Array.isArray(system)) return void invalid(st, 'Input should be a valid string or a list of text blocks', 'system');
  const texts: string[] = [];
  system.forEach((block, i) => {
    if (!isObject(block) || block.type !== 'text' || typeof block.text !== 'string') invalid(st, 'Input should be a text block ({"type":"text","text":...})', `system.${i}`);
    else texts.push(block.text);
  });
  return texts.length ? texts.join('\n\n') : undefined;
}

function parseMessages(messages: unknown, st: ParseState): ChatMessage[] {
  if (!Array.isArray(messages)) throw bad(messages === undefined ? 'Field required' : 'Input should be a valid list', 'messages');
  if (messages.length === 0) throw bad('at least one message is required', 'messages');
  const out: ChatMessage[] = [];
  messages.forEach((m, i) => {
    const p = `messages.${i}`;
    if (!isObject(m)) throw bad('Input should be a valid dictionary', p);
    if (typeof m.role !== 'string') throw bad(m.role === undefined ? 'Field required' : 'Input should be a valid string', `${p}.role`);
    if (m.content === undefined) throw bad('Field required', `${p}.content`);
    if (typeof m.content !== 'string' && !Array.isArray(m.content)) throw bad('Input should be a valid string or a list of content blocks', `${p}.content`);
    if (m.role === 'system') {
      // A system message mid-conversation (Claude Code sends these): kept at its position.
      const content = parseParts(m.content, `${p}.content`, st);
      if (content.length) out.push({ role: 'user', content, fromSystem: true });
      return;
    }
    if (m.role !== 'user' && m.role !== 'assistant') {
      untranslatable(st, `${p}.role`, `a message of role '${m.role}'`, "use 'user', 'assistant' or 'system'");
      return;
    }
    if (typeof m.content === 'string') {
      out.push({ role: m.role, content: [{ type: 'text', text: m.content }] });
      return;
    }
    const blocks = m.content as unknown[];

    if (m.role === 'assistant') {
      const content: ContentPart[] = [];
      const toolCalls: ToolCall[] = [];
      const thinking: ThinkingBlock[] = [];
      blocks.forEach((block, j) => {
        const bp = `${p}.content.${j}`;
        if (!isObject(block)) throw bad('Input should be a valid dictionary', bp);
        switch (block.type) {
          case 'tool_use':
            if (typeof block.id !== 'string') throw bad('Field required', `${bp}.id`);
            if (typeof block.name !== 'string') throw bad('Field required', `${bp}.name`);
            if (!isObject(block.input)) throw bad('Input should be a valid dictionary', `${bp}.input`);
            st.referenced.add(block.name);
            toolCalls.push({ id: block.id, name: block.name, arguments: JSON.stringify(block.input) });
            break;
          case 'thinking':
            if (typeof block.thinking !== 'string') return void invalid(st, 'Field required', `${bp}.thinking`);
            thinking.push({ text: block.thinking, signature: typeof block.signature === 'string' ? block.signature : undefined });
            break;
          case 'redacted_thinking':
            if (typeof block.data !== 'string') return void invalid(st, 'Field required', `${bp}.data`);
            thinking.push({ redactedData: block.data });
            break;
          default: {
            const part = parseBlock(block, bp, st);
            if (part) content.push(part);
          }
        }
      });
      out.push(assistantTurn(content, toolCalls, thinking));
      return;
    }

    // A user turn: tool results become tool messages (first), the rest one user message.
    const rest: ContentPart[] = [];
    blocks.forEach((block, j) => {
      const bp = `${p}.content.${j}`;
      if (!isObject(block)) throw bad('Input should be a valid dictionary', bp);
      if (block.type === 'tool_result') {
        if (typeof block.tool_use_id !== 'string') throw bad('Field required', `${bp}.tool_use_id`);
        const content = block.content === undefined || block.content === null ? [] : parseParts(block.content, `${bp}.content`, st);
        const msg: ChatMessage = { role: 'tool', toolCallId: block.tool_use_id, content };
        if (block.is_error === true) msg.isError = true;
        out.push(msg);
      } else {
        const part = parseBlock(block, bp, st);
        if (part) rest.push(part);
      }
    });
    if (rest.length) out.push({ role: 'user', content: rest });
  });
  return out;
}

/**
 * Tool definitions. A tool marked `defer_loading: true` (Claude Code's deferred tools, loaded by
 * ToolSearch) is withheld from a translated upstream until the conversation references it (a
 * `tool_reference` block, or a call to it in the history): the upstream has no way to defer a tool.
 */
function parseTools(tools: unknown, st: ParseState): ToolDefinition[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) return void invalid(st, 'Input should be a valid list', 'tools');
  const out: ToolDefinition[] = [];
  tools.forEach((t, i) => {
    const p = `tools.${i}`;
    if (!isObject(t)) return void invalid(st, 'Input should be a valid dictionary', p);
    if (typeof t.name !== 'string' || !t.name) return void invalid(st, 'Field required', `${p}.name`);
    if (t.type !== undefined && t.type !== null && t.type !== 'custom') {
      // Server and client tools Anthropic defines (web_search_..., bash_..., text_editor_...).
      untranslatable(st, `${p}.type`, `the Anthropic-defined tool '${String(t.type)}'`, 'define it as a custom tool (name, description, input_schema)');
      return;
    }
    if (!isObject(t.input_schema)) return void invalid(st, 'Field required', `${p}.input_schema`);
    if (t.defer_loading === true && !st.referenced.has(t.name)) return;
    out.push({ name: t.name, description: typeof t.description === 'string' ? t.description : undefined, parameters: t.input_schema });
  });
  return out;
}

function parseToolChoice(tc: unknown, st: ParseState): ToolChoice | undefined {
  if (tc === undefined || tc === null) return undefined;
  if (!isObject(tc)) return void invalid(st, 'Input should be a valid dictionary', 'tool_choice');
  switch (tc.type) {
    case 'auto':
      return 'auto';
    case 'any':
      return 'required';
    case 'none':
      return 'none';
    case 'tool':
      if (typeof tc.name !== 'string' || !tc.name) return void invalid(st, 'Field required', 'tool_choice.name');
      return { name: tc.name };
    default:
      return void invalid(st, "Input tag should be one of 'auto', 'any', 'tool', 'none'", 'tool_choice.type');
  }
}

function parseThinking(th: unknown, st: ParseState): ChatRequest['thinking'] {
  if (th === undefined || th === null) return undefined;
  if (!isObject(th)) return void invalid(st, 'Input should be a valid dictionary', 'thinking');
  if (th.type === 'enabled') {
    const b = th.budget_tokens;
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 1) return void invalid(st, 'Input should be a valid positive integer', 'thinking.budget_tokens');
    return { type: 'enabled', budgetTokens: b };
  }
  if (th.type === 'disabled' || th.type === 'adaptive') return { type: th.type };
  return void invalid(st, "Input tag should be one of 'enabled', 'disabled', 'adaptive'", 'thinking.type');
}

export interface ParseOptions {
  /** `max_tokens` is required on `/v1/messages`, not on `/v1/messages/count_tokens`. */
  requireMaxTokens?: boolean;
}

/**
 * Decode an Anthropic Messages request body. What the gateway needs to route, meter and guard is
 * checked here and answered with a 400 naming it: `model`, `max_tokens`, `stream`, and the shape of
 * `messages` (a non-empty list of objects with a string `role` and a string or list `content`).
 * Everything else is checked only when the request is translated (ChatRequest.untranslatable):
 * a same-format upstream gets the body as sent, unknown fields, roles, block types and all.
 */
export function parseAnthropicRequest(body: unknown, opts: ParseOptions = {}): ChatRequest {
  if (!isObject(body)) throw new GatewayError('invalid_request', 'The request body must be a JSON object.', { code: 'invalid_request_error' });
  if (typeof body.model !== 'string' || !body.model) throw bad(body.model === undefined ? 'Field required' : 'Input should be a valid string', 'model');
  const st: ParseState = { untranslatable: [], referenced: new Set() };
  const requireMax = opts.requireMaxTokens ?? true;
  if (requireMax && (body.max_tokens === undefined || body.max_tokens === null)) throw bad('Field required', 'max_tokens');
  let maxTokens: number | undefined;
  if (body.max_tokens !== undefined && body.max_tokens !== null) {
    const v = body.max_tokens;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw bad('Input should be a valid integer', 'max_tokens');
    if (v < 1 || v > 10_000_000) throw bad('Input should be between 1 and 10000000', 'max_tokens');
    maxTokens = v;
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw bad('Input should be a valid boolean', 'stream');

  const system = parseSystem(body.system, st);
  const messages = parseMessages(body.messages, st);
  const tools = parseTools(body.tools, st);
  const toolChoice = parseToolChoice(body.tool_choice, st);

  let stop: string[] | undefined;
  if (body.stop_sequences !== undefined && body.stop_sequences !== null) {
    if (!Array.isArray(body.stop_sequences) || !body.stop_sequences.every((s) => typeof s === 'string')) invalid(st, 'Input should be a valid list of strings', 'stop_sequences');
    else stop = body.stop_sequences.length ? (body.stop_sequences as string[]) : undefined;
  }
  let user: string | undefined;
  if (body.metadata !== undefined && body.metadata !== null) {
    if (!isObject(body.metadata)) invalid(st, 'Input should be a valid dictionary', 'metadata');
    else {
      const uid = body.metadata.user_id;
      if (uid !== undefined && uid !== null && typeof uid !== 'string') invalid(st, 'Input should be a valid string', 'metadata.user_id');
      user = typeof uid === 'string' && uid ? uid : undefined;
    }
  }
  for (const key of Object.keys(body)) {
    if (KNOWN_FIELDS.has(key) || DROPPED_FIELDS.has(key)) continue;
    untranslatable(st, key, `the parameter '${key}'`);
  }
  // output_config: `effort` is a hint and is dropped; a structured-output `format` cannot be carried.
  if (isObject(body.output_config)) {
    for (const key of Object.keys(body.output_config)) if (key !== 'effort') untranslatable(st, `output_config.${key}`, `the parameter 'output_config.${key}'`);
  } else if (body.output_config !== undefined && body.output_config !== null) invalid(st, 'Input should be a valid dictionary', 'output_config');

  const req: ChatRequest = {
    model: body.model,
    system,
    messages,
    tools,
    toolChoice,
    maxTokens,
    temperature: optNumber(body, 'temperature', 0, 1, st),
    topP: optNumber(body, 'top_p', 0, 1, st),
    topK: optNumber(body, 'top_k', 0, 1_000_000, st, true),
    stop,
    stream: body.stream === true,
    // Anthropic always reports usage.
    includeUsage: true,
    user,
    thinking: parseThinking(body.thinking, st),
  };
  if (isObject(body.tool_choice) && body.tool_choice.disable_parallel_tool_use === true) req.parallelToolCalls = false;
  if (st.untranslatable.length) req.untranslatable = st.untranslatable;
  return req;
}

function messageId(id: string): string {
  return id.startsWith('msg_') ? id : `msg_${id.replace(/[^A-Za-z0-9_-]/g, '')}`;
}

function parseToolInput(args: string): Json {
  if (!args.trim()) return {};
  try {
    const v = JSON.parse(args) as unknown;
    return isObject(v) ? v : { value: v };
  } catch {
    // The upstream produced arguments that are not JSON: hand them over rather than lose them.
    return { _raw_arguments: args };
  }
}

/**
 * Encodes neutral events as Anthropic content blocks. Blocks are strictly sequential: a change of
 * kind (text, thinking, a tool call) closes the open block and opens the next.
 */
class BlockEncoder {
  private next = 0;
  private open: { kind: 'text' | 'thinking' | 'tool'; index: number; tool?: number } | undefined;
  private readonly toolBlocks = new Map<number, number>();

  constructor(private readonly out: (event: string, data: Json) => void) {}

  private close(): void {
    if (this.open) this.out('content_block_stop', { type: 'content_block_stop', index: this.open.index });
    this.open = undefined;
  }

  private start(kind: 'text' | 'thinking' | 'tool', block: Json, tool?: number): number {
    this.close();
    const index = this.next++;
    this.open = { kind, index, tool };
    this.out('content_block_start', { type: 'content_block_start', index, content_block: block });
    return index;
  }

  event(ev: StreamEvent): void {
    switch (ev.type) {
      case 'text':
        if (!ev.delta) return;
        if (this.open?.kind !== 'text') this.start('text', { type: 'text', text: '' });
        this.out('content_block_delta', { type: 'content_block_delta', index: this.open!.index, delta: { type: 'text_delta', text: ev.delta } });
        return;
      case 'thinking':
        if (ev.redactedData !== undefined) {
          this.start('thinking', { type: 'redacted_thinking', data: ev.redactedData });
          this.close();
          return;
        }
        if (ev.delta) {
          if (this.open?.kind !== 'thinking') this.start('thinking', { type: 'thinking', thinking: '', signature: '' });
          this.out('content_block_delta', { type: 'content_block_delta', index: this.open!.index, delta: { type: 'thinking_delta', thinking: ev.delta } });
        }
        if (ev.signature !== undefined) {
          if (this.open?.kind !== 'thinking') this.start('thinking', { type: 'thinking', thinking: '', signature: '' });
          this.out('content_block_delta', { type: 'content_block_delta', index: this.open!.index, delta: { type: 'signature_delta', signature: ev.signature } });
          this.close();
        }
        return;
      case 'tool_call': {
        const index = this.start('tool', { type: 'tool_use', id: ev.id, name: ev.name, input: {} }, ev.index);
        this.toolBlocks.set(ev.index, index);
        return;
      }
      case 'tool_args': {
        if (!ev.delta) return;
        // Arguments for a call whose block is already closed (interleaved upstream calls) still
        // go to that call's block index, which is where clients accumulate them.
        const index = this.open?.kind === 'tool' && this.open.tool === ev.index ? this.open.index : this.toolBlocks.get(ev.index);
        if (index === undefined) return;
        this.out('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: ev.delta } });
        return;
      }
      default:
        return;
    }
  }

  end(): void {
    this.close();
  }
}

/** Answer an Anthropic client from neutral events (first already pulled), streaming or not. */
export async function respondFromEvents(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
  if (!req.stream) return collect(req, first, events, meta, trace);

  let started = false;
  let reason: StopReason | undefined;
  let stopSequence: string | undefined;
  let usage: Usage | undefined;
  let buf = '';
  const out = (event: string, data: Json) => {
    buf += sseEvent(event, data);
  };
  const take = () => {
    const t = buf;
    buf = '';
    return t;
  };
  const blocks = new BlockEncoder(out);
  const startMessage = (id: string, model: string) => {
    started = true;
    out('message_start', {
      type: 'message_start',
      message: { id: messageId(id), type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } },
    });
    out('ping', { type: 'ping' });
  };

  return encodeEvents(
    first,
    events,
    trace,
    {
      encode(ev) {
        if (ev.type === 'start') startMessage(ev.id, ev.model);
        else {
          if (!started) startMessage(`gateway_${trace.record.requestId}`, req.model);
          if (ev.type === 'finish') {
            reason = ev.reason;
            stopSequence = ev.stopSequence;
          } else if (ev.type === 'usage') {
            usage = ev.usage;
            trace.usage(ev.usage);
          } else blocks.event(ev);
        }
        return take();
      },
      end() {
        if (!started) startMessage(`gateway_${trace.record.requestId}`, req.model);
        blocks.end();
        const u = usage ?? { inputTokens: 0, outputTokens: 0 };
        out('message_delta', { type: 'message_delta', delta: { stop_reason: toAnthropicStopReason(reason ?? 'stop'), stop_sequence: stopSequence ?? null }, usage: toAnthropicUsage(u) });
        out('message_stop', { type: 'message_stop' });
        return take();
      },
      // Never a clean message_stop after a failure: an `error` event, as Anthropic sends.
      fail: (ge) => take() + sseEvent('error', anthropicErrorBody(ge)),
    },
    { status: 200, headers: Object.assign({}, SSE_HEADERS, meta.headers) },
  );
}

async function collect(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
  let id = `gateway_${trace.record.requestId}`;
  let model = req.model;
  const content: Json[] = [];
  const tools = new Map<number, { block: Json; args: string }>();
  let reason: StopReason = 'stop';
  let stopSequence: string | undefined;
  let usage: Usage = { inputTokens: 0, outputTokens: 0 };
  const last = () => content[content.length - 1];
  /** The thinking block deltas go to, until a signature closes it. */
  let thinkingOpen: { type: 'thinking'; thinking: string; signature: string } | undefined;
  for (let r = first; !r.done; r = await events.next()) {
    const ev = r.value;
    switch (ev.type) {
      case 'start':
        id = ev.id;
        model = ev.model;
        break;
      case 'text':
        if (!ev.delta) break;
        thinkingOpen = undefined;
        if (last()?.type === 'text') (last() as { text: string }).text += ev.delta;
        else content.push({ type: 'text', text: ev.delta });
        break;
      case 'thinking':
        if (ev.redactedData !== undefined) {
          thinkingOpen = undefined;
          content.push({ type: 'redacted_thinking', data: ev.redactedData });
          break;
        }
        if (!thinkingOpen) {
          thinkingOpen = { type: 'thinking', thinking: '', signature: '' };
          content.push(thinkingOpen);
        }
        if (ev.delta) thinkingOpen.thinking += ev.delta;
        if (ev.signature !== undefined) {
          thinkingOpen.signature = ev.signature;
          thinkingOpen = undefined;
        }
        break;
      case 'tool_call': {
        thinkingOpen = undefined;
        const block: Json = { type: 'tool_use', id: ev.id, name: ev.name, input: {} };
        content.push(block);
        tools.set(ev.index, { block, args: '' });
        break;
      }
      case 'tool_args': {
        const t = tools.get(ev.index);
        if (t) t.args += ev.delta;
        break;
      }
      case 'finish':
        reason = ev.reason;
        stopSequence = ev.stopSequence;
        break;
      case 'usage':
        usage = ev.usage;
        break;
    }
  }
  for (const t of tools.values()) t.block.input = parseToolInput(t.args);
  trace.usage(usage);
  trace.end(200);
  return jsonResponse(
    {
      id: messageId(id),
      type: 'message',
      role: 'assistant',
      model,
      content,
      stop_reason: toAnthropicStopReason(reason),
      stop_sequence: stopSequence ?? null,
      usage: toAnthropicUsage(usage),
    },
    200,
    meta.headers,
  );
}

/** Upstream response headers an Anthropic client may use, passed on with the answer. */
const PASSED_HEADERS = ['request-id'];

/**
 * Pass an Anthropic upstream's answer to an Anthropic client. Non-streaming bodies go through as
 * they are. Streams go through event by event as they arrive, unchanged; the gateway reads usage
 * on the side (message_start, message_delta). A stream that breaks or ends before `message_stop`
 * (and without an `error` event of its own) gets an `event: error` appended, never a clean end.
 */
export function respondPassthrough(req: ChatRequest, upstream: Response, meta: EncodeMeta, trace: RequestTrace): Response {
  const headers: Record<string, string> = { ...meta.headers };
  for (const h of PASSED_HEADERS) {
    const v = upstream.headers.get(h);
    if (v) headers[h] = v;
  }
  const upstreamType = upstream.headers.get('content-type') ?? '';
  const streaming = upstreamType.includes('text/event-stream') || (req.stream && !upstreamType.includes('json'));
  headers['content-type'] = upstreamType || (streaming ? SSE_HEADERS['content-type']! : 'application/json');
  const usage = new AnthropicUsage();
  const beforeEnd = () => {
    if (usage.seen) trace.usage(usage.toUsage());
  };

  if (!streaming) return relayJson(upstream, trace, { status: upstream.status, headers }, (json) => usage.read(json.usage), beforeEnd);

  Object.assign(headers, SSE_HEADERS);
  if (upstreamType) headers['content-type'] = upstreamType;
  let sawStop = false;
  let sawError = false;
  const errorTail = (ge: GatewayError) => {
    // Nothing follows the stream's own end (its message_stop or error event).
    if (sawStop || sawError) return '';
    trace.fail('stream_error', ge);
    return sseEvent('error', anthropicErrorBody(ge));
  };
  return relaySse('anthropic-messages', upstream, trace, { status: upstream.status, headers }, {
    /** Notes the stream's end, an upstream error event and usage, from an event the checker passed (its data already parsed). */
    event(event, c) {
      const name = eventName(event);
      if (name === 'message_stop') sawStop = true;
      else if (name === 'error') {
        sawError = true;
        const e = c.json?.error;
        const message = isObject(e) && typeof e.message === 'string' ? `The upstream sent an error event mid-stream: ${e.message}` : 'The upstream sent an error event mid-stream.';
        trace.fail('stream_error', { kind: 'upstream', code: 'upstream_stream_error', message });
      } else if ((name === 'message_start' || name === 'message_delta') && c.json) {
        usage.read(name === 'message_start' && isObject(c.json.message) ? c.json.message.usage : c.json.usage);
      }
      return event;
    },
    failure: errorTail,
    end: () => errorTail(truncatedStream()),
    beforeEnd,
  });
}

export const anthropicMessagesDoor: FrontDoorCodec = {
  door: 'anthropic-messages',
  parse: (body) => parseAnthropicRequest(body),
  error: anthropicErrorResponse,
  respondFromEvents,
  respondPassthrough,
};
