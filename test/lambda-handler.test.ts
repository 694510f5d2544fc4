import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { installAwsLambdaGlobal, lambdaContext, PRELUDE_CONTENT_TYPE, ResponseStreamStandIn } from './helpers/awslambda.ts';

const recorded: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));

type Invoke = (event: APIGatewayProxyEvent, stream: ResponseStreamStandIn, context: unknown) => Promise<void>;
let handler: Invoke;
let logLines: string[] = [];
const realWrite = process.stdout.write.bind(process.stdout);

function event(patch: Partial<APIGatewayProxyEvent>): APIGatewayProxyEvent {
  return { ...structuredClone(recorded), ...patch };
}

async function invoke(ev: APIGatewayProxyEvent, onChunk?: (c: Buffer) => void) {
  const stream = new ResponseStreamStandIn(onChunk);
  await handler(ev, stream, lambdaContext());
  return { stream, ...stream.parsed() };
}

function requestLogs(): Array<Record<string, any>> {
  return logLines
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .filter((l) => l.message === 'request');
}

describe('Lambda entry (functions/gateway.ts) with a recorded API Gateway REST event', () => {
  before(async () => {
    installAwsLambdaGlobal();
    process.env.GATEWAY_CONFIG_JSON = JSON.stringify({
      providers: { mock: { type: 'mock', wordDelayMs: 0 } },
      models: { mock: { provider: 'mock', model: 'mock-echo-1' } },
      server: { maxBodyBytes: 2048 },
    });
    process.env.POWERTOOLS_SERVICE_NAME = 'llm-gateway-test';
    // Capture the structured log lines the handler writes to stdout (CloudWatch in AWS).
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (s.includes('"message":"request"')) {
        logLines.push(s);
        return true;
      }
      return (realWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
    ({ handler } = (await import('../functions/gateway.ts')) as unknown as { handler: Invoke });
  });
  after(() => {
    process.stdout.write = realWrite;
    delete process.env.GATEWAY_CONFIG_JSON;
  });

  it('is marked as a response-streaming handler', () => {
    assert.equal((handler as unknown as Record<symbol, unknown>)[Symbol.for('aws.lambda.runtime.handler.streaming')], 'response');
  });

  it('answers the recorded non-streaming chat request with metadata prelude, headers and JSON body', async () => {
    logLines = [];
    const { stream, metadata, body } = await invoke(recorded);
    assert.equal(stream.contentType, PRELUDE_CONTENT_TYPE);
    assert.equal(metadata.statusCode, 200);
    assert.match(metadata.headers['content-type']!, /^application\/json/);
    assert.equal(metadata.headers['x-gateway-provider'], 'mock');
    assert.ok(metadata.headers['x-request-id']);
    assert.equal(metadata.headers['content-length'], undefined);
    const json = JSON.parse(body);
    assert.equal(json.object, 'chat.completion');
    assert.equal(json.model, 'mock-echo-1');
    assert.equal(json.choices[0].message.role, 'assistant');
    assert.equal(json.choices[0].message.content, 'Hello from API Gateway');
    assert.equal(json.choices[0].finish_reason, 'stop');
    assert.deepEqual(
      { p: json.usage.prompt_tokens > 0, c: json.usage.completion_tokens, t: json.usage.total_tokens },
      { p: true, c: 4, t: json.usage.prompt_tokens + 4 },
    );
    const logs = requestLogs();
    assert.equal(logs.length, 1, 'exactly one request log line');
    assert.equal(logs[0]!.request.requestId, metadata.headers['x-request-id']);
    assert.equal(logs[0]!.request.status, 200);
    assert.equal(logs[0]!.request.path, '/v1/chat/completions');
    assert.equal(logs[0]!.function_request_id, 'c0ffee00-0000-4000-8000-000000000001');
    assert.ok(!JSON.stringify(logs).includes('gw-test-key'), 'the caller key never reaches the log');
  });

  it('answers an event with headers fetch cannot carry and a hostile Host: they are left out, the route is the path', async () => {
    logLines = [];
    const hostile = event({
      multiValueHeaders: { ...recorded.multiValueHeaders, 'x-snowman': ['\u2603'], 'bad name': ['v'], 'x-fine': ['ok'], Host: ['evil.example/v1/models?'] },
      headers: { ...recorded.headers, 'x-snowman': '\u2603', 'bad name': 'v', 'x-fine': 'ok', Host: 'evil.example/v1/models?' },
    });
    const { metadata, body } = await invoke(hostile);
    assert.equal(metadata.statusCode, 200);
    assert.equal(JSON.parse(body).object, 'chat.completion');
    const logs = requestLogs();
    assert.equal(logs.length, 1, 'exactly one request log line');
    assert.equal(logs[0]!.request.path, '/v1/chat/completions');
    assert.equal(logs[0]!.request.status, 200);
  });

  it('fuzz: 300 hostile events (headers, Host, path, method, query, body) each get an answer in the API shape and one log line', async () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const chars = ['a', 'Z', '0', ' ', '/', '.', '%', '?', '#', ':', '@', '\\', '"', '{', '\u0000', '\r', '\n', '\t', '\u00e9', '\u2603', '\ud83d\ude00', '\ud800'];
    const junk = (max: number) => Array.from({ length: Math.floor(rand() * max) }, () => pick(chars)).join('');
    const paths = ['/v1/chat/completions', '/v1/messages', '/v1/models', '/v1/responses', '/v1/embeddings', '/', '/admin/keys', '/mcp', '/bedrock/model/x/converse'];
    for (let i = 0; i < 300; i++) {
      logLines = [];
      const headers = { ...recorded.multiValueHeaders } as Record<string, string[]>;
      for (let h = Math.floor(rand() * 4); h > 0; h--) headers[rand() < 0.5 ? junk(8) || 'x' : `x-${junk(4)}`] = [junk(12)];
      if (rand() < 0.3) headers.Host = [junk(16)];
      if (rand() < 0.2) headers['Content-Type'] = [pick(['text/plain', 'application/json; charset=utf-16', junk(10)])];
      const path = rand() < 0.7 ? pick(paths) + (rand() < 0.3 ? junk(6) : '') : `/${junk(20)}`;
      const body = rand() < 0.5 ? JSON.stringify({ model: pick(['mock', junk(5)]), messages: rand() < 0.7 ? [{ role: pick(['user', 'system', junk(4)]), content: junk(20) }] : junk(5), stream: rand() < 0.3 }) : junk(40);
      const ev = event({
        httpMethod: pick(['POST', 'POST', 'GET', 'HEAD', 'DELETE', 'PUT', 'OPTIONS']),
        path,
        multiValueHeaders: headers,
        headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v[0]!])),
        multiValueQueryStringParameters: rand() < 0.3 ? { [junk(5) || 'q']: [junk(8)] } : null,
        queryStringParameters: null,
        body: rand() < 0.1 ? null : body,
        isBase64Encoded: rand() < 0.1,
      });
      const { metadata, body: out } = await invoke(ev);
      const what = `event ${i}: ${JSON.stringify({ method: ev.httpMethod, path, status: metadata.statusCode })}`;
      assert.ok(metadata.statusCode >= 200 && metadata.statusCode < 600, what);
      assert.notEqual(metadata.statusCode, 500, `${what}: ${out.slice(0, 200)}`);
      if (metadata.statusCode >= 400 && ev.httpMethod !== 'HEAD') assert.ok(JSON.parse(out).error || JSON.parse(out).type === 'error' || JSON.parse(out).message, `${what}: ${out.slice(0, 200)}`);
      assert.equal(requestLogs().length, 1, `${what}: one log line`);
    }
  });

  it('streams SSE chunks after the prelude, with usage and [DONE]', async () => {
    const body = JSON.stringify({ model: 'mock', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'one two three' }] });
    const writes: string[] = [];
    const res = await invoke(event({ body }), (c) => writes.push(c.toString('utf8')));
    assert.equal(res.metadata.statusCode, 200);
    assert.match(res.metadata.headers['content-type']!, /^text\/event-stream/);
    const events = res.body.split('\n\n').filter(Boolean);
    assert.equal(events.at(-1), 'data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'one two three');
    assert.equal(chunks.at(-1).choices.length, 0);
    assert.equal(chunks.at(-1).usage.completion_tokens, 3);
    // The body reached the stream in several writes, not one buffered blob.
    assert.ok(writes.length >= 4, `expected several body writes, got ${writes.length}`);
  });

  it('cancels a streamed answer whose client leaves mid-stream: the record says client_closed', async () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`).join(' ');
    const body = JSON.stringify({ model: 'mock', stream: true, messages: [{ role: 'user', content: words }] });
    const stream = new ResponseStreamStandIn();
    let writes = 0;
    // The runtime's stream fails on the third write (prelude, separator, first event): the client is gone.
    stream._write = (chunk, _enc, cb) => (++writes >= 3 ? cb(new Error('client went away')) : (stream.chunks.push(Buffer.from(chunk)), cb()));
    const before = requestLogs().length;
    await handler(event({ body, requestContext: { ...recorded.requestContext, requestId: 'gone-1' } }), stream, lambdaContext()).catch(() => {});
    const records = requestLogs().slice(before).map((l) => l.request);
    assert.equal(records.length, 1);
    assert.equal(records[0].outcome, 'client_closed');
    assert.ok((records[0].outputTokens ?? 0) < 200, 'the answer stopped early');
  });

  it('decodes base64 bodies and keeps multi-value query strings', async () => {
    const body = Buffer.from(JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'base64 works' }] })).toString('base64');
    const res = await invoke(event({ body, isBase64Encoded: true, multiValueQueryStringParameters: { a: ['1', '2'] }, queryStringParameters: { a: '2' } }));
    assert.equal(res.metadata.statusCode, 200);
    assert.equal(JSON.parse(res.body).choices[0].message.content, 'base64 works');
  });

  it('returns OpenAI-shaped errors with the right status: bad JSON, unknown model, too large, unknown route', async () => {
    const bad = await invoke(event({ body: '{"model": "mock", ' }));
    assert.equal(bad.metadata.statusCode, 400);
    assert.equal(JSON.parse(bad.body).error.code, 'invalid_json');

    const unknown = await invoke(event({ body: JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }) }));
    assert.equal(unknown.metadata.statusCode, 404);
    assert.equal(JSON.parse(unknown.body).error.code, 'model_not_found');

    const big = await invoke(event({ body: JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'x'.repeat(4096) }] }) }));
    assert.equal(big.metadata.statusCode, 413);
    const bigErr = JSON.parse(big.body).error;
    assert.equal(typeof bigErr.message, 'string');
    assert.ok(!/\n\s+at /.test(big.body), 'no stack trace');

    const route = await invoke(event({ path: '/v2/whatever', httpMethod: 'GET', body: null }));
    assert.equal(route.metadata.statusCode, 404);
    assert.equal(JSON.parse(route.body).error.type, 'invalid_request_error');
  });

  it('serves GET /v1/models and HEAD / through the same entry', async () => {
    const models = await invoke(event({ path: '/v1/models', httpMethod: 'GET', body: null }));
    assert.equal(models.metadata.statusCode, 200);
    assert.deepEqual(JSON.parse(models.body).data.map((m: { id: string }) => m.id), ['mock']);
    const head = await invoke(event({ path: '/', httpMethod: 'HEAD', body: null }));
    assert.equal(head.metadata.statusCode, 200);
  });
});
