import { randomBytes } from 'node:crypto';
import { forcedToolCall } from './forced-tool.ts';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Gate } from './mock-openai.ts';
import { startLoopback } from './loopback.ts';

/**
 * A scriptable stand-in for api.anthropic.com on 127.0.0.1, speaking Anthropic's wire format:
 * `POST /v1/messages` (JSON, or SSE with `event:` names: message_start, ping,
 * content_block_start/delta/stop for text, thinking and tool_use, message_delta, message_stop,
 * error) and `POST /v1/messages/count_tokens`. It checks `x-api-key` like Anthropic does (401
 * authentication_error). Tests queue scripts for the next message calls; with none queued it
 * echoes the last user message word by word. Every request is recorded (query string, headers,
 * raw and parsed body), and so is every response body it wrote.
 */

export interface AnthropicUsageJson {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
}

export interface RecordedAnthropicRequest {
  method: string;
  path: string;
  /** The query string with its `?`, or ''. */
  search: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as received. */
  raw: string;
  body: any;
  /** What the mock wrote back (body text), once it is done. */
  sent: string;
  completed: boolean;
  readonly closed: Promise<void>;
}

interface StreamShape {
  /** Destroy the socket after this many deltas, without message_delta or message_stop. */
  cutAfter?: number;
  /** Send an `event: error` (this body) after this many deltas and end the response. */
  errorAfter?: { after: number; type: string; message: string };
  /** End the response cleanly after all deltas but without message_delta / message_stop. */
  omitStop?: boolean;
  /** Pause after this many deltas until the gate opens (before a cut at the same point). */
  pauseAfter?: number;
  gate?: Gate;
  delayMs?: number;
}

interface AnswerCommon {
  /** A thinking block first: its text pieces and signature. */
  thinking?: { pieces: string[]; signature: string };
  /** A redacted thinking block after it. */
  redactedThinking?: string;
  usage?: AnthropicUsageJson;
  /** The `id` of the message (default: a fresh msg_...). */
  id?: string;
}

export type AnthropicScript =
  | ({
      type: 'text';
      pieces?: string[];
      stopReason?: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'refusal';
      stopSequence?: string;
    } & AnswerCommon &
      StreamShape)
  | ({
      type: 'tool_use';
      /** Text before the calls. */
      text?: string;
      calls: { id: string; name: string; /** Input JSON, as the fragments to stream. */ input: string[] }[];
    } & AnswerCommon &
      StreamShape)
  | { type: 'error'; status: number; body: unknown; headers?: Record<string, string> }
  | { type: 'handler'; handle(req: RecordedAnthropicRequest, res: ServerResponse): void | Promise<void> };

/** A request whose tool_choice forces a tool is answered with a schema-valid call of it, as a model would. */
export function forcedToolScript(b: any): AnthropicScript | undefined {
  const tools = Array.isArray(b?.tools) ? b.tools.map((t: any) => ({ name: t.name, schema: t.input_schema })) : [];
  const call = forcedToolCall(b?.tool_choice?.type === 'tool' ? b.tool_choice.name : undefined, tools);
  return call && { type: 'tool_use', calls: [{ id: `toolu_${randomBytes(8).toString('hex')}`, ...call }] };
}

export function anthropicErrorJson(type: string, message: string) {
  return { type: 'error', error: { type, message }, request_id: `req_${randomBytes(12).toString('hex')}` };
}

export interface MockAnthropic {
  /** Base URL without `/v1` (what `baseUrl` of an `anthropic` provider takes). */
  readonly baseUrl: string;
  readonly requests: RecordedAnthropicRequest[];
  messageRequests(): RecordedAnthropicRequest[];
  lastMessageRequest(): RecordedAnthropicRequest;
  countRequests(): RecordedAnthropicRequest[];
  script(...scripts: AnthropicScript[]): void;
  /** The next count_tokens answers (input_tokens, or an error), in order; without one it counts words. */
  scriptCount(...counts: (number | { status: number; body: unknown })[]): void;
  reset(): void;
  close(): Promise<void>;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((b: any) => (typeof b?.text === 'string' ? b.text : '')).join('');
}

function lastUserText(body: any): string {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]?.role === 'user') return textOf(messages[i].content) || 'Hello';
  return 'Hello from the mock Anthropic upstream.';
}

function countWords(s: string): number {
  return s.match(/\S+/g)?.length ?? 0;
}

function inputTokens(body: any): number {
  const system = typeof body?.system === 'string' ? body.system : textOf(body?.system);
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  return Math.max(1, countWords(system) + messages.reduce((n, m) => n + countWords(textOf(m?.content) || JSON.stringify(m?.content ?? '')), 0));
}

export async function startMockAnthropic(opts: { apiKey: string }): Promise<MockAnthropic> {
  const requests: RecordedAnthropicRequest[] = [];
  let queue: AnthropicScript[] = [];
  let counts: (number | { status: number; body: unknown })[] = [];

  const lb = await startLoopback((req, res) => {
    void handle(req, res).catch((err) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(anthropicErrorJson('api_error', `mock upstream failed: ${(err as Error).message}`)));
      } else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    let markClosed!: () => void;
    const rec: RecordedAnthropicRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      search: url.search,
      headers: req.headers,
      raw,
      body,
      sent: '',
      completed: false,
      closed: new Promise<void>((r) => (markClosed = r)),
    };
    res.on('close', () => markClosed());
    const write = res.write.bind(res);
    res.write = ((chunk: any, ...rest: any[]) => {
      rec.sent += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return write(chunk, ...rest);
    }) as typeof res.write;
    requests.push(rec);

    const send = (status: number, obj: unknown, headers: Record<string, string> = {}) => {
      const text = typeof obj === 'string' ? obj : JSON.stringify(obj);
      res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${randomBytes(8).toString('hex')}`, ...headers });
      res.write(text);
      res.end();
      rec.completed = true;
    };

    if (req.headers['x-api-key'] !== opts.apiKey) {
      send(401, anthropicErrorJson('authentication_error', 'invalid x-api-key'));
      return;
    }
    if (rec.method === 'POST' && rec.path === '/v1/messages/count_tokens') {
      const next = counts.shift() ?? inputTokens(body);
      if (typeof next === 'number') send(200, { input_tokens: next });
      else send(next.status, next.body);
      return;
    }
    if (rec.method !== 'POST' || rec.path !== '/v1/messages') {
      send(404, anthropicErrorJson('not_found_error', `Not found: ${rec.method} ${rec.path}`));
      return;
    }
    const b = body as any;
    if (typeof b?.max_tokens !== 'number') {
      send(400, anthropicErrorJson('invalid_request_error', 'max_tokens: Field required'));
      return;
    }
    const script: AnthropicScript = queue.shift() ?? forcedToolScript(b) ?? { type: 'text', pieces: lastUserText(body).match(/\S+\s*/g) ?? ['(empty)'] };
    await answer(rec, res, script);
  }

  async function answer(rec: RecordedAnthropicRequest, res: ServerResponse, script: AnthropicScript): Promise<void> {
    if (script.type === 'handler') {
      await script.handle(rec, res);
      rec.completed = true;
      return;
    }
    if (script.type === 'error') {
      const text = typeof script.body === 'string' ? script.body : JSON.stringify(script.body);
      res.writeHead(script.status, { 'content-type': typeof script.body === 'string' ? 'text/html' : 'application/json', ...script.headers });
      res.write(text);
      res.end();
      rec.completed = true;
      return;
    }
    const body = rec.body as any;
    const id = script.id ?? `msg_${randomBytes(12).toString('hex')}`;
    const model = typeof body?.model === 'string' ? body.model : 'unknown';
    const pieces = script.type === 'text' ? (script.pieces ?? ['Hello']) : script.text ? [script.text] : [];
    const stopReason = script.type === 'text' ? (script.stopReason ?? 'end_turn') : 'tool_use';
    const stopSequence = script.type === 'text' ? (script.stopSequence ?? null) : null;
    const outputTokens = pieces.length + (script.type === 'tool_use' ? script.calls.length * 5 : 0) + (script.thinking?.pieces.length ?? 0);
    const usage: AnthropicUsageJson = script.usage ?? { input_tokens: inputTokens(body), cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: outputTokens };

    if (body?.stream !== true) {
      const content: unknown[] = [];
      if (script.thinking) content.push({ type: 'thinking', thinking: script.thinking.pieces.join(''), signature: script.thinking.signature });
      if (script.redactedThinking) content.push({ type: 'redacted_thinking', data: script.redactedThinking });
      if (pieces.length) content.push({ type: 'text', text: pieces.join('') });
      if (script.type === 'tool_use') for (const c of script.calls) content.push({ type: 'tool_use', id: c.id, name: c.name, input: JSON.parse(c.input.join('')) });
      sendMessage(res, rec, { id, type: 'message', role: 'assistant', model, content, stop_reason: stopReason, stop_sequence: stopSequence, usage });
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': `req_${randomBytes(8).toString('hex')}` });
    res.flushHeaders();
    const event = (name: string, data: unknown) => {
      if (!res.destroyed) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    event('message_start', {
      type: 'message_start',
      message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } },
    });
    // Each step is either a block boundary (sent at once) or a delta (counted for cut/pause/error).
    type Step = { kind: 'boundary' | 'delta'; name: string; data: unknown };
    const steps: Step[] = [];
    let index = 0;
    const block = (start: unknown, deltas: unknown[]) => {
      const i = index++;
      steps.push({ kind: 'boundary', name: 'content_block_start', data: { type: 'content_block_start', index: i, content_block: start } });
      if (i === 0) steps.push({ kind: 'boundary', name: 'ping', data: { type: 'ping' } });
      for (const d of deltas) steps.push({ kind: 'delta', name: 'content_block_delta', data: { type: 'content_block_delta', index: i, delta: d } });
      steps.push({ kind: 'boundary', name: 'content_block_stop', data: { type: 'content_block_stop', index: i } });
    };
    if (script.thinking) {
      block({ type: 'thinking', thinking: '', signature: '' }, [
        ...script.thinking.pieces.map((t) => ({ type: 'thinking_delta', thinking: t })),
        { type: 'signature_delta', signature: script.thinking.signature },
      ]);
    }
    if (script.redactedThinking) block({ type: 'redacted_thinking', data: script.redactedThinking }, []);
    if (pieces.length) block({ type: 'text', text: '' }, pieces.map((t) => ({ type: 'text_delta', text: t })));
    if (script.type === 'tool_use') {
      for (const c of script.calls) block({ type: 'tool_use', id: c.id, name: c.name, input: {} }, c.input.map((p) => ({ type: 'input_json_delta', partial_json: p })));
    }

    let deltas = 0;
    for (const step of steps) {
      if (step.kind === 'delta') {
        // A pause comes before a cut at the same point, so a test can let bytes reach the client first.
        if (script.pauseAfter === deltas && script.gate) await script.gate.wait();
        if (script.cutAfter === deltas) {
          res.socket?.destroy();
          return;
        }
        if (script.errorAfter?.after === deltas) {
          event('error', { type: 'error', error: { type: script.errorAfter.type, message: script.errorAfter.message } });
          res.end();
          rec.completed = true;
          return;
        }
        if (script.delayMs) await sleep(script.delayMs);
        deltas++;
      }
      if (res.destroyed) return;
      event(step.name, step.data);
    }
    if (script.pauseAfter !== undefined && script.pauseAfter >= deltas && script.gate) await script.gate.wait();
    if (script.cutAfter !== undefined && script.cutAfter >= deltas) {
      res.socket?.destroy();
      return;
    }
    if (script.omitStop) {
      res.end();
      rec.completed = true;
      return;
    }
    event('message_delta', { type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: stopSequence }, usage: { output_tokens: usage.output_tokens } });
    event('message_stop', { type: 'message_stop' });
    res.end();
    rec.completed = true;
  }

  function sendMessage(res: ServerResponse, rec: RecordedAnthropicRequest, obj: unknown): void {
    const text = JSON.stringify(obj);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'request-id': `req_${randomBytes(8).toString('hex')}` });
    res.write(text);
    res.end();
    rec.completed = true;
  }

  const { port } = lb;
  const messages = () => requests.filter((r) => r.path === '/v1/messages');
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    messageRequests: messages,
    lastMessageRequest() {
      const all = messages();
      const last = all[all.length - 1];
      if (!last) throw new Error('the mock Anthropic upstream has received no message request');
      return last;
    },
    countRequests: () => requests.filter((r) => r.path === '/v1/messages/count_tokens'),
    script(...scripts) {
      queue.push(...scripts);
    },
    scriptCount(...n) {
      counts.push(...n);
    },
    reset() {
      queue = [];
      counts = [];
      requests.length = 0;
    },
    async close() {
      await lb.close();
    },
  };
}
