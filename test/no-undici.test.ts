import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { buildLambdaSync, LAMBDA_RUNTIME_ENV } from '../infra/bundling.ts';
import { BytesResponse, reaimed, ShellRequest, webResponse } from '../shared/http/bytes.ts';
import { isHeaders, WebHeaders } from '../shared/http/web.ts';
import { parseConfig } from '../shared/config/load.ts';
import { newKey } from '../shared/policy/keys.ts';
import { createDynamoStore } from '../shared/store/dynamodb.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { startDynamo } from './helpers/keys.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * A request served through our own shells never loads undici (Node's fetch: Request, Response,
 * Headers, and the http2, zlib, perf_hooks... it pulls in): the shells and the core make their own
 * web-shaped objects (shared/http/web.ts, shared/http/bytes.ts) and call upstreams on node:http.
 * Proven on the build as shipped, in fresh Node processes: the gateway Lambda bundle (keys, rate
 * limits and budgets on dynalite; OpenAI and Anthropic mock upstreams on loopback), then the local
 * server's core. `process.moduleLoadList` names every internal module Node has loaded.
 */

const UPSTREAM_KEY = 'sk-upstream-no-undici-000000000000';
const ANTHROPIC_KEY = 'sk-ant-no-undici-0000000000000000';

/** A Lambda invocation in the child: [name, method, path, headers, body]. */
type Call = [string, string, string, Record<string, string>, unknown];

/**
 * The child: the awslambda stand-in (as test/helpers/awslambda.ts), the bundle imported, then each
 * call through its handler; the undici modules loaded after the import and after the calls.
 */
const LAMBDA_PROBE = `
globalThis.awslambda = {
  streamifyResponse(fn) { return fn; },
  HttpResponseStream: { from(stream, prelude) { stream.write(JSON.stringify(prelude) + '\\n'); return stream; } },
};
const undici = () => process.moduleLoadList.filter((m) => /undici/i.test(m));
const { Writable } = await import('node:stream');
const { handler } = await import(process.env.BUNDLE_URL);
const afterImport = undici();
const answers = {};
for (const [name, method, path, headers, body] of JSON.parse(process.env.CALLS)) {
  const chunks = [];
  const stream = new Writable({ write(c, _e, cb) { chunks.push(Buffer.from(c)); cb(); } });
  const event = { path, httpMethod: method, headers, body: body === null ? null : typeof body === 'string' ? body : JSON.stringify(body), isBase64Encoded: false, requestContext: { identity: { sourceIp: '127.0.0.1' } } };
  await handler(event, stream, { awsRequestId: name, functionName: 'f', getRemainingTimeInMillis: () => 60000 });
  const text = Buffer.concat(chunks).toString('utf8');
  const prelude = JSON.parse(text.slice(0, text.indexOf('\\n')));
  answers[name] = { status: prelude.statusCode, headers: prelude.headers, body: text.slice(text.indexOf('\\n') + 1) };
}
process.stdout.write('RESULT' + JSON.stringify({ afterImport, afterCalls: undici(), answers }));
`;

/**
 * The local server's core in a child (run with tsx, from the sources): requests over node:http and
 * a raw socket (no fetch in the child), and the undici modules loaded after them.
 */
const LOCAL_PROBE = `
import { request } from 'node:http';
import { connect } from 'node:net';
const undici = () => process.moduleLoadList.filter((m) => /undici/i.test(m));
const { parseConfig } = await import(process.env.REPO + '/shared/config/load.ts');
const { startLocalServer } = await import(process.env.REPO + '/local/server.ts');
const records = [];
const config = parseConfig(JSON.parse(process.env.CONFIG));
const srv = await startLocalServer({ config, env: process.env, port: 0, sinks: [{ write: (r) => void records.push(r) }] });
const afterImport = undici();
const port = new URL(srv.url).port;
const send = (name, method, path, headers, body) => new Promise((resolve, reject) => {
  const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => resolve([name, { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }]));
  });
  req.on('error', reject);
  req.end(body === null ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
});
const raw = (name, text) => new Promise((resolve, reject) => {
  const socket = connect(Number(port), '127.0.0.1', () => socket.write(text));
  const chunks = [];
  socket.on('data', (c) => chunks.push(c));
  socket.on('error', reject);
  socket.on('close', () => {
    const t = Buffer.concat(chunks).toString('utf8');
    resolve([name, { status: Number(t.split(' ')[1]), headers: {}, body: t.slice(t.indexOf('\\r\\n\\r\\n') + 4) }]);
  });
});
const answers = {};
for (const [name, method, path, headers, body] of JSON.parse(process.env.CALLS)) {
  const [n, a] = await send(name, method, path, headers, body);
  answers[n] = a;
}
for (const [name, text] of [['malformed', 'NOT HTTP AT ALL\\r\\n\\r\\n'], ['connect', 'CONNECT example.com:443 HTTP/1.1\\r\\nhost: example.com:443\\r\\n\\r\\n'], ['trace', 'TRACE / HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n']]) {
  const [n, a] = await raw(name, text);
  answers[n] = a;
}
await srv.close();
answers.records = { status: 0, headers: {}, body: JSON.stringify(records.map((r) => r.status)) };
process.stdout.write('RESULT' + JSON.stringify({ afterImport, afterCalls: undici(), answers }));
`;

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface ProbeResult {
  afterImport: string[];
  afterCalls: string[];
  answers: Record<string, Answer>;
}

/** The child runs while this process serves its upstreams and dynalite (so not spawnSync). */
function runChild(script: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...nodeArgs, '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
        timeout: 90_000,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...LAMBDA_RUNTIME_ENV, PATH: process.env.PATH, AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', POWERTOOLS_TRACE_ENABLED: 'false', POWERTOOLS_METRICS_DISABLED: 'true', ...env },
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr.slice(-3000)}`));
        else resolve(JSON.parse(stdout.slice(stdout.indexOf('RESULT') + 6)) as ProbeResult);
      },
    );
  });
}

/** The data lines of an SSE body, parsed (the [DONE] line as the string). */
function sseData(body: string): unknown[] {
  return body
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => l.slice(6))
    .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
}

describe('no undici on the request path', () => {
  let dir: string;
  let dynamo: LocalDynamo;
  let oai: MockOpenAI;
  let ant: MockAnthropic;
  let key: string;
  let storeEnv: Record<string, string>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-no-undici-'));
    const started = await startDynamo();
    dynamo = started.dynamo;
    const store = createDynamoStore(started.settings);
    const made = newKey();
    const now = new Date().toISOString();
    assert.ok(await store.createKey({ id: made.id, hash: made.hash, name: 'no-undici', limits: { rpm: 1000, tpm: 1_000_000 }, budget: { usdPerDay: 100 }, createdAt: now, updatedAt: now, metadata: {}, version: 1 }));
    store.close();
    key = made.key;
    storeEnv = { GATEWAY_KEYS_TABLE: started.settings.tables.keys, GATEWAY_USAGE_TABLE: started.settings.tables.usage, DYNAMODB_ENDPOINT: started.settings.endpoint! };
    oai = await startMockOpenAI();
    ant = await startMockAnthropic({ apiKey: ANTHROPIC_KEY });
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await oai?.close();
    await ant?.close();
    await dynamo?.close();
  });

  it('the gateway Lambda bundle: import, keyed chat (whole and streamed), Anthropic Messages, a 401 and a 400', async () => {
    const config = parseConfig({
      providers: {
        openai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'NO_UNDICI_OPENAI_KEY' },
        anthropic: { type: 'anthropic', baseUrl: ant.baseUrl, apiKeyEnv: 'NO_UNDICI_ANTHROPIC_KEY' },
      },
      models: { gpt: { provider: 'openai', model: 'gpt-4o-mini' }, claude: { provider: 'anthropic', model: 'claude-sonnet-4-5' } },
      auth: { required: true },
      pricing: { 'gpt-4o-mini': { input: 1, output: 2 }, 'claude-sonnet-4-5': { input: 3, output: 15 } },
      routing: { retry: { retries: 0 } },
    });
    buildLambdaSync('functions/gateway.ts', join(dir, 'gateway'), config);
    const json = { 'content-type': 'application/json', host: 'gw.example', authorization: `Bearer ${key}` };
    const calls: Call[] = [
      ['chat', 'POST', '/v1/chat/completions', json, { model: 'gpt', messages: [{ role: 'user', content: 'hello from lambda' }] }],
      ['stream', 'POST', '/v1/chat/completions', json, { model: 'gpt', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'one two three' }] }],
      ['messages', 'POST', '/v1/messages', { 'content-type': 'application/json', host: 'gw.example', 'x-api-key': key, 'anthropic-version': '2023-06-01' }, { model: 'claude', max_tokens: 64, messages: [{ role: 'user', content: 'hi anthropic' }] }],
      ['unauthorized', 'POST', '/v1/chat/completions', { ...json, authorization: 'Bearer gwk_not_a_key' }, { model: 'gpt', messages: [{ role: 'user', content: 'x' }] }],
      ['badJson', 'POST', '/v1/chat/completions', json, '{"model": "gpt", '],
      ['models', 'GET', '/v1/models', { host: 'gw.example', authorization: `Bearer ${key}` }, null],
    ];
    const out = await runChild(LAMBDA_PROBE, { BUNDLE_URL: pathToFileURL(join(dir, 'gateway', 'index.mjs')).href, CALLS: JSON.stringify(calls), NO_UNDICI_OPENAI_KEY: UPSTREAM_KEY, NO_UNDICI_ANTHROPIC_KEY: ANTHROPIC_KEY, ...storeEnv });
    const a = out.answers;

    assert.equal(a.chat!.status, 200, a.chat!.body);
    assert.match(a.chat!.headers['content-type']!, /^application\/json/);
    assert.equal(JSON.parse(a.chat!.body).choices[0].message.content, 'hello from lambda');
    assert.equal(oai.chatRequests().length, 2);
    assert.equal(oai.chatRequests()[0]!.headers.authorization, `Bearer ${UPSTREAM_KEY}`);

    assert.equal(a.stream!.status, 200, a.stream!.body);
    assert.match(a.stream!.headers['content-type']!, /^text\/event-stream/);
    const chunks = sseData(a.stream!.body);
    assert.equal(chunks.at(-1), '[DONE]');
    const deltas = chunks.slice(0, -1) as { choices: { delta?: { content?: string } }[]; usage?: { completion_tokens: number } }[];
    assert.equal(deltas.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'one two three');
    assert.ok(deltas.some((c) => c.usage && c.usage.completion_tokens > 0));

    assert.equal(a.messages!.status, 200, a.messages!.body);
    const message = JSON.parse(a.messages!.body);
    assert.equal(message.type, 'message');
    assert.equal(message.content[0].text, 'hi anthropic');
    assert.equal(ant.messageRequests().at(-1)!.headers['x-api-key'], ANTHROPIC_KEY);

    assert.equal(a.unauthorized!.status, 401, a.unauthorized!.body);
    assert.equal(JSON.parse(a.unauthorized!.body).error.type, 'authentication_error');
    assert.equal(a.badJson!.status, 400, a.badJson!.body);
    assert.equal(JSON.parse(a.badJson!.body).error.code, 'invalid_json');
    assert.deepEqual(JSON.parse(a.models!.body).data.map((m: { id: string }) => m.id).sort(), ['claude', 'gpt']);

    assert.deepEqual(out.afterImport, [], 'undici loaded by the import');
    assert.deepEqual(out.afterCalls, [], 'undici loaded by the requests');
  });

  it("the local server's core: chat whole and streamed, Anthropic Messages, a 400, a 404, refused HTTP, CONNECT and TRACE", async () => {
    const config = {
      providers: {
        openai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'NO_UNDICI_OPENAI_KEY' },
        anthropic: { type: 'anthropic', baseUrl: ant.baseUrl, apiKeyEnv: 'NO_UNDICI_ANTHROPIC_KEY' },
      },
      models: { gpt: { provider: 'openai', model: 'gpt-4o-mini' }, claude: { provider: 'anthropic', model: 'claude-sonnet-4-5' } },
      routing: { retry: { retries: 0 } },
    };
    const json = { 'content-type': 'application/json' };
    const calls: Call[] = [
      ['chat', 'POST', '/v1/chat/completions', json, { model: 'gpt', messages: [{ role: 'user', content: 'hello from local' }] }],
      ['stream', 'POST', '/v1/chat/completions', json, { model: 'gpt', stream: true, messages: [{ role: 'user', content: 'four five six' }] }],
      ['messages', 'POST', '/v1/messages', { ...json, 'anthropic-version': '2023-06-01' }, { model: 'claude', max_tokens: 64, messages: [{ role: 'user', content: 'hi local anthropic' }] }],
      ['badJson', 'POST', '/v1/chat/completions', json, '{"model": '],
      ['unknownRoute', 'GET', '/v2/nothing', {}, null],
    ];
    const out = await runChild(LOCAL_PROBE, { REPO: pathToFileURL(process.cwd()).href, CONFIG: JSON.stringify(config), CALLS: JSON.stringify(calls), NO_UNDICI_OPENAI_KEY: UPSTREAM_KEY, NO_UNDICI_ANTHROPIC_KEY: ANTHROPIC_KEY }, ['--import', 'tsx']);
    const a = out.answers;
    assert.equal(a.chat!.status, 200, a.chat!.body);
    assert.equal(JSON.parse(a.chat!.body).choices[0].message.content, 'hello from local');
    assert.equal(a.stream!.status, 200, a.stream!.body);
    const chunks = sseData(a.stream!.body);
    assert.equal(chunks.at(-1), '[DONE]');
    assert.equal((chunks.slice(0, -1) as { choices: { delta?: { content?: string } }[] }[]).map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'four five six');
    assert.equal(a.messages!.status, 200, a.messages!.body);
    assert.equal(JSON.parse(a.messages!.body).content[0].text, 'hi local anthropic');
    assert.equal(a.badJson!.status, 400, a.badJson!.body);
    assert.equal(JSON.parse(a.badJson!.body).error.code, 'invalid_json');
    assert.equal(a.unknownRoute!.status, 404, a.unknownRoute!.body);
    assert.equal(a.malformed!.status, 400, a.malformed!.body);
    assert.equal(JSON.parse(a.malformed!.body).error.code, 'malformed_request');
    assert.equal(a.connect!.status, 405, a.connect!.body);
    assert.equal(a.trace!.status, 405, a.trace!.body);
    // One log record per request, the refused ones included.
    assert.deepEqual(JSON.parse(a.records!.body).sort(), [200, 200, 200, 400, 400, 404, 405, 405]);

    assert.deepEqual(out.afterImport, [], 'undici loaded by the import');
    assert.deepEqual(out.afterCalls, [], 'undici loaded by the requests');
  });
});

/** What a Headers shows: every entry in order, each way of reading it, or the error it throws. */
function observe(make: () => Headers): unknown {
  try {
    const h = make();
    const each: string[] = [];
    h.forEach((v, k) => each.push(`${k}=${v}`));
    return { entries: [...h], keys: [...h.keys()], values: [...h.values()], each, cookies: h.getSetCookie(), a: h.get('A'), has: h.has('set-cookie'), tag: Object.prototype.toString.call(h) };
  } catch (err) {
    return { threw: (err as Error).constructor.name };
  }
}

describe("the core's own Headers, Request and Response", () => {
  it("WebHeaders does what fetch's Headers does: names, order, joins, set-cookie, trimming, refusals", () => {
    type Init = ConstructorParameters<typeof Headers>[0];
    const inits: Init[] = [
      undefined,
      { B: '2', a: '1', 'Set-Cookie': 'x=1' },
      [['Set-Cookie', 'a=1'], ['b', '2'], ['set-cookie', 'c=3'], ['A', 'z'], ['a', 'y']],
      { a: ' padded\t ', b: '' },
      { a: 'caf\u00e9 \u007f \u0001' },
      { 'bad name': 'x' },
      { '': 'x' },
      { a: 'line\nbreak' },
      { a: 'nul\u0000' },
      { a: 'wide \u4e2d' },
      [['a', '1', '2']] as unknown as Init,
      new Headers({ from: 'undici', 'set-cookie': 's=1' }),
    ];
    for (const init of inits) assert.deepEqual(observe(() => new WebHeaders(init)), observe(() => new Headers(init)), JSON.stringify(init));
    const steps = (h: Headers) => {
      h.append('X-Multi', 'one');
      h.append('x-multi', 'two');
      h.set('set-cookie', 'p=1');
      h.append('Set-Cookie', 'q=2');
      h.set('A', 'last');
      h.delete('B');
      return h;
    };
    assert.deepEqual(observe(() => steps(new WebHeaders({ b: 'gone' }))), observe(() => steps(new Headers({ b: 'gone' }))));
    for (const op of [(h: Headers) => h.get('a b'), (h: Headers) => h.set('ok', 'bad\rvalue'), (h: Headers) => h.append('a:', 'x'), (h: Headers) => h.has('(')]) {
      assert.throws(() => op(new WebHeaders()), TypeError);
      assert.throws(() => op(new Headers()), TypeError);
    }
    assert.throws(() => new WebHeaders(5 as unknown as Init), TypeError);
    // A copy is a copy; either kind is told to be Headers without the global.
    const mine = new WebHeaders({ a: '1' });
    const copy = new WebHeaders(mine);
    copy.set('a', '2');
    assert.equal(mine.get('a'), '1');
    assert.ok(isHeaders(mine) && isHeaders(new Headers()) && !isHeaders({ get() {} }) && !isHeaders([['a', '1']]));
  });

  it('webResponse makes what new Response makes: statuses, content types, bodies read once, clone', async () => {
    for (const [body, init] of [
      ['text', undefined],
      ['{"a":1}', { status: 201, statusText: 'Created', headers: { 'content-type': 'application/json', 'x-a': 'b' } }],
      [new TextEncoder().encode('bytes'), { status: 404 }],
      [new URLSearchParams({ q: 'a b' }), undefined],
      [null, { status: 204 }],
      [new Blob(['blob'], { type: 'text/x-blob' }), undefined],
    ] as [BodyInit | null, ResponseInit | undefined][]) {
      const ours = webResponse(body, init);
      const theirs = new Response(body, init);
      assert.deepEqual([ours.status, ours.statusText, ours.ok, ours.type, ours.url, ours.redirected, [...ours.headers], ours.body === null], [theirs.status, theirs.statusText, theirs.ok, theirs.type, theirs.url, theirs.redirected, [...theirs.headers], theirs.body === null]);
      const twin = ours.clone();
      assert.equal(await twin.text(), await theirs.clone().text());
      assert.deepEqual(new Uint8Array(await ours.arrayBuffer()), await theirs.bytes());
      assert.equal(ours.bodyUsed, theirs.bodyUsed);
      if (body !== null) await assert.rejects(ours.text(), TypeError);
    }
    assert.throws(() => webResponse('x', { status: 99 }), RangeError);
    assert.throws(() => webResponse('x', { status: 204 }), TypeError);
    assert.throws(() => webResponse(null, { status: 200, statusText: 'a\nb' }), TypeError);
    await assert.rejects(new BytesResponse('{}').formData(), TypeError);
    // A stream body: read through a web reader, once.
    const streamed = webResponse(new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode('s1')), c.close()) }));
    const reader = streamed.body!.getReader();
    assert.equal(new TextDecoder().decode((await reader.read()).value), 's1');
    assert.equal((await reader.read()).done, true);
    assert.equal(streamed.bodyUsed, true);
  });

  it("a shell's Request: methods as fetch takes them, the Request interface, re-aimed with its bytes and leaving", async () => {
    const headers = () => new WebHeaders({ 'content-type': 'application/json' });
    assert.equal(new ShellRequest('http://gateway.local/', { method: 'get', headers: headers() }).method, 'GET');
    assert.equal(new ShellRequest('http://gateway.local/', { method: 'patch', headers: headers() }).method, 'patch');
    assert.throws(() => new ShellRequest('http://gateway.local/', { method: 'TRACE', headers: headers() }), TypeError);
    assert.throws(() => new ShellRequest('http://gateway.local/', { method: 'a b', headers: headers() }), TypeError);
    assert.throws(() => new ShellRequest('http://gateway.local/', { method: 'GET', headers: headers(), bytes: Buffer.from('x') }), TypeError);
    const req = new ShellRequest('http://gateway.local/iam/v1/chat/completions', { method: 'POST', headers: headers(), bytes: Buffer.from('{"x":1}') });
    const web = new Request('http://gateway.local/', { method: 'POST', body: 'x' });
    assert.deepEqual([req.cache, req.credentials, req.destination, req.integrity, req.keepalive, req.mode, req.redirect, req.referrer, req.referrerPolicy, Object.prototype.toString.call(req)], [web.cache, web.credentials, web.destination, web.integrity, web.keepalive, web.mode, web.redirect, web.referrer, web.referrerPolicy, Object.prototype.toString.call(web)]);
    const moved = reaimed(req, 'http://gateway.local/v1/chat/completions') as ShellRequest;
    assert.equal(moved.url, 'http://gateway.local/v1/chat/completions');
    assert.equal(moved.leaving, req.leaving);
    assert.deepEqual(await moved.json(), { x: 1 });
    const twin = new ShellRequest('http://gateway.local/a', { method: 'POST', headers: headers(), bytes: Buffer.from('t') }).clone();
    assert.equal(await twin.text(), 't');
    await assert.rejects(twin.formData(), TypeError);
  });
});
