import type { ChatMessage, ChatRequest, ChoiceEvent, ContentPart, StopReason, StreamEvent, ToolCall, ToolChoice, ToolDefinition, Usage } from '../../core/types.ts';
import { GatewayError, jsonResponse, openaiErrorBody } from '../../http/errors.ts';
import { SSE_HEADERS, sseData } from '../../http/sse.ts';
import type { RequestTrace } from '../../telemetry/record.ts';
import { relayHeaders, relayJson, relaySse, truncatedStream } from '../relay.ts';
import { encodeEvents } from '../stream.ts';
import type { EncodeMeta, FrontDoorCodec } from '../../formats/types.ts';
import { readChatUsage } from './events.ts';
import { bad, isObject, textOf, optNumber, optInteger, type Json } from '../common.ts';
import { parseResponseFormat } from '../../emulate/structured.ts';
import { MAX_CHOICES } from '../../emulate/choices.ts';
import { openaiError } from './errors.ts';

/** OpenAI Chat Completions: `POST /v1/chat/completions`. */

/** Parts of a request that only an OpenAI-compatible upstream (which gets the body as it is) can take. */
type Untranslatable = { param: string; message: string }[];

function untranslatable(out: Untranslatable, param: string, what: string): void {
  out.push({
    param,
    message: `'${param}': ${what} cannot be carried to this model's provider, which does not speak the Chat Completions API. Leave it out, or use a model served by an OpenAI or OpenAI-compatible provider.`,
  });
}

/**
 * A value the gateway itself does not need (only the upstream does): checked only when the request
 * is translated, so an OpenAI-format upstream gets it as sent and judges it itself.
 */
function invalid(out: Untranslatable, message: string, param: string): void {
  out.push({ param, message: `'${param}': ${message}` });
}

function parseContent(content: unknown, param: string, lost: Untranslatable): ContentPart[] {
  if (content === null || content === undefined) return [];
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw bad(`'${param}' must be a string or an array of content parts.`, param);
  const out: ContentPart[] = [];
  content.forEach((part, i) => {
    const p = `${param}[${i}]`;
    if (!isObject(part)) throw bad(`'${p}' must be an object.`, p);
    if (part.type === 'text' || part.type === 'input_text') {
      if (typeof part.text !== 'string') return invalid(lost, 'must be a string.', `${p}.text`);
      out.push({ type: 'text', text: part.text });
    } else if (part.type === 'image_url') {
      const url = isObject(part.image_url) ? part.image_url.url : undefined;
      if (typeof url !== 'string') return invalid(lost, 'must be a string.', `${p}.image_url.url`);
      const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
      // `image_url.detail` is OpenAI's own resolution hint: dropped when translated.
      out.push(m ? { type: 'image', mediaType: m[1], data: m[2] } : { type: 'image', url });
    } else if (typeof part.type === 'string') {
      // input_audio, file, refusal (in assistant history), ...: fine for OpenAI upstreams only.
      untranslatable(lost, `${p}.type`, `a content part of type '${part.type}'`);
    } else throw bad(`'${p}.type' must be a string.`, `${p}.type`);
  });
  return out;
}

/** Fields decoded into the neutral request. */
const CHAT_FIELDS = new Set(['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'stop', 'tools', 'tool_choice', 'parallel_tool_calls', 'stream', 'stream_options', 'user', 'safety_identifier', 'top_k', 'n', 'response_format']);
/** Fields that tune OpenAI's own service, or hints a translated route can ignore: dropped (docs/translation.md). */
const CHAT_DROPPED = new Set(['metadata', 'store', 'service_tier', 'prompt_cache_key', 'prompt_cache_retention', 'seed', 'reasoning_effort', 'verbosity']);
/** Fields a translated route can carry only at their default (which asks for nothing): the test says when a value asks for more. */
const CHAT_DEFAULT_ONLY: Record<string, (v: unknown) => boolean> = {
  logprobs: (v) => v !== false,
  top_logprobs: (v) => v !== 0,
  frequency_penalty: (v) => v !== 0,
  presence_penalty: (v) => v !== 0,
  logit_bias: (v) => !isObject(v) || Object.keys(v).length > 0,
  modalities: (v) => !Array.isArray(v) || v.some((m) => m !== 'text'),
};

function parseToolCalls(v: unknown, param: string, lost: Untranslatable): ToolCall[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) return void invalid(lost, 'must be an array.', param);
  return v.flatMap((c, i) => {
    const fn = isObject(c) && isObject(c.function) ? c.function : undefined;
    if (isObject(c) && typeof c.type === 'string' && c.type !== 'function') {
      untranslatable(lost, `${param}[${i}].type`, `a tool call of type '${c.type}'`);
      return [];
    }
    if (!isObject(c) || typeof c.id !== 'string' || !fn || typeof fn.name !== 'string') {
      invalid(lost, 'must have an id and a function name.', `${param}[${i}]`);
      return [];
    }
    return [{ id: c.id, name: fn.name, arguments: typeof fn.arguments === 'string' ? fn.arguments : JSON.stringify(fn.arguments ?? {}) }];
  });
}

/**
 * Decode and check a Chat Completions request body. What the gateway needs to route, meter and
 * guard is checked here and answered with a 400 naming it: `model`, `stream` (and
 * `stream_options`), the token limit, `stop`, `user`, sampling ranges, and the shape of `messages`
 * (a non-empty list of objects, each with a string `role` and a string, list or null `content`).
 * Everything else, unknown fields, roles and content part types included, is checked only when the
 * request is translated (ChatRequest.untranslatable): an OpenAI-format upstream gets the body as sent.
 */
export function parseChatRequest(body: unknown): ChatRequest {
  if (!isObject(body)) throw bad('The request body must be a JSON object.');
  if (typeof body.model !== 'string' || !body.model) throw bad("you must provide a model parameter", 'model');
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw bad("'messages' must be a non-empty array.", 'messages');

  const lost: Untranslatable = [];
  const system: string[] = [];
  const messages: ChatMessage[] = [];
  body.messages.forEach((m, i) => {
    const p = `messages[${i}]`;
    if (!isObject(m)) throw bad(`'${p}' must be an object.`, p);
    if (typeof m.role !== 'string') throw bad(`'${p}.role' must be a string.`, `${p}.role`);
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(textOf(parseContent(m.content, `${p}.content`, lost)));
        break;
      case 'user':
        messages.push({ role: 'user', content: parseContent(m.content, `${p}.content`, lost) });
        break;
      case 'assistant':
        messages.push({ role: 'assistant', content: parseContent(m.content, `${p}.content`, lost), toolCalls: parseToolCalls(m.tool_calls, `${p}.tool_calls`, lost) });
        if (m.audio !== undefined && m.audio !== null) untranslatable(lost, `${p}.audio`, 'an audio reply in the history');
        break;
      case 'tool':
        if (typeof m.tool_call_id !== 'string') return invalid(lost, 'must be a string.', `${p}.tool_call_id`);
        messages.push({ role: 'tool', toolCallId: m.tool_call_id, content: parseContent(m.content, `${p}.content`, lost) });
        break;
      case 'function':
        // The deprecated function-calling API (before tools).
        untranslatable(lost, `${p}.role`, "a message of the deprecated role 'function'");
        break;
      default:
        // A role the gateway does not know: an OpenAI-format upstream judges it.
        untranslatable(lost, `${p}.role`, `a message of role '${m.role}' (the roles that translate are system, developer, user, assistant and tool)`);
    }
  });

  let tools: ToolDefinition[] | undefined;
  if (body.tools !== undefined && body.tools !== null) {
    if (!Array.isArray(body.tools)) invalid(lost, 'must be an array.', 'tools');
    else {
      tools = body.tools.flatMap((t, i) => {
        if (isObject(t) && typeof t.type === 'string' && t.type !== 'function') {
          // custom (free-form) tools, and tool types to come: OpenAI-format upstreams only.
          untranslatable(lost, `tools[${i}].type`, `a tool of type '${t.type}'`);
          return [];
        }
        const fn = isObject(t) && isObject(t.function) ? t.function : undefined;
        if (!isObject(t) || t.type !== 'function' || !fn || typeof fn.name !== 'string') {
          invalid(lost, 'must be {"type":"function","function":{"name":...}}.', `tools[${i}]`);
          return [];
        }
        return [
          {
            name: fn.name,
            description: typeof fn.description === 'string' ? fn.description : undefined,
            parameters: isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} },
          },
        ];
      });
    }
  }

  let toolChoice: ToolChoice | undefined;
  const tc = body.tool_choice;
  if (tc === 'auto' || tc === 'none' || tc === 'required') toolChoice = tc;
  else if (isObject(tc) && isObject(tc.function) && typeof tc.function.name === 'string') toolChoice = { name: tc.function.name };
  else if (tc !== undefined && tc !== null) untranslatable(lost, 'tool_choice', "this 'tool_choice' (the choices that translate are 'auto', 'none', 'required' and a named function)");

  let stop: string[] | undefined;
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) {
    if (!body.stop.every((s) => typeof s === 'string')) throw bad("'stop' must be a string or an array of strings.", 'stop');
    if (body.stop.length > 4) throw bad("'stop' takes at most 4 sequences.", 'stop');
    stop = body.stop as string[];
  } else if (body.stop !== undefined && body.stop !== null) throw bad("'stop' must be a string or an array of strings.", 'stop');

  const maxTokens = optInteger(body, 'max_completion_tokens', 1, 10_000_000) ?? optInteger(body, 'max_tokens', 1, 10_000_000);
  for (const key of ['user', 'safety_identifier']) {
    if (body[key] !== undefined && body[key] !== null && typeof body[key] !== 'string') throw bad(`'${key}' must be a string.`, key);
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw bad("'stream' must be a boolean.", 'stream');
  const stream = body.stream === true;
  if (body.parallel_tool_calls !== undefined && body.parallel_tool_calls !== null && typeof body.parallel_tool_calls !== 'boolean') throw bad("'parallel_tool_calls' must be a boolean.", 'parallel_tool_calls');
  // Keys, then values: no [key, value] array per field.
  for (const key of Object.keys(body)) {
    const value = body[key];
    if (value === undefined || value === null || CHAT_FIELDS.has(key) || CHAT_DROPPED.has(key)) continue;
    const asksMore = CHAT_DEFAULT_ONLY[key];
    if (asksMore) {
      if (asksMore(value)) untranslatable(lost, key, `the parameter '${key}' (with this value)`);
    } else untranslatable(lost, key, `the parameter '${key}'`);
  }
  const so = body.stream_options;
  if (so !== undefined && so !== null && !isObject(so)) throw bad("'stream_options' must be an object.", 'stream_options');
  if (isObject(so) && !stream) throw bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options');

  const req: ChatRequest = {
    model: body.model,
    system: system.length ? system.join('\n\n') : undefined,
    messages,
    tools,
    toolChoice,
    maxTokens,
    temperature: optNumber(body, 'temperature', 0, 2),
    topP: optNumber(body, 'top_p', 0, 1),
    stop,
    stream,
    includeUsage: isObject(so) && so.include_usage === true,
    user: typeof body.user === 'string' ? body.user : typeof body.safety_identifier === 'string' ? body.safety_identifier : undefined,
  };
  if (body.parallel_tool_calls === false) req.parallelToolCalls = false;
  // top_k is not OpenAI's, but vLLM, Ollama and OpenRouter take it: Anthropic and Claude on Bedrock have it too.
  const topK = optNumber(body, 'top_k', 0, 1_000_000);
  if (topK !== undefined) {
    if (!Number.isInteger(topK)) throw bad("'top_k' must be an integer.", 'top_k');
    req.topK = topK;
  }
  // Structured output and `n` choices: emulated on translated routes (shared/emulate/), as sent on OpenAI ones.
  const format = parseResponseFormat(body.response_format);
  if (typeof format === 'string') invalid(lost, format, 'response_format');
  else if (format) req.responseFormat = format;
  if (body.n !== undefined && body.n !== null) {
    if (typeof body.n !== 'number' || !Number.isInteger(body.n) || body.n < 1 || body.n > MAX_CHOICES) invalid(lost, `must be an integer from 1 to ${MAX_CHOICES}.`, 'n');
    else if (body.n > 1) req.n = body.n;
  }
  if (lost.length) req.untranslatable = lost;
  return req;
}

function usageJson(u: Usage): Json {
  const out: Json = { prompt_tokens: u.inputTokens, completion_tokens: u.outputTokens, total_tokens: u.inputTokens + u.outputTokens };
  if (u.cacheReadTokens !== undefined) out.prompt_tokens_details = { cached_tokens: u.cacheReadTokens };
  return out;
}

function finishReason(r: StopReason): string {
  return r === 'stop_sequence' ? 'stop' : r;
}

/**
 * Answer a Chat Completions client from neutral events (first already pulled), streaming or not.
 * Events of emulated `n` choices carry their `choice` (shared/emulate/choices.ts): each choice
 * gets its own `index`, role chunk and finish reason; the id and model are the first start's.
 */
export async function respondFromEvents(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
  if (!req.stream) return collect(first, events, meta, trace);

  let id: string | undefined;
  let model = req.model;
  const reasons = new Map<number, StopReason | undefined>();
  let usage: Usage | undefined;
  const usageField = req.includeUsage ? { usage: null } : {};
  const chunk = (index: number, delta: Json, finish: string | null = null) =>
    sseData({ id: id ?? 'chatcmpl-gateway', object: 'chat.completion.chunk', created: meta.created, model, system_fingerprint: null, choices: [{ index, delta, logprobs: null, finish_reason: finish }], ...usageField });

  const encode = (ev: ChoiceEvent): string => {
    const index = ev.choice ?? 0;
    if (!reasons.has(index)) reasons.set(index, undefined);
    switch (ev.type) {
      case 'start':
        if (id === undefined) {
          id = ev.id.startsWith('chatcmpl') ? ev.id : `chatcmpl-${ev.id}`;
          model = ev.model;
        }
        return chunk(index, { role: 'assistant', content: '', refusal: null });
      case 'text':
        return chunk(index, { content: ev.delta });
      case 'tool_call':
        return chunk(index, { tool_calls: [{ index: ev.index, id: ev.id, type: 'function', function: { name: ev.name, arguments: '' } }] });
      case 'tool_args':
        return chunk(index, { tool_calls: [{ index: ev.index, function: { arguments: ev.delta } }] });
      case 'finish':
        reasons.set(index, ev.reason);
        return chunk(index, {}, finishReason(ev.reason));
      case 'usage':
        usage = ev.usage;
        trace.usage(ev.usage);
        return '';
      case 'thinking':
        // Chat Completions has no standard field for reasoning: dropped (docs/translation.md).
        return '';
    }
  };

  return encodeEvents(
    first,
    events,
    trace,
    {
      encode,
      end() {
        let tail = '';
        if (!reasons.size) reasons.set(0, undefined);
        for (const [index, reason] of reasons) if (!reason) tail += chunk(index, {}, 'stop');
        if (req.includeUsage && usage) tail += sseData({ id: id ?? 'chatcmpl-gateway', object: 'chat.completion.chunk', created: meta.created, model, system_fingerprint: null, choices: [], usage: usageJson(usage) });
        return `${tail}data: [DONE]\n\n`;
      },
      fail: (ge) => sseData(openaiErrorBody(ge)),
    },
    { status: 200, headers: Object.assign({}, SSE_HEADERS, meta.headers) },
  );
}

async function collect(first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
  let id: string | undefined;
  let model = '';
  type Choice = { text: string; calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[]; reason: StopReason };
  const choices: Choice[] = [];
  let usage: Usage = { inputTokens: 0, outputTokens: 0 };
  for (let r = first; !r.done; r = await events.next()) {
    const ev: ChoiceEvent = r.value;
    const c = (choices[ev.choice ?? 0] ??= { text: '', calls: [], reason: 'stop' });
    if (ev.type === 'start') {
      if (id === undefined) {
        id = ev.id.startsWith('chatcmpl') ? ev.id : `chatcmpl-${ev.id}`;
        model = ev.model;
      }
    } else if (ev.type === 'text') c.text += ev.delta;
    else if (ev.type === 'tool_call') c.calls[ev.index] = { id: ev.id, type: 'function', function: { name: ev.name, arguments: '' } };
    else if (ev.type === 'tool_args') c.calls[ev.index]!.function.arguments += ev.delta;
    else if (ev.type === 'finish') c.reason = ev.reason;
    else if (ev.type === 'usage') usage = ev.usage;
  }
  trace.usage(usage);
  trace.end(200);
  if (!choices.length) choices.push({ text: '', calls: [], reason: 'stop' });
  return jsonResponse(
    {
      id: id ?? 'chatcmpl-gateway',
      object: 'chat.completion',
      created: meta.created,
      model,
      choices: Array.from(choices, (c, index) => {
        c ??= { text: '', calls: [], reason: 'stop' };
        const message: Json = { role: 'assistant', content: c.calls.length && !c.text ? null : c.text, refusal: null };
        if (c.calls.length) message.tool_calls = c.calls.filter(Boolean);
        return { index, message, logprobs: null, finish_reason: finishReason(c.reason) };
      }),
      usage: usageJson(usage),
      system_fingerprint: null,
    },
    200,
    meta.headers,
  );
}

/**
 * Pass an OpenAI upstream's answer to an OpenAI client. Non-streaming bodies go through as they
 * are. Streams go through event by event as they arrive (never held back past the end of an
 * event); the gateway reads usage on the side, drops the usage chunk it asked for on its own
 * account when the client did not, and ends a stream that broke or stopped before `[DONE]` with
 * an error event instead of a clean end.
 */
export function respondPassthrough(req: ChatRequest, upstream: Response, meta: EncodeMeta, trace: RequestTrace): Response {
  const headers = relayHeaders(meta.headers, upstream, !!req.stream);
  if (!req.stream) {
    return relayJson(upstream, trace, { status: upstream.status, headers }, (json) => {
      const usage = readChatUsage(json.usage);
      if (usage) trace.usage(usage);
    });
  }

  let sawDone = false;
  let upstreamFailed = false;
  /** Our own ending for a stream the upstream broke: the error as a `data:` chunk, and no `[DONE]`. */
  const failure = (ge: GatewayError): string => {
    trace.fail('stream_error', ge);
    return sseData(openaiErrorBody(ge));
  };
  const stripUsageField = !req.includeUsage;
  return relaySse('openai-chat', upstream, trace, { status: upstream.status, headers }, {
    /** A usage-only chunk the client did not ask for is dropped; usage and `[DONE]` are noted. */
    event(ev, c) {
      if (c.upstreamError !== undefined) {
        upstreamFailed = true;
        trace.fail('stream_error', { kind: 'upstream', code: 'upstream_stream_error', message: `The upstream sent an error event mid-stream: ${c.upstreamError}` });
      }
      if (!c.data) return ev;
      // Data the checker passed without JSON is the `[DONE]` line.
      if (!c.json) {
        sawDone = true;
        return ev;
      }
      const usage = readChatUsage(c.json.usage);
      if (usage) {
        trace.usage(usage);
        if (!req.includeUsage && Array.isArray(c.json.choices) && c.json.choices.length === 0) return '';
      }
      return stripUsageField ? ev.replace(',"usage":null', '') : ev;
    },
    failure,
    // A stream that gave its finish reason but no `[DONE]` is complete: the client gets the `[DONE]` it expects.
    end: (complete) => (sawDone || upstreamFailed ? '' : complete ? 'data: [DONE]\n\n' : failure(truncatedStream())),
  });
}

export const openaiChatDoor: FrontDoorCodec = {
  door: 'openai-chat',
  parse: (body) => parseChatRequest(body),
  error: openaiError,
  respondFromEvents,
  respondPassthrough,
};
