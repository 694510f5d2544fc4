import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/core/serde';
import { startLoopback } from './loopback.ts';
import { eventFrame } from './mock-bedrock.ts';

/**
 * An upstream on 127.0.0.1 that fails on demand, for routing and fault-injection tests. It speaks
 * every upstream API the gateway calls, chosen by the request path:
 * - `POST /v1/chat/completions`: OpenAI Chat Completions (JSON, or SSE `data:` chunks and `[DONE]`);
 * - `POST /v1/responses`: OpenAI Responses (JSON, or named SSE events to `response.completed`);
 * - `POST /v1/messages`: Anthropic Messages (JSON, or named SSE events to `message_stop`);
 * - `POST /model/{id}/converse` and `/converse-stream`: Bedrock Converse (JSON, or AWS event-stream
 *   frames, built with the Bedrock mock's frame encoder);
 * - `POST /model/{id}/invoke` and `/invoke-with-response-stream`: Bedrock InvokeModel with a Claude
 *   body (the Anthropic message JSON, or `chunk` frames carrying the Anthropic events).
 * Each request's behaviour comes from `fault` (a fixed mode or a function of the hit number);
 * healthy answers say `served by <name>` so a test can see who served. Use `baseUrl` for OpenAI
 * providers, `origin` for Anthropic (`baseUrl` without `/v1`) and as a Bedrock `endpoint`.
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
  | 'hang' // no headers at all until the gateway hangs up
  | 'silence' // headers (streamed or not), then nothing until the gateway hangs up
  | 'reset' // socket destroyed before any header
  | 'invalid-json' // a complete 200 body that is not JSON (non-streamed; a stream gets SSE with non-JSON data)
  | 'wrong-shape' // a complete 200 body that is JSON but not this API's answer
  | 'cut-mid-body' // a non-streamed 200 whose body stops half-way (content-length promised more)
  | 'garbage-sse' // a stream whose first bytes are not this API's events (HTML for SSE, junk bytes for event-stream)
  | 'cut-before-first-chunk' // stream headers, then the socket dies
  | 'cut-mid-stream' // the first events, then the socket dies
  | 'garbage-mid-stream' // the first events, then junk, then a clean end of the HTTP response
  | 'stall-mid-stream' // the first events, then silence until the gateway hangs up
  | 'no-terminal' // the events up to the end of the text, without the finish/stop events, then a clean end of the HTTP response
  | 'endless-first-event' // SSE APIs: a first event that never ends (its text goes on, 64 KiB at a time, up to ENDLESS_BYTES)
  | 'endless-event' // SSE APIs: the first events, then one that never ends (as above)
  | 'huge-json' // a non-streamed 200 in the API's JSON shape whose text is HUGE_TEXT_BYTES long (with its content-length)
  | 'endless-deltas'; // SSE APIs: the opening events, then text deltas of 16 KiB, each a whole event, without end (up to ENDLESS_BYTES)

/** How much an endless event sends before the upstream gives up by itself (past the gateway's 32 MiB bound). */
export const ENDLESS_BYTES = 48 * 1024 * 1024;
/** The length of a huge answer's text (past the gateway's 32 MiB bound on an answer it reads whole). */
export const HUGE_TEXT_BYTES = 40 * 1024 * 1024;

export type UpstreamApi = 'openai-chat' | 'openai-responses' | 'anthropic' | 'bedrock-converse' | 'bedrock-invoke';

export interface FaultUpstream {
  name: string;
  /** `http://127.0.0.1:port/v1` (OpenAI providers). */
  baseUrl: string;
  /** `http://127.0.0.1:port` (Anthropic `baseUrl`, Bedrock `endpoint`). */
  origin: string;
  hits: number;
  /** Requests whose connection the gateway closed before the answer ended. */
  abandoned: number;
  /** Endless events and huge answers the gateway hung up on before their end. */
  cutShort: number;
  /** The API of each request, in order. */
  apis: UpstreamApi[];
  fault: Fault | ((hit: number) => Fault);
  slowMs: number;
  close(): Promise<void>;
}

const TEXT_WORDS = (name: string) => ['served', ' by', ` ${name}`];

export async function startFaultUpstream(name: string, fault: FaultUpstream['fault'] = 'ok'): Promise<FaultUpstream> {
  const state: FaultUpstream = {
    name,
    baseUrl: '',
    origin: '',
    hits: 0,
    abandoned: 0,
    cutShort: 0,
    apis: [],
    fault,
    slowMs: 2_000,
    close: async () => lb.close(),
  };
  const lb = await startLoopback(handle, (_err, res) => res.destroy());

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const c of req) raw += c;
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const api = apiOf(path);
    const hit = ++state.hits;
    if (api) state.apis.push(api);
    const mode = typeof state.fault === 'function' ? state.fault(hit) : state.fault;
    let finished = false;
    const closed = new Promise<void>((r) => res.on('close', () => r()));
    res.on('close', () => {
      if (!finished) state.abandoned++;
    });
    const done = () => {
      finished = true;
    };
    let body: { stream?: boolean; model?: string } = {};
    try {
      body = raw ? JSON.parse(raw) : {};
    } catch {
      // a body we cannot read: answer as if it were empty
    }
    if (!api) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no route for ${path}` } }));
      return done();
    }
    const stream = api === 'bedrock-converse' || api === 'bedrock-invoke' ? /-stream$/.test(path) : body.stream === true;
    const model = api.startsWith('bedrock') ? decodeURIComponent(path.split('/')[2] ?? '') : (body.model ?? 'unknown');
    const waitForHangUp = () => Promise.race([closed, sleep(60_000, undefined, { ref: false })]);

    switch (mode) {
      case '400':
        sendError(res, api, 400, `${name}: bad request`);
        return done();
      case '500':
        sendError(res, api, 500, `${name}: internal error`);
        return done();
      case '503':
        sendError(res, api, 503, `${name}: overloaded`);
        return done();
      case '429':
        sendError(res, api, 429, `${name}: rate limited`, { 'retry-after': '0' });
        return done();
      case '429-long':
        sendError(res, api, 429, `${name}: rate limited`, { 'retry-after': '3600' });
        return done();
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        await waitForHangUp();
        return;
      case 'slow-headers':
        await sleep(state.slowMs);
        if (res.destroyed) return;
        break;
    }

    const words = TEXT_WORDS(name);
    if (!stream && mode === 'huge-json') {
      const [head, tail] = JSON.stringify(jsonAnswer(api, name, hit, model, '@@TEXT@@')).split('@@TEXT@@') as [string, string];
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(head) + HUGE_TEXT_BYTES + Buffer.byteLength(tail) });
      res.write(head);
      if (await pump(res, HUGE_TEXT_BYTES, waitForHangUp)) {
        state.cutShort++;
        return;
      }
      res.end(tail);
      return done();
    }
    if (!stream) {
      const answer = Buffer.from(JSON.stringify(jsonAnswer(api, name, hit, model, words.join(''))), 'utf8');
      if (mode === 'silence') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        await waitForHangUp();
        return;
      }
      if (mode === 'invalid-json' || mode === 'wrong-shape') {
        const text = mode === 'invalid-json' ? '{"id": "broken", "choices": [ {"oops": not json at all' : JSON.stringify({ status: 'ok', result: 'nothing of the kind' });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return done();
      }
      if (mode === 'cut-mid-body') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.byteLength });
        res.write(answer.subarray(0, Math.floor(answer.byteLength / 2)));
        await sleep(20);
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.byteLength });
      res.end(answer);
      return done();
    }

    const binary = api === 'bedrock-converse' || api === 'bedrock-invoke';
    res.writeHead(200, binary ? { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': `req-${name}-${hit}` } : { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    const write = (piece: string | Uint8Array) => {
      if (!res.destroyed) res.write(piece);
    };
    if (mode === 'silence') {
      await waitForHangUp();
      return;
    }
    if (mode === 'cut-before-first-chunk') {
      await sleep(5);
      req.socket.destroy();
      return;
    }
    const junk = binary ? junkFrame() : '<html><body>502 Bad Gateway</body></html>\n\n';
    if (mode === 'garbage-sse') {
      write(junk);
      await sleep(5);
      res.end();
      return done();
    }
    if (mode === 'invalid-json') {
      const broken = '{"type": not json';
      if (api === 'openai-chat') write(`data: ${broken}\n\n`);
      else if (api === 'bedrock-invoke') write(eventFrame('chunk', { bytes: Buffer.from(broken, 'utf8').toString('base64') }));
      else if (api === 'bedrock-converse') write(rawFrame('messageStart', broken));
      else write(`event: message_start\ndata: ${broken}\n\n`);
      res.end();
      return done();
    }
    if (mode === 'slow-first-chunk') await sleep(state.slowMs);
    if (res.destroyed) return;
    if (mode === 'endless-deltas' && !binary) {
      if (await endlessDeltas(api, res, waitForHangUp)) state.cutShort++;
      return;
    }
    if (mode === 'endless-first-event' && !binary) {
      if (await endlessEvent(api, res, waitForHangUp)) state.cutShort++;
      return;
    }
    const events = streamEvents(api, name, hit, model, words);
    // The trailing pieces that finish the answer (finish reason, stop, completion) in each API.
    const finishing = { 'openai-chat': 3, 'openai-responses': 1, anthropic: 2, 'bedrock-invoke': 2, 'bedrock-converse': 2 }[api];
    for (let i = 0; i < events.length; i++) {
      if (i === 3 && mode === 'endless-event' && !binary) {
        if (await endlessEvent(api, res, waitForHangUp)) state.cutShort++;
        return;
      }
      if (i === 3 && mode === 'stall-mid-stream') {
        await waitForHangUp();
        return;
      }
      if (i === 3 && (mode === 'cut-mid-stream' || mode === 'garbage-mid-stream')) {
        await sleep(20); // let the first pieces reach the client before the answer breaks
        if (mode === 'cut-mid-stream') {
          req.socket.destroy();
          return;
        }
        write(junk);
        res.end();
        return done();
      }
      if (mode === 'no-terminal' && i >= events.length - finishing) break;
      write(events[i]!);
    }
    res.end();
    done();
  }

  state.origin = lb.url;
  state.baseUrl = `${state.origin}/v1`;
  return state;
}

/**
 * The start of a text event of the API, then its text going on (never its end), until the client
 * hangs up or ENDLESS_BYTES went out; true when the client hung up first.
 */
async function endlessEvent(api: UpstreamApi, res: ServerResponse, waitForHangUp: () => Promise<unknown>): Promise<boolean> {
  const start =
    api === 'openai-chat'
      ? 'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"'
      : api === 'openai-responses'
        ? 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"'
        : 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"';
  if (!res.destroyed) res.write(start);
  if (await pump(res, ENDLESS_BYTES, waitForHangUp)) return true;
  res.end();
  return false;
}

/**
 * The API's opening events, then one text delta event after another (16 KiB of text each, every
 * event whole), until the client hangs up or ENDLESS_BYTES went out; true when the client hung up first.
 */
async function endlessDeltas(api: UpstreamApi, res: ServerResponse, waitForHangUp: () => Promise<unknown>): Promise<boolean> {
  const text = 'x'.repeat(16 * 1024);
  const [opening, delta] =
    api === 'openai-chat'
      ? [
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: CREATED, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] })}\n\n`,
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: CREATED, model: 'm', choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }] })}\n\n`,
        ]
      : api === 'openai-responses'
        ? [
            `event: response.created\ndata: ${JSON.stringify({ type: 'response.created', sequence_number: 0, response: responsesObject('e', 0, 'm', undefined) })}\n\n`,
            `event: response.output_text.delta\ndata: ${JSON.stringify({ type: 'response.output_text.delta', item_id: 'm', output_index: 0, content_index: 0, delta: text })}\n\n`,
          ]
        : [
            `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { ...anthropicMessage('e', 0, 'm', ''), content: [], stop_reason: null } })}\n\nevent: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } })}\n\n`,
            `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })}\n\n`,
          ];
  const piece = Buffer.from(delta.repeat(4));
  if (!res.destroyed) res.write(opening);
  for (let sent = 0; sent < ENDLESS_BYTES && !res.destroyed; sent += piece.byteLength) {
    if (!res.write(piece)) await Promise.race([new Promise((r) => res.once('drain', r)), waitForHangUp()]);
  }
  if (res.destroyed) return true;
  res.end();
  return false;
}

/** `bytes` of 'x' written 64 KiB at a time at the client's pace; true when the client hung up first. */
async function pump(res: ServerResponse, bytes: number, waitForHangUp: () => Promise<unknown>): Promise<boolean> {
  const piece = Buffer.alloc(64 * 1024, 'x');
  for (let sent = 0; sent < bytes && !res.destroyed; ) {
    const n = Math.min(piece.byteLength, bytes - sent);
    sent += n;
    if (!res.write(n === piece.byteLength ? piece : piece.subarray(0, n))) await Promise.race([new Promise((r) => res.once('drain', r)), waitForHangUp()]);
  }
  return res.destroyed;
}

function apiOf(path: string): UpstreamApi | undefined {
  if (path.endsWith('/chat/completions')) return 'openai-chat';
  if (path.endsWith('/responses')) return 'openai-responses';
  if (path.endsWith('/v1/messages')) return 'anthropic';
  if (/^\/model\/[^/]+\/converse(-stream)?$/.test(path)) return 'bedrock-converse';
  if (/^\/model\/[^/]+\/invoke(-with-response-stream)?$/.test(path)) return 'bedrock-invoke';
  return undefined;
}

/** An upstream error in the API's own shape. */
function sendError(res: ServerResponse, api: UpstreamApi, status: number, message: string, headers: Record<string, string> = {}): void {
  let body: unknown;
  const h: Record<string, string> = { 'content-type': 'application/json', ...headers };
  if (api === 'openai-chat' || api === 'openai-responses') {
    body = { error: { message, type: status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error', param: null, code: null } };
  } else if (api === 'anthropic') {
    body = { type: 'error', error: { type: status === 429 ? 'rate_limit_error' : status === 503 ? 'overloaded_error' : status >= 500 ? 'api_error' : 'invalid_request_error', message } };
  } else {
    body = { message };
    h['x-amzn-errortype'] = status === 429 ? 'ThrottlingException' : status === 503 ? 'ServiceUnavailableException' : status >= 500 ? 'InternalServerException' : 'ValidationException';
  }
  res.writeHead(status, h);
  res.end(JSON.stringify(body));
}

const USAGE_OPENAI = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
const CREATED = 1_764_000_000;

function anthropicMessage(name: string, hit: number, model: string, text: string) {
  return { id: `msg_${name}_${hit}`, type: 'message', role: 'assistant', model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 5, output_tokens: 3 } };
}

function responsesObject(name: string, hit: number, model: string, text: string | undefined) {
  const output = text === undefined ? [] : [{ id: `msg_${name}_${hit}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: [], text }] }];
  return {
    id: `resp_${name}_${hit}`,
    object: 'response',
    created_at: CREATED,
    status: text === undefined ? 'in_progress' : 'completed',
    error: null,
    incomplete_details: null,
    model,
    output,
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    usage: text === undefined ? null : { input_tokens: 5, output_tokens: 3, total_tokens: 8, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
  };
}

function jsonAnswer(api: UpstreamApi, name: string, hit: number, model: string, text: string): unknown {
  switch (api) {
    case 'openai-chat':
      return { id: `chatcmpl-${name}-${hit}`, object: 'chat.completion', created: CREATED, model, choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: USAGE_OPENAI };
    case 'openai-responses':
      return responsesObject(name, hit, model, text);
    case 'anthropic':
    case 'bedrock-invoke':
      return anthropicMessage(name, hit, model, text);
    case 'bedrock-converse':
      return { output: { message: { role: 'assistant', content: [{ text }] } }, stopReason: 'end_turn', usage: { inputTokens: 5, outputTokens: 3, totalTokens: 8 }, metrics: { latencyMs: 10 } };
  }
}

/** A healthy streamed answer as the pieces the server writes (SSE event texts, or event-stream frames). */
function streamEvents(api: UpstreamApi, name: string, hit: number, model: string, words: string[]): (string | Uint8Array)[] {
  const text = words.join('');
  switch (api) {
    case 'openai-chat': {
      const chunk = (delta: object, finish: string | null = null) =>
        `data: ${JSON.stringify({ id: `chatcmpl-${name}-${hit}`, object: 'chat.completion.chunk', created: CREATED, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
      return [
        chunk({ role: 'assistant', content: '' }),
        ...words.map((w) => chunk({ content: w })),
        chunk({}, 'stop'),
        `data: ${JSON.stringify({ id: `chatcmpl-${name}-${hit}`, object: 'chat.completion.chunk', created: CREATED, model, choices: [], usage: USAGE_OPENAI })}\n\n`,
        'data: [DONE]\n\n',
      ];
    }
    case 'openai-responses': {
      let seq = 0;
      const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
      const item = { id: `msg_${name}_${hit}`, type: 'message', status: 'in_progress', role: 'assistant', content: [] };
      const part = { type: 'output_text', annotations: [], logprobs: [], text };
      return [
        ev('response.created', { response: responsesObject(name, hit, model, undefined) }),
        ev('response.output_item.added', { output_index: 0, item }),
        ev('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { ...part, text: '' } }),
        ...words.map((w) => ev('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta: w, logprobs: [] })),
        ev('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text, logprobs: [] }),
        ev('response.content_part.done', { item_id: item.id, output_index: 0, content_index: 0, part }),
        ev('response.output_item.done', { output_index: 0, item: { ...item, status: 'completed', content: [part] } }),
        ev('response.completed', { response: responsesObject(name, hit, model, text) }),
      ];
    }
    case 'anthropic':
    case 'bedrock-invoke': {
      const events: Record<string, unknown>[] = [
        { type: 'message_start', message: { ...anthropicMessage(name, hit, model, ''), content: [], stop_reason: null, usage: { input_tokens: 5, output_tokens: 1 } } },
        { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
        ...words.map((w) => ({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: w } })),
        { type: 'content_block_stop', index: 0 },
        { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 3 } },
        { type: 'message_stop' },
      ];
      if (api === 'anthropic') return events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      return events.map((e) => eventFrame('chunk', { bytes: Buffer.from(JSON.stringify(e), 'utf8').toString('base64') }));
    }
    case 'bedrock-converse':
      return [
        eventFrame('messageStart', { role: 'assistant' }),
        ...words.map((w) => eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: w } })),
        eventFrame('contentBlockStop', { contentBlockIndex: 0 }),
        eventFrame('messageStop', { stopReason: 'end_turn' }),
        eventFrame('metadata', { usage: { inputTokens: 5, outputTokens: 3, totalTokens: 8 }, metrics: { latencyMs: 10 } }),
      ];
  }
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** An event-stream `event` frame with any body (e.g. one that is not JSON). */
function rawFrame(eventType: string, body: string): Uint8Array {
  return codec.encode({
    headers: { ':event-type': { type: 'string', value: eventType }, ':content-type': { type: 'string', value: 'application/json' }, ':message-type': { type: 'string', value: 'event' } },
    body: fromUtf8(body),
  });
}

/** Bytes that are no event-stream frame (a prelude whose checksum is wrong). */
function junkFrame(): Uint8Array {
  const b = Buffer.alloc(32, 0x41);
  b.writeUInt32BE(32, 0);
  b.writeUInt32BE(0, 4);
  return b;
}

