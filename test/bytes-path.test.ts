import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { BytesResponse, ReaderResponse, ShellRequest, bodyReader, responseBytes } from '../shared/http/bytes.ts';
import { readBodyBytes } from '../shared/http/body.ts';
import { CLIENT_KEY, UPSTREAM_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockOpenAI, type MockOpenAI, type Script } from './helpers/mock-openai.ts';

/**
 * Whole bodies travel as bytes (issue #17): a small request body reaches the core without a body
 * stream, a JSON answer (relayed or the gateway's own) leaves in one write with its length, and a
 * stream is read by the shell straight from the frame. What must not change: the bytes, large
 * bodies that stream, a client leaving mid-answer letting go of the upstream, HEAD without a body,
 * and a real web Request given to `handle()`.
 */

let oai: MockOpenAI;
let srv: StartedGateway;
let inProc: StartedGateway;

const providers = { openai: { type: 'openai', baseUrl: '', apiKeyEnv: 'TEST_BYTES_OPENAI_KEY' } };
const models = { gpt: { provider: 'openai', model: 'gpt-4.1-2025-04-14' } };

before(async () => {
  oai = await startMockOpenAI();
  providers.openai.baseUrl = oai.baseUrl;
  const setup = { providers, models, config: { routing: { retry: { retries: 0 }, fallbackOn: [] } }, env: { TEST_BYTES_OPENAI_KEY: UPSTREAM_KEY }, label: 'bytes-path test configuration' };
  srv = await startGateway(setup);
  inProc = await startGateway({ ...setup, inProcess: true });
});

after(async () => {
  await srv?.close();
  await inProc?.close();
  await oai?.close();
});

beforeEach(() => oai.reset());

/** A chat completion with unusual formatting (spacing, escapes, a vendor field) that any re-encoding would change. */
const ODD_JSON =
  '{ "id":"chatcmpl-bytes1" ,"object":"chat.completion","created":1764000000,"model":"gpt-4.1-2025-04-14",\n' +
  '"choices":[{"index":0,"message":{"role":"assistant","content":"caf\\u00e9 \\ud83c\\udf0d","refusal":null},"logprobs":null,"finish_reason":"stop"}],\n' +
  '"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8},"x_vendor":{"n":1.50}}';

function chunk(delta: string, finish = 'null'): string {
  return `data: {"id":"chatcmpl-bytes2","object":"chat.completion.chunk","created":1764000000,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":${delta},"finish_reason":${finish}}]}\n\n`;
}

/** An upstream answer written in uneven pieces (splitting characters and events): the gateway must still hand on exactly these bytes. */
function inPieces(type: string, text: string, size: number): Script {
  return {
    type: 'handler',
    handle(_req, res) {
      res.writeHead(200, { 'content-type': type });
      const bytes = Buffer.from(text);
      for (let i = 0; i < bytes.length; i += size) res.write(bytes.subarray(i, i + size));
      res.end();
    },
  };
}

/** GET/HEAD/POST over one keep-alive socket, raw: status, headers and every body byte the server sent. */
function raw(agent: Agent, method: string, path: string, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const u = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, agent, headers: { authorization: `Bearer ${CLIENT_KEY}`, ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('answers whose bytes are whole', () => {
  it('a relayed JSON answer reaches the official client byte for byte, in one write with its exact length', async () => {
    oai.script(inPieces('application/json', ODD_JSON, 29));
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
    const { data, response } = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'café' }] }).withResponse();
    assert.equal(data.choices[0]!.message.content, 'café 🌍');
    assert.equal(response.headers.get('content-length'), String(Buffer.byteLength(ODD_JSON)));
    const rec = await srv.recordOf(response);
    assert.equal(rec.status, 200);
    assert.equal(rec.inputTokens, 5);
    assert.equal(rec.outputTokens, 3);

    oai.script({ type: 'handler', handle: (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(ODD_JSON) });
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(await res.text(), ODD_JSON);
  });

  it("the gateway's own JSON and error answers carry their length and parse, in the caller's format", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const list = await raw(agent, 'GET', '/v1/models');
      assert.equal(list.status, 200);
      assert.equal(Number(list.headers['content-length']), list.body.byteLength);
      assert.ok((JSON.parse(list.body.toString('utf8')) as { data: { id: string }[] }).data.some((m) => m.id === 'gpt'));

      const missing = await raw(agent, 'POST', '/v1/chat/completions', JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }));
      assert.equal(missing.status, 404);
      assert.equal(Number(missing.headers['content-length']), missing.body.byteLength);
      assert.equal((JSON.parse(missing.body.toString('utf8')) as { error: { type: string } }).error.type, 'invalid_request_error');
    } finally {
      agent.destroy();
    }
  });

  it('HEAD gets the headers and no body, and the connection carries the next request cleanly', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const head = await raw(agent, 'HEAD', '/health');
      assert.equal(head.status, 200);
      assert.equal(head.body.byteLength, 0);
      const get = await raw(agent, 'GET', '/health');
      assert.equal(get.status, 200);
      assert.equal((JSON.parse(get.body.toString('utf8')) as { status: string }).status, 'ok');
      assert.equal(head.headers['content-length'], get.headers['content-length']);
    } finally {
      agent.destroy();
    }
  });
});

describe('request bodies', () => {
  it('a large body of unknown length still streams in and goes up whole', async () => {
    const content = 'x'.repeat(150 * 1024);
    const json = JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content }] });
    const bytes = Buffer.from(json);
    // A stream body: sent chunked (no content-length), so the shell streams it to the core.
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        for (let i = 0; i < bytes.length; i += 16 * 1024) ctrl.enqueue(bytes.subarray(i, i + 16 * 1024));
        ctrl.close();
      },
    });
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` }, body, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 200);
    await res.json();
    assert.equal((oai.lastChatRequest().body as { messages: { content: string }[] }).messages[0]!.content, content);
  });

  it('a real web Request with a streamed body through handle() works as before', async () => {
    const json = JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'from a web Request' }] });
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        ctrl.enqueue(new TextEncoder().encode(json));
        ctrl.close();
      },
    });
    const res = await inProc.fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` }, body, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 200);
    // The core's answer implements the Response interface (it is not undici's class).
    assert.equal(Object.prototype.toString.call(res), '[object Response]');
    assert.equal(res.ok, true);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const answer = (await res.json()) as { choices: unknown[] };
    assert.equal(answer.choices.length, 1);
    assert.equal((oai.lastChatRequest().body as { messages: { content: string }[] }).messages[0]!.content, 'from a web Request');
    assert.equal((await inProc.recordOf(res)).status, 200);
  });
});

describe('streams', () => {
  it('a client leaving mid-stream lets go of the upstream and is logged as client_closed', async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    oai.script({
      type: 'handler',
      handle(_req, res) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunk('{"role":"assistant","content":"first"}'));
        // Then nothing more until the gateway lets go of this connection.
        res.on('close', () => upstreamClosed());
      },
    });
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` }, body: JSON.stringify({ model: 'gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }), signal: ac.signal });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(new TextDecoder().decode(first.value).includes('"first"'));
    ac.abort();
    await closed;
    const rec = await srv.recordOf(res);
    assert.equal(rec.outcome, 'client_closed');
  });

  it('an SSE answer passes through whole through the frame the shell reads directly', async () => {
    const sse = chunk('{"role":"assistant","content":"caf\\u00e9"}') + chunk('{}', '"stop"') + 'data: [DONE]\n\n';
    oai.script(inPieces('text/event-stream', sse, 41));
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` }, body: JSON.stringify({ model: 'gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(await res.text(), sse);
    assert.equal((await srv.recordOf(res)).outcome, 'ok');
  });
});

describe('the bytes types are standard Requests and Responses', () => {
  it('BytesResponse: bytes until someone reads, then a body like any other', async () => {
    const r = new BytesResponse('{"a":1}', { status: 201, headers: { 'content-type': 'application/json' } });
    // It implements the Response interface (status, ok, headers; the body through a web reader below).
    assert.equal(Object.prototype.toString.call(r), '[object Response]');
    assert.equal(r.status, 201);
    assert.equal(r.ok, true);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(responseBytes(r)?.byteLength, 7);
    assert.deepEqual(await r.clone().json(), { a: 1 });
    // Asking for .body does not use the body up; reading it does.
    assert.ok(r.body);
    assert.equal(r.bodyUsed, false);
    assert.equal(await new Response(r.body).text(), '{"a":1}');
    assert.equal(r.bodyUsed, true);
    assert.equal(responseBytes(r), undefined);
    await assert.rejects(r.text(), TypeError);
  });

  it('ShellRequest: the core reads the bytes once; .body, clone() and the signal work as on any Request', async () => {
    const make = () => new ShellRequest('http://gateway.local/x', { method: 'POST', headers: new Headers({ 'content-type': 'application/json' }), bytes: Buffer.from('{"b":2}') });
    const q = make();
    assert.deepEqual(await q.clone().json(), { b: 2 });
    assert.equal((await readBodyBytes(q, 100, () => new Error('too large'))).toString('utf8'), '{"b":2}');
    assert.equal(q.bodyUsed, true);
    await assert.rejects(q.text(), TypeError);
    await assert.rejects(readBodyBytes(make(), 3, () => new RangeError('too large')), RangeError);
    // Re-aimed as a new Request (the /iam prefix does this): the bytes go along as a stream.
    const moved = new Request('http://gateway.local/y', { method: 'POST', body: make().body, duplex: 'half' } as RequestInit);
    assert.equal(await moved.text(), '{"b":2}');
    const left = make();
    left.leaving.leave();
    assert.equal(left.signal.aborted, true);
  });

  it('ReaderResponse: read directly once, or through .body', async () => {
    const source = (parts: string[]) => ({
      read: async () => (parts.length ? { done: false as const, value: new TextEncoder().encode(parts.shift()!) } : { done: true as const, value: undefined }),
      cancel: async () => {},
    });
    const direct = new ReaderResponse(source(['a', 'b']));
    const reader = bodyReader(direct);
    assert.equal(new TextDecoder().decode((await reader.read()).value), 'a');
    assert.equal(direct.bodyUsed, true);
    assert.equal(await new ReaderResponse(source(['x', 'y'])).text(), 'xy');
    assert.equal(await new Response(new ReaderResponse(source(['p', 'q'])).body).text(), 'pq');
  });
});

describe('headers as node parses them', () => {
  it('request headers become the same Headers undici builds from the same raw pairs', async () => {
    const { rawToHeaders } = await import('../shared/http/bytes.ts');
    const { createServer } = await import('node:http');
    const { connect } = await import('node:net');
    const seen: string[][] = [];
    const server = createServer((req, res) => {
      seen.push(req.rawHeaders);
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as import('node:net').AddressInfo;
    try {
      // Mixed case, repeats, set-cookie twice, padding around values, latin-1 bytes.
      const head = ['GET / HTTP/1.1', 'Host: gw.test', 'X-Dup: one', 'x-dup:two  ', 'X-Padded: \t spaced \t', 'Set-Cookie: a=1', 'set-cookie: b=2', 'X-Latin: caf\xe9', 'Accept: text/plain', 'Connection: close', '', ''].join('\r\n');
      await new Promise<void>((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => s.end(Buffer.from(head, 'latin1')));
        s.on('data', () => {});
        s.on('close', () => resolve());
        s.on('error', reject);
      });
    } finally {
      server.close();
    }
    const raw = seen[0]!;
    const ours = rawToHeaders(raw);
    const undici = new Headers();
    for (let i = 0; i < raw.length; i += 2) undici.append(raw[i]!, raw[i + 1]!);
    assert.deepEqual([...ours], [...undici]);
    assert.deepEqual(ours.getSetCookie(), undici.getSetCookie());
    assert.equal(ours.get('x-dup'), 'one, two');
    assert.equal(ours.get('X-Padded'), 'spaced');
  });

  for (const encoding of ['gzip', 'br', 'deflate'] as const) {
    it(`an upstream answer sent with Content-Encoding: ${encoding} reaches the client decoded`, async () => {
      const zlib = await import('node:zlib');
      const { createServer } = await import('node:http');
      const answer = JSON.stringify({ id: 'chatcmpl-z', object: 'chat.completion', created: 1, model: 'gpt-4.1-2025-04-14', choices: [{ index: 0, message: { role: 'assistant', content: `compressed with ${encoding}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 } });
      const packed = encoding === 'gzip' ? zlib.gzipSync(answer) : encoding === 'br' ? zlib.brotliCompressSync(answer) : zlib.deflateSync(answer);
      const upstream = createServer((req, res) => {
        req.resume();
        // The header's name in an upstream's own case: looked up in the raw pairs without regard to it.
        req.on('end', () => res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': encoding, 'Content-Length': packed.byteLength }).end(packed));
      });
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
      const { port } = upstream.address() as import('node:net').AddressInfo;
      const gw = await startGateway({ providers: { z: { type: 'openai-compatible', baseUrl: `http://127.0.0.1:${port}/v1` } }, models: { zipped: { provider: 'z', model: 'gpt-4.1-2025-04-14' } }, config: { routing: { retry: { retries: 0 }, fallbackOn: [] } }, label: 'compressed answer test configuration' });
      try {
        const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });
        const { data, response } = await client.chat.completions.create({ model: 'zipped', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
        assert.equal(data.choices[0]!.message.content, `compressed with ${encoding}`);
        // The client gets plain JSON: no content-encoding the bytes no longer have.
        assert.equal(response.headers.get('content-encoding'), null);
        const rec = await gw.recordOf(response);
        assert.equal(rec.status, 200);
        assert.equal(rec.outputTokens, 4);
      } finally {
        await gw.close();
        upstream.close();
      }
    });
  }
});

describe('a checked answer keeps its parse on the response', () => {
  it('the parse rides with the response until its body is replaced, and no longer', async () => {
    const { keepParsedJson, parsedJsonOf } = await import('../shared/http/bytes.ts');
    const res = new ReaderResponse(new ReadableStream<Uint8Array>({ start: (c) => c.close() }), { status: 200 });
    assert.equal(parsedJsonOf(res), undefined);
    const parse = { id: 'chatcmpl-1', choices: [] };
    keepParsedJson(res, parse);
    assert.equal(parsedJsonOf(res), parse);
    res.rebody(Buffer.from('{"id":"other","choices":[]}'));
    assert.equal(parsedJsonOf(res), undefined);
    // Not a gateway response: nothing kept, nothing found.
    const plain = new Response('{}');
    keepParsedJson(plain, parse);
    assert.equal(parsedJsonOf(plain), undefined);
  });
});
