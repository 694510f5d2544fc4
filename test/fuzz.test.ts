import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { assertCleanErrorText, startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { assertStillUp, parseResponses } from './helpers/raw-http.ts';

/**
 * Property-based fuzzing of every route (issue #15): arbitrary JSON, wrong types, deep nesting,
 * huge strings, odd headers through fetch, and raw malformed HTTP over a net.Socket. Properties:
 * the server stays up; every answer is 2xx (valid input, served by the `mock` provider) or a
 * 4xx/5xx in the caller's error format with a non-null code and no stack trace, never a 500;
 * every request has exactly one log record. Input sizes are bounded (under and just over the
 * body limit) so the suite's own time budget shows nothing is worse than linear.
 *
 * Seeded: FUZZ_SEED=<n> reproduces a run (the seed is printed; fast-check prints the failing
 * case and its path on failure). FUZZ_RUNS scales the run count.
 */

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2_147_483_647);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1);
console.log(`fuzz seed: ${SEED} (rerun with FUZZ_SEED=${SEED})`);

/** Every route of Gateway.handleTraced and formats/index.ts CHAT_DOORS, with a valid body where it takes one. */
const ROUTES: { path: string; method: string; valid?: Record<string, unknown> }[] = [
  { path: '/v1/chat/completions', method: 'POST', valid: { model: 'mock', messages: [{ role: 'user', content: 'hi' }] } },
  { path: '/v1/responses', method: 'POST', valid: { model: 'mock', input: 'hi' } },
  { path: '/v1/messages', method: 'POST', valid: { model: 'mock', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } },
  { path: '/v1/messages/count_tokens', method: 'POST', valid: { model: 'mock', messages: [{ role: 'user', content: 'hi' }] } },
  { path: '/v1/embeddings', method: 'POST', valid: { model: 'mock', input: 'hi' } },
  { path: '/bedrock/model/mock/converse', method: 'POST', valid: { messages: [{ role: 'user', content: [{ text: 'hi' }] }] } },
  { path: '/bedrock/model/mock/converse-stream', method: 'POST', valid: { messages: [{ role: 'user', content: [{ text: 'hi' }] }] } },
  { path: '/bedrock/model/mock/invoke', method: 'POST', valid: { anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } },
  { path: '/bedrock/model/mock/invoke-with-response-stream', method: 'POST', valid: { anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } },
  { path: '/v1/models', method: 'GET' },
  { path: '/v1/models/mock', method: 'GET' },
  { path: '/health', method: 'GET' },
  { path: '/', method: 'GET' },
  { path: '/bedrock/inference-profiles', method: 'GET' },
  { path: '/admin/keys', method: 'POST', valid: { name: 'fuzz' } },
  { path: '/admin/stats', method: 'GET' },
  { path: '/admin/teams/x', method: 'PUT', valid: {} },
  { path: '/mcp/none', method: 'POST', valid: { jsonrpc: '2.0', id: 1, method: 'tools/list' } },
];

/** The error shape a path answers in (gateway.ts errorResponse / formats/index.ts errorDoorFor). */
function formatOf(path: string, headers: Record<string, string>): 'openai' | 'anthropic' | 'bedrock' | 'mcp' {
  const p = path.split('?')[0]!;
  if (p === '/bedrock' || p.startsWith('/bedrock/')) return 'bedrock';
  if (p === '/mcp' || p.startsWith('/mcp/')) return 'mcp';
  if (p === '/v1/messages' || p.startsWith('/v1/messages/')) return 'anthropic';
  if (['/v1/chat/completions', '/v1/responses', '/v1/embeddings'].includes(p) || p.startsWith('/v1/chat/completions/') || p.startsWith('/v1/responses/') || p.startsWith('/v1/embeddings/')) return 'openai';
  return Object.keys(headers).some((h) => h.toLowerCase() === 'anthropic-version') ? 'anthropic' : 'openai';
}

function checkError(path: string, headers: Record<string, string>, status: number, resHeaders: Headers, text: string): void {
  assertCleanErrorText(text);
  const format = formatOf(path, headers);
  let j: any;
  try {
    j = JSON.parse(text);
  } catch {
    assert.fail(`a ${status} on ${path} is not JSON: ${text.slice(0, 200)}`);
  }
  if (format === 'openai') {
    assert.equal(typeof j?.error?.message, 'string', `OpenAI error shape on ${path}: ${text.slice(0, 300)}`);
    assert.equal(typeof j.error.code, 'string', `a non-null code on ${path}: ${text.slice(0, 300)}`);
    assert.equal(typeof j.error.type, 'string');
  } else if (format === 'anthropic') {
    assert.equal(j?.type, 'error', `Anthropic error shape on ${path}: ${text.slice(0, 300)}`);
    assert.equal(typeof j.error?.type, 'string');
    assert.equal(typeof j.error?.message, 'string');
  } else if (format === 'bedrock') {
    assert.ok(resHeaders.get('x-amzn-errortype'), `Bedrock error type header on ${path}: ${text.slice(0, 300)}`);
    assert.equal(typeof (j?.message ?? j?.Message), 'string', `Bedrock error shape on ${path}: ${text.slice(0, 300)}`);
  } else {
    assert.equal(typeof j?.error?.code, 'number', `JSON-RPC error on ${path}: ${text.slice(0, 300)}`);
  }
}

// ---- arbitraries ----------------------------------------------------------------------------

const LIMIT = 64 * 1024;

const jsonish = fc.jsonValue({ maxDepth: 4 });

/** A valid body with one field replaced by something arbitrary, or extra fields, or stream on. */
function mutated(valid: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid);
  return fc.oneof(
    fc.constant(valid),
    fc.record({ stream: fc.boolean() }).map((x) => ({ ...valid, ...x })),
    fc.tuple(fc.constantFrom(...keys, 'max_tokens', 'stop', 'user', 'temperature', 'tools', 'system', 'inferenceConfig', 'max_output_tokens'), jsonish).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.tuple(fc.string({ maxLength: 12 }), jsonish).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.tuple(fc.constantFrom('role', 'content', 'text'), jsonish).map(([k, v]) => ({ ...valid, messages: [{ role: 'user', content: 'hi', [k]: v }] })),
  );
}

/** Deep nesting: arrays or objects nested a little or thousands deep (deep enough to overflow a recursive walk). */
const deep = fc
  .tuple(fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 5_000, max: 30_000 })), fc.boolean())
  .map(([depth, arrays]) => (arrays ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(Math.min(depth, 10_000)) + '1' + '}'.repeat(Math.min(depth, 10_000))));

/** Huge strings: a valid request carrying a long string, from well under to just over the body limit. */
function huge(valid: Record<string, unknown> | undefined): fc.Arbitrary<string> {
  return fc.tuple(fc.integer({ min: 1_000, max: LIMIT + 8_000 }), fc.constantFrom('x', 'é', '\u0000', '"', '\\', '\ud83d\ude00')).map(([n, ch]) => {
    const s = ch.repeat(Math.max(1, Math.floor(n / Buffer.byteLength(JSON.stringify(ch)))));
    return JSON.stringify({ ...(valid ?? {}), model: 'mock', messages: [{ role: 'user', content: s }], input: s });
  });
}

/** Deep nesting inside an otherwise valid request, where parsers and translators walk it (tool schemas, tool inputs, extra fields). */
function deepInside(valid: Record<string, unknown> | undefined): fc.Arbitrary<string> {
  return fc.tuple(deep, fc.constantFrom('chat-tool', 'anthropic-tool', 'tool-use', 'responses-tool', 'converse-tool', 'extra')).map(([d, where]) => {
    const v = JSON.stringify({ ...(valid ?? {}), __deep__: 0 });
    const at = (s: string) => v.replace('"__deep__":0', s);
    switch (where) {
      case 'chat-tool':
        return at(`"tools":[{"type":"function","function":{"name":"f","parameters":${d}}}]`);
      case 'anthropic-tool':
        return at(`"tools":[{"name":"f","input_schema":${d}}]`);
      case 'tool-use':
        return at(`"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":${d}}]},{"role":"user","content":"hi"}]`);
      case 'responses-tool':
        return at(`"tools":[{"type":"function","name":"f","parameters":${d}}]`);
      case 'converse-tool':
        return at(`"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":${d}}}}]}`);
      default:
        return at(`"extra":${d}`);
    }
  });
}

function bodyFor(valid: Record<string, unknown> | undefined): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 2, arbitrary: deepInside(valid) },
    { weight: 4, arbitrary: mutated(valid ?? {}).map((b) => JSON.stringify(b)) },
    { weight: 2, arbitrary: jsonish.map((b) => JSON.stringify(b)) },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: huge(valid) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

const headerValue = fc.stringMatching(/^[\x20-\x7e]{0,64}$/).map((s) => s.trim());

const headersArb = fc.record(
  {
    'content-type': fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/vnd.x+json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', '', 'application/json;;;', '*/*'),
    'anthropic-version': fc.constantFrom('2023-06-01', '', 'garbage'),
    authorization: fc.oneof(headerValue, fc.constant('Bearer '), fc.constant('Bearer sk-gw-nope')),
    'x-api-key': headerValue,
    'x-gateway-metadata': fc.oneof(headerValue, jsonish.map((j) => JSON.stringify(j).replace(/[^\x20-\x7e]/g, '?').slice(0, 512))),
    'x-gateway-cache': headerValue,
    'x-claude-code-session-id': headerValue,
    traceparent: headerValue,
    accept: fc.constantFrom('application/json', 'text/event-stream', '*/*', ''),
  },
  { requiredKeys: [] },
);

const pathArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ROUTES.map((r) => r.path)) },
  { weight: 1, arbitrary: fc.constantFrom('/v1/models/%', '/admin/keys/%E0%A4%A', '/v1/models/%2F..%2Fadmin', '/v1//chat/completions', '/v1/chat/completions/', '/bedrock/model//converse', '/bedrock/model/a%00b/invoke', '/mcp', '/admin') },
  { weight: 1, arbitrary: fc.webPath({ size: 'small' }).map((p) => p || '/') },
);

const methodArb = fc.constantFrom('GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS');

/** Raw bytes a hostile client sends: a request line and headers, mangled. */
const rawArb = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 300 }).map((s) => Buffer.from(s)),
  fc
    .record({
      method: fc.constantFrom('GET', 'POST', 'TRACE', 'TRACK', 'CONNECT', 'OPTIONS', 'PROPFIND', 'G E T', 'get', ''),
      target: fc.constantFrom('/health', '*', 'http://evil/admin/keys', 'evil:443', '/v1/models/%', '//x', '/v1/chat/completions', '', '/\x7f', 'https://a@b/health?x#y'),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/9.9', 'FOO'),
      host: fc.constantFrom('localhost', 'a@b', '127.0.0.1:99999', '[::1', '%zz', 'a b', '', 'x'.repeat(300)),
      extra: fc.array(fc.tuple(fc.stringMatching(/^[\x21-\x7e]{0,20}$/), fc.stringMatching(/^[\x00-\xff]{0,40}$/)), { maxLength: 4 }),
      body: fc.oneof(fc.constant(''), fc.string({ maxLength: 200 })),
      framing: fc.constantFrom('length', 'chunked', 'bad-length', 'both', 'none'),
    })
    .map((r) => {
      const lines = [`${r.method} ${r.target} ${r.version}`, `Host: ${r.host}`, ...r.extra.map(([k, v]) => `${k}: ${v}`)];
      const len = Buffer.byteLength(r.body);
      if (r.framing === 'length' || r.framing === 'both') lines.push(`Content-Length: ${len}`);
      if (r.framing === 'bad-length') lines.push('Content-Length: -1, 5');
      if (r.framing === 'chunked' || r.framing === 'both') lines.push('Transfer-Encoding: chunked');
      const body = r.framing === 'chunked' || r.framing === 'both' ? `${len.toString(16)}\r\n${r.body}\r\n0\r\n\r\n` : r.body;
      return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'latin1');
    }),
);

// ---- the suite -------------------------------------------------------------------------------

describe('fuzz: every route, hostile input', () => {
  let g: TestGateway;
  let port: number;
  let n = 0;
  const ids: string[] = [];
  before(async () => {
    g = await startTestGateway({ upstreamBaseUrl: 'http://127.0.0.1:9/v1', maxBodyBytes: LIMIT, wordDelayMs: 0 });
    port = Number(new URL(g.url).port);
  });
  after(() => g.close());

  test('structured requests: answered in the caller format, never 500, one log record each', async () => {
    const property = fc.asyncProperty(
      fc.nat({ max: ROUTES.length - 1 }).chain((i) => fc.record({ route: fc.constant(ROUTES[i]!), body: bodyFor(ROUTES[i]!.valid) })),
      fc.option(pathArb, { freq: 3 }),
      fc.option(methodArb, { freq: 3 }),
      headersArb,
      async ({ route, body }, pathOverride, methodOverride, headers) => {
        const path = pathOverride ?? route.path;
        const method = methodOverride ?? route.method;
        const id = `fuzz-${++n}`;
        ids.push(id);
        const h: Record<string, string> = { ...headers, 'x-request-id': id };
        for (const k of Object.keys(h)) if (h[k] === '') delete h[k];
        const hasBody = method !== 'GET' && method !== 'HEAD';
        const res = await fetch(`${g.url}${path}`, { method, headers: h, body: hasBody ? body : undefined });
        const text = await res.text();
        assert.notEqual(res.status, 500, `500 on ${method} ${path}: ${text.slice(0, 300)}`);
        assert.ok(res.status >= 200 && res.status < 600);
        if (res.status >= 400 && method !== 'HEAD') checkError(path, h, res.status, res.headers, text);
        if (res.status >= 500) assert.ok([502, 503, 504].includes(res.status), `${res.status} on ${method} ${path}`);
        // Exactly one record, however the request ended.
        const rec = await g.waitForRecord(id);
        assert.equal(rec.status, res.status);
        assert.equal(g.recordsFor(id).length, 1);
      },
    );
    await fc.assert(property, { seed: SEED, numRuns: 300 * RUNS, endOnFailure: true });
    // No request got a second record later (a stream's end, a late failure).
    await assertStillUp(g.url);
    for (const id of ids) assert.equal(g.recordsFor(id).length, 1, id);
  });

  test('deep nesting inside valid requests of every body route: never a 500 (stack overflow), one record each', async () => {
    const bodyRoutes = ROUTES.filter((r) => r.valid && r.method === 'POST');
    const property = fc.asyncProperty(fc.constantFrom(...bodyRoutes), deepInside(undefined), async (route, deepBody) => {
      // deepInside(undefined) built the body around nothing: merge the route's valid fields in front.
      const body = JSON.stringify(route.valid).slice(0, -1) + (deepBody.length > 2 ? `,${deepBody.slice(1)}` : '}');
      const id = `fuzz-deep-${++n}`;
      const res = await fetch(`${g.url}${route.path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body });
      const text = await res.text();
      assert.notEqual(res.status, 500, `500 on ${route.path}: ${text.slice(0, 300)}`);
      if (res.status >= 400) checkError(route.path, {}, res.status, res.headers, text);
      await g.waitForRecord(id);
      assert.equal(g.recordsFor(id).length, 1);
    });
    await fc.assert(property, { seed: SEED, numRuns: 80 * RUNS, endOnFailure: true });
  });

  test('raw malformed HTTP over a socket: the process stays up, each answer is logged once', async () => {
    const property = fc.asyncProperty(rawArb, async (bytes) => {
      const before = g.records.length;
      const responses = await rawSend(port, bytes);
      for (const r of responses) {
        assert.notEqual(r.status, 500, `500 for ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}: ${r.body.slice(0, 200)}`);
        assert.ok(r.status >= 200 && r.status < 600 && r.status !== 500, String(r.status));
        if (r.status >= 400 && r.body) assertCleanErrorText(r.body);
        const id = r.headers['x-request-id'];
        if (id && !id.startsWith('fuzz-')) {
          await g.waitForRecord(id);
          assert.equal(g.recordsFor(id).length, 1);
        }
      }
      // Every answer has its record (a request cut off before its answer may have one too).
      await waitUntil(() => g.records.length - before >= responses.length);
      const res = await fetch(`${g.url}/health`);
      assert.equal(res.status, 200);
      await res.text();
    });
    await fc.assert(property, { seed: SEED, numRuns: 150 * RUNS, endOnFailure: true });
  });
});

/** Write `bytes`, half-close, and read until the server closes (bounded by a safety timer, not asserted on). */
function rawSend(port: number, bytes: Buffer): Promise<ReturnType<typeof parseResponses>> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseResponses(Buffer.concat(chunks)));
    };
    const timer = setTimeout(finish, 5_000);
    socket.on('data', (d) => chunks.push(d));
    socket.on('close', finish);
    socket.on('error', finish);
    socket.end(bytes);
  });
}

async function waitUntil(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}
