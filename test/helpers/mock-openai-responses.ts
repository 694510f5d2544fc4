import { randomBytes } from 'node:crypto';
import { type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { Gate } from './mock-openai.ts';
import { startLoopback } from './loopback.ts';

/**
 * A stand-in for api.openai.com's `POST /v1/responses` on 127.0.0.1, speaking the Responses wire
 * format: a Response object as JSON, or the typed SSE events (`event: <type>` + `data: {"type",
 * "sequence_number", ...}`) from `response.created` to `response.completed`, with no `[DONE]`.
 * Tests queue scripts for the next calls; with none queued it echoes the last user text.
 */

export interface RecordedResponsesRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: any;
  /** The exact bytes the mock sent back (SSE text or JSON). */
  sent: string;
}

export type ResponsesScript =
  | {
      type: 'text';
      pieces: string[];
      /** Cut the socket after this many text deltas (after the gate opens, when one is given). */
      cutAfter?: number;
      gate?: Gate;
      /** End with response.incomplete (max_output_tokens). */
      incomplete?: boolean;
    }
  | { type: 'function_call'; callId: string; name: string; argumentPieces: string[] }
  | { type: 'error'; status: number; body: unknown };

export interface MockResponsesUpstream {
  readonly baseUrl: string;
  readonly requests: RecordedResponsesRequest[];
  script(...s: ResponsesScript[]): void;
  reset(): void;
  close(): Promise<void>;
}

const USAGE = { input_tokens: 12, input_tokens_details: { cached_tokens: 4 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 };

function lastUserText(body: any): string {
  if (typeof body?.input === 'string') return body.input;
  const items: any[] = Array.isArray(body?.input) ? body.input : [];
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    if (it?.role !== 'user') continue;
    if (typeof it.content === 'string') return it.content;
    return (it.content ?? []).map((p: any) => p?.text ?? '').join('');
  }
  return 'hello';
}

export async function startMockResponsesUpstream(): Promise<MockResponsesUpstream> {
  const requests: RecordedResponsesRequest[] = [];
  let queue: ResponsesScript[] = [];

  const lb = await startLoopback(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const rec: RecordedResponsesRequest = { path: new URL(req.url ?? '/', 'http://x').pathname, headers: req.headers, body: text ? JSON.parse(text) : undefined, sent: '' };
    requests.push(rec);
    if (req.method !== 'POST' || rec.path !== '/v1/responses') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `Invalid URL (${req.method} ${rec.path})`, type: 'invalid_request_error', param: null, code: null } }));
      return;
    }
    const script = queue.shift() ?? { type: 'text', pieces: lastUserText(rec.body).match(/\S+\s*/g) ?? ['(empty)'] };
    try {
      await answer(rec, res, script);
    } catch {
      res.destroy();
    }
  });

  async function answer(rec: RecordedResponsesRequest, res: ServerResponse, script: ResponsesScript): Promise<void> {
    if (script.type === 'error') {
      const payload = JSON.stringify(script.body);
      rec.sent = payload;
      res.writeHead(script.status, { 'content-type': 'application/json' });
      res.end(payload);
      return;
    }
    const body = rec.body;
    const id = `resp_${randomBytes(24).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = {
      id,
      object: 'response',
      created_at: created,
      status: 'in_progress',
      background: false,
      error: null,
      incomplete_details: null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: body.model,
      output: [] as any[],
      parallel_tool_calls: true,
      previous_response_id: body.previous_response_id ?? null,
      reasoning: { effort: null, summary: null },
      store: true,
      temperature: 1.0,
      text: { format: { type: 'text' } },
      tool_choice: 'auto',
      tools: body.tools ?? [],
      top_p: 1.0,
      truncation: 'disabled',
      usage: null as any,
      user: null,
      metadata: {},
    };
    let item: any;
    if (script.type === 'text') {
      item = { id: `msg_${randomBytes(24).toString('hex')}`, type: 'message', status: 'completed', content: [{ type: 'output_text', annotations: [], logprobs: [], text: script.pieces.join('') }], role: 'assistant' };
    } else {
      item = { id: `fc_${randomBytes(24).toString('hex')}`, type: 'function_call', status: 'completed', arguments: script.argumentPieces.join(''), call_id: script.callId, name: script.name };
    }
    const incomplete = script.type === 'text' && script.incomplete;
    const final = { ...base, status: incomplete ? 'incomplete' : 'completed', incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null, output: [item], usage: USAGE };

    if (body.stream !== true) {
      const payload = JSON.stringify(final);
      rec.sent = payload;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(payload);
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    res.flushHeaders();
    let seq = 0;
    const send = (type: string, data: Record<string, unknown>) => {
      const text = `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
      rec.sent += text;
      res.write(text);
    };
    send('response.created', { response: base });
    send('response.in_progress', { response: base });
    if (script.type === 'text') {
      const open = { ...item, status: 'in_progress', content: [] };
      send('response.output_item.added', { output_index: 0, item: open });
      send('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { type: 'output_text', annotations: [], logprobs: [], text: '' } });
      for (let i = 0; i < script.pieces.length; i++) {
        if (script.cutAfter === i) {
          if (script.gate) await script.gate.wait();
          res.socket?.destroy();
          return;
        }
        send('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta: script.pieces[i], logprobs: [] });
      }
      const full = script.pieces.join('');
      send('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text: full, logprobs: [] });
      send('response.content_part.done', { item_id: item.id, output_index: 0, content_index: 0, part: item.content[0] });
    } else {
      send('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', arguments: '' } });
      for (const delta of script.argumentPieces) send('response.function_call_arguments.delta', { item_id: item.id, output_index: 0, delta });
      send('response.function_call_arguments.done', { item_id: item.id, output_index: 0, name: item.name, arguments: item.arguments });
    }
    send('response.output_item.done', { output_index: 0, item });
    send(incomplete ? 'response.incomplete' : 'response.completed', { response: final });
    res.end();
  }

  const { port } = lb;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    script: (...s) => void queue.push(...s),
    reset() {
      queue = [];
      requests.length = 0;
    },
    async close() {
      await lb.close();
    },
  };
}
