import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * An OpenAI-format upstream on 127.0.0.1 that fails on demand, for routing tests. Each request's
 * behaviour comes from `fault` (a fixed mode or a function of the hit number); healthy answers
 * name the upstream in their text so a test can see who served.
 */
export type Fault =
  | 'ok'
  | '400'
  | '500'
  | '503'
  | '429' // with Retry-After: 0
  | '429-long' // with Retry-After: 3600
  | 'slow-headers' // headers after `slowMs`
  | 'slow-first-chunk' // headers at once, first SSE chunk after `slowMs`
  | 'reset' // socket destroyed before any header
  | 'cut-before-first-chunk' // SSE headers, then the socket dies
  | 'cut-mid-stream'; // two chunks, then the socket dies

export interface FaultUpstream {
  name: string;
  baseUrl: string;
  hits: number;
  /** Requests whose connection the gateway closed before the answer ended. */
  abandoned: number;
  fault: Fault | ((hit: number) => Fault);
  slowMs: number;
  close(): Promise<void>;
}

export async function startFaultUpstream(name: string, fault: FaultUpstream['fault'] = 'ok'): Promise<FaultUpstream> {
  const sockets = new Set<import('node:net').Socket>();
  const state: FaultUpstream = {
    name,
    baseUrl: '',
    hits: 0,
    abandoned: 0,
    fault,
    slowMs: 2_000,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((req, res) => void handle(req, res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const c of req) raw += c;
    const hit = ++state.hits;
    const mode = typeof state.fault === 'function' ? state.fault(hit) : state.fault;
    let finished = false;
    res.on('close', () => {
      if (!finished) state.abandoned++;
    });
    const body = raw ? (JSON.parse(raw) as { stream?: boolean; model?: string }) : {};
    const error = (status: number, message: string, type: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ error: { message, type, param: null, code: null } }));
      finished = true;
    };
    switch (mode) {
      case '400':
        return error(400, `${name}: bad request`, 'invalid_request_error');
      case '500':
        return error(500, `${name}: internal error`, 'server_error');
      case '503':
        return error(503, `${name}: overloaded`, 'server_error');
      case '429':
        return error(429, `${name}: rate limited`, 'rate_limit_error', { 'retry-after': '0' });
      case '429-long':
        return error(429, `${name}: rate limited`, 'rate_limit_error', { 'retry-after': '3600' });
      case 'reset':
        req.socket.destroy();
        return;
      case 'slow-headers':
        await sleep(state.slowMs);
        if (res.destroyed) return;
        break;
    }
    const text = `served by ${name}`;
    const model = body.model ?? 'unknown';
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: `chatcmpl-${name}-${hit}`,
          object: 'chat.completion',
          created: 1_764_000_000,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
        }),
      );
      finished = true;
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    if (mode === 'cut-before-first-chunk') {
      await sleep(5);
      req.socket.destroy();
      return;
    }
    if (mode === 'slow-first-chunk') await sleep(state.slowMs);
    if (res.destroyed) return;
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: `chatcmpl-${name}-${hit}`, object: 'chat.completion.chunk', created: 1_764_000_000, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
    res.write(chunk({ role: 'assistant', content: '' }));
    const words = text.split(' ');
    for (let i = 0; i < words.length; i++) {
      if (mode === 'cut-mid-stream' && i === 2) {
        await sleep(20); // let the first pieces reach the client before the connection dies
        req.socket.destroy();
        return;
      }
      res.write(chunk({ content: (i ? ' ' : '') + words[i] }));
    }
    res.write(chunk({}, 'stop'));
    res.write(`data: ${JSON.stringify({ id: `chatcmpl-${name}-${hit}`, object: 'chat.completion.chunk', created: 1_764_000_000, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } })}\n\n`);
    res.end('data: [DONE]\n\n');
    finished = true;
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return state;
}
