import { randomBytes } from 'node:crypto';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { deadUrl, startLoopback } from './loopback.ts';

/**
 * A scriptable stand-in for api.openai.com on 127.0.0.1, speaking OpenAI's wire format:
 * `POST /v1/chat/completions` (JSON or SSE, text or tool calls, usage), `GET /v1/models`.
 * Tests queue scripts for the next chat calls; with no script queued it echoes the last user
 * message word by word. Every request is recorded (headers and parsed body).
 */

/** A promise gate: the upstream waits on it; the test opens it. */
export interface Gate {
  /** Resolves when the upstream has reached the gate and is waiting on it. */
  readonly reached: Promise<void>;
  readonly isOpen: boolean;
  open(): void;
  wait(): Promise<void>;
}

export function createGate(): Gate {
  let open!: () => void;
  let reach!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (reach = r));
  let isOpen = false;
  return {
    reached,
    get isOpen() {
      return isOpen;
    },
    open() {
      isOpen = true;
      open();
    },
    wait() {
      reach();
      return opened;
    },
  };
}

export interface UpstreamUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body (or the raw text when it was not JSON; undefined without a body). */
  body: any;
  /** Resolves when the connection's response side closed, finished or not. */
  readonly closed: Promise<void>;
  /** The mock wrote its whole answer. */
  completed: boolean;
  /** The response closed before the mock finished writing it (the gateway hung up, or a script cut it). */
  abortedByPeer: boolean;
}

interface StreamShape {
  /** Pause after this many content pieces (or tool argument fragments) until `gate` opens. */
  pauseAfter?: number;
  gate?: Gate;
  /**
   * Destroy the socket after this many content pieces (after the pause, when both are at the same
   * point), without finish, usage or [DONE]. Note that fetch() drops bytes that arrive together
   * with the connection's end, so pause before the cut when the client must see the pieces.
   */
  cutAfter?: number;
  /** End the response cleanly after all pieces but never send `data: [DONE]` (nor finish/usage). */
  omitDone?: boolean;
  /** Wait between pieces. */
  delayMs?: number;
}

export type Script =
  | ({
      type: 'text';
      /** The answer, as the pieces to stream (joined for non-streaming answers). */
      pieces?: string[];
      finishReason?: 'stop' | 'length' | 'content_filter';
      usage?: UpstreamUsage;
    } & StreamShape)
  | ({
      type: 'tool_calls';
      calls: { id: string; name: string; /** Argument JSON, as the fragments to stream. */ arguments: string[] }[];
      usage?: UpstreamUsage;
    } & StreamShape)
  | { type: 'error'; status: number; /** JSON body, or raw text. */ body: unknown; headers?: Record<string, string> }
  | { type: 'handler'; handle(req: RecordedRequest, res: ServerResponse): void | Promise<void> };

export function openaiErrorJson(status: number, message: string, type?: string, code?: string | null, param: string | null = null) {
  const t = type ?? (status === 401 ? 'invalid_request_error' : status === 429 ? 'requests' : status >= 500 ? 'server_error' : 'invalid_request_error');
  return { error: { message, type: t, param, code: code ?? null } };
}

export interface MockOpenAI {
  /** Base URL including `/v1`, for a provider's `baseUrl`. */
  readonly baseUrl: string;
  readonly requests: RecordedRequest[];
  /** Chat completion requests only. */
  chatRequests(): RecordedRequest[];
  lastChatRequest(): RecordedRequest;
  /** Queue scripts for the next chat completion calls, in order. */
  script(...scripts: Script[]): void;
  /** Drop queued scripts and recorded requests. */
  reset(): void;
  close(): Promise<void>;
}

export const UPSTREAM_MODELS = ['gpt-4o-mini-2024-07-18', 'gpt-4.1-2025-04-14'];

function lastUserText(body: any): string {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) return m.content.map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join('');
  }
  return 'Hello from the mock upstream.';
}

function countWords(s: string): number {
  return s.match(/\S+/g)?.length ?? 0;
}

function promptTokens(body: any): number {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  return Math.max(1, messages.reduce((n, m) => n + countWords(typeof m?.content === 'string' ? m.content : JSON.stringify(m?.content ?? '')), 0));
}

function usageFor(body: any, completion: number): UpstreamUsage {
  const p = promptTokens(body);
  return { prompt_tokens: p, completion_tokens: completion, total_tokens: p + completion };
}

export async function startMockOpenAI(): Promise<MockOpenAI> {
  const requests: RecordedRequest[] = [];
  let queue: Script[] = [];

  const lb = await startLoopback((req, res) => {
    void handle(req, res).catch((err) => {
      // A write after the peer left, or a test bug: never crash the test process.
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(openaiErrorJson(500, `mock upstream failed: ${(err as Error).message}`)));
      } else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    let markClosed!: () => void;
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: new URL(req.url ?? '/', 'http://x').pathname,
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

    if (rec.method === 'GET' && rec.path === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: UPSTREAM_MODELS.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'openai' })) });
      rec.completed = true;
      return;
    }
    if (rec.method !== 'POST' || rec.path !== '/v1/chat/completions') {
      sendJson(res, 404, openaiErrorJson(404, `Invalid URL (${rec.method} ${rec.path})`, 'invalid_request_error'));
      rec.completed = true;
      return;
    }
    const script: Script = queue.shift() ?? { type: 'text', pieces: lastUserText(body).match(/\S+\s*/g) ?? ['(empty)'] };
    await answer(rec, res, script);
  }

  async function answer(rec: RecordedRequest, res: ServerResponse, script: Script): Promise<void> {
    const body = rec.body as any;
    if (script.type === 'handler') {
      await script.handle(rec, res);
      rec.completed = true;
      return;
    }
    if (script.type === 'error') {
      const payload = typeof script.body === 'string' ? script.body : JSON.stringify(script.body);
      res.writeHead(script.status, { 'content-type': typeof script.body === 'string' ? 'text/html' : 'application/json', ...script.headers });
      res.end(payload);
      rec.completed = true;
      return;
    }

    const id = `chatcmpl-${randomBytes(12).toString('base64url')}`;
    const created = Math.floor(Date.now() / 1000);
    const model = typeof body?.model === 'string' ? body.model : 'unknown';
    const pieces = script.type === 'text' ? (script.pieces ?? ['Hello']) : [];
    const finishReason = script.type === 'text' ? (script.finishReason ?? 'stop') : 'tool_calls';
    const usage = script.usage ?? usageFor(body, script.type === 'text' ? pieces.length : script.calls.reduce((n, c) => n + c.arguments.length, 1));

    if (body?.stream !== true) {
      const message: Record<string, unknown> =
        script.type === 'text'
          ? { role: 'assistant', content: pieces.join(''), refusal: null, annotations: [] }
          : {
              role: 'assistant',
              content: null,
              tool_calls: script.calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments.join('') } })),
              refusal: null,
              annotations: [],
            };
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason }],
        usage: { ...usage, prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0, ...(usage as any).prompt_tokens_details }, completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 } },
        service_tier: 'default',
        system_fingerprint: 'fp_mock0001',
      });
      rec.completed = true;
      return;
    }

    // Streaming, the way api.openai.com does it.
    const includeUsage = body?.stream_options?.include_usage === true;
    const usageField = includeUsage ? { usage: null } : {};
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': `req_${randomBytes(8).toString('hex')}` });
    res.flushHeaders();
    const send = (obj: unknown) => {
      if (!res.destroyed) res.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
      send({ id, object: 'chat.completion.chunk', created, model, service_tier: 'default', system_fingerprint: 'fp_mock0001', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...usageField });

    // The fragments to stream after the opening chunk.
    const steps: Record<string, unknown>[] = [];
    if (script.type === 'text') {
      chunk({ role: 'assistant', content: '', refusal: null });
      for (const p of pieces) steps.push({ content: p });
    } else {
      script.calls.forEach((c, index) => {
        const opening = { tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } }] };
        if (index === 0) chunk({ role: 'assistant', content: null, ...opening, refusal: null });
        else steps.push(opening);
        for (const a of c.arguments) steps.push({ tool_calls: [{ index, function: { arguments: a } }] });
      });
    }

    for (let i = 0; i <= steps.length; i++) {
      // At each point between pieces: maybe pause, then maybe cut.
      if (script.pauseAfter === i && script.gate) await script.gate.wait();
      if (script.cutAfter === i) {
        res.socket?.destroy();
        return;
      }
      if (i === steps.length) break;
      if (script.delayMs) await sleep(script.delayMs);
      if (res.destroyed) return;
      chunk(steps[i]!);
    }
    if (res.destroyed) return;
    if (script.omitDone) {
      res.end();
      rec.completed = true;
      return;
    }
    chunk({}, finishReason);
    if (includeUsage) send({ id, object: 'chat.completion.chunk', created, model, service_tier: 'default', system_fingerprint: 'fp_mock0001', choices: [], usage });
    res.end('data: [DONE]\n\n');
    rec.completed = true;
  }

  function sendJson(res: ServerResponse, status: number, obj: unknown): void {
    const text = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': `req_${randomBytes(8).toString('hex')}` });
    res.end(text);
  }

  const { port } = lb;

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    chatRequests: () => requests.filter((r) => r.path === '/v1/chat/completions'),
    lastChatRequest() {
      const chats = requests.filter((r) => r.path === '/v1/chat/completions');
      const last = chats[chats.length - 1];
      if (!last) throw new Error('the mock upstream has received no chat completion request');
      return last;
    },
    script(...scripts: Script[]) {
      queue.push(...scripts);
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

/** A loopback URL where nothing listens (a port that was just free). */
export async function deadBaseUrl(): Promise<string> {
  return `${await deadUrl()}/v1`;
}
