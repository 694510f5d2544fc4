import { randomUUID } from 'node:crypto';
import { forcedToolCall } from './forced-tool.ts';
import { forcedToolScript } from './mock-anthropic.ts';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventStreamCodec, type MessageHeaders } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/core/serde';
import type { Gate } from './mock-openai.ts';
import { startLoopback } from './loopback.ts';

/**
 * A scriptable stand-in for Amazon Bedrock Runtime on 127.0.0.1, speaking its REST-JSON wire
 * format over HTTP/1.1, for the real @aws-sdk/client-bedrock-runtime client:
 * - `POST /model/{modelId}/converse`: JSON in, JSON out;
 * - `POST /model/{modelId}/converse-stream`: JSON in, `application/vnd.amazon.eventstream` frames
 *   out (messageStart, contentBlockStart/Delta/Stop, messageStop, metadata), encoded with the
 *   Smithy event-stream codec; exceptions mid-stream as `:message-type: exception` frames;
 * - `POST /model/{modelId}/invoke`: InvokeModel, here for Titan and Cohere embedding bodies.
 * Errors come as AWS does: the status, `x-amzn-ErrorType`, and `{"message": ...}`.
 * Every request is recorded (path, decoded model id, headers incl. the SigV4 Authorization, body).
 * With no script queued, chat calls echo the last user text word by word.
 */

export interface BedrockUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens?: number;
  cacheReadInputTokens?: number;
  cacheWriteInputTokens?: number;
}

export interface MockToolCall {
  id: string;
  name: string;
  /** The input JSON as the fragments to stream (joined and parsed for non-streaming answers). */
  input: string[];
}

interface StreamShape {
  /** Pause after this many delta frames until the gate opens. */
  pauseAfter?: number;
  gate?: Gate;
  /** Send an exception frame after this many delta frames (and nothing after it). */
  exceptionAfter?: number;
  exception?: { type: string; message: string };
  /** Destroy the socket after this many delta frames. */
  cutAfter?: number;
  /** End the HTTP response cleanly after the deltas without messageStop/metadata. */
  omitStop?: boolean;
  delayMs?: number;
}

export type BedrockScript =
  | ({
      type: 'answer';
      /** Reasoning text pieces (a reasoningContent block first), with its signature. */
      reasoning?: { pieces: string[]; signature: string };
      /** Text pieces of one text block. */
      text?: string[];
      toolCalls?: MockToolCall[];
      stopReason?: string;
      /** Model-specific response fields (messageStop / the Converse response), e.g. Claude's `stop_sequence`. */
      additionalModelResponseFields?: Record<string, unknown>;
      usage?: BedrockUsage;
    } & StreamShape)
  | { type: 'error'; status: number; errorType: string; message: string }
  | { type: 'handler'; handle(req: BedrockRequest, res: ServerResponse): void | Promise<void> };

export interface BedrockRequest {
  method: string;
  path: string;
  /** The decoded model id from the path. */
  modelId: string;
  operation: 'converse' | 'converse-stream' | 'invoke' | 'invoke-with-response-stream' | 'count-tokens' | 'other';
  headers: IncomingHttpHeaders;
  body: any;
  readonly closed: Promise<void>;
  completed: boolean;
  /** The response closed before the mock finished writing it. */
  abortedByPeer: boolean;
}

export interface MockBedrock {
  /** For the provider's `endpoint`. */
  readonly endpoint: string;
  readonly requests: BedrockRequest[];
  last(operation?: BedrockRequest['operation']): BedrockRequest;
  /** Queue scripts for the next converse / converse-stream / invoke calls, in order. */
  script(...s: BedrockScript[]): void;
  reset(): void;
  close(): Promise<void>;
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** One event-stream frame, as Bedrock sends it (with the `p` padding field real frames carry). */
/** A Converse request whose toolChoice forces a tool is answered with a schema-valid call of it, as a model would. */
function forcedConverseAnswer(body: any): Extract<BedrockScript, { type: 'answer' }> | undefined {
  const tools = Array.isArray(body?.toolConfig?.tools) ? body.toolConfig.tools.map((t: any) => ({ name: t.toolSpec?.name, schema: t.toolSpec?.inputSchema?.json })) : [];
  const call = forcedToolCall(body?.toolConfig?.toolChoice?.tool?.name, tools);
  return call && { type: 'answer', toolCalls: [{ id: `tooluse_${Date.now().toString(36)}`, ...call }] };
}

export function eventFrame(eventType: string, payload: Record<string, unknown>): Uint8Array {
  const headers: MessageHeaders = {
    ':event-type': { type: 'string', value: eventType },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'event' },
  };
  return codec.encode({ headers, body: fromUtf8(JSON.stringify({ ...payload, p: 'abcdefghijklmnopqrstuvwxyzABCDEF'.slice(0, 5 + (eventType.length % 20)) })) });
}

/** An exception frame (`:message-type: exception`), e.g. `throttlingException`. */
export function exceptionFrame(exceptionType: string, message: string): Uint8Array {
  const headers: MessageHeaders = {
    ':exception-type': { type: 'string', value: exceptionType },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'exception' },
  };
  return codec.encode({ headers, body: fromUtf8(JSON.stringify({ message })) });
}

/** The last user turn's text of an Anthropic body (string or text blocks). */
function claudeUserText(body: any): string {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string' && m.content) return m.content;
    const t = Array.isArray(m.content) ? m.content.map((b: any) => (b?.type === 'text' && typeof b.text === 'string' ? b.text : '')).join('') : '';
    if (t) return t;
  }
  return 'Hello from mock Bedrock.';
}

function lastUserText(body: any): string {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role !== 'user') continue;
    const t = (m.content ?? []).map((b: any) => (typeof b?.text === 'string' ? b.text : '')).join('');
    if (t) return t;
  }
  return 'Hello from mock Bedrock.';
}

/** Deterministic unit vector for a text (different texts differ). */
export function mockVector(text: string, dims: number): number[] {
  const v: number[] = [];
  let h = 2166136261;
  for (const ch of text) h = Math.imul(h ^ ch.codePointAt(0)!, 16777619) >>> 0;
  for (let i = 0; i < dims; i++) {
    h = Math.imul(h ^ (i + 1), 16777619) >>> 0;
    v.push(((h % 2001) - 1000) / 1000);
  }
  const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => Math.fround(x / n));
}

/** What the mock's CountTokens answers for a request body. */
export function countTokensOf(body: any): number {
  return Math.max(1, wordCount(JSON.stringify(body?.input ?? {})));
}

export function wordCount(s: string): number {
  return s.match(/\S+/g)?.length ?? 0;
}

export async function startMockBedrock(): Promise<MockBedrock> {
  const requests: BedrockRequest[] = [];
  let queue: BedrockScript[] = [];

  const lb = await startLoopback((req, res) => {
    void handle(req, res).catch((err) => {
      if (!res.headersSent) sendError(res, 500, 'InternalServerException', `mock failed: ${(err as Error).message}`);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const m = /^\/model\/([^/]+)\/(converse|converse-stream|invoke|invoke-with-response-stream|count-tokens)$/.exec(path);
    let markClosed!: () => void;
    const rec: BedrockRequest = {
      method: req.method ?? 'GET',
      path,
      modelId: m ? decodeURIComponent(m[1]!) : '',
      operation: m ? (m[2] as BedrockRequest['operation']) : 'other',
      headers: req.headers,
      body,
      closed: new Promise<void>((r) => (markClosed = r)),
      completed: false,
      abortedByPeer: false,
    };
    res.on('close', () => {
      if (!rec.completed) rec.abortedByPeer = !res.writableFinished;
      markClosed();
    });
    requests.push(rec);
    if (rec.method !== 'POST' || rec.operation === 'other') {
      sendError(res, 404, 'UnknownOperationException', `no route for ${rec.method} ${path}`);
      rec.completed = true;
      return;
    }
    if (rec.operation === 'count-tokens') {
      // CountTokens counts for Claude models: here one token per whitespace-separated word of the input's JSON.
      if (!rec.modelId.includes('anthropic.claude')) sendError(res, 400, 'ValidationException', "The provided model doesn't support counting tokens.");
      else sendJson(res, 200, { inputTokens: countTokensOf(body) });
      rec.completed = true;
      return;
    }
    const script = queue.shift();
    if (script?.type === 'handler') {
      await script.handle(rec, res);
      rec.completed = true;
      return;
    }
    if (script?.type === 'error') {
      sendError(res, script.status, script.errorType, script.message);
      rec.completed = true;
      return;
    }
    if ((rec.operation === 'invoke' || rec.operation === 'invoke-with-response-stream') && rec.modelId.includes('anthropic.claude')) {
      const forced = forcedToolScript(body);
      const claude = script ?? (forced?.type === 'tool_use' ? { type: 'answer' as const, toolCalls: forced.calls } : undefined) ?? { type: 'answer' as const, text: claudeUserText(body).match(/\S+\s*/g) ?? ['(empty)'] };
      if (rec.operation === 'invoke') claudeInvoke(rec, res, claude);
      else await claudeInvokeStream(rec, res, claude);
      rec.completed = true;
      return;
    }
    if (rec.operation === 'invoke') {
      invoke(rec, res);
      rec.completed = true;
      return;
    }
    const answer = script ?? forcedConverseAnswer(body) ?? { type: 'answer' as const, text: lastUserText(body).match(/\S+\s*/g) ?? ['(empty)'] };
    if (rec.operation === 'converse') converse(rec, res, answer);
    else await converseStream(rec, res, answer);
  }

  function usageFor(rec: BedrockRequest, a: Extract<BedrockScript, { type: 'answer' }>): BedrockUsage {
    if (a.usage) return { totalTokens: a.usage.inputTokens + a.usage.outputTokens, ...a.usage };
    const input = Math.max(1, wordCount(JSON.stringify(rec.body?.messages ?? [])));
    const output = (a.text?.length ?? 0) + (a.toolCalls?.length ?? 0) * 3 + (a.reasoning?.pieces.length ?? 0);
    return { inputTokens: input, outputTokens: output, totalTokens: input + output };
  }

  function stopFor(a: Extract<BedrockScript, { type: 'answer' }>): string {
    return a.stopReason ?? (a.toolCalls?.length ? 'tool_use' : 'end_turn');
  }

  function converse(rec: BedrockRequest, res: ServerResponse, a: Extract<BedrockScript, { type: 'answer' }>): void {
    const content: unknown[] = [];
    if (a.reasoning) content.push({ reasoningContent: { reasoningText: { text: a.reasoning.pieces.join(''), signature: a.reasoning.signature } } });
    if (a.text?.length) content.push({ text: a.text.join('') });
    for (const c of a.toolCalls ?? []) content.push({ toolUse: { toolUseId: c.id, name: c.name, input: JSON.parse(c.input.join('') || '{}') } });
    const extra = a.additionalModelResponseFields ? { additionalModelResponseFields: a.additionalModelResponseFields } : {};
    sendJson(res, 200, { output: { message: { role: 'assistant', content } }, stopReason: stopFor(a), usage: usageFor(rec, a), metrics: { latencyMs: 12 }, ...extra });
    rec.completed = true;
  }

  async function converseStream(rec: BedrockRequest, res: ServerResponse, a: Extract<BedrockScript, { type: 'answer' }>): Promise<void> {
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': randomUUID() });
    res.flushHeaders();
    const write = (frame: Uint8Array) => {
      if (!res.destroyed) res.write(frame);
    };
    write(eventFrame('messageStart', { role: 'assistant' }));
    // Delta frames (the points where a script can pause, fail or cut), with the block frames between them.
    const steps: { frame: Uint8Array; delta: boolean }[] = [];
    let block = 0;
    if (a.reasoning) {
      for (const p of a.reasoning.pieces) steps.push({ delta: true, frame: eventFrame('contentBlockDelta', { contentBlockIndex: block, delta: { reasoningContent: { text: p } } }) });
      steps.push({ delta: true, frame: eventFrame('contentBlockDelta', { contentBlockIndex: block, delta: { reasoningContent: { signature: a.reasoning.signature } } }) });
      steps.push({ delta: false, frame: eventFrame('contentBlockStop', { contentBlockIndex: block++ }) });
    }
    if (a.text?.length) {
      for (const p of a.text) steps.push({ delta: true, frame: eventFrame('contentBlockDelta', { contentBlockIndex: block, delta: { text: p } }) });
      steps.push({ delta: false, frame: eventFrame('contentBlockStop', { contentBlockIndex: block++ }) });
    }
    for (const c of a.toolCalls ?? []) {
      steps.push({ delta: false, frame: eventFrame('contentBlockStart', { contentBlockIndex: block, start: { toolUse: { toolUseId: c.id, name: c.name } } }) });
      for (const f of c.input) steps.push({ delta: true, frame: eventFrame('contentBlockDelta', { contentBlockIndex: block, delta: { toolUse: { input: f } } }) });
      steps.push({ delta: false, frame: eventFrame('contentBlockStop', { contentBlockIndex: block++ }) });
    }
    let deltas = 0;
    const checkpoint = async (): Promise<boolean> => {
      if (a.pauseAfter === deltas && a.gate) await a.gate.wait();
      if (a.exceptionAfter === deltas) {
        const ex = a.exception ?? { type: 'modelStreamErrorException', message: 'The model stream failed.' };
        write(exceptionFrame(ex.type, ex.message));
        res.end();
        rec.completed = true;
        return false;
      }
      if (a.cutAfter === deltas) {
        res.socket?.destroy();
        return false;
      }
      return !res.destroyed;
    };
    if (!(await checkpoint())) return;
    for (const s of steps) {
      if (a.delayMs) await sleep(a.delayMs);
      if (res.destroyed) return;
      write(s.frame);
      if (s.delta) {
        deltas++;
        if (!(await checkpoint())) return;
      }
    }
    if (a.omitStop) {
      res.end();
      rec.completed = true;
      return;
    }
    write(eventFrame('messageStop', { stopReason: stopFor(a), ...(a.additionalModelResponseFields ? { additionalModelResponseFields: a.additionalModelResponseFields } : {}) }));
    write(eventFrame('metadata', { usage: usageFor(rec, a), metrics: { latencyMs: 25 } }));
    res.end();
    rec.completed = true;
  }

  function invoke(rec: BedrockRequest, res: ServerResponse): void {
    const b = rec.body ?? {};
    const id = rec.modelId;
    if (id.includes('titan-embed-text')) {
      if (typeof b.inputText !== 'string') return sendError(res, 400, 'ValidationException', 'Malformed input request: #: required key [inputText] not found, please reformat your input and try again.');
      const dims = typeof b.dimensions === 'number' ? b.dimensions : id.includes('v1') ? 1536 : 1024;
      const tokens = Math.max(1, wordCount(b.inputText));
      const out = { embedding: mockVector(b.inputText, dims), embeddingsByType: { float: mockVector(b.inputText, dims) }, inputTextTokenCount: tokens };
      return sendJson(res, 200, out, { 'x-amzn-bedrock-input-token-count': String(tokens), 'x-amzn-bedrock-invocation-latency': '20' });
    }
    if (id.includes('cohere.embed')) {
      if (!Array.isArray(b.texts) || typeof b.input_type !== 'string') return sendError(res, 400, 'ValidationException', 'Malformed input request: #: required key [input_type] not found, please reformat your input and try again.');
      if (b.texts.length > 96) return sendError(res, 400, 'ValidationException', 'Malformed input request: #/texts: expected maximum item count: 96, found: ' + b.texts.length + ', please reformat your input and try again.');
      const dims = typeof b.output_dimension === 'number' ? b.output_dimension : 1024;
      const vectors = b.texts.map((t: string) => mockVector(t, dims));
      const tokens = b.texts.reduce((n: number, t: string) => n + Math.max(1, wordCount(t)), 0);
      const out = Array.isArray(b.embedding_types)
        ? { id: randomUUID(), texts: b.texts, embeddings: { float: vectors }, response_type: 'embeddings_by_type' }
        : { id: randomUUID(), texts: b.texts, embeddings: vectors, response_type: 'embeddings_floats' };
      return sendJson(res, 200, out, { 'x-amzn-bedrock-input-token-count': String(tokens), 'x-amzn-bedrock-invocation-latency': '30' });
    }
    sendError(res, 400, 'ValidationException', `The provided model identifier is invalid.`);
  }

  /**
   * InvokeModel(WithResponseStream) for Claude: the Anthropic body Bedrock takes (anthropic_version
   * required, no `model` or `stream`), answered with an Anthropic message, or streamed as `chunk`
   * events whose `bytes` are the Anthropic stream events' JSON (message_stop with Bedrock's
   * invocation metrics).
   */
  function claudeCheck(rec: BedrockRequest, res: ServerResponse): boolean {
    const b = rec.body;
    const fail = (m: string) => (sendError(res, 400, 'ValidationException', m), false);
    if (typeof b !== 'object' || b === null) return fail('Malformed input request, please reformat your input and try again.');
    if (b.anthropic_version !== 'bedrock-2023-05-31') return fail('Malformed input request: #/anthropic_version: bedrock-2023-05-31 is the only supported value, please reformat your input and try again.');
    for (const k of ['model', 'stream']) if (k in b) return fail(`Malformed input request: #: extraneous key [${k}] is not permitted, please reformat your input and try again.`);
    if (typeof b.max_tokens !== 'number') return fail('Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.');
    if (!Array.isArray(b.messages)) return fail('Malformed input request: #: required key [messages] not found, please reformat your input and try again.');
    return true;
  }

  function claudeUsage(rec: BedrockRequest, a: Extract<BedrockScript, { type: 'answer' }>) {
    const u = usageFor(rec, a);
    return { input_tokens: u.inputTokens, output_tokens: u.outputTokens, cache_creation_input_tokens: u.cacheWriteInputTokens ?? 0, cache_read_input_tokens: u.cacheReadInputTokens ?? 0 };
  }

  function claudeStop(a: Extract<BedrockScript, { type: 'answer' }>): string {
    return a.stopReason ?? (a.toolCalls?.length ? 'tool_use' : 'end_turn');
  }

  const CLAUDE_NAME = (id: string) => id.replace(/^.*anthropic\./, '').replace(/-v\d+(:\d+)?$/, '');

  function claudeInvoke(rec: BedrockRequest, res: ServerResponse, a: Extract<BedrockScript, { type: 'answer' }>): void {
    if (!claudeCheck(rec, res)) return;
    const content: unknown[] = [];
    if (a.reasoning) content.push({ type: 'thinking', thinking: a.reasoning.pieces.join(''), signature: a.reasoning.signature });
    if (a.text?.length) content.push({ type: 'text', text: a.text.join('') });
    for (const c of a.toolCalls ?? []) content.push({ type: 'tool_use', id: c.id, name: c.name, input: JSON.parse(c.input.join('') || '{}') });
    const usage = claudeUsage(rec, a);
    sendJson(
      res,
      200,
      { id: `msg_bdrk_${randomUUID().replace(/-/g, '').slice(0, 24)}`, type: 'message', role: 'assistant', model: CLAUDE_NAME(rec.modelId), content, stop_reason: claudeStop(a), stop_sequence: null, usage },
      { 'x-amzn-bedrock-input-token-count': String(usage.input_tokens), 'x-amzn-bedrock-output-token-count': String(usage.output_tokens), 'x-amzn-bedrock-invocation-latency': '40' },
    );
  }

  async function claudeInvokeStream(rec: BedrockRequest, res: ServerResponse, a: Extract<BedrockScript, { type: 'answer' }>): Promise<void> {
    if (!claudeCheck(rec, res)) return;
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-bedrock-content-type': 'application/json', 'x-amzn-requestid': randomUUID() });
    res.flushHeaders();
    const chunk = (ev: Record<string, unknown>) => eventFrame('chunk', { bytes: Buffer.from(JSON.stringify(ev), 'utf8').toString('base64') });
    const write = (frame: Uint8Array) => {
      if (!res.destroyed) res.write(frame);
    };
    const usage = claudeUsage(rec, a);
    write(chunk({ type: 'message_start', message: { id: `msg_bdrk_${randomUUID().replace(/-/g, '').slice(0, 24)}`, type: 'message', role: 'assistant', model: CLAUDE_NAME(rec.modelId), content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }));
    const steps: { frame: Uint8Array; delta: boolean }[] = [];
    let index = 0;
    if (a.reasoning) {
      steps.push({ delta: false, frame: chunk({ type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } }) });
      for (const p of a.reasoning.pieces) steps.push({ delta: true, frame: chunk({ type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: p } }) });
      steps.push({ delta: false, frame: chunk({ type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: a.reasoning.signature } }) });
      steps.push({ delta: false, frame: chunk({ type: 'content_block_stop', index: index++ }) });
    }
    if (a.text?.length) {
      steps.push({ delta: false, frame: chunk({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } }) });
      for (const p of a.text) steps.push({ delta: true, frame: chunk({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: p } }) });
      steps.push({ delta: false, frame: chunk({ type: 'content_block_stop', index: index++ }) });
    }
    for (const c of a.toolCalls ?? []) {
      steps.push({ delta: false, frame: chunk({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: c.id, name: c.name, input: {} } }) });
      for (const f of c.input) steps.push({ delta: true, frame: chunk({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: f } }) });
      steps.push({ delta: false, frame: chunk({ type: 'content_block_stop', index: index++ }) });
    }
    let deltas = 0;
    for (const s of steps) {
      if (a.delayMs) await sleep(a.delayMs);
      if (res.destroyed) return;
      write(s.frame);
      if (!s.delta) continue;
      deltas++;
      if (a.pauseAfter === deltas && a.gate) await a.gate.wait();
      if (a.exceptionAfter === deltas) {
        const ex = a.exception ?? { type: 'modelStreamErrorException', message: 'The model stream failed.' };
        write(exceptionFrame(ex.type, ex.message));
        res.end();
        return;
      }
      if (a.cutAfter === deltas) {
        res.socket?.destroy();
        return;
      }
    }
    if (a.omitStop) {
      res.end();
      return;
    }
    write(chunk({ type: 'message_delta', delta: { stop_reason: claudeStop(a), stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }));
    write(chunk({ type: 'message_stop', 'amazon-bedrock-invocationMetrics': { inputTokenCount: usage.input_tokens, outputTokenCount: usage.output_tokens, invocationLatency: 60, firstByteLatency: 20 } }));
    res.end();
  }

  function sendJson(res: ServerResponse, status: number, obj: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID(), ...headers });
    res.end(text);
  }

  function sendError(res: ServerResponse, status: number, errorType: string, message: string): void {
    sendJson(res, status, { message }, { 'x-amzn-errortype': `${errorType}:http://internal.amazon.com/coral/com.amazon.bedrock/` });
  }

  const { port } = lb;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    last(operation) {
      const list = operation ? requests.filter((r) => r.operation === operation) : requests;
      const r = list[list.length - 1];
      if (!r) throw new Error(`mock Bedrock received no ${operation ?? ''} request`);
      return r;
    },
    script(...s) {
      queue.push(...s);
    },
    reset() {
      queue = [];
      requests.length = 0;
    },
    async close() {
      await lb.close();
    },
  };
}
