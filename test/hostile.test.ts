import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { nodeHandler, targetUrl } from '../local/node-adapter.ts';
import { resolveTarget } from '../scripts/keys.ts';
import { Gateway } from '../shared/gateway.ts';
import { startTestGateway, testConfig, type TestGateway } from './helpers/gateway.ts';
import { ADMIN_TOKEN, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';
import { assertStillUp, rawExchange, type RawResponse } from './helpers/raw-http.ts';

/**
 * Hostile input at the local server (issue #15): requests that used to kill the process or hang a
 * connection, malformed paths, loose validation. Raw HTTP goes over a net.Socket, not fetch, so
 * the bytes are exactly what a hostile client sends.
 */

function get(path: string, headers: string[] = ['Host: localhost']): string {
  return `GET ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`;
}

function post(path: string, body: string, headers: string[] = []): string {
  return `POST ${path} HTTP/1.1\r\nHost: localhost\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n${body}`;
}

const json = (r: RawResponse) => JSON.parse(r.body);

describe('hostile requests at the local server', () => {
  let g: TestGateway;
  let port: number;
  before(async () => {
    g = await startTestGateway({ upstreamBaseUrl: 'http://127.0.0.1:9/v1' });
    port = Number(new URL(g.url).port);
  });
  after(() => g.close());

  test('requests that used to throw in `new Request` are answered, logged, and the server stays up', async () => {
    const cases: { raw: string; status: number; code: string; allow?: string; method: string; path: string }[] = [
      { raw: 'TRACE /health HTTP/1.1\r\nHost: localhost\r\n\r\n', status: 405, code: 'method_not_allowed', allow: 'GET, HEAD', method: 'TRACE', path: '/health' },
      { raw: 'TRACE /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\r\n', status: 405, code: 'method_not_allowed', allow: 'POST', method: 'TRACE', path: '/v1/chat/completions' },
      { raw: 'OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n', status: 400, code: 'invalid_request_target', method: 'OPTIONS', path: '*' },
      { raw: 'CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n', status: 405, code: 'method_not_allowed', method: 'CONNECT', path: 'evil:443' },
      { raw: 'GARBAGE\r\n\r\n', status: 400, code: 'malformed_request', method: 'UNKNOWN', path: '-' },
    ];
    for (const c of cases) {
      const before = g.records.length;
      const { responses } = await rawExchange(port, c.raw);
      assert.equal(responses.length, 1, c.raw);
      const r = responses[0]!;
      assert.equal(r.status, c.status, c.raw);
      assert.equal(json(r).error.code, c.code, c.raw);
      if (c.allow) assert.equal(r.headers.allow, c.allow);
      // Exactly one log record, made by the core.
      const rec = g.records.slice(before);
      assert.equal(rec.length, 1, c.raw);
      assert.equal(rec[0]!.method, c.method);
      assert.equal(rec[0]!.path, c.path);
      assert.equal(rec[0]!.status, c.status);
      assert.equal(rec[0]!.errorCode, c.code);
      await assertStillUp(g.url);
    }
  });

  test('the Host header is never parsed: odd values reach /health', async () => {
    for (const host of ['a@b', '127.0.0.1:99999', '[::1', '%zz', 'a b', 'evil.example:1/admin']) {
      const { responses } = await rawExchange(port, get('/health', [`Host: ${host}`]));
      assert.equal(responses[0]?.status, 200, host);
    }
    await assertStillUp(g.url);
  });

  test('an absolute-form target routes to its own path, and only that path', async () => {
    const { responses } = await rawExchange(port, get('http://evil.example/v1/models', ['Host: localhost']));
    assert.equal(responses[0]!.status, 200);
    assert.equal(json(responses[0]!).object, 'list');
    const before = g.records.length;
    const admin = await rawExchange(port, get('http://evil.example/admin/keys?x=1', ['Host: localhost']));
    // The gateway has no admin token: the admin route answers for itself (401), it is not some other path.
    assert.equal(admin.responses[0]!.status, 401);
    assert.equal(g.records.slice(before)[0]!.path, '/admin/keys');
    const ftp = await rawExchange(port, get('ftp://evil.example/health'));
    assert.equal(ftp.responses[0]!.status, 400);
    assert.equal(json(ftp.responses[0]!).error.code, 'invalid_request_target');
    // A path that looks like an authority stays a path.
    const dbl = await rawExchange(port, get('//evil.example/health'));
    assert.equal(dbl.responses[0]!.status, 404);
  });

  test('malformed percent-escapes are 400 in the route format, not 500', async () => {
    for (const path of ['/v1/models/%', '/v1/models/%E0%A4%A', '/admin/keys/%', '/admin/keys/%E0%A4%A', '/v1/chat/%zz']) {
      const { responses } = await rawExchange(port, get(path));
      assert.equal(responses[0]!.status, 400, path);
      assert.equal(json(responses[0]!).error.code, 'invalid_path', path);
    }
    const anth = await rawExchange(port, get('/v1/models/%', ['Host: localhost', 'anthropic-version: 2023-06-01']));
    assert.equal(anth.responses[0]!.status, 400);
    assert.equal(json(anth.responses[0]!).type, 'error');
    assert.equal(json(anth.responses[0]!).error.type, 'invalid_request_error');
    const msg = await rawExchange(port, post('/v1/messages/%', '{}', ['content-type: application/json']));
    assert.equal(json(msg.responses[0]!).type, 'error');
    await assertStillUp(g.url);
  });

  test('an over-limit body on a keep-alive connection gets 413 and the connection closes (no hang)', async () => {
    const big = JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'x'.repeat(200_000) }] });
    const chunked = (body: string) =>
      `POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    for (const first of [post('/v1/chat/completions', big, ['content-type: application/json']), chunked(big)]) {
      const before = g.records.length;
      // Two large requests back to back on one keep-alive connection.
      const ex = await rawExchange(port, [first, chunked(big)], 2);
      assert.equal(ex.responses[0]!.status, 413);
      assert.equal(ex.responses[0]!.headers.connection, 'close');
      assert.equal(json(ex.responses[0]!).error.code, 'request_too_large');
      assert.equal(ex.closedByServer, true, 'the server closes the connection after the 413');
      assert.equal(ex.responses.length, 1);
      assert.equal(g.records.slice(before).filter((r) => r.status === 413).length, 1);
    }
    // After a small request, keep-alive still carries the next one.
    const small = JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'hi' }] });
    const ok = await rawExchange(port, [post('/v1/chat/completions', small, ['content-type: application/json']), post('/v1/chat/completions', small, ['content-type: application/json'])], 2);
    assert.deepEqual(
      ok.responses.map((r) => r.status),
      [200, 200],
    );
  });

  test('Content-Type: non-JSON types are 415; JSON with parameters, +json and none are read', async () => {
    const body = JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'hi' }] });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx']) {
      for (const path of ['/v1/chat/completions', '/v1/responses', '/v1/embeddings', '/v1/messages']) {
        const { responses } = await rawExchange(port, post(path, body, [`content-type: ${type}`]));
        assert.equal(responses[0]!.status, 415, `${path} ${type}`);
        const j = json(responses[0]!);
        if (path === '/v1/messages') assert.equal(j.error.type, 'invalid_request_error');
        else assert.equal(j.error.code, 'unsupported_media_type');
      }
    }
    // Bedrock's InvokeModel body is a blob: the AWS SDK sends application/octet-stream when the caller names no type.
    const invoke = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    const octet = await rawExchange(port, post('/bedrock/model/mock/invoke', invoke, ['content-type: application/octet-stream']));
    assert.notEqual(octet.responses[0]!.status, 415);
    const plainInvoke = await rawExchange(port, post('/bedrock/model/mock/invoke', invoke, ['content-type: text/plain']));
    assert.equal(plainInvoke.responses[0]!.status, 415);
    assert.ok(plainInvoke.responses[0]!.headers['x-amzn-errortype']);
    const octetConverse = await rawExchange(port, post('/bedrock/model/mock/converse', JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'hi' }] }] }), ['content-type: application/octet-stream']));
    assert.equal(octetConverse.responses[0]!.status, 415);
    for (const type of ['application/json; charset=utf-8', 'APPLICATION/JSON', 'application/vnd.api+json', undefined]) {
      const { responses } = await rawExchange(port, post('/v1/chat/completions', body, type ? [`content-type: ${type}`] : []));
      assert.equal(responses[0]!.status, 200, String(type));
    }
  });

  test('loose validation is 400 naming the field', async () => {
    const base = { model: 'mock', messages: [{ role: 'user', content: 'hi' }] };
    const chat: [Record<string, unknown>, string][] = [
      [{ max_tokens: 1.5 }, 'max_tokens'],
      [{ max_completion_tokens: 0 }, 'max_completion_tokens'],
      [{ stop: Array.from({ length: 1000 }, (_, i) => `s${i}`) }, 'stop'],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ user: {} }, 'user'],
    ];
    for (const [extra, param] of chat) {
      const { responses } = await rawExchange(port, post('/v1/chat/completions', JSON.stringify({ ...base, ...extra }), ['content-type: application/json']));
      assert.equal(responses[0]!.status, 400, param);
      assert.equal(json(responses[0]!).error.param, param);
      assert.ok(json(responses[0]!).error.code);
    }
    const four = await rawExchange(port, post('/v1/chat/completions', JSON.stringify({ ...base, stop: ['a', 'b', 'c', 'd'] }), ['content-type: application/json']));
    assert.equal(four.responses[0]!.status, 200);
    const resp = await rawExchange(port, post('/v1/responses', JSON.stringify({ model: 'mock', input: 'hi', max_output_tokens: 2.5 }), ['content-type: application/json']));
    assert.equal(resp.responses[0]!.status, 400);
    assert.equal(json(resp.responses[0]!).error.param, 'max_output_tokens');
    // Deep nesting where translators walk it (a tool_use input) is refused before any recursive pass: 400, not a stack overflow.
    const deepInput = '{"a":'.repeat(8000) + '1' + '}'.repeat(8000);
    const deepMsg = `{"model":"mock","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":${deepInput}}]},{"role":"user","content":"hi"}]}`;
    const deep = await rawExchange(port, post('/v1/messages', deepMsg, ['content-type: application/json']));
    assert.equal(deep.responses[0]!.status, 400);
    assert.equal(json(deep.responses[0]!).type, 'error');
    const nested = await rawExchange(port, post('/v1/chat/completions', JSON.stringify({ ...base, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'object', properties: { b: { type: 'array', items: { type: 'string' } } } } } } } }] }), ['content-type: application/json']));
    assert.equal(nested.responses[0]!.status, 200, 'ordinary nesting is fine');
    for (const body of ['[]', '[1,2]', '"text"', '42', 'null']) {
      for (const path of ['/v1/chat/completions', '/v1/responses', '/v1/embeddings']) {
        const { responses } = await rawExchange(port, post(path, body, ['content-type: application/json']));
        assert.equal(responses[0]!.status, 400, `${path} ${body}`);
        assert.equal(typeof json(responses[0]!).error.code, 'string', `${path} ${body}`);
      }
    }
  });

  test('Converse inferenceConfig out of range is 400, not an empty 200', async () => {
    const msgs = [{ role: 'user', content: [{ text: 'hi' }] }];
    for (const inferenceConfig of [{ maxTokens: -1 }, { maxTokens: 1.5 }, { maxTokens: '10' }, { temperature: 3 }, { topP: -0.1 }, { stopSequences: 'x' }]) {
      const { responses } = await rawExchange(port, post('/bedrock/model/mock/converse', JSON.stringify({ messages: msgs, inferenceConfig }), ['content-type: application/json']));
      assert.equal(responses[0]!.status, 400, JSON.stringify(inferenceConfig));
      assert.match(responses[0]!.headers['x-amzn-errortype'] ?? json(responses[0]!).message ?? '', /Validation|inferenceConfig/);
    }
  });

  test('every POST route answers other methods 405 with Allow', async () => {
    for (const path of ['/v1/chat/completions', '/v1/responses', '/v1/messages', '/v1/embeddings', '/v1/messages/count_tokens', '/bedrock/model/mock/converse', '/bedrock/model/mock/invoke']) {
      const { responses } = await rawExchange(port, get(path));
      assert.equal(responses[0]!.status, 405, path);
      assert.equal(responses[0]!.headers.allow, 'POST', path);
    }
    const { responses } = await rawExchange(port, post('/health', '{}'));
    assert.equal(responses[0]!.status, 405);
    assert.equal(responses[0]!.headers.allow, 'GET, HEAD');
  });
});

describe('hostile requests with keys on', () => {
  let k: KeyedGateway;
  before(async () => {
    k = await startKeyedGateway({
      config: {
        providers: { mock: { type: 'mock', wordDelayMs: 0 }, hidden: { type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', apiKeyEnv: 'TEST_HIDDEN_KEY_NOT_SET' } },
        models: { mock: { provider: 'mock', model: 'mock-echo-1' }, 'mock-2': { provider: 'mock', model: 'mock-echo-2' }, secret: { provider: 'hidden', model: 'gpt-hidden' } },
      },
    });
  });
  after(() => k.close());

  test('/admin/keys refuses a text/plain body with 415 and creates no key', async () => {
    const res = await fetch(`${k.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'text/plain' }, body: JSON.stringify({ name: 'plain' }) });
    assert.equal(res.status, 415);
    assert.equal(((await res.json()) as any).error.code, 'unsupported_media_type');
    const list = await k.admin('GET', '/admin/keys');
    assert.ok(!list.json.data.some((x: { name: string }) => x.name === 'plain'));
  });

  test('/v1/models with anthropic-version answers a bad key in Anthropic shape', async () => {
    const res = await fetch(`${k.url}/v1/models`, { headers: { 'x-api-key': 'sk-gw-not-a-key', 'anthropic-version': '2023-06-01' } });
    assert.equal(res.status, 401);
    const j = (await res.json()) as any;
    assert.equal(j.type, 'error');
    assert.equal(j.error.type, 'authentication_error');
    const oa = await fetch(`${k.url}/v1/models`, { headers: { authorization: 'Bearer sk-gw-not-a-key' } });
    assert.equal(oa.status, 401);
    assert.equal(((await oa.json()) as any).error.type, 'authentication_error');
  });

  test('a key not allowed a model cannot tell a configured model from a missing one', async () => {
    const { key } = await k.createKey({ name: 'only-mock', models: ['mock'] });
    const ask = async (model: string) => {
      const res = await fetch(`${k.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) });
      const j = (await res.json()) as any;
      return { status: res.status, code: j.error?.code, message: String(j.error?.message).replace(model, 'M') };
    };
    const configured = await ask('secret');
    const missing = await ask('no-such-model');
    assert.deepEqual(configured, missing);
    assert.doesNotMatch(JSON.stringify(configured), /hidden/);
  });
});

describe('the local server shell', () => {
  test('an exception thrown by the core, even synchronously, is a 500 and the server keeps serving', async () => {
    let calls = 0;
    const throwing = {
      handle() {
        calls++;
        if (calls === 1) throw new Error('sync boom');
        return Promise.reject(new Error('async boom'));
      },
    } as unknown as Gateway;
    const server = createServer(nodeHandler(throwing, new Set()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      for (let i = 0; i < 2; i++) {
        const { responses } = await rawExchange(port, get('/health'));
        assert.equal(responses[0]!.status, 500);
        assert.equal(JSON.parse(responses[0]!.body).error.code, 'internal_error');
        assert.doesNotMatch(responses[0]!.body, /boom/);
      }
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('a request target becomes the URL the WHATWG parser makes of it (dot segments, escapes, queries), fast path or not', () => {
    // Targets built from the characters that change meaning in a URL: the shell's answer must be the parser's.
    const alphabet = "/./?a.~-_=&+,:@!$'()*;%#\\ Zé09".split('');
    let seed = 17;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let i = 0; i < 20_000; i++) {
      let target = '/';
      for (let n = 1 + Math.floor(next() * 12); n > 0; n--) target += alphabet[Math.floor(next() * alphabet.length)];
      const got = targetUrl(target);
      assert.ok('url' in got, target);
      assert.equal(got.url, new URL(`http://gateway.local${target}`).href, target);
    }
  });

  test('npm run keys targets --url, else GATEWAY_URL, else PORT, else 8080', () => {
    assert.equal(resolveTarget({}, {}).base.href, 'http://127.0.0.1:8080/');
    assert.equal(resolveTarget({}, { PORT: '9191' }).base.href, 'http://127.0.0.1:9191/');
    assert.equal(resolveTarget({}, { PORT: '9191', GATEWAY_URL: 'http://gw.test:1234' }).base.href, 'http://gw.test:1234/');
    assert.equal(resolveTarget({ url: 'http://other:1/' }, { PORT: '9191', GATEWAY_URL: 'http://gw.test:1234' }).base.href, 'http://other:1/');
  });

  test('the admin 401 says where the local admin token is', async () => {
    const config = testConfig({ upstreamBaseUrl: 'http://127.0.0.1:9/v1' });
    const gw = new Gateway({ config, env: { GATEWAY_ADMIN_TOKEN: 'tok', GATEWAY_ADMIN_TOKEN_FILE: 'data/admin-token.txt' } });
    for (const path of ['/admin/stats', '/admin/keys']) {
      const res = await gw.handle(new Request(`http://gw.test${path}`), { waitUntil: () => {} });
      assert.equal(res.status, 401);
      assert.match(((await res.json()) as any).error.message, /data\/admin-token\.txt/);
    }
  });

  test('SIGTERM stops `node --import tsx local/server.ts` after its log records are written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gateway-sigterm-'));
    try {
      const configPath = join(dir, 'config.json');
      await writeFile(configPath, JSON.stringify({ providers: { mock: { type: 'mock', wordDelayMs: 0 } }, models: { mock: { provider: 'mock', model: 'mock-echo-1' } }, logging: { localDir: join(dir, 'logs') } }));
      const child = spawn(process.execPath, ['--import', 'tsx', 'local/server.ts'], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', GATEWAY_CONFIG: configPath }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += d;
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on('exit', () => reject(new Error(`server exited before listening: ${out} ${err}`)));
      });
      assert.doesNotMatch(err, /NodeVersionSupportWarning/);
      const ids: string[] = [];
      for (const raw of [get('/health'), 'TRACE / HTTP/1.1\r\nHost: x\r\n\r\n', post('/v1/chat/completions', JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'hi' }] }), ['content-type: application/json'])]) {
        const { responses } = await rawExchange(Number(new URL(url).port), raw);
        ids.push(responses[0]!.headers['x-request-id']!);
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      const logged: string[] = [];
      for (const f of await readdir(join(dir, 'logs'), { recursive: true })) {
        if (String(f).endsWith('.ndjson')) logged.push(...(await readFile(join(dir, 'logs', String(f)), 'utf8')).trim().split('\n'));
      }
      const recorded = logged.map((l) => JSON.parse(l).requestId);
      for (const id of ids) assert.equal(recorded.filter((r) => r === id).length, 1, id);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
