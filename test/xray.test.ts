import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { newKey } from '../shared/policy/keys.ts';
import { createDynamoStore } from '../shared/store/dynamodb.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { installAwsLambdaGlobal, lambdaContext, ResponseStreamStandIn } from './helpers/awslambda.ts';
import { startDynamo } from './helpers/keys.ts';
import { startMockFirehose, type MockFirehose } from './helpers/mock-firehose.ts';
import { createGate, openaiErrorJson, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * X-Ray from the real Lambda entry, as the Lambda runtime sets it up: LAMBDA_TASK_ROOT and
 * AWS_EXECUTION_ENV (so tracing is on, as in Lambda), `_X_AMZN_TRACE_ID` per invocation, and AWS_XRAY_DAEMON_ADDRESS pointing at a UDP
 * socket this test binds on loopback in place of the X-Ray daemon. The subsegment documents the
 * gateway's emitter (functions/lib/xray.ts) sends are decoded and checked: names, nesting, trace id and annotations. Upstream, store and
 * log export are real protocol stand-ins (OpenAI mock, dynalite, Firehose mock).
 */

const chatEvent: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));
type Invoke = (event: APIGatewayProxyEvent, stream: ResponseStreamStandIn, context: unknown) => Promise<void>;

interface XrayDoc {
  type?: string;
  name: string;
  id: string;
  trace_id: string;
  parent_id: string;
  start_time: number;
  end_time?: number;
  in_progress?: boolean;
  namespace?: string;
  annotations?: Record<string, string | number | boolean>;
  aws?: Record<string, unknown>;
  error?: boolean;
  fault?: boolean;
  throttle?: boolean;
  cause?: { exceptions?: Array<{ message?: string }> };
}

function chatCall(key: string, body: unknown, requestId: string): APIGatewayProxyEvent {
  const ev = structuredClone(chatEvent);
  const headers: Record<string, string> = { ...(ev.headers as Record<string, string>), Authorization: `Bearer ${key}`, 'x-request-id': requestId };
  ev.headers = headers;
  ev.multiValueHeaders = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]]));
  ev.body = JSON.stringify(body);
  return ev;
}

/** A fresh X-Ray trace header, as Lambda sets `_X_AMZN_TRACE_ID` for a sampled invocation. */
function newInvocationTrace(): { header: string; root: string; parent: string } {
  const root = `1-${Math.floor(Date.now() / 1000).toString(16).padStart(8, '0')}-${randomBytes(12).toString('hex')}`;
  const parent = randomBytes(8).toString('hex');
  return { header: `Root=${root};Parent=${parent};Sampled=1;Lineage=1:abcd1234:0`, root, parent };
}

describe('X-Ray subsegments from the Lambda entry (the light emitter, over UDP to the daemon address)', () => {
  let daemon: Socket;
  const docs: XrayDoc[] = [];
  const headers: Array<Record<string, unknown>> = [];
  let upstream: MockOpenAI;
  let firehose: MockFirehose;
  let dynamo: LocalDynamo;
  let handler: Invoke;
  let key: { id: string; key: string };
  const saved = { ...process.env };

  async function invoke(ev: APIGatewayProxyEvent) {
    const stream = new ResponseStreamStandIn();
    await handler(ev, stream, lambdaContext(`c0ffee00-0000-4000-8000-${randomBytes(6).toString('hex')}`));
    const { metadata, body } = stream.parsed();
    return { status: metadata.statusCode, headers: metadata.headers, body };
  }

  /** Wait (bounded) until the daemon has received documents satisfying `done`. */
  async function received(done: (d: XrayDoc[]) => boolean): Promise<XrayDoc[]> {
    for (let i = 0; i < 300 && !done(docs); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(done(docs), `X-Ray documents received: ${JSON.stringify(docs.map((d) => d.name))}`);
    return docs;
  }

  before(async () => {
    daemon = createSocket('udp4');
    daemon.on('message', (msg) => {
      // The daemon protocol: a JSON header line, then the segment document.
      const text = msg.toString('utf8');
      const nl = text.indexOf('\n');
      headers.push(JSON.parse(text.slice(0, nl)));
      docs.push(JSON.parse(text.slice(nl + 1)));
    });
    await new Promise<void>((r) => daemon.bind(0, '127.0.0.1', r));
    const port = (daemon.address() as AddressInfo).port;

    upstream = await startMockOpenAI();
    firehose = await startMockFirehose();
    const started = await startDynamo();
    dynamo = started.dynamo;
    const store = createDynamoStore(started.settings);
    const k = newKey();
    const now = new Date().toISOString();
    await store.createKey({ id: k.id, hash: k.hash, name: 'xray-test', team: 'platform', limits: {}, budget: {}, createdAt: now, updatedAt: now, metadata: {}, version: 1 });
    key = { id: k.id, key: k.key };

    Object.assign(process.env, {
      // What the Lambda runtime sets.
      LAMBDA_TASK_ROOT: '/var/task',
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs20.x',
      AWS_LAMBDA_FUNCTION_NAME: 'llm-gateway-test',
      AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${port}`,
      AWS_XRAY_CONTEXT_MISSING: 'LOG_ERROR',
      _X_AMZN_TRACE_ID: newInvocationTrace().header,
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'AKIDXRAYTEST',
      AWS_SECRET_ACCESS_KEY: 'xray-test-secret',
      // What the stack sets.
      POWERTOOLS_SERVICE_NAME: 'llm-gateway-xray-test',
      POWERTOOLS_METRICS_DISABLED: 'true',
      LOG_STREAM_NAME: 'gateway-request-logs',
      AWS_ENDPOINT_URL_FIREHOSE: firehose.endpoint,
      GATEWAY_KEYS_TABLE: started.settings.tables.keys,
      GATEWAY_USAGE_TABLE: started.settings.tables.usage,
      GATEWAY_CACHE_TABLE: 'test-cache',
      DYNAMODB_ENDPOINT: started.settings.endpoint,
      TEST_XRAY_UPSTREAM_KEY: 'sk-upstream-xray-0000000000000000',
      GATEWAY_CONFIG_JSON: JSON.stringify({
        providers: { openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: 'TEST_XRAY_UPSTREAM_KEY' }, mock: { type: 'mock' } },
        models: {
          // The first target fails (503), the fallback serves: two attempts.
          gpt: { groups: [{ targets: [{ provider: 'openai', model: 'gpt-4o-mini' }] }, { targets: [{ provider: 'openai', model: 'gpt-4.1' }] }], retry: { retries: 0 } },
          other: { provider: 'openai', model: 'gpt-4.1-nano' },
          'mock-embed': { provider: 'mock', model: 'mock-embed-1' },
        },
        auth: { required: true, cacheTtlSeconds: 0 },
        cache: { backend: 'dynamodb', models: { gpt: {} } },
      }),
    });
    installAwsLambdaGlobal();
    ({ handler } = (await import('../functions/gateway.ts')) as unknown as { handler: Invoke });
  });

  after(async () => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    daemon?.close();
    await upstream?.close();
    await firehose?.close();
    await dynamo?.close();
  });

  it('a streamed request: one request subsegment with the request annotations; one per upstream attempt, store call and the log export', async () => {
    const trace = newInvocationTrace();
    process.env._X_AMZN_TRACE_ID = trace.header;
    docs.length = 0;
    upstream.script({ type: 'error', status: 503, body: openaiErrorJson(503, 'overloaded') }, { type: 'text', pieces: ['Traced', ' answer'] });

    const res = await invoke(chatCall(key.key, { model: 'gpt', stream: true, temperature: 0, messages: [{ role: 'user', content: 'trace me' }] }, 'req-xray-1'));
    assert.equal(res.status, 200, res.body);
    assert.match(res.body, /Traced/);
    assert.equal(res.headers['x-gateway-model'], 'gpt-4.1');
    // The W3C trace the gateway reports is the X-Ray trace (same 128 bits).
    assert.equal(res.headers.traceparent!.split('-')[1], trace.root.slice(2).replace('-', ''));
    assert.equal(firehose.calls.length, 1, 'the record went to Firehose');

    const all = await received((d) => ['gateway', 'log export', 'Firehose'].every((n) => d.some((x) => x.name === n)) && d.filter((x) => x.name.startsWith('openai/')).length === 2);
    for (const d of all) {
      assert.equal(d.type, 'subsegment');
      assert.equal(d.trace_id, trace.root, `${d.name} belongs to the invocation's trace`);
      assert.ok(!d.in_progress && d.end_time! >= d.start_time, `${d.name} is closed`);
    }
    for (const h of headers) assert.deepEqual(h, { format: 'json', version: 1 });
    const byName = (n: string) => all.filter((d) => d.name === n);

    // The request: a child of the Lambda invocation's segment, annotated from its log record.
    const [gw] = byName('gateway');
    assert.ok(gw);
    assert.equal(gw.parent_id, trace.parent);
    assert.deepEqual(
      { ...gw.annotations },
      {
        Service: 'llm-gateway-xray-test',
        ColdStart: true,
        requestId: 'req-xray-1',
        keyId: key.id,
        team: 'platform',
        model: 'gpt',
        provider: 'openai',
        upstreamModel: 'gpt-4.1',
        cacheStatus: gw.annotations?.cacheStatus,
        frontDoor: 'openai-chat',
        status: 200,
        outcome: 'ok',
      },
    );
    assert.ok(['miss', 'stored'].includes(String(gw.annotations?.cacheStatus)), `cacheStatus ${gw.annotations?.cacheStatus}`);

    // Each upstream attempt, named provider/model, under the request.
    const [failed] = byName('openai/gpt-4o-mini');
    const [served] = byName('openai/gpt-4.1');
    assert.ok(failed && served);
    for (const a of [failed, served]) {
      assert.equal(a.parent_id, gw.id);
      assert.equal(a.namespace, 'remote');
    }
    assert.deepEqual({ provider: failed.annotations?.provider, model: failed.annotations?.model, status: failed.annotations?.status }, { provider: 'openai', model: 'gpt-4o-mini', status: 503 });
    assert.equal(failed.fault, true);
    assert.ok(failed.cause?.exceptions?.length, 'the failed attempt carries its error');
    assert.deepEqual({ provider: served.annotations?.provider, model: served.annotations?.model, status: served.annotations?.status }, { provider: 'openai', model: 'gpt-4.1', status: 200 });
    assert.equal(typeof served.annotations?.firstByteMs, 'number');
    assert.ok(!served.fault && !served.error);
    assert.ok(failed.end_time! <= served.start_time, 'the fallback starts after the first attempt ended');
    // The streamed attempt's span lasts until the stream ended, within the request's.
    assert.ok(served.end_time! <= gw.end_time!);

    // Store round trips: the key lookup (keys table) and the cache lookup, under the request.
    const store = byName('DynamoDB');
    const keyLookup = store.find((d) => d.aws?.table_name === process.env.GATEWAY_KEYS_TABLE);
    assert.ok(keyLookup, `store subsegments: ${JSON.stringify(store.map((d) => d.aws))}`);
    assert.equal(keyLookup.aws?.operation, 'GetItem');
    assert.equal(keyLookup.namespace, 'aws');
    assert.equal(keyLookup.parent_id, gw.id);
    assert.ok(store.some((d) => d.aws?.table_name === 'test-cache' && d.aws?.operation === 'GetItem'), 'the cache lookup');

    // The log export after the response: a child of the invocation, with the Firehose call in it.
    const [exp] = byName('log export');
    assert.ok(exp);
    assert.equal(exp.parent_id, trace.parent);
    assert.equal(exp.annotations?.records, 1);
    assert.ok(exp.start_time >= served.end_time!, 'exported after the stream ended');
    const [put] = byName('Firehose');
    assert.equal(put!.parent_id, exp.id);
    assert.deepEqual(put!.aws, { operation: 'PutRecordBatch', delivery_stream: 'gateway-request-logs' });
  });

  it('a cache hit: the request subsegment says so, and no upstream attempt is made', async () => {
    const trace = newInvocationTrace();
    process.env._X_AMZN_TRACE_ID = trace.header;
    docs.length = 0;
    const calls = upstream.chatRequests().length;
    const res = await invoke(chatCall(key.key, { model: 'gpt', stream: true, temperature: 0, messages: [{ role: 'user', content: 'trace me' }] }, 'req-xray-2'));
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['x-gateway-cache'], 'hit');
    assert.equal(upstream.chatRequests().length, calls);
    const all = await received((d) => d.some((x) => x.name === 'gateway') && d.some((x) => x.name === 'log export'));
    const gw = all.find((d) => d.name === 'gateway')!;
    assert.equal(gw.trace_id, trace.root);
    assert.equal(gw.parent_id, trace.parent);
    assert.deepEqual([gw.annotations?.cacheStatus, gw.annotations?.keyId, gw.annotations?.ColdStart], ['hit', key.id, false]);
    assert.ok(!all.some((d) => d.name.startsWith('openai/')));
  });

  it('an upstream client error: the attempt and the request are X-Ray errors (4xx), not faults', async () => {
    const trace = newInvocationTrace();
    process.env._X_AMZN_TRACE_ID = trace.header;
    docs.length = 0;
    upstream.script({ type: 'error', status: 400, body: openaiErrorJson(400, 'bad temperature', 'invalid_request_error', null, 'temperature') });
    const res = await invoke(chatCall(key.key, { model: 'other', messages: [{ role: 'user', content: 'x' }] }, 'req-400'));
    assert.equal(res.status, 400, res.body);
    const all = await received((d) => d.some((x) => x.name === 'gateway') && d.some((x) => x.name === 'openai/gpt-4.1-nano'));
    const attempt = all.find((d) => d.name === 'openai/gpt-4.1-nano')!;
    const gw = all.find((d) => d.name === 'gateway')!;
    assert.equal(attempt.parent_id, gw.id);
    assert.deepEqual([attempt.annotations?.status, attempt.error, attempt.fault], [400, true, undefined]);
    assert.deepEqual([gw.annotations?.status, gw.annotations?.outcome, gw.error, gw.fault], [400, 'error', true, undefined]);
  });

  it('an embeddings call is a span like a chat attempt', async () => {
    const trace = newInvocationTrace();
    process.env._X_AMZN_TRACE_ID = trace.header;
    docs.length = 0;
    const ev = chatCall(key.key, { model: 'mock-embed', input: 'trace this text' }, 'req-embed');
    ev.path = '/v1/embeddings';
    ev.pathParameters = { proxy: 'embeddings' };
    ev.requestContext.path = '/prod/v1/embeddings';
    const res = await invoke(ev);
    assert.equal(res.status, 200, res.body);
    const all = await received((d) => d.some((x) => x.name === 'gateway') && d.some((x) => x.name === 'mock/mock-embed-1'));
    const gw = all.find((d) => d.name === 'gateway')!;
    const call = all.find((d) => d.name === 'mock/mock-embed-1')!;
    assert.equal(call.parent_id, gw.id);
    assert.deepEqual([call.annotations?.provider, call.annotations?.model, call.namespace], ['mock', 'mock-embed-1', 'remote']);
    assert.deepEqual([gw.annotations?.model, gw.annotations?.provider, gw.annotations?.keyId], ['mock-embed', 'mock', key.id]);
  });

  it('concurrent requests in one environment keep their own parents', async () => {
    const trace = newInvocationTrace();
    process.env._X_AMZN_TRACE_ID = trace.header;
    docs.length = 0;
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['slow', ' one'], pauseAfter: 1, gate }, { type: 'text', pieces: ['fast'] });
    // A is paused mid-stream upstream while B runs start to finish.
    const a = invoke(chatCall(key.key, { model: 'gpt', stream: true, temperature: 1, messages: [{ role: 'user', content: 'A' }] }, 'req-a'));
    await gate.reached;
    const b = await invoke(chatCall(key.key, { model: 'other', stream: true, messages: [{ role: 'user', content: 'B' }] }, 'req-b'));
    gate.open();
    assert.equal(b.status, 200);
    assert.equal((await a).status, 200);

    const all = await received((d) => d.filter((x) => x.name === 'gateway').length === 2 && d.filter((x) => x.name.startsWith('openai/')).length === 2);
    const gwA = all.find((d) => d.name === 'gateway' && d.annotations?.requestId === 'req-a')!;
    const gwB = all.find((d) => d.name === 'gateway' && d.annotations?.requestId === 'req-b')!;
    assert.ok(gwA && gwB);
    assert.equal(all.find((d) => d.name === 'openai/gpt-4o-mini')!.parent_id, gwA.id);
    assert.equal(all.find((d) => d.name === 'openai/gpt-4.1-nano')!.parent_id, gwB.id);
    assert.deepEqual([gwA.annotations?.model, gwB.annotations?.model], ['gpt', 'other']);
  });
});
