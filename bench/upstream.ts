import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { serveChild } from './child.ts';

/**
 * The benchmark's mock OpenAI upstream (a child process on 127.0.0.1): `POST /v1/chat/completions`
 * answers a small completion at once, or, with `"stream": true`, a Chat Completions SSE stream whose
 * events are written one per write with a fixed gap. Every streamed event carries the time it was
 * written (`system_fingerprint: "bench-<ns>"`, CLOCK_MONOTONIC via process.hrtime, which all
 * processes on the machine share), so the client can tell how long each event took to reach it.
 *
 * BENCH_STREAM_CHUNKS content events (default 8), BENCH_STREAM_GAP_MS between writes (default 10).
 */

const CHUNKS = Number(process.env.BENCH_STREAM_CHUNKS ?? 8);
const GAP_MS = Number(process.env.BENCH_STREAM_GAP_MS ?? 10);
const MODEL = 'gpt-4o-mini-2024-07-18';

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench0001',
    object: 'chat.completion',
    created: 1_764_000_000,
    model: MODEL,
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } },
    service_tier: 'default',
    system_fingerprint: 'fp_bench',
  }),
);

const COMPLETION_HEADERS = { 'content-type': 'application/json', 'content-length': String(COMPLETION.length), 'x-request-id': 'req_bench' };
const STREAM_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': 'req_bench' };

function chunk(choices: unknown[], usage?: unknown): string {
  const fp = `bench-${process.hrtime.bigint()}`;
  const body: Record<string, unknown> = { id: 'chatcmpl-bench0001', object: 'chat.completion.chunk', created: 1_764_000_000, model: MODEL, service_tier: 'default', system_fingerprint: fp, choices };
  if (usage !== undefined) body.usage = usage;
  return `data: ${JSON.stringify(body)}\n\n`;
}

/** The writes of one stream, each made when it is due (so its timestamp is the write time). */
function streamEvents(includeUsage: boolean): Array<() => string> {
  const u = includeUsage ? { usage: null } : {};
  const ev: Array<() => string> = [() => chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }], u.usage)];
  for (let i = 0; i < CHUNKS; i++) ev.push(() => chunk([{ index: 0, delta: { content: ` word${i}` }, logprobs: null, finish_reason: null }], u.usage));
  ev.push(() => chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], u.usage));
  if (includeUsage) ev.push(() => chunk([], { prompt_tokens: 9, completion_tokens: CHUNKS, total_tokens: 9 + CHUNKS }));
  ev.push(() => 'data: [DONE]\n\n');
  return ev;
}

function stream(res: ServerResponse, includeUsage: boolean): void {
  const events = streamEvents(includeUsage);
  let i = 0;
  let timer: NodeJS.Timeout | undefined;
  res.on('close', () => clearTimeout(timer));
  res.writeHead(200, STREAM_HEADERS);
  const next = () => {
    const last = i === events.length - 1;
    const text = events[i++]!();
    if (last) res.end(text);
    else {
      res.write(text);
      timer = setTimeout(next, GAP_MS);
    }
  };
  next();
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
    res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' });
    res.end('{}');
    return;
  }
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => {
    let body: { stream?: boolean; stream_options?: { include_usage?: boolean } };
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"bad json","type":"invalid_request_error","param":null,"code":null}}');
      return;
    }
    if (body.stream) stream(res, body.stream_options?.include_usage === true);
    else {
      res.writeHead(200, COMPLETION_HEADERS);
      res.end(COMPLETION);
    }
  });
}

serveChild(createServer({ keepAliveTimeout: 65_000 }, handle));
