import { randomBytes } from 'node:crypto';
import type { ChatMessage, ChatRequest, ContentPart, StopReason, StreamEvent, ToolCall, ToolChoice, ToolDefinition, Usage } from '../../core/types.ts';
import { GatewayError, jsonResponse, openaiErrorBody } from '../../http/errors.ts';
import { SSE_HEADERS, sseEvent } from '../../http/sse.ts';
import type { RequestTrace } from '../../telemetry/record.ts';
import { relayHeaders, relayJson, relaySse, truncatedStream } from '../relay.ts';
import { encodeEvents } from '../stream.ts';
import type { EncodeMeta, FrontDoorCodec } from '../../formats/types.ts';
import { readResponsesUsage } from './events.ts';
import { bad, isObject, optNumber, optInteger, type Json } from '../common.ts';
import { parseResponseFormat } from '../../emulate/structured.ts';
import { responsesError } from './errors.ts';

/**
 * OpenAI Responses: `POST /v1/responses`.
 *
 * Toward an upstream of `type: openai` the request and the answer pass through untouched (only
 * the model id and the credential change). Toward every other provider the request is decoded into
 * the neutral ChatRequest and the answer is encoded back as a Response object or as the Responses
 * streaming events, from `response.created` to `response.completed`.
 *
 * Parsing is lenient about what only OpenAI's own Responses API can do (stored conversations,
 * built-in tools, file inputs, ...): such a request is fine on a pass-through route, and lists the
 * parameter in `ChatRequest.untranslatable`, so a translated route answers 400 naming it.
 */

function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/** Something a translated route cannot carry: rejected with a 400 unless the route passes through. */
interface Untranslatable {
  param: string;
  what: string;
  /**
   * A value the gateway itself does not need, malformed for a translated route (its own message);
   * OpenAI's Responses API gets it as sent and judges it.
   */
  invalid?: string;
}

/** A malformed value only the upstream needs: checked only when the request is translated. */
function invalid(skip: Untranslatable[], message: string, param: string): void {
  skip.push({ param, what: '', invalid: `'${param}' ${message}` });
}

/**
 * The client's body, for the request fields a Response object echoes (tools, metadata, ...): kept
 * on the request itself (not enumerable: copies and serialisations of the request leave it out).
 * A WeakMap keyed by the request kept every body alive through the young generation's collections
 * (V8's scavenger keeps a WeakMap's values while their keys are young), a whole conversation each.
 */
const BODY = Symbol('responses body');

function keepBody(req: ChatRequest, body: Json): void {
  Object.defineProperty(req, BODY, { value: body, enumerable: false, configurable: true });
}

function bodyOf(req: ChatRequest): Json | undefined {
  return (req as ChatRequest & { [BODY]?: Json })[BODY];
}

/**
 * What a translated Response echoes of the stored-conversation fields, by the request body the door
 * parsed: set by shared/responses when it keeps the answer (`store`) or rebuilt the conversation
 * from `previous_response_id` (the body the door sees no longer carries that id).
 */
export const statefulEcho = new WeakMap<object, { store: boolean; previousResponseId: string | null }>();

/** Request parameters of the Responses API that translated routes reject (they need OpenAI's own state or tools). */
const PASSTHROUGH_ONLY: Record<string, string> = {
  previous_response_id: 'Stored responses (previous_response_id)',
  conversation: 'Stored conversations (conversation)',
  prompt: 'Stored prompt templates (prompt)',
  context_management: 'Context management (context_management)',
  max_tool_calls: 'max_tool_calls',
};

/** Request fields decoded into the neutral request (or checked above and listed when they cannot be carried). */
const RESPONSES_FIELDS = new Set([
  'model', 'input', 'instructions', 'max_output_tokens', 'temperature', 'top_p', 'tools', 'tool_choice', 'parallel_tool_calls', 'stream', 'stream_options', 'user', 'safety_identifier', 'text', 'background', 'top_logprobs',
  ...Object.keys(PASSTHROUGH_ONLY),
]);
/**
 * Fields that tune OpenAI's own service, or ask for extras a translated answer does not have:
 * dropped on translated routes (docs/translation.md). `metadata` is echoed in the Response.
 */
const RESPONSES_DROPPED = new Set(['metadata', 'store', 'service_tier', 'prompt_cache_key', 'prompt_cache_retention', 'reasoning', 'include', 'truncation']);

function imagePart(url: string): ContentPart {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return m ? { type: 'image', mediaType: m[1], data: m[2] } : { type: 'image', url };
}

/** Content parts of a message item (or of a function_call_output's `output` array). */
function parseParts(content: unknown, param: string, skip: Untranslatable[]): ContentPart[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw bad(`'${param}' must be a string or an array of content parts.`, param);
  const out: ContentPart[] = [];
  content.forEach((part, j) => {
    const p = `${param}[${j}]`;
    if (!isObject(part)) throw bad(`'${p}' must be an object.`, p);
    switch (part.type) {
      case 'input_text':
      case 'output_text':
      case 'text':
        if (typeof part.text !== 'string') return invalid(skip, 'must be a string.', `${p}.text`);
        out.push({ type: 'text', text: part.text });
        break;
      case 'refusal':
        if (typeof part.refusal !== 'string') return invalid(skip, 'must be a string.', `${p}.refusal`);
        out.push({ type: 'text', text: part.refusal });
        break;
      case 'input_image':
        if (typeof part.image_url === 'string') out.push(imagePart(part.image_url));
        else if (present(part.file_id)) skip.push({ param: `${p}.file_id`, what: 'Images given by file_id' });
        else invalid(skip, 'must be a string (an http(s) or data: URL).', `${p}.image_url`);
        break;
      default:
        skip.push({ param: `${p}.type`, what: `Content parts of type '${String(part.type)}'` });
    }
  });
  return out;
}

function textOnly(parts: ContentPart[], param: string, skip: Untranslatable[]): string {
  if (parts.some((p) => p.type === 'image')) skip.push({ param, what: 'Images in system, developer or assistant messages' });
  return parts.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** The `input` items as neutral messages (system and developer messages go to `system`). */
function parseInput(input: unknown, system: string[], skip: Untranslatable[]): ChatMessage[] {
  if (typeof input === 'string') return [{ role: 'user', content: [{ type: 'text', text: input }] }];
  if (!Array.isArray(input)) throw bad("'input' must be a string or an array of input items.", 'input');
  const messages: ChatMessage[] = [];
  /** Function calls join the assistant message right before them, as Chat Completions wants. */
  const addCall = (call: ToolCall) => {
    const last = messages[messages.length - 1];
    if (last?.role === 'assistant') (last.toolCalls ??= []).push(call);
    else messages.push({ role: 'assistant', content: [], toolCalls: [call] });
  };
  input.forEach((item, i) => {
    const p = `input[${i}]`;
    if (!isObject(item)) throw bad(`'${p}' must be an object.`, p);
    const type = item.type ?? (present(item.role) ? 'message' : undefined);
    switch (type) {
      case 'message': {
        const parts = parseParts(item.content, `${p}.content`, skip);
        switch (item.role) {
          case 'user':
            messages.push({ role: 'user', content: parts });
            break;
          case 'assistant': {
            const text = textOnly(parts, `${p}.content`, skip);
            const last = messages[messages.length - 1];
            // Consecutive assistant output (several message items of one turn) is one message.
            if (last?.role === 'assistant' && !last.toolCalls?.length) last.content.push({ type: 'text', text });
            else messages.push({ role: 'assistant', content: text ? [{ type: 'text', text }] : [] });
            break;
          }
          case 'system':
          case 'developer':
            system.push(textOnly(parts, `${p}.content`, skip));
            break;
          default:
            // A role the gateway does not know: OpenAI's Responses API judges it.
            if (typeof item.role !== 'string') throw bad(`'${p}.role' must be one of user, assistant, system, developer.`, `${p}.role`);
            skip.push({ param: `${p}.role`, what: `Messages of role '${item.role}' (the roles that translate are user, assistant, system and developer)` });
        }
        break;
      }
      case 'function_call': {
        if (typeof item.call_id !== 'string' || typeof item.name !== 'string') return invalid(skip, 'must have a call_id and a name.', p);
        const args = typeof item.arguments === 'string' ? item.arguments : JSON.stringify(item.arguments ?? {});
        addCall({ id: item.call_id, name: item.name, arguments: args });
        break;
      }
      case 'function_call_output': {
        if (typeof item.call_id !== 'string') return invalid(skip, 'must be a string.', `${p}.call_id`);
        messages.push({ role: 'tool', toolCallId: item.call_id, content: parseParts(item.output ?? '', `${p}.output`, skip) });
        break;
      }
      case 'reasoning':
        // The model's own reasoning from an earlier turn: only OpenAI can read it back. Dropped.
        break;
      case 'item_reference':
        skip.push({ param: p, what: 'Item references (item_reference)' });
        break;
      default:
        skip.push({ param: `${p}.type`, what: `Input items of type '${String(type)}'` });
    }
  });
  return messages;
}

function parseTools(v: unknown, skip: Untranslatable[]): ToolDefinition[] | undefined {
  if (!present(v)) return undefined;
  if (!Array.isArray(v)) throw bad("'tools' must be an array.", 'tools');
  const tools: ToolDefinition[] = [];
  v.forEach((t, i) => {
    if (!isObject(t)) throw bad(`'tools[${i}]' must be an object.`, `tools[${i}]`);
    if (t.type !== 'function') {
      skip.push({ param: `tools[${i}].type`, what: `Built-in tools ('${String(t.type)}')` });
      return;
    }
    if (typeof t.name !== 'string' || !t.name) return invalid(skip, 'must be a string.', `tools[${i}].name`);
    tools.push({
      name: t.name,
      description: typeof t.description === 'string' ? t.description : undefined,
      parameters: isObject(t.parameters) ? t.parameters : { type: 'object', properties: {} },
    });
  });
  return tools;
}

function parseToolChoice(tc: unknown, skip: Untranslatable[]): ToolChoice | undefined {
  if (!present(tc)) return undefined;
  if (tc === 'auto' || tc === 'none' || tc === 'required') return tc;
  if (isObject(tc)) {
    if (tc.type === 'function') {
      if (typeof tc.name !== 'string') return void invalid(skip, 'must be a string.', 'tool_choice.name');
      return { name: tc.name };
    }
    skip.push({ param: 'tool_choice', what: `tool_choice of type '${String(tc.type)}'` });
    return undefined;
  }
  invalid(skip, "must be 'auto', 'none', 'required' or {\"type\":\"function\",\"name\":...}.", 'tool_choice');
  return undefined;
}

/** Decode and check a Responses request body. */
function parseResponsesRequest(body: unknown): ChatRequest {
  if (!isObject(body)) throw bad('The request body must be a JSON object.');
  if (typeof body.model !== 'string' || !body.model) throw bad('Missing required parameter: \'model\'.', 'model');
  if (present(body.stream) && typeof body.stream !== 'boolean') throw bad("'stream' must be a boolean.", 'stream');
  const stream = body.stream === true;
  if (present(body.stream_options) && !isObject(body.stream_options)) throw bad("'stream_options' must be an object.", 'stream_options');
  if (present(body.stream_options) && !stream) throw bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options');
  if (present(body.instructions) && typeof body.instructions !== 'string') throw bad("'instructions' must be a string.", 'instructions');
  if (present(body.user) && typeof body.user !== 'string') throw bad("'user' must be a string.", 'user');
  if (present(body.safety_identifier) && typeof body.safety_identifier !== 'string') throw bad("'safety_identifier' must be a string.", 'safety_identifier');

  const skip: Untranslatable[] = [];
  for (const [key, what] of Object.entries(PASSTHROUGH_ONLY)) if (present(body[key])) skip.push({ param: key, what });
  if (body.background === true) skip.push({ param: 'background', what: 'Background responses (background)' });
  if (typeof body.top_logprobs === 'number' && body.top_logprobs > 0) skip.push({ param: 'top_logprobs', what: 'Log probabilities (top_logprobs)' });
  for (const [key, value] of Object.entries(body)) {
    if (present(value) && !RESPONSES_FIELDS.has(key) && !RESPONSES_DROPPED.has(key)) skip.push({ param: key, what: `The parameter '${key}'` });
  }
  if (present(body.parallel_tool_calls) && typeof body.parallel_tool_calls !== 'boolean') throw bad("'parallel_tool_calls' must be a boolean.", 'parallel_tool_calls');
  // Structured output: emulated on translated routes (shared/emulate/structured.ts).
  const format = parseResponseFormat(isObject(body.text) ? body.text.format : undefined);
  if (typeof format === 'string') invalid(skip, format, 'text.format');

  const system: string[] = typeof body.instructions === 'string' && body.instructions ? [body.instructions] : [];
  let messages: ChatMessage[] = [];
  if (present(body.input)) messages = parseInput(body.input, system, skip);
  else if (!present(body.previous_response_id) && !present(body.conversation) && !present(body.prompt)) throw bad("Missing required parameter: 'input'.", 'input');

  const req: ChatRequest = {
    model: body.model,
    system: system.length ? system.join('\n\n') : undefined,
    messages,
    tools: parseTools(body.tools, skip),
    toolChoice: parseToolChoice(body.tool_choice, skip),
    maxTokens: optInteger(body, 'max_output_tokens', 1, 10_000_000),
    temperature: optNumber(body, 'temperature', 0, 2),
    topP: optNumber(body, 'top_p', 0, 1),
    stream,
    // A Response always reports its usage.
    includeUsage: true,
    user: typeof body.user === 'string' ? body.user : typeof body.safety_identifier === 'string' ? body.safety_identifier : undefined,
  };
  if (body.parallel_tool_calls === false) req.parallelToolCalls = false;
  if (isObject(format)) req.responseFormat = format;
  const untranslatable = skip.map(({ param, what, invalid }) => ({
    param,
    message: invalid ?? `'${param}': ${what} can only be served by OpenAI's own Responses API, and model '${body.model}' is served by another provider. Leave it out, or send the whole conversation in 'input' with function tools.`,
  }));
  if (messages.length === 0 && present(body.input)) untranslatable.push({ param: 'input', message: `'input' holds no message this model's provider can take.` });
  if (untranslatable.length) req.untranslatable = untranslatable;
  keepBody(req, body);
  return req;
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`;
}

function responsesUsage(u: Usage): Json {
  return {
    input_tokens: u.inputTokens,
    input_tokens_details: { cached_tokens: u.cacheReadTokens ?? 0, cache_write_tokens: u.cacheWriteTokens ?? 0 },
    output_tokens: u.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.inputTokens + u.outputTokens,
  };
}

interface MessageItem {
  kind: 'message';
  index: number;
  item: Json;
  text: string;
  open: boolean;
}

interface CallItem {
  kind: 'call';
  index: number;
  item: Json;
  args: string;
  open: boolean;
}

/**
 * Builds a Response object from neutral events, and (when streaming) the Responses events that
 * describe each step, each with its `sequence_number`.
 */
class ResponseBuilder {
  readonly id = newId('resp');
  private seq = 0;
  model: string;
  private readonly items: (MessageItem | CallItem)[] = [];
  private readonly calls = new Map<number, CallItem>();
  private message: MessageItem | undefined;
  reason: StopReason | undefined;
  usage: Usage | undefined;

  constructor(
    private readonly req: ChatRequest,
    private readonly body: Json,
    private readonly createdAt: number,
    private readonly streaming: boolean,
  ) {
    this.model = req.model;
  }

  private event(type: string, data: Json): string {
    const seq = this.seq++;
    return this.streaming ? sseEvent(type, { type, sequence_number: seq, ...data }) : '';
  }

  /** The Response object as it stands. */
  snapshot(status: 'in_progress' | 'completed' | 'incomplete' | 'failed', extra: Json = {}): Json {
    const b = this.body;
    const echo = statefulEcho.get(b);
    return {
      id: this.id,
      object: 'response',
      created_at: this.createdAt,
      status,
      background: false,
      completed_at: status === 'completed' || status === 'incomplete' ? Math.floor(Date.now() / 1000) : null,
      error: null,
      incomplete_details: null,
      instructions: typeof b.instructions === 'string' ? b.instructions : null,
      max_output_tokens: this.req.maxTokens ?? null,
      model: this.model,
      output: this.items.map((i) => structuredClone(i.item)),
      parallel_tool_calls: typeof b.parallel_tool_calls === 'boolean' ? b.parallel_tool_calls : true,
      previous_response_id: echo?.previousResponseId ?? null,
      reasoning: { effort: null, summary: null },
      store: echo?.store ?? false,
      temperature: this.req.temperature ?? 1,
      text: isObject(b.text) && isObject(b.text.format) ? { format: b.text.format } : { format: { type: 'text' } },
      tool_choice: present(b.tool_choice) ? b.tool_choice : 'auto',
      tools: Array.isArray(b.tools) ? b.tools : [],
      top_p: this.req.topP ?? 1,
      truncation: 'disabled',
      usage: status === 'in_progress' || !this.usage ? null : responsesUsage(this.usage),
      user: typeof b.user === 'string' ? b.user : null,
      metadata: isObject(b.metadata) ? b.metadata : {},
      ...extra,
    };
  }

  begin(): string {
    const r = this.snapshot('in_progress');
    return this.event('response.created', { response: r }) + this.event('response.in_progress', { response: r });
  }

  /** Encode one neutral event (after `start`). */
  push(ev: StreamEvent): string {
    switch (ev.type) {
      case 'start':
        this.model = ev.model || this.model;
        return '';
      case 'text':
        return this.text(ev.delta);
      case 'tool_call':
        return this.toolCall(ev.index, ev.id, ev.name);
      case 'tool_args': {
        const call = this.calls.get(ev.index);
        if (!call) return '';
        call.args += ev.delta;
        call.item.arguments = call.args;
        if (!call.open) return '';
        return this.event('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.index, delta: ev.delta });
      }
      case 'finish':
        this.reason = ev.reason;
        return this.closeAll();
      case 'usage':
        this.usage = ev.usage;
        return '';
      case 'thinking':
        // Reasoning from a translated upstream has no faithful Responses form (OpenAI's reasoning
        // items are encrypted and cannot be sent back elsewhere): dropped.
        return '';
    }
  }

  private text(delta: string): string {
    let out = '';
    if (!this.message?.open) {
      out += this.closeAll();
      const item: Json = { id: newId('msg'), type: 'message', status: 'in_progress', content: [], role: 'assistant' };
      this.message = { kind: 'message', index: this.items.length, item, text: '', open: true };
      this.items.push(this.message);
      out += this.event('response.output_item.added', { output_index: this.message.index, item: structuredClone(item) });
      out += this.event('response.content_part.added', { item_id: item.id, output_index: this.message.index, content_index: 0, part: { type: 'output_text', annotations: [], logprobs: [], text: '' } });
    }
    const m = this.message;
    m.text += delta;
    m.item.content = [{ type: 'output_text', annotations: [], logprobs: [], text: m.text }];
    return out + this.event('response.output_text.delta', { item_id: m.item.id, output_index: m.index, content_index: 0, delta, logprobs: [] });
  }

  private toolCall(index: number, callId: string, name: string): string {
    // Upstreams stream one output item after another: a new call closes what came before it.
    let out = this.closeAll();
    const item: Json = { id: newId('fc'), type: 'function_call', status: 'in_progress', arguments: '', call_id: callId, name };
    const call: CallItem = { kind: 'call', index: this.items.length, item, args: '', open: true };
    this.items.push(call);
    this.calls.set(index, call);
    out += this.event('response.output_item.added', { output_index: call.index, item: structuredClone(item) });
    return out;
  }

  private closeAll(): string {
    let out = '';
    const status = this.reason === 'length' || this.reason === 'content_filter' ? 'incomplete' : 'completed';
    for (const it of this.items) {
      if (!it.open) continue;
      it.open = false;
      if (it.kind === 'message') {
        const part = { type: 'output_text', annotations: [], logprobs: [], text: it.text };
        out += this.event('response.output_text.done', { item_id: it.item.id, output_index: it.index, content_index: 0, text: it.text, logprobs: [] });
        out += this.event('response.content_part.done', { item_id: it.item.id, output_index: it.index, content_index: 0, part });
        it.item.content = [part];
      } else {
        out += this.event('response.function_call_arguments.done', { item_id: it.item.id, output_index: it.index, name: it.item.name, arguments: it.args });
      }
      it.item.status = status;
      out += this.event('response.output_item.done', { output_index: it.index, item: structuredClone(it.item) });
    }
    return out;
  }

  /** The final Response object: status completed, or incomplete when the output was cut short. */
  final(): { type: string; response: Json } {
    const incomplete = this.reason === 'length' ? 'max_output_tokens' : this.reason === 'content_filter' ? 'content_filter' : undefined;
    const response = incomplete ? this.snapshot('incomplete', { incomplete_details: { reason: incomplete } }) : this.snapshot('completed');
    return { type: incomplete ? 'response.incomplete' : 'response.completed', response };
  }

  end(): string {
    const out = this.closeAll();
    const { type, response } = this.final();
    return out + this.event(type, { response });
  }

  /**
   * A stream that failed after it began: `response.failed` (the Response with status failed and
   * its error), then an `error` event. The error event carries the spec's top-level code, message
   * and param, and the same under an `error` key, which is what the official SDKs throw on.
   */
  fail(err: GatewayError): string {
    const code = err.kind === 'rate_limit' ? 'rate_limit_exceeded' : 'server_error';
    const failed = this.snapshot('failed', { error: { code, message: err.message } });
    const body = openaiErrorBody(err).error;
    return this.event('response.failed', { response: failed }) + this.event('error', { code: body.code ?? code, message: body.message, param: body.param, error: body });
  }
}

/** Answer a Responses client from neutral events (first already pulled), streaming or not. */
export async function respondFromEvents(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
  const body = bodyOf(req) ?? {};
  const b = new ResponseBuilder(req, body, meta.created, req.stream);
  if (!req.stream) {
    for (let r = first; !r.done; r = await events.next()) b.push(r.value);
    if (b.usage) trace.usage(b.usage);
    trace.end(200);
    return jsonResponse(b.final().response, 200, meta.headers);
  }

  // The model id comes with the first event; the opening events carry it.
  const started = !first.done && first.value.type === 'start';
  if (started) b.push(first.value);
  const opening = b.begin();
  const reportUsage = () => {
    if (b.usage) trace.usage(b.usage);
  };
  return encodeEvents(
    started ? undefined : first,
    events,
    trace,
    {
      opening,
      encode: (ev) => b.push(ev),
      end() {
        reportUsage();
        return b.end();
      },
      fail(ge) {
        reportUsage();
        return b.fail(ge);
      },
    },
    { status: 200, headers: Object.assign({}, SSE_HEADERS, meta.headers) },
  );
}

/**
 * Pass OpenAI's own `/v1/responses` answer through. JSON goes as it came (usage read on the side).
 * Streams go event by event as they arrive; the gateway reads usage from the terminal event, and
 * ends a stream that broke or stopped before a terminal event (`response.completed`,
 * `response.incomplete`, `response.failed`, `error`) with `response.failed` and an `error` event.
 */
export function respondPassthrough(req: ChatRequest, upstream: Response, meta: EncodeMeta, trace: RequestTrace): Response {
  const headers = relayHeaders(meta.headers, upstream, !!req.stream);
  if (!req.stream) {
    return relayJson(upstream, trace, { status: upstream.status, headers }, (json) => {
      const usage = readResponsesUsage(json.usage);
      if (usage) trace.usage(usage);
      if (json.status === 'failed') trace.fail('error', { kind: 'upstream', message: 'The upstream response failed.' });
    });
  }

  let terminal = false;
  let lastSeq = -1;
  let created: Json | undefined;
  /** Reads the event the checker parsed already (every data event of this API is a JSON object). */
  const inspect = (parsed: Json | undefined): void => {
    if (!parsed) return;
    if (typeof parsed.sequence_number === 'number') lastSeq = Math.max(lastSeq, parsed.sequence_number);
    const type = parsed.type;
    if (type !== 'response.created' && type !== 'response.completed' && type !== 'response.incomplete' && type !== 'response.failed' && type !== 'error') return;
    const response = isObject(parsed.response) ? parsed.response : undefined;
    if (type === 'response.created') {
      created = response;
      return;
    }
    terminal = true;
    const usage = readResponsesUsage(response?.usage);
    if (usage) trace.usage(usage);
    if (type === 'response.failed' || type === 'error') {
      const e = type === 'error' ? parsed : isObject(response?.error) ? response.error : {};
      trace.fail('stream_error', { kind: 'upstream', code: typeof e.code === 'string' ? e.code : null, message: typeof e.message === 'string' ? e.message : 'The upstream response failed.' });
    }
  };
  /** Our own ending for a stream the upstream left unfinished (none after its own terminal event). */
  const failure = (ge: GatewayError): string => {
    if (terminal) return '';
    trace.fail('stream_error', ge);
    const error = openaiErrorBody(ge).error;
    const response = { ...(created ?? { id: newId('resp'), object: 'response', model: req.model, output: [] }), status: 'failed', error: { code: 'server_error', message: ge.message } };
    return (
      sseEvent('response.failed', { type: 'response.failed', sequence_number: ++lastSeq, response }) +
      sseEvent('error', { type: 'error', sequence_number: ++lastSeq, code: error.code ?? 'server_error', message: error.message, param: null, error })
    );
  };
  return relaySse(
    'openai-responses',
    upstream,
    trace,
    { status: upstream.status, headers },
    {
      event(ev, c) {
        inspect(c.json);
        return ev;
      },
      failure,
      end: () => failure(truncatedStream()),
    },
    'The client closed the connection.',
  );
}

export const openaiResponsesDoor: FrontDoorCodec = {
  door: 'openai-responses',
  parse: (body) => parseResponsesRequest(body),
  error: responsesError,
  respondFromEvents,
  respondPassthrough,
};
