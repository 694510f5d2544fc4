import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { BytesResponse, ReaderResponse, ShellRequest, bodyReader, clientSignalOf, hasBody, headerOf, headerRecord, rebodied, responseBytes } from '../shared/http/bytes.ts';
import { ClientLeave, sleepUnlessLeft } from '../shared/http/client-signal.ts';
import { CLIENT_KEY, UPSTREAM_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * The next cuts on the hot path (issue #17): a body is checked without making a web stream of it,
 * an upstream answer goes on to the client as the same object (new body, new headers), and the
 * client's leaving reaches the attempt runner without an AbortController per request. What must
 * not change: the bytes, the headers, the record, and a client that leaves still cuts the call.
 */

const source = (parts: string[]) => ({
  read: async () => (parts.length ? { done: false as const, value: new TextEncoder().encode(parts.shift()!) } : { done: true as const, value: undefined }),
  cancel: async () => {},
});

/** Counts web streams made while `fn` runs (the classes in bytes.ts make theirs through the global). */
async function streamsMadeBy(fn: () => Promise<void>): Promise<number> {
  const Original = globalThis.ReadableStream;
  let made = 0;
  globalThis.ReadableStream = class extends Original<any> {
    constructor(...args: ConstructorParameters<typeof ReadableStream>) {
      super(...args);
      made++;
    }
  } as typeof ReadableStream;
  try {
    await fn();
  } finally {
    globalThis.ReadableStream = Original;
  }
  return made;
}

describe('bodies checked and passed on without a second object', () => {
  it('hasBody tells a body without making its stream; a bodiless Response has none', async () => {
    const made = await streamsMadeBy(async () => {
      assert.equal(hasBody(new ReaderResponse(source(['a']))), true);
      assert.equal(hasBody(new BytesResponse('{}')), true);
    });
    assert.equal(made, 0);
    assert.equal(hasBody(new Response(null, { status: 204 })), false);
    assert.equal(hasBody(new Response('x')), true);
  });

  it('rebodied: a ReaderResponse goes on as itself with the new body and headers; anything else as a new Response', async () => {
    const up = new ReaderResponse(source(['{"a"', ':1}']), { status: 201, headers: { 'content-type': 'application/json', 'x-upstream': '1' } });
    const reader = bodyReader(up);
    assert.equal(new TextDecoder().decode((await reader.read()).value), '{"a"');
    const whole = Buffer.from('{"a":1}');
    const out = rebodied(up, whole, { 'content-type': 'application/json', 'x-request-id': 'r1' });
    assert.equal(out, up);
    assert.equal(out.status, 201);
    assert.equal(out.bodyUsed, false);
    assert.equal(responseBytes(out), whole);
    assert.deepEqual(headerRecord(out), { 'content-type': 'application/json', 'x-request-id': 'r1' });
    assert.equal(out.headers.get('x-upstream'), null);
    assert.equal(out.headers.get('x-request-id'), 'r1');
    assert.deepEqual(await out.json(), { a: 1 });
    assert.equal(out.bodyUsed, true);
    await assert.rejects(out.text(), TypeError);

    // A stream source: read as before, through the reader or .body.
    const streamed = rebodied(new ReaderResponse(source([])), source(['x', 'y']));
    assert.equal(responseBytes(streamed), undefined);
    assert.equal(await new Response(streamed.body).text(), 'xy');

    const plain = rebodied(new Response('old', { status: 202, headers: { 'x-a': 'b' } }), Buffer.from('new'));
    assert.ok(plain instanceof BytesResponse);
    assert.equal(plain.status, 202);
    assert.equal(plain.headers.get('x-a'), 'b');
    assert.equal(await plain.text(), 'new');
  });
});

describe("an upstream answer's headers as node:http gave them", () => {
  it('are read one by one without a Headers object, and made into Headers (as fetch would) when asked', () => {
    const raw = ['Content-Type', 'application/json', 'X-Multi', 'a', 'x-multi', 'b'];
    const res = new ReaderResponse(source([]), { status: 200 }, raw);
    assert.equal(headerOf(res, 'content-type'), 'application/json');
    assert.equal(headerOf(res, 'x-multi'), 'a, b');
    assert.equal(headerOf(res, 'absent'), null);
    assert.equal(res.headers.get('x-multi'), 'a, b');
    assert.deepEqual(headerRecord(res), { 'content-type': 'application/json', 'x-multi': 'a, b' });
    assert.equal(headerOf(new Response('x', { headers: { 'X-A': '1' } }), 'x-a'), '1');
  });
});

describe("the client's leaving without an AbortController", () => {
  it('ClientLeave tells each listener once, forgets removed ones, and makes a signal only when asked (aborted if late)', async () => {
    const leave = new ClientLeave();
    const told: string[] = [];
    const a = { handleEvent: () => told.push('a') };
    const b = { handleEvent: () => told.push('b') };
    leave.addEventListener('abort', a, { once: true });
    leave.addEventListener('abort', b, { once: true });
    leave.removeEventListener('abort', b);
    leave.leave();
    leave.leave();
    assert.deepEqual(told, ['a']);
    assert.equal(leave.aborted, true);
    assert.equal((leave.reason as DOMException).name, 'AbortError');
    assert.equal(leave.signal.aborted, true);
    await assert.rejects(sleepUnlessLeft(10_000, leave), { name: 'AbortError' });

    const early = new ClientLeave();
    const signal = early.signal;
    const waiting = sleepUnlessLeft(10_000, early);
    early.leave();
    assert.equal(signal.aborted, true);
    await assert.rejects(waiting, { name: 'AbortError' });
    await sleepUnlessLeft(1, new ClientLeave());
  });

  it("a shell's request gives the core its ClientLeave; a web Request its own signal", () => {
    const shell = new ShellRequest('http://gateway.local/x', { method: 'GET', headers: new Headers() });
    assert.equal(clientSignalOf(shell), shell.leaving);
    shell.leaving.leave();
    assert.equal(clientSignalOf(shell).aborted, true);
    assert.equal(shell.signal.aborted, true);
    const web = new Request('http://gateway.local/x');
    assert.equal(clientSignalOf(web), web.signal);
  });

  it("a shell's request keeps the shell's URL and headers, streamed or whole, through clone() and blob()", async () => {
    const headers = () => new Headers({ 'content-type': 'application/json', 'x-a': '1' });
    const whole = new ShellRequest('http://gateway.local/v1/chat/completions?beta=true', { method: 'POST', headers: headers(), bytes: Buffer.from('{"w":1}') });
    assert.equal(whole.url, 'http://gateway.local/v1/chat/completions?beta=true');
    assert.equal(whole.headers.get('x-a'), '1');
    assert.equal(whole.method, 'POST');
    const blob = await whole.clone().blob();
    assert.equal(blob.type, 'application/json');
    assert.equal(await blob.text(), '{"w":1}');
    const body = () => new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(new TextEncoder().encode('{"s":2}')), c.close()) });
    const streamed = new ShellRequest('http://gateway.local/v1/messages', { method: 'POST', headers: headers(), stream: body() });
    const twin = streamed.clone();
    assert.equal(twin.url, 'http://gateway.local/v1/messages');
    assert.equal(twin.headers.get('x-a'), '1');
    assert.deepEqual(await twin.json(), { s: 2 });
    assert.deepEqual(await streamed.json(), { s: 2 });
    const typed = await new ShellRequest('http://gateway.local/y', { method: 'POST', headers: headers(), stream: body() }).blob();
    assert.equal(typed.type, 'application/json');
  });
});

describe('through the local server', () => {
  let oai: MockOpenAI;
  let gw: StartedGateway;
  before(async () => {
    oai = await startMockOpenAI();
    gw = await startGateway({
      providers: { openai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'TEST_HOT_OPENAI_KEY' } },
      models: { gpt: { provider: 'openai', model: 'gpt-4.1-2025-04-14' } },
      config: { routing: { retry: { retries: 0 }, fallbackOn: [] } },
      env: { TEST_HOT_OPENAI_KEY: UPSTREAM_KEY },
      label: 'hot-path test configuration',
    });
  });
  after(async () => {
    await gw?.close();
    await oai?.close();
  });

  it("a relayed JSON answer keeps its bytes and carries the gateway's headers", async () => {
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const { data, response } = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.ok(data.choices[0]?.message.content);
    assert.equal(response.headers.get('x-gateway-provider'), 'openai');
    assert.equal(response.headers.get('content-type')?.startsWith('application/json'), true);
    assert.ok(Number(response.headers.get('content-length')) > 0);
    const record = await gw.recordOf(response);
    assert.equal(record.status, 200);
    assert.equal(record.provider, 'openai');
    assert.ok((record.inputTokens ?? 0) > 0);
  });
});
