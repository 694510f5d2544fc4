import { EventStreamCodec, type MessageHeaders } from '@smithy/eventstream-codec';
import type { ChatMessage, ChatRequest, ContentPart, StopReason, StreamEvent, ThinkingBlock, ToolCall, ToolChoice, ToolDefinition, Usage } from '../../core/types.ts';
import { GatewayError, jsonResponse } from '../../http/errors.ts';
import type { RequestTrace } from '../../telemetry/record.ts';
import { assistantTurn, bad, isObject, type Json } from '../common.ts';
import { bedrockErrorResponse } from '../bedrock-invoke/errors.ts';
import { toAnthropicStopReason } from '../anthropic-messages/wire.ts';
import { BedrockModelIndex, EVENTSTREAM_CONTENT_TYPE, parseBedrockPath, unknownModelError } from '../bedrock-invoke/door.ts';
import type { EncodeMeta, FrontDoorCodec } from '../../formats/types.ts';
import { encodeEvents } from '../stream.ts';

/**
 * Bedrock's Converse API on the gateway (`POST /bedrock/model/{modelId}/converse` and
 * `/converse-stream`), for Bedrock clients other than Claude Code (the AWS SDKs' Converse /
 * ConverseStream). The request is decoded into the neutral ChatRequest, so any configured model can
 * serve it (a `bedrock` target gets the client's Converse body again); the answer is encoded as Converse JSON,
 * or as ConverseStream event-stream frames (messageStart, contentBlockStart/Delta/Stop, messageStop,
 * metadata), exceptions mid-stream as exception frames. Model ids resolve as on the InvokeModel door.
 *
 * A `bedrock` target gets the client's body as sent (model id aside; docs/translation.md, the
 * pass-through rule). For other targets the request is decoded: system text, messages (text, base64
 * images, toolUse, toolResult, reasoningContent), inferenceConfig, toolConfig, and Claude's `top_k` /
 * `thinking` from additionalModelRequestFields; dropped: cachePoint blocks, requestMetadata. Anything
 * else (documents, video, guardContent, guardrailConfig, promptVariables, other roles, other
 * additional fields...) is refused on those routes with a ValidationException naming it.
 */

function invalid(message: string, param: string): GatewayError {
  return bad(`${param}: ${message}`, param, 'bedrock_validation');
}

/**
 * Parts of a Converse request the neutral model cannot carry, or values the gateway itself does not
 * need: a Bedrock target gets the body as sent (and judges them); a translated route answers 400
 * with the first (routing/execute.ts).
 */
type Lost = { param: string; message: string }[];

function untranslatable(lost: Lost, param: string, what: string, instead?: string): void {
  lost.push({ param, message: `${param}: ${what} cannot be translated for this model's provider; ${instead ? `${instead}, or use a model served by Amazon Bedrock` : 'leave it out, or use a model served by Amazon Bedrock'}.` });
}

/** A value only the upstream needs: checked only when the request is translated. */
function deferred(lost: Lost, message: string, param: string): void {
  lost.push({ param, message: `${param}: ${message}` });
}

const IMAGE_TYPES: Record<string, string> = { png: 'image/png', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp' };

function imagePart(img: unknown, p: string, lost: Lost): ContentPart | undefined {
  if (!isObject(img) || typeof img.format !== 'string' || !IMAGE_TYPES[img.format]) return void deferred(lost, 'expected an image with format png, jpeg, gif or webp', p);
  const src = img.source;
  if (!isObject(src) || typeof src.bytes !== 'string') return void untranslatable(lost, `${p}.source`, 'an image that is not inline bytes', 'send the image as source.bytes (base64)');
  return { type: 'image', mediaType: IMAGE_TYPES[img.format], data: src.bytes };
}

/** What to use instead, for Converse block types that have no translation. */
const INSTEAD: Record<string, string> = {
  document: 'send the document as text',
  video: 'leave the video out',
  guardContent: 'send the text as a text block',
  citationsContent: 'send the text as a text block',
  searchResult: 'send the search result as a text block',
};

/** A text or image block (undefined for a cachePoint, which is dropped); other blocks are noted as untranslatable. */
function plainPart(b: unknown, bp: string, lost: Lost, allowJson = false): ContentPart | undefined {
  if (!isObject(b)) throw invalid('expected a content block', bp);
  if (typeof b.text === 'string') return { type: 'text', text: b.text };
  if (b.image !== undefined) return imagePart(b.image, `${bp}.image`, lost);
  if (allowJson && b.json !== undefined) return { type: 'text', text: JSON.stringify(b.json) };
  if (b.cachePoint !== undefined) return undefined;
  const kind = Object.keys(b)[0] ?? '?';
  untranslatable(lost, `${bp}.${kind}`, `a content block of type '${kind}'`, INSTEAD[kind]);
  return undefined;
}

/** Text and image parts of a list of plain content blocks. */
function plainParts(blocks: unknown, p: string, lost: Lost, allowJson = false): ContentPart[] {
  if (!Array.isArray(blocks)) {
    deferred(lost, 'expected a list of content blocks', p);
    return [];
  }
  return blocks.flatMap((b, i) => plainPart(b, `${p}.${i}`, lost, allowJson) ?? []);
}

/**
 * The message list. Its shape is what the gateway needs (a non-empty list of objects, each with a
 * string `role` and a list of content objects): anything else there is a 400. Roles and block types
 * it does not know are noted as untranslatable.
 */
function parseMessages(messages: unknown, lost: Lost): ChatMessage[] {
  if (!Array.isArray(messages) || !messages.length) throw invalid('at least one message is required', 'messages');
  const out: ChatMessage[] = [];
  messages.forEach((m, i) => {
    const p = `messages.${i}`;
    if (!isObject(m) || typeof m.role !== 'string') throw invalid('expected a message with a string role', p);
    if (!Array.isArray(m.content)) throw invalid('expected a list of content blocks', `${p}.content`);
    m.content.forEach((b, j) => {
      if (!isObject(b)) throw invalid('expected a content block', `${p}.content.${j}`);
    });
    if (m.role !== 'user' && m.role !== 'assistant') return void untranslatable(lost, `${p}.role`, `a message of role '${m.role}'`, "use 'user' or 'assistant'");
    if (m.role === 'assistant') {
      const content: ContentPart[] = [];
      const toolCalls: ToolCall[] = [];
      const thinking: ThinkingBlock[] = [];
      m.content.forEach((b, j) => {
        const bp = `${p}.content.${j}`;
        if (isObject(b) && isObject(b.toolUse)) {
          const tu = b.toolUse;
          if (typeof tu.toolUseId !== 'string' || typeof tu.name !== 'string') return deferred(lost, 'toolUse needs toolUseId and name', `${bp}.toolUse`);
          toolCalls.push({ id: tu.toolUseId, name: tu.name, arguments: JSON.stringify(tu.input ?? {}) });
        } else if (isObject(b) && isObject(b.reasoningContent)) {
          const rc = b.reasoningContent;
          if (isObject(rc.reasoningText)) thinking.push({ text: String(rc.reasoningText.text ?? ''), signature: typeof rc.reasoningText.signature === 'string' ? rc.reasoningText.signature : undefined });
          else if (typeof rc.redactedContent === 'string') thinking.push({ redactedData: rc.redactedContent });
        } else {
          const part = plainPart(b, bp, lost);
          if (part) content.push(part);
        }
      });
      out.push(assistantTurn(content, toolCalls, thinking));
      return;
    }
    const rest: ContentPart[] = [];
    m.content.forEach((b, j) => {
      const bp = `${p}.content.${j}`;
      if (isObject(b) && isObject(b.toolResult)) {
        const tr = b.toolResult;
        if (typeof tr.toolUseId !== 'string') return deferred(lost, 'toolResult needs toolUseId', `${bp}.toolResult`);
        const msg: ChatMessage = { role: 'tool', toolCallId: tr.toolUseId, content: tr.content === undefined ? [] : plainParts(tr.content, `${bp}.toolResult.content`, lost, true) };
        if (tr.status === 'error') msg.isError = true;
        out.push(msg);
      } else {
        const part = plainPart(b, bp, lost);
        if (part) rest.push(part);
      }
    });
    if (rest.length) out.push({ role: 'user', content: rest });
  });
  return out;
}

function parseTools(tc: unknown, lost: Lost): { tools?: ToolDefinition[]; toolChoice?: ToolChoice } {
  if (tc === undefined || tc === null) return {};
  if (!isObject(tc) || !Array.isArray(tc.tools)) {
    deferred(lost, 'expected {tools: [...]}', 'toolConfig');
    return {};
  }
  const tools: ToolDefinition[] = [];
  tc.tools.forEach((t, i) => {
    if (isObject(t) && t.cachePoint !== undefined) return;
    if (isObject(t) && t.toolSpec === undefined && Object.keys(t).length) {
      const kind = Object.keys(t)[0]!;
      return untranslatable(lost, `toolConfig.tools.${i}.${kind}`, `a tool of type '${kind}'`, 'define it as a toolSpec');
    }
    const spec = isObject(t) ? t.toolSpec : undefined;
    if (!isObject(spec) || typeof spec.name !== 'string') return deferred(lost, 'expected a toolSpec with a name', `toolConfig.tools.${i}`);
    const schema = isObject(spec.inputSchema) && isObject(spec.inputSchema.json) ? spec.inputSchema.json : { type: 'object' };
    tools.push({ name: spec.name, description: typeof spec.description === 'string' ? spec.description : undefined, parameters: schema });
  });
  let toolChoice: ToolChoice | undefined;
  const c = tc.toolChoice;
  if (isObject(c)) {
    if (c.auto !== undefined) toolChoice = 'auto';
    else if (c.any !== undefined) toolChoice = 'required';
    else if (isObject(c.tool) && typeof c.tool.name === 'string') toolChoice = { name: c.tool.name };
    else deferred(lost, 'expected one of auto, any or tool (with a name)', 'toolConfig.toolChoice');
  } else if (c !== undefined && c !== null) deferred(lost, 'expected an object', 'toolConfig.toolChoice');
  for (const k of Object.keys(tc)) if (k !== 'tools' && k !== 'toolChoice') untranslatable(lost, `toolConfig.${k}`, `the parameter 'toolConfig.${k}'`);
  return { tools, toolChoice };
}

/** Fields the request is decoded from (`requestMetadata` only tags the call in Bedrock's logs: dropped when translated). */
const KNOWN = new Set(['messages', 'system', 'inferenceConfig', 'toolConfig', 'additionalModelRequestFields', 'requestMetadata', 'modelId']);
/** What to use instead, for Converse fields that have no translation. */
const FIELD_INSTEAD: Record<string, string> = {
  guardrailConfig: "use the gateway's own guardrails (docs/guardrails.md)",
  promptVariables: 'send the prompt text itself',
};

/**
 * Decode a Converse request body (model = the configured name the path resolved to). What the
 * gateway needs to route, meter and guard is checked here (a ValidationException naming it): the
 * shape of `messages` (a non-empty list of objects with a string `role` and a list of content
 * objects) and `inferenceConfig` (token limit, sampling ranges, stop sequences). Everything else,
 * unknown fields, roles and block types included, is checked only when the request is translated
 * (ChatRequest.untranslatable): a Bedrock target gets the body as sent.
 */
export function parseConverseRequest(body: unknown, model: string, stream: boolean): ChatRequest {
  if (!isObject(body)) throw invalid('the body must be a JSON object', 'body');
  const lost: Lost = [];
  for (const k of Object.keys(body)) if (!KNOWN.has(k)) untranslatable(lost, k, `the parameter '${k}'`, FIELD_INSTEAD[k]);
  let system: string | undefined;
  if (body.system !== undefined) {
    if (!Array.isArray(body.system)) deferred(lost, 'expected a list of system blocks', 'system');
    else {
      const texts = body.system.flatMap((b, i) => {
        if (isObject(b) && typeof b.text === 'string') return [b.text];
        if (isObject(b) && b.cachePoint !== undefined) return [];
        const kind = isObject(b) ? (Object.keys(b)[0] ?? '?') : '?';
        untranslatable(lost, `system.${i}`, `a system block of type '${kind}'`, 'send the system prompt as text blocks');
        return [];
      });
      system = texts.length ? texts.join('\n\n') : undefined;
    }
  }
  if (body.inferenceConfig !== undefined && body.inferenceConfig !== null && !isObject(body.inferenceConfig)) throw invalid('must be an object', 'inferenceConfig');
  const inf = isObject(body.inferenceConfig) ? body.inferenceConfig : {};
  // Bedrock's ranges: maxTokens an integer >= 1, temperature and topP in [0, 1].
  const num = (k: string, min: number, max: number, integer = false) => {
    const v = inf[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) throw invalid(`must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`, `inferenceConfig.${k}`);
    return v;
  };
  if (inf.stopSequences !== undefined && inf.stopSequences !== null && (!Array.isArray(inf.stopSequences) || !inf.stopSequences.every((s) => typeof s === 'string') || inf.stopSequences.length > 2500)) {
    throw invalid('must be an array of at most 2500 strings', 'inferenceConfig.stopSequences');
  }
  for (const k of Object.keys(inf)) if (!['maxTokens', 'temperature', 'topP', 'stopSequences'].includes(k)) untranslatable(lost, `inferenceConfig.${k}`, `the parameter 'inferenceConfig.${k}'`);
  const stop = Array.isArray(inf.stopSequences) ? (inf.stopSequences as string[]) : undefined;
  const amrf = body.additionalModelRequestFields;
  if (amrf !== undefined && amrf !== null && !isObject(amrf)) deferred(lost, 'expected an object', 'additionalModelRequestFields');
  const extra = isObject(amrf) ? amrf : {};
  let thinking: ChatRequest['thinking'];
  for (const k of Object.keys(extra)) if (k !== 'top_k' && k !== 'thinking') untranslatable(lost, `additionalModelRequestFields.${k}`, `the model field '${k}'`);
  if (isObject(extra.thinking)) {
    const t = extra.thinking;
    if (t.type === 'enabled' && typeof t.budget_tokens === 'number') thinking = { type: 'enabled', budgetTokens: t.budget_tokens };
    else if (t.type === 'disabled' || t.type === 'adaptive') thinking = { type: t.type };
  }
  const req: ChatRequest = {
    model,
    system,
    messages: parseMessages(body.messages, lost),
    ...parseTools(body.toolConfig, lost),
    maxTokens: num('maxTokens', 1, 10_000_000, true),
    temperature: num('temperature', 0, 1),
    topP: num('topP', 0, 1),
    topK: typeof extra.top_k === 'number' ? extra.top_k : undefined,
    stop: stop?.length ? stop : undefined,
    stream,
    includeUsage: true,
    thinking,
  };
  if (lost.length) req.untranslatable = lost;
  return req;
}

/** Converse's stop reasons are Anthropic's, but for content filtering. */
function toConverseStop(r: StopReason): string {
  return r === 'content_filter' ? 'content_filtered' : toAnthropicStopReason(r);
}

/** Neutral usage (input includes cache) -> Converse usage (inputTokens excludes cache reads and writes). */
function toConverseUsage(u: Usage): Json {
  const cacheRead = u.cacheReadTokens ?? 0;
  const cacheWrite = u.cacheWriteTokens ?? 0;
  const input = Math.max(0, u.inputTokens - cacheRead - cacheWrite);
  const out: Json = { inputTokens: input, outputTokens: u.outputTokens, totalTokens: u.inputTokens + u.outputTokens };
  if (u.cacheReadTokens !== undefined) out.cacheReadInputTokens = cacheRead;
  if (u.cacheWriteTokens !== undefined) out.cacheWriteInputTokens = cacheWrite;
  return out;
}

const codec = new EventStreamCodec(
  (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
  (text) => new Uint8Array(Buffer.from(text, 'utf8')),
);

function frame(eventType: string, payload: Json): Uint8Array {
  const headers: MessageHeaders = {
    ':event-type': { type: 'string', value: eventType },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'event' },
  };
  return codec.encode({ headers, body: Buffer.from(JSON.stringify(payload), 'utf8') });
}

function exceptionFrame(err: GatewayError): Uint8Array {
  const name = err.kind === 'rate_limit' ? 'throttlingException' : err.kind === 'invalid_request' ? 'validationException' : err.kind === 'overloaded' ? 'serviceUnavailableException' : err.kind === 'timeout' ? 'modelStreamErrorException' : 'internalServerException';
  const headers: MessageHeaders = {
    ':exception-type': { type: 'string', value: name },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'exception' },
  };
  return codec.encode({ headers, body: Buffer.from(JSON.stringify({ message: err.message }), 'utf8') });
}

/** Neutral events -> Converse content blocks, numbered in order (a change of kind opens the next block). */
class BlockTracker {
  next = 0;
  open: { kind: 'text' | 'reasoning' | 'tool'; index: number; tool?: number } | undefined;
  toolBlocks = new Map<number, number>();
}

async function respondFromEvents(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
  const t0 = performance.now();
  const headers = { ...meta.headers, 'x-amzn-requestid': meta.headers['x-request-id'] ?? trace.record.requestId };
  if (!req.stream) {
    const content: Json[] = [];
    const tools = new Map<number, { block: Json; args: string }>();
    let reason: StopReason = 'stop';
    let usage: Usage = { inputTokens: 0, outputTokens: 0 };
    let reasoning: { text: string; signature?: string } | undefined;
    for (let r = first; !r.done; r = await events.next()) {
      const ev = r.value;
      if (ev.type === 'text' && ev.delta) {
        reasoning = undefined;
        const last = content[content.length - 1];
        if (last && typeof last.text === 'string') last.text += ev.delta;
        else content.push({ text: ev.delta });
      } else if (ev.type === 'thinking') {
        if (ev.redactedData !== undefined) content.push({ reasoningContent: { redactedContent: ev.redactedData } });
        else {
          if (!reasoning) {
            reasoning = { text: '' };
            content.push({ reasoningContent: { reasoningText: reasoning } });
          }
          if (ev.delta) reasoning.text += ev.delta;
          if (ev.signature !== undefined) (reasoning.signature = ev.signature), (reasoning = undefined);
        }
      } else if (ev.type === 'tool_call') {
        reasoning = undefined;
        const block: Json = { toolUseId: ev.id, name: ev.name, input: {} };
        content.push({ toolUse: block });
        tools.set(ev.index, { block, args: '' });
      } else if (ev.type === 'tool_args') {
        const t = tools.get(ev.index);
        if (t) t.args += ev.delta;
      } else if (ev.type === 'finish') reason = ev.reason;
      else if (ev.type === 'usage') usage = ev.usage;
    }
    for (const t of tools.values()) {
      try {
        t.block.input = t.args.trim() ? JSON.parse(t.args) : {};
      } catch {
        t.block.input = { _raw_arguments: t.args };
      }
    }
    trace.usage(usage);
    trace.end(200);
    return jsonResponse({ output: { message: { role: 'assistant', content } }, stopReason: toConverseStop(reason), usage: toConverseUsage(usage), metrics: { latencyMs: Math.round(performance.now() - t0) } }, 200, headers);
  }

  const blocks = new BlockTracker();
  let reason: StopReason = 'stop';
  let usage: Usage | undefined;
  let started = false;
  const out: Uint8Array[] = [];
  const closeBlock = () => {
    if (blocks.open) out.push(frame('contentBlockStop', { contentBlockIndex: blocks.open.index }));
    blocks.open = undefined;
  };
  const openBlock = (kind: 'text' | 'reasoning' | 'tool', tool?: number, start?: Json): number => {
    closeBlock();
    const index = blocks.next++;
    blocks.open = { kind, index, tool };
    if (start) out.push(frame('contentBlockStart', { contentBlockIndex: index, start }));
    return index;
  };
  const onEvent = (ev: StreamEvent) => {
    if (!started) {
      started = true;
      out.push(frame('messageStart', { role: 'assistant' }));
    }
    switch (ev.type) {
      case 'text':
        if (!ev.delta) return;
        if (blocks.open?.kind !== 'text') openBlock('text');
        out.push(frame('contentBlockDelta', { contentBlockIndex: blocks.open!.index, delta: { text: ev.delta } }));
        return;
      case 'thinking':
        if (ev.redactedData !== undefined) {
          openBlock('reasoning');
          out.push(frame('contentBlockDelta', { contentBlockIndex: blocks.open!.index, delta: { reasoningContent: { redactedContent: ev.redactedData } } }));
          closeBlock();
          return;
        }
        if (blocks.open?.kind !== 'reasoning') openBlock('reasoning');
        if (ev.delta) out.push(frame('contentBlockDelta', { contentBlockIndex: blocks.open!.index, delta: { reasoningContent: { text: ev.delta } } }));
        if (ev.signature !== undefined) {
          out.push(frame('contentBlockDelta', { contentBlockIndex: blocks.open!.index, delta: { reasoningContent: { signature: ev.signature } } }));
          closeBlock();
        }
        return;
      case 'tool_call':
        blocks.toolBlocks.set(ev.index, openBlock('tool', ev.index, { toolUse: { toolUseId: ev.id, name: ev.name } }));
        return;
      case 'tool_args': {
        const index = blocks.toolBlocks.get(ev.index);
        if (index !== undefined && ev.delta) out.push(frame('contentBlockDelta', { contentBlockIndex: index, delta: { toolUse: { input: ev.delta } } }));
        return;
      }
      case 'finish':
        reason = ev.reason;
        return;
      case 'usage':
        usage = ev.usage;
        trace.usage(ev.usage);
        return;
      default:
        return;
    }
  };
  const take = (): Uint8Array => {
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
    out.length = 0;
    return bytes;
  };
  return encodeEvents(
    first,
    events,
    trace,
    {
      encode(ev) {
        if (ev.type !== 'start') onEvent(ev);
        return take();
      },
      end() {
        if (!started) onEvent({ type: 'text', delta: '' });
        closeBlock();
        out.push(frame('messageStop', { stopReason: toConverseStop(reason) }));
        out.push(frame('metadata', { usage: toConverseUsage(usage ?? { inputTokens: 0, outputTokens: 0 }), metrics: { latencyMs: Math.round(performance.now() - t0) } }));
        return take();
      },
      fail(ge) {
        out.push(exceptionFrame(ge));
        return take();
      },
    },
    { status: 200, headers: { ...headers, 'content-type': EVENTSTREAM_CONTENT_TYPE } },
  );
}

/** The Converse door for one configuration (model ids resolve through `index`). */
export function createBedrockConverseDoor(index: BedrockModelIndex): FrontDoorCodec {
  return {
    door: 'bedrock-converse',
    parse(body: unknown, request: Request) {
      const route = parseBedrockPath(new URL(request.url).pathname);
      if (!route || (route.operation !== 'converse' && route.operation !== 'converse-stream')) throw new GatewayError('not_found', 'Unknown Bedrock operation.', { code: 'unknown_route' });
      const model = index.resolve(route.modelId);
      if (!model) throw unknownModelError(route.modelId);
      return parseConverseRequest(body, model, route.operation === 'converse-stream');
    },
    error: bedrockErrorResponse,
    respondFromEvents,
    respondPassthrough() {
      // No provider passes a Converse body through: they all take the neutral request.
      throw new GatewayError('internal', 'The gateway cannot pass this answer through as Converse.');
    },
  };
}
