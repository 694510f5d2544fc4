import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutRecordBatchCommand, type PutRecordBatchOutput } from '@aws-sdk/client-firehose';
import { Logger } from '@aws-lambda-powertools/logger';
import OpenAI from 'openai';
import { parseConfig } from '../shared/config/load.ts';
import type { GatewayConfig } from '../shared/config/schema.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import { FileLogSink } from '../shared/telemetry/file-sink.ts';
import { FIREHOSE_MAX_BATCH_RECORDS, FIREHOSE_MAX_RECORD_BYTES, FirehoseLogSink, UNDELIVERED_MARKER, type FirehoseSender } from '../shared/telemetry/firehose-sink.ts';
import { EmfMetricsSink, METRIC_DIMENSION_SETS, METRIC_NAMESPACE, METRIC_UNITS, METRICS, OTHER_TEAM, UNKNOWN_MODEL } from '../shared/telemetry/metrics.ts';
import { LOG_SCHEMA_VERSION, RequestTrace, type RequestRecord } from '../shared/telemetry/record.ts';
import { METADATA_MAX_BYTES, METADATA_MAX_KEYS, parseMetadataHeader } from '../shared/telemetry/metadata.ts';
import { LOG_COLUMNS, logObjectPrefix } from '../shared/telemetry/schema.ts';
import { schemaProblems } from '../shared/telemetry/validate.ts';
import { LoggerSink } from '../functions/lib/logger-sink.ts';
import { lambdaSinks } from '../functions/lib/sinks.ts';
import { LOG_SCHEMA_DOC, renderLogSchemaDoc } from '../scripts/log-schema-doc.ts';
import { awaitRecord, MemorySink, UPSTREAM_KEY, UPSTREAM_MODEL } from './helpers/gateway.ts';
import { ADMIN_TOKEN, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';
import { startMockFirehose, type MockFirehose } from './helpers/mock-firehose.ts';
import { openaiErrorJson, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * Issue 6: one record per request (keys, limits, fallback, admin), every field where it applies,
 * the Firehose export (real SDK client against a loopback Firehose), the local NDJSON files read
 * back against the schema, /admin/stats, the EMF metrics and the generated schema doc.
 */

const UPSTREAM_ENV = 'TEL_UPSTREAM_KEY';

/** Bounded poll for the records of a request id. */
async function recordsOf(sink: MemorySink, requestId: string, timeoutMs = 5_000): Promise<RequestRecord[]> {
  await awaitRecord(sink.records, (r) => r.requestId === requestId, requestId, timeoutMs);
  return sink.records.filter((r) => r.requestId === requestId);
}

/**
 * The request's one record: wait for it, then for the record of a later /health call (anything the
 * first request still had to log is logged by then), and check there is exactly one, fitting the schema.
 */
async function theRecord(sink: MemorySink, baseUrl: string, requestId: string | null): Promise<RequestRecord> {
  assert.ok(requestId, 'the response carries x-request-id');
  await recordsOf(sink, requestId);
  const barrier = await fetch(`${baseUrl}/health`);
  await barrier.arrayBuffer();
  await recordsOf(sink, barrier.headers.get('x-request-id')!);
  const all = sink.records.filter((r) => r.requestId === requestId);
  assert.equal(all.length, 1, `exactly one record for ${requestId}`);
  const r = all[0]!;
  assert.deepEqual(schemaProblems(JSON.parse(JSON.stringify(r))), [], 'the record fits the schema');
  assert.equal(r.schemaVersion, LOG_SCHEMA_VERSION);
  return r;
}

describe('one record per request: keys, rate limits and admin routes (dynalite)', () => {
  let g: KeyedGateway;
  let key: { id: string; key: string };
  let createdRequestId: string | null;

  before(async () => {
    g = await startKeyedGateway();
    const created = await g.admin('POST', '/admin/keys', { name: 'logged', team: 'search', limits: { rpm: 1 } });
    assert.equal(created.status, 201);
    key = { id: created.json.id, key: created.json.key };
    createdRequestId = created.headers.get('x-request-id');
  });
  after(async () => {
    await g?.close();
  });

  const chat = (headers: Record<string, string>, body: unknown = { model: 'mock', messages: [{ role: 'user', content: 'count my words' }] }) =>
    fetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  it('success with a key: ids, team, cost, rate-limit outcome, metadata, session id, user agent; never the key', async () => {
    const res = await chat({
      authorization: `Bearer ${key.key}`,
      'user-agent': 'claude-cli/2.1.0 (external, cli)',
      'x-claude-code-session-id': 'sess-7d2c1b4a',
      'x-gateway-metadata': JSON.stringify({ app: 'search', env: 'prod' }),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const r = await theRecord(g.sink, g.url, res.headers.get('x-request-id'));
    assert.equal(r.outcome, 'ok');
    assert.equal(r.status, 200);
    assert.equal(r.keyId, key.id);
    assert.equal(r.team, 'search');
    assert.equal(r.frontDoor, 'openai-chat');
    assert.equal(r.model, 'mock');
    assert.equal(r.provider, 'mock');
    assert.equal(r.upstreamModel, 'mock-echo-1');
    assert.equal(r.attempts, 1);
    assert.equal(r.fallbacks, 0);
    assert.equal(r.rateLimit, 'allowed');
    assert.equal(r.sessionId, 'sess-7d2c1b4a');
    assert.deepEqual(r.metadata, { app: 'search', env: 'prod' });
    assert.equal(r.userAgent, 'claude-cli/2.1.0 (external, cli)');
    assert.ok(r.inputTokens! > 0 && r.outputTokens! > 0);
    // pricing in startKeyedGateway: mock-echo-1 at 2 (input) and 8 (output) USD per million tokens
    assert.equal(r.costUsd, (r.inputTokens! * 2 + r.outputTokens! * 8) / 1e6);
    assert.ok(!JSON.stringify(r).includes(key.key), 'the key is never in a record');
  });

  it('rate-limited 429: one record saying which limit refused', async () => {
    const res = await chat({ authorization: `Bearer ${key.key}` });
    assert.equal(res.status, 429);
    await res.arrayBuffer();
    const r = await theRecord(g.sink, g.url, res.headers.get('x-request-id'));
    assert.equal(r.status, 429);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorType, 'rate_limit');
    assert.equal(r.errorCode, 'rate_limit_exceeded');
    assert.equal(r.rateLimit, 'limited');
    assert.equal(r.rateLimitReason, 'requests_per_minute');
    assert.equal(r.keyId, key.id);
    assert.equal(r.team, 'search');
    assert.equal(r.provider, undefined, 'no upstream was called');
  });

  it('401 without a key and with an unknown key: one record each, no key material', async () => {
    const missing = await chat({});
    assert.equal(missing.status, 401);
    await missing.arrayBuffer();
    const a = await theRecord(g.sink, g.url, missing.headers.get('x-request-id'));
    assert.equal(a.status, 401);
    assert.equal(a.errorType, 'authentication');
    assert.equal(a.errorCode, 'missing_api_key');
    assert.equal(a.keyId, undefined);

    const bogus = `${key.key.slice(0, -4)}zzzz`;
    const wrong = await chat({ authorization: `Bearer ${bogus}` });
    assert.equal(wrong.status, 401);
    await wrong.arrayBuffer();
    const b = await theRecord(g.sink, g.url, wrong.headers.get('x-request-id'));
    assert.equal(b.errorCode, 'invalid_api_key');
    assert.ok(!JSON.stringify(b).includes(bogus));
  });

  it('admin routes are logged once each (success and refusal), without the created key', async () => {
    const r = await theRecord(g.sink, g.url, createdRequestId);
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/admin/keys');
    assert.equal(r.status, 201);
    assert.equal(r.outcome, 'ok');

    const refused = await g.admin('GET', '/admin/keys', undefined, 'not-the-admin-token');
    assert.equal(refused.status, 401);
    const r2 = await theRecord(g.sink, g.url, refused.headers.get('x-request-id'));
    assert.equal(r2.status, 401);
    assert.equal(r2.errorType, 'authentication');

    const listed = await g.admin('GET', '/admin/keys');
    assert.equal(listed.status, 200);
    const r3 = await theRecord(g.sink, g.url, listed.headers.get('x-request-id'));
    assert.equal(r3.path, '/admin/keys');
    assert.equal(r3.status, 200);
    assert.ok(!JSON.stringify(g.sink.records).includes(key.key), 'no record anywhere holds the key');
    assert.ok(!JSON.stringify(g.sink.records).includes(ADMIN_TOKEN), 'nor the admin token');
  });

  it('/health is logged once', async () => {
    const res = await fetch(`${g.url}/health`);
    await res.arrayBuffer();
    const r = await theRecord(g.sink, g.url, res.headers.get('x-request-id'));
    assert.equal(r.path, '/health');
    assert.equal(r.status, 200);
  });

  it('no request id was logged twice', () => {
    const ids = g.sink.records.map((r) => r.requestId);
    assert.equal(new Set(ids).size, ids.length);
  });
});

/** Two targets for `fb`: the mock OpenAI upstream first, the mock provider as fallback. */
function fallbackConfig(upstreamBaseUrl: string, localDir = 'data/test-logs-unused'): GatewayConfig {
  return parseConfig(
    {
      providers: {
        openai: { type: 'openai', baseUrl: upstreamBaseUrl, apiKeyEnv: UPSTREAM_ENV },
        mock: { type: 'mock', wordDelayMs: 0 },
      },
      models: {
        fb: { groups: [{ targets: [{ provider: 'openai', model: UPSTREAM_MODEL }] }, { targets: [{ provider: 'mock', model: 'mock-echo-1' }] }] },
        'only-openai': { provider: 'openai', model: UPSTREAM_MODEL },
        mock: { provider: 'mock', model: 'mock-echo-1' },
      },
      routing: { retry: { retries: 0 }, cooldown: { failures: 1000 } },
      pricing: { 'mock-echo-1': { input: 1, output: 2 }, [UPSTREAM_MODEL]: { input: 150, output: 600 } },
      logging: { localDir },
    },
    'telemetry test configuration',
  );
}

describe('one record per request: fallback and upstream failure', () => {
  let upstream: MockOpenAI;
  let srv: LocalServer;
  const sink = new MemorySink();
  let client: OpenAI;

  before(async () => {
    upstream = await startMockOpenAI();
    srv = await startLocalServer({ config: fallbackConfig(upstream.baseUrl), env: { [UPSTREAM_ENV]: UPSTREAM_KEY }, port: 0, sinks: [sink] });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-client-unused', maxRetries: 0, timeout: 20_000 });
  });
  after(async () => {
    await srv?.close();
    await upstream?.close();
  });

  for (const stream of [false, true]) {
    it(`fallback (${stream ? 'streaming' : 'non-streaming'}): the record names the target that served and the one given up on`, async () => {
      upstream.reset();
      upstream.script({ type: 'error', status: 503, body: openaiErrorJson(503, 'Overloaded.', 'server_error') });
      let requestId: string | null;
      if (stream) {
        const { data, response } = await client.chat.completions.create({ model: 'fb', messages: [{ role: 'user', content: 'three words here' }], stream: true }).withResponse();
        for await (const _ of data) {
          // drain
        }
        requestId = response.headers.get('x-request-id');
      } else {
        const { response } = await client.chat.completions.create({ model: 'fb', messages: [{ role: 'user', content: 'three words here' }] }).withResponse();
        requestId = response.headers.get('x-request-id');
      }
      const r = await theRecord(sink, srv.url, requestId);
      assert.equal(r.outcome, 'ok');
      assert.equal(r.status, 200);
      assert.equal(r.stream, stream);
      assert.equal(r.model, 'fb');
      assert.equal(r.provider, 'mock');
      assert.equal(r.upstreamModel, 'mock-echo-1');
      assert.equal(r.attempts, 2);
      assert.equal(r.fallbacks, 1);
      assert.deepEqual(r.attemptLog!.map((a) => [a.provider, a.model, a.status]), [['openai', UPSTREAM_MODEL, 503], ['mock', 'mock-echo-1', 200]]);
      assert.equal(r.errorType, undefined);
      // Priced without a key, at the price of what served (mock-echo-1: 1 in, 2 out).
      assert.equal(r.costUsd, (r.inputTokens! * 1 + r.outputTokens! * 2) / 1e6);
    });
  }

  it('upstream failure: the record names the provider and upstream model that failed', async () => {
    upstream.reset();
    upstream.script({ type: 'error', status: 500, body: openaiErrorJson(500, 'Boom.', 'server_error') });
    const err = await client.chat.completions.create({ model: 'only-openai', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof OpenAI.InternalServerError);
    const r = await theRecord(sink, srv.url, err.requestID ?? null);
    assert.equal(r.status, 500);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorType, 'upstream');
    assert.equal(r.provider, 'openai');
    assert.equal(r.upstreamModel, UPSTREAM_MODEL);
    assert.equal(r.attempts, 1);
    assert.equal(r.inputTokens, undefined);
    assert.equal(r.costUsd, undefined, 'nothing to price');
  });

  it('upstream failure on every target of a fallback chain: the last one tried', async () => {
    upstream.reset();
    const mockless = await startLocalServer({
      config: parseConfig(
        {
          providers: { a: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: UPSTREAM_ENV }, b: { type: 'openai-compatible', baseUrl: upstream.baseUrl } },
          models: { chain: { groups: [{ targets: [{ provider: 'a', model: 'a-1' }] }, { targets: [{ provider: 'b', model: 'b-1' }] }] } },
          routing: { retry: { retries: 0 } },
        },
        'chain',
      ),
      env: { [UPSTREAM_ENV]: UPSTREAM_KEY },
      port: 0,
      sinks: [sink],
    });
    try {
      upstream.script({ type: 'error', status: 502, body: openaiErrorJson(502, 'Bad gateway.') }, { type: 'error', status: 503, body: openaiErrorJson(503, 'Overloaded.') });
      const res = await fetch(`${mockless.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'chain', messages: [{ role: 'user', content: 'hi' }] }) });
      assert.ok(res.status >= 500);
      await res.arrayBuffer();
      const r = await theRecord(sink, mockless.url, res.headers.get('x-request-id'));
      assert.equal(r.provider, 'b');
      assert.equal(r.upstreamModel, 'b-1');
      assert.equal(r.attempts, 2);
      assert.equal(r.fallbacks, 1);
    } finally {
      await mockless.close();
    }
  });
});

describe('Firehose sink (real SDK client against a loopback Firehose)', () => {
  let firehose: MockFirehose;
  before(async () => {
    firehose = await startMockFirehose();
  });
  after(async () => {
    await firehose?.close();
  });

  /** Sends through the real client, keeping each command's input as the SDK got it. */
  function recordingSender(): FirehoseSender & { inputs: PutRecordBatchCommand['input'][] } {
    const client = firehose.client();
    const inputs: PutRecordBatchCommand['input'][] = [];
    return {
      inputs,
      send(command: PutRecordBatchCommand): Promise<PutRecordBatchOutput> {
        assert.ok(command instanceof PutRecordBatchCommand);
        inputs.push(command.input);
        return client.send(command);
      },
    };
  }

  const rec = (i: number, extra: Partial<RequestRecord> = {}): RequestRecord => ({
    schemaVersion: LOG_SCHEMA_VERSION,
    requestId: `fh-${i}`,
    timestamp: '2025-06-01T10:00:00.000Z',
    method: 'POST',
    path: '/v1/chat/completions',
    status: 200,
    outcome: 'ok',
    latencyMs: 5,
    ...extra,
  });

  it('sends the gateway\'s records after the responses, as PutRecordBatch of newline-terminated JSON', async () => {
    firehose.calls.length = 0;
    const sender = recordingSender();
    const memory = new MemorySink();
    const fh = new FirehoseLogSink({ deliveryStreamName: 'gw-logs', client: sender });
    const srv = await startLocalServer({ config: fallbackConfig('http://127.0.0.1:9/v1'), env: {}, port: 0, sinks: [fh, memory] });
    try {
      const ids: string[] = [];
      for (const body of [{ model: 'mock', messages: [{ role: 'user', content: 'a b' }] }, { model: 'mock', stream: true, messages: [{ role: 'user', content: 'c d' }] }, { model: 'nope', messages: [{ role: 'user', content: 'x' }] }]) {
        const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        await res.arrayBuffer();
        ids.push(res.headers.get('x-request-id')!);
        await recordsOf(memory, ids.at(-1)!);
        // The client has its whole response, and nothing has been sent yet: records wait in the queue.
        assert.equal(firehose.calls.length, 0);
      }
      assert.equal(fh.queued, 3);
      await srv.gateway.flush();
      assert.equal(fh.queued, 0);
      assert.equal(firehose.calls.length, 1);
      // The command as the SDK took it...
      const input = sender.inputs[0]!;
      assert.deepEqual(Object.keys(input).sort(), ['DeliveryStreamName', 'Records']);
      assert.equal(input.DeliveryStreamName, 'gw-logs');
      for (const r of input.Records!) {
        assert.deepEqual(Object.keys(r), ['Data']);
        assert.ok(r.Data instanceof Uint8Array);
      }
      // ...and on the wire.
      const call = firehose.calls[0]!;
      assert.equal(call.target, 'Firehose_20150804.PutRecordBatch');
      assert.equal(call.contentType, 'application/x-amz-json-1.1');
      assert.equal(call.body.DeliveryStreamName, 'gw-logs');
      assert.equal(call.lines.length, 3);
      for (const [i, line] of call.lines.entries()) {
        assert.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, 'one JSON line per record, newline-terminated');
        const parsed = JSON.parse(line) as RequestRecord;
        assert.deepEqual(parsed, JSON.parse(JSON.stringify(memory.records.find((m) => m.requestId === ids[i])!)));
        assert.deepEqual(schemaProblems(parsed), []);
      }
      assert.deepEqual(JSON.parse(call.lines[2]!).errorCode, 'model_not_found');
    } finally {
      await srv.close();
    }
  });

  it('retries only the records Firehose rejected (FailedPutCount / ErrorCode), then stops', async () => {
    firehose.calls.length = 0;
    const lines: string[] = [];
    const sink = new FirehoseLogSink({ deliveryStreamName: 'gw-logs', client: firehose.client(), baseDelayMs: 1, maxDelayMs: 2, writeLine: (l) => lines.push(l) });
    for (let i = 0; i < 4; i++) sink.write(rec(i));
    firehose.script({ failRecords: [1, 3], errorCode: 'ServiceUnavailableException' }, { failRecords: [1] });
    await sink.flush();
    assert.deepEqual(
      firehose.calls.map((c) => c.lines.map((l) => JSON.parse(l).requestId)),
      [['fh-0', 'fh-1', 'fh-2', 'fh-3'], ['fh-1', 'fh-3'], ['fh-3']],
    );
    assert.deepEqual(lines, [], 'everything was delivered in the end');
  });

  it('retries a failed call, and writes what still could not be delivered to the Lambda log', async () => {
    firehose.calls.length = 0;
    const lines: string[] = [];
    let undelivered = 0;
    const sink = new FirehoseLogSink({ deliveryStreamName: 'gw-logs', client: firehose.client(), maxRetries: 2, baseDelayMs: 1, maxDelayMs: 2, writeLine: (l) => lines.push(l), onUndelivered: (n) => (undelivered += n) });
    sink.write(rec(10, { model: 'gpt', keyId: 'k1' }));
    sink.write(rec(11));
    firehose.script({ error: 'ServiceUnavailableException', status: 503 }, { failRecords: [0, 1], errorCode: 'InternalFailure' }, { failRecords: [1], errorCode: 'InternalFailure' });
    await sink.flush();
    assert.equal(firehose.calls.length, 3, 'first try and two retries');
    assert.deepEqual(firehose.calls[2]!.lines.map((l) => JSON.parse(l).requestId), ['fh-10', 'fh-11']);
    assert.equal(lines.length, 1);
    const logged = JSON.parse(lines[0]!);
    assert.equal(logged.marker, UNDELIVERED_MARKER);
    assert.equal(logged.deliveryStream, 'gw-logs');
    assert.equal(logged.errorCode, 'InternalFailure');
    assert.deepEqual(logged.record, rec(11));
    assert.equal(undelivered, 1);
  });

  it('does not retry a permanent error; the records go to the log', async () => {
    firehose.calls.length = 0;
    const lines: string[] = [];
    const sink = new FirehoseLogSink({ deliveryStreamName: 'missing', client: firehose.client(), baseDelayMs: 1, writeLine: (l) => lines.push(l) });
    sink.write(rec(20));
    firehose.script({ error: 'ResourceNotFoundException', status: 400 });
    await sink.flush();
    assert.equal(firehose.calls.length, 1);
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]!).errorCode, 'ResourceNotFoundException');
    assert.equal(JSON.parse(lines[0]!).record.requestId, 'fh-20');
  });

  it('batches at 500 records and 4 MiB; drops bodies from a record over 1,000 KiB', async () => {
    firehose.calls.length = 0;
    const sink = new FirehoseLogSink({ deliveryStreamName: 'gw-logs', client: firehose.client() });
    for (let i = 0; i < FIREHOSE_MAX_BATCH_RECORDS + 1; i++) sink.write(rec(100 + i));
    // A full batch goes at once, without waiting for flush().
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(sink.queued, 1);
    await sink.flush();
    // The full batch and flush()'s remainder are two calls in flight at once: either may land first.
    assert.deepEqual(firehose.calls.map((c) => c.lines.length).sort((a, b) => a - b), [1, 500]);

    firehose.calls.length = 0;
    const big = 'x'.repeat(900 * 1024);
    for (let i = 0; i < 5; i++) sink.write(rec(700 + i, { requestBody: big }));
    sink.write(rec(799, { requestBody: 'y'.repeat(FIREHOSE_MAX_RECORD_BYTES), responseBody: 'z' }));
    await sink.flush();
    // The fifth 900 KiB record tips the queue over 4 MiB: it goes at once as 4 + 1; the sixth at flush().
    assert.deepEqual(firehose.calls.map((c) => c.lines.length).sort(), [1, 1, 4]);
    for (const c of firehose.calls) assert.ok(c.lines.reduce((n, l) => n + Buffer.byteLength(l), 0) <= 4 * 1024 * 1024);
    const slim = firehose.calls.flatMap((c) => c.lines.map((l) => JSON.parse(l) as RequestRecord)).find((r) => r.requestId === 'fh-799')!;
    assert.equal(slim.requestId, 'fh-799');
    assert.equal(slim.requestBody, undefined);
    assert.equal(slim.responseBody, undefined);
    assert.equal(slim.bodiesTruncated, true);
  });

  it('Lambda sinks: Firehose when LOG_STREAM_NAME is set, else one log line per request; EMF metrics either way', () => {
    const logger = new Logger({ serviceName: 'test' });
    const config = fallbackConfig('http://127.0.0.1:9/v1');
    const withStream = lambdaSinks({ logger, config, env: { LOG_STREAM_NAME: 'gw-logs' }, firehoseClient: firehose.client() });
    assert.ok(withStream[0] instanceof FirehoseLogSink);
    assert.ok(withStream[1] instanceof EmfMetricsSink);
    const without = lambdaSinks({ logger, config, env: {} });
    assert.ok(without[0] instanceof LoggerSink);
    assert.ok(without[1] instanceof EmfMetricsSink);
  });
});

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length + 1)).sort();
}

describe('local NDJSON logs, read back', () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('are in the same dt=/hour= layout as S3 and every record fits the schema', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gateway-ndjson-'));
    dirs.push(dir);
    const upstream = await startMockOpenAI();
    const srv = await startLocalServer({ config: fallbackConfig(upstream.baseUrl, dir), env: { [UPSTREAM_ENV]: UPSTREAM_KEY }, port: 0 });
    const ids: string[] = [];
    try {
      upstream.script({ type: 'error', status: 500, body: openaiErrorJson(500, 'Boom.') });
      const post = (body: string, headers: Record<string, string> = {}) => fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      const calls = [
        post(JSON.stringify({ model: 'fb', messages: [{ role: 'user', content: 'fall back please' }] }), { 'x-gateway-metadata': '{"app":"docs"}', 'x-claude-code-session-id': 's-1' }),
        post(JSON.stringify({ model: 'mock', stream: true, messages: [{ role: 'user', content: 'a b c' }] }), { 'x-gateway-metadata': '[1]' }),
        post('{broken'),
        post(JSON.stringify({ model: 'unknown-model', messages: [{ role: 'user', content: 'x' }] })),
        fetch(`${srv.url}/health`),
      ];
      for (const p of calls) {
        const res = await p;
        await res.arrayBuffer();
        ids.push(res.headers.get('x-request-id')!);
      }
    } finally {
      await srv.close();
      await upstream.close();
    }
    // dt=YYYY-MM-DD/hour=HH/, as in the Firehose prefix (without its `logs/` folder).
    const layout = new RegExp(
      `^${logObjectPrefix()
        .replace(/^logs\//, '')
        .replace('!{timestamp:yyyy-MM-dd}', '\\d{4}-\\d{2}-\\d{2}')
        .replace('!{timestamp:HH}', '\\d{2}')
        .replace(/\//g, sep === '\\' ? '\\\\' : '/')}requests\\.ndjson$`,
    );
    const files = await listFiles(dir);
    assert.ok(files.length >= 1);
    const records: Record<string, unknown>[] = [];
    for (const f of files) {
      assert.match(f, layout);
      const text = await readFile(join(dir, f), 'utf8');
      assert.ok(text.endsWith('\n'));
      for (const line of text.split('\n').filter(Boolean)) {
        const r = JSON.parse(line) as Record<string, unknown>;
        assert.deepEqual(schemaProblems(r), [], `record ${r.requestId} fits the schema`);
        const ts = r.timestamp as string;
        assert.ok(f.startsWith(join(`dt=${ts.slice(0, 10)}`, `hour=${ts.slice(11, 13)}`)), 'filed under its own hour');
        records.push(r);
      }
    }
    assert.deepEqual(records.map((r) => r.requestId).sort(), [...ids].sort(), 'one line per request');
    const byId = new Map(records.map((r) => [r.requestId, r]));
    const fb = byId.get(ids[0])!;
    assert.equal(fb.provider, 'mock');
    assert.equal(fb.fallbacks, 1);
    assert.deepEqual(fb.metadata, { app: 'docs' });
    assert.equal(fb.sessionId, 's-1');
    assert.equal(typeof fb.costUsd, 'number');
    assert.equal(byId.get(ids[1])!.metadataError, 'not_an_object');
    assert.equal(byId.get(ids[2])!.errorCode, 'invalid_json');
    assert.equal(byId.get(ids[3])!.status, 404);
  });

  it('the check finds what does not fit', () => {
    const ok = { schemaVersion: 3, requestId: 'x', timestamp: 't', method: 'GET', path: '/', status: 200, outcome: 'ok', latencyMs: 1.5 };
    assert.deepEqual(schemaProblems(ok), []);
    assert.deepEqual(schemaProblems({ ...ok, apiKey: 'sk-1' }), ['apiKey: not a column of the log schema']);
    assert.deepEqual(schemaProblems({ ...ok, status: '200' }), ['status: expected an int, got "200"']);
    assert.deepEqual(schemaProblems({ ...ok, latencyMs: undefined }), ['latencyMs: missing']);
    assert.deepEqual(schemaProblems({ ...ok, metadata: { a: 1 } }), ['metadata.a: expected a string, got 1']);
    assert.deepEqual(schemaProblems({ ...ok, attemptLog: [{ provider: 'p', model: 'm', status: 200, latencyMs: 1, extra: true }] }), ['attemptLog[0].extra: not a field of the struct']);
  });
});

describe('GET /admin/stats and the dashboard page over the local logs', () => {
  let dir: string;
  let srv: LocalServer;
  const token = 'stats-admin-token-0c9d';
  const auth = { authorization: `Bearer ${token}` };
  const seededHour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gateway-stats-'));
    // A record from two hours ago, already on disk.
    const iso = new Date(seededHour.getTime() + 60_000).toISOString();
    const seeded: RequestRecord = { schemaVersion: LOG_SCHEMA_VERSION, requestId: 'seeded', timestamp: iso, method: 'POST', path: '/v1/chat/completions', model: 'mock', status: 200, outcome: 'ok', latencyMs: 100, ttfbMs: 40, inputTokens: 10, outputTokens: 20, costUsd: 0.5 };
    await mkdir(join(dir, `dt=${iso.slice(0, 10)}`, `hour=${iso.slice(11, 13)}`), { recursive: true });
    await writeFile(join(dir, `dt=${iso.slice(0, 10)}`, `hour=${iso.slice(11, 13)}`, 'requests.ndjson'), `${JSON.stringify(seeded)}\n{torn`);
    srv = await startLocalServer({ config: fallbackConfig('http://127.0.0.1:9/v1', dir), env: { GATEWAY_ADMIN_TOKEN: token }, port: 0, sinks: [new FileLogSink(dir, 60_000)] });
  });
  after(async () => {
    await srv?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is admin-only', async () => {
    const none = await fetch(`${srv.url}/admin/stats`);
    assert.equal(none.status, 401);
    const wrong = await fetch(`${srv.url}/admin/stats`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    assert.equal((await wrong.json()).error.code, 'admin_unauthorized');
    const post = await fetch(`${srv.url}/admin/stats`, { method: 'POST', headers: auth });
    assert.equal(post.status, 405);
    const bad = await fetch(`${srv.url}/admin/stats?hours=0`, { headers: auth });
    assert.equal(bad.status, 400);
  });

  it('summarises requests, errors, latency, tokens and spend, in total, per model and per hour', async () => {
    const sent: string[] = [];
    for (const body of [
      { model: 'mock', messages: [{ role: 'user', content: 'one two three' }] },
      { model: 'mock', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'four five' }] },
      { model: 'nope', messages: [{ role: 'user', content: 'x' }] },
    ]) {
      const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      await res.arrayBuffer();
      sent.push(res.headers.get('x-request-id')!);
    }
    await (await fetch(`${srv.url}/health`)).arrayBuffer();
    const res = await fetch(`${srv.url}/admin/stats?hours=24`, { headers: auth });
    assert.equal(res.status, 200);
    const stats = await res.json();
    // The stats flush the file sink first, so these requests are in; health and admin calls are not counted.
    const files = await listFiles(dir);
    const onDisk: RequestRecord[] = [];
    for (const f of files) for (const l of (await readFile(join(dir, f), 'utf8')).split('\n')) if (l.startsWith('{') && l.endsWith('}')) onDisk.push(JSON.parse(l));
    const chats = onDisk.filter((r) => r.path === '/v1/chat/completions');
    assert.deepEqual(chats.map((r) => r.requestId).sort(), ['seeded', ...sent].sort());
    const t = stats.totals;
    assert.equal(t.requests, 4);
    assert.equal(t.ok, 3);
    assert.equal(t.errors['4xx'], 1);
    assert.deepEqual(t.errorTypes, { not_found: 1 });
    assert.equal(t.inputTokens, chats.reduce((n, r) => n + (r.inputTokens ?? 0), 0));
    assert.equal(t.outputTokens, chats.reduce((n, r) => n + (r.outputTokens ?? 0), 0));
    assert.equal(t.costUsd, Math.round(chats.reduce((n, r) => n + (r.costUsd ?? 0), 0) * 1e6) / 1e6);
    assert.ok(t.costUsd > 0.5);
    assert.equal(t.latencyMs.p99, Math.max(...chats.map((r) => r.latencyMs)));
    // Every hour that overlaps the window, empty ones included (25 when it does not start on the hour).
    const from = Date.parse(stats.from);
    assert.equal(stats.byHour.length, Math.ceil((Date.parse(stats.to) - Math.floor(from / 3_600_000) * 3_600_000) / 3_600_000));
    assert.equal(stats.byHour[0].hour, new Date(Math.floor(from / 3_600_000) * 3_600_000).toISOString());
    const seededBucket = stats.byHour.find((h: { hour: string }) => h.hour === seededHour.toISOString());
    assert.equal(seededBucket.requests, 1);
    assert.equal(seededBucket.inputTokens, 10);
    assert.equal(seededBucket.costUsd, 0.5);
    assert.equal(seededBucket.latencyMs.p50, 100);
    assert.equal(stats.byHour.reduce((n: number, h: { requests: number }) => n + h.requests, 0), 4);
    const mock = stats.byModel.find((m: { model: string }) => m.model === 'mock');
    assert.equal(mock.requests, 3);
    // A narrower window leaves the seeded hour out.
    const recent = await (await fetch(`${srv.url}/admin/stats?hours=1`, { headers: auth })).json();
    assert.equal(recent.totals.requests, 3);
  });

  it('serves a self-contained page that charts requests, latency, tokens and spend from /admin/stats', async () => {
    const res = await fetch(`${srv.url}/admin/dashboard`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /connect-src 'self'/);
    const html = await res.text();
    for (const h of ['Requests per hour', 'Latency (ms)', 'Tokens per hour', 'Spend per hour (USD)']) assert.ok(html.includes(h), h);
    assert.ok(html.includes("fetch('stats?hours="), 'the page reads /admin/stats (relative to /admin/dashboard)');
    assert.ok(!/<script[^>]+src=/.test(html), 'no external scripts');
  });
});

describe('EMF metrics', () => {
  /** Run `fn` and return the EMF blobs it wrote to stdout, and anything written to stderr. */
  function capture(fn: () => void): { blobs: any[]; stderr: string } {
    const out: string[] = [];
    const err: string[] = [];
    const realOut = process.stdout.write;
    const realErr = process.stderr.write;
    process.stdout.write = ((c: string | Uint8Array) => (out.push(String(c)), true)) as typeof process.stdout.write;
    process.stderr.write = ((c: string | Uint8Array) => (err.push(String(c)), true)) as typeof process.stderr.write;
    try {
      fn();
    } finally {
      process.stdout.write = realOut;
      process.stderr.write = realErr;
    }
    return { blobs: out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)), stderr: err.join('') };
  }

  const base: RequestRecord = { schemaVersion: LOG_SCHEMA_VERSION, requestId: 'm-1', timestamp: new Date().toISOString(), method: 'POST', path: '/v1/chat/completions', status: 200, outcome: 'ok', latencyMs: 42 };

  it('one blob per request: namespace, dimension sets, metric names, units and values', () => {
    const sink = new EmfMetricsSink({ serviceName: 'gw-test', isKnownModel: (m) => m === 'gpt' });
    const { blobs, stderr } = capture(() =>
      sink.write({ ...base, model: 'gpt', provider: 'openai', team: 'search', ttfbMs: 7, inputTokens: 11, outputTokens: 22, cacheReadTokens: 3, costUsd: 0.0012, fallbacks: 1, attemptLog: [{ provider: 'bedrock', model: 'x', status: 429, latencyMs: 1 }, { provider: 'openai', model: 'y', status: 200, latencyMs: 2 }] }),
    );
    assert.equal(stderr, '', 'no warnings per request');
    assert.equal(blobs.length, 1);
    const b = blobs[0];
    const meta = b._aws.CloudWatchMetrics[0];
    assert.equal(meta.Namespace, METRIC_NAMESPACE);
    assert.deepEqual(meta.Dimensions, METRIC_DIMENSION_SETS);
    assert.equal(typeof b._aws.Timestamp, 'number');
    const names = meta.Metrics.map((m: { Name: string }) => m.Name);
    for (const m of meta.Metrics) assert.equal(m.Unit, METRIC_UNITS[m.Name as keyof typeof METRIC_UNITS], m.Name);
    assert.ok(names.every((n: string) => (Object.values(METRICS) as string[]).includes(n)));
    assert.equal(b.service, 'gw-test');
    assert.equal(b.Model, 'gpt');
    assert.equal(b.Provider, 'openai');
    assert.equal(b.Team, 'search');
    assert.equal(b.requestId, 'm-1');
    assert.deepEqual(
      Object.fromEntries(names.map((n: string) => [n, b[n]])),
      { Requests: 1, Errors4xx: 0, Errors5xx: 0, StreamErrors: 0, ClientClosed: 0, UpstreamErrors: 1, UpstreamThrottled: 1, Latency: 42, CacheHits: 0, Fallbacks: 1, RateLimited: 0, GuardrailBlocked: 0, TimeToFirstByte: 7, InputTokens: 11, OutputTokens: 22, CacheReadTokens: 3, CostUsd: 0.0012 },
    );
  });

  it('bounds the dimensions: unknown models, no provider, teams past the limit; skips health and admin', () => {
    const sink = new EmfMetricsSink({ serviceName: 'gw-test', isKnownModel: () => false, teamLimit: 2 });
    const { blobs } = capture(() => {
      sink.write({ ...base, model: 'made-up-model-123', status: 404, outcome: 'error', errorType: 'not_found', team: 'a' });
      sink.write({ ...base, team: 'b', status: 429, rateLimit: 'limited' });
      sink.write({ ...base, team: 'c', status: 502, outcome: 'error', attemptLog: [{ provider: 'bedrock', model: 'm', status: 502, latencyMs: 1 }] });
      sink.write({ ...base, team: 'a' });
      sink.write({ ...base, path: '/health' });
      sink.write({ ...base, path: '/admin/keys' });
    });
    assert.equal(blobs.length, 4);
    assert.deepEqual(blobs.map((b) => b.Model), [UNKNOWN_MODEL, UNKNOWN_MODEL, UNKNOWN_MODEL, UNKNOWN_MODEL]);
    assert.deepEqual(blobs.map((b) => b.Provider), ['none', 'none', 'bedrock', 'none']);
    assert.deepEqual(blobs.map((b) => b.Team), ['a', 'b', OTHER_TEAM, 'a']);
    assert.deepEqual(blobs.map((b) => [b.Errors4xx, b.Errors5xx, b.RateLimited]), [[1, 0, 0], [1, 0, 1], [0, 1, 0], [0, 0, 0]]);
    const noTeam = capture(() => sink.write({ ...base })).blobs[0];
    assert.deepEqual(noTeam._aws.CloudWatchMetrics[0].Dimensions, METRIC_DIMENSION_SETS.filter((s) => !s.includes('Team')));
  });

  it('counts undelivered log records in the gateway-wide set', () => {
    const sink = new EmfMetricsSink({ serviceName: 'gw-test' });
    const { blobs } = capture(() => sink.undelivered(3));
    assert.equal(blobs.length, 1);
    assert.deepEqual(blobs[0]._aws.CloudWatchMetrics[0].Dimensions, [['service']]);
    assert.equal(blobs[0][METRICS.logRecordsUndelivered], 3);
  });
});

describe('schema documentation', () => {
  it('docs/log-schema.md is what `npm run docs:schema` generates from the schema', async () => {
    const committed = await readFile(new URL(`../${LOG_SCHEMA_DOC}`, import.meta.url), 'utf8');
    assert.equal(committed, renderLogSchemaDoc(), 'run `npm run docs:schema` and commit docs/log-schema.md');
    for (const c of LOG_COLUMNS) assert.ok(committed.includes(`| \`${c.name}\` |`), c.name);
  });
});

describe('body logging (logging.bodies): off by default, redacted and capped when on', () => {
  let upstream: MockOpenAI;
  let on: LocalServer;
  let off: LocalServer;
  const sinkOn = new MemorySink();
  const sinkOff = new MemorySink();
  const SECRET = 'sk-proj-abcdefghijklmnop1234';

  before(async () => {
    upstream = await startMockOpenAI();
    const raw = (bodies: unknown) => ({
      providers: { openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: UPSTREAM_ENV }, mock: { type: 'mock', wordDelayMs: 0 } },
      models: { mock: { provider: 'mock', model: 'mock-echo-1' }, gpt: { provider: 'openai', model: UPSTREAM_MODEL } },
      routing: { retry: { retries: 0 } },
      logging: { localDir: 'data/test-logs-unused', ...(bodies ? { bodies } : {}) },
    });
    on = await startLocalServer({ config: parseConfig(raw({ enabled: true, maxBytes: 300, redact: ['ticket-\\d+'] }), 'bodies on'), env: { [UPSTREAM_ENV]: UPSTREAM_KEY }, port: 0, sinks: [sinkOn] });
    off = await startLocalServer({ config: parseConfig(raw(undefined), 'bodies off'), env: { [UPSTREAM_ENV]: UPSTREAM_KEY }, port: 0, sinks: [sinkOff] });
  });
  after(async () => {
    await on?.close();
    await off?.close();
    await upstream?.close();
  });

  const post = (srv: LocalServer, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  it('off: no bodies in the record', async () => {
    const res = await post(off, '/v1/chat/completions', { model: 'mock', messages: [{ role: 'user', content: 'nothing kept' }] });
    await res.arrayBuffer();
    const r = await theRecord(sinkOff, off.url, res.headers.get('x-request-id'));
    assert.equal(r.requestBody, undefined);
    assert.equal(r.responseBody, undefined);
    assert.equal(r.bodiesTruncated, undefined);
  });

  it('on (OpenAI door, translated, streaming): request JSON and answer text, credentials and configured patterns redacted', async () => {
    const res = await post(on, '/v1/chat/completions', { model: 'mock', stream: true, messages: [{ role: 'user', content: `key ${SECRET} for ticket-4711 please` }] });
    await res.arrayBuffer();
    const r = await theRecord(sinkOn, on.url, res.headers.get('x-request-id'));
    assert.ok(r.requestBody!.startsWith('{"model":"mock"'));
    assert.ok(r.requestBody!.includes('key [REDACTED] for [REDACTED] please'));
    // The mock echoes the prompt: the answer is redacted the same way.
    assert.equal(r.responseBody, 'key [REDACTED] for [REDACTED] please');
    assert.ok(!JSON.stringify(r).includes(SECRET) && !JSON.stringify(r).includes('4711'));
    assert.equal(r.bodiesTruncated, undefined);
  });

  it('on (Anthropic door, translated, non-streaming): the answer text is kept too', async () => {
    const res = await post(on, '/v1/messages', { model: 'mock', max_tokens: 50, messages: [{ role: 'user', content: 'hello from anthropic' }] }, { 'anthropic-version': '2023-06-01' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const r = await theRecord(sinkOn, on.url, res.headers.get('x-request-id'));
    assert.equal(r.frontDoor, 'anthropic-messages');
    assert.ok(r.requestBody!.includes('hello from anthropic'));
    assert.equal(r.responseBody, 'hello from anthropic');
  });

  it('on (pass-through to an OpenAI upstream): the upstream body', async () => {
    upstream.reset();
    upstream.script({ type: 'text', pieces: ['passed ', 'through'], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } });
    const res = await post(on, '/v1/chat/completions', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const r = await theRecord(sinkOn, on.url, res.headers.get('x-request-id'));
    assert.equal(r.provider, 'openai');
    assert.ok(r.responseBody!.includes('passed through'), r.responseBody);
  });

  it('on: each body is cut at maxBytes (after redaction) and the record says so', async () => {
    const long = 'é'.repeat(400);
    const res = await post(on, '/v1/chat/completions', { model: 'mock', messages: [{ role: 'user', content: long }] });
    await res.arrayBuffer();
    const r = await theRecord(sinkOn, on.url, res.headers.get('x-request-id'));
    assert.equal(r.bodiesTruncated, true);
    assert.ok(Buffer.byteLength(r.requestBody!, 'utf8') <= 300);
    assert.ok(Buffer.byteLength(r.responseBody!, 'utf8') <= 300);
    assert.ok(!r.responseBody!.includes('\uFFFD'), 'not cut inside a character');
  });
});

describe('client metadata and session id are bounded', () => {
  it('x-gateway-metadata: a small JSON object of strings, else ignored with the reason', () => {
    assert.deepEqual(parseMetadataHeader('{"app":"search","env":"prod"}'), { metadata: { app: 'search', env: 'prod' } });
    assert.deepEqual(parseMetadataHeader(null), {});
    assert.deepEqual(parseMetadataHeader(JSON.stringify({ big: 'x'.repeat(METADATA_MAX_BYTES) })), { metadataError: 'too_large' });
    assert.deepEqual(parseMetadataHeader(JSON.stringify(Object.fromEntries(Array.from({ length: METADATA_MAX_KEYS + 1 }, (_, i) => [`k${i}`, 'v'])))), { metadataError: 'too_many_keys' });
    assert.deepEqual(parseMetadataHeader('{"a":1}'), { metadataError: 'non_string_value' });
    assert.deepEqual(parseMetadataHeader('{"bad key":"v"}'), { metadataError: 'invalid_key' });
    assert.deepEqual(parseMetadataHeader('{nope'), { metadataError: 'invalid_json' });
  });

  it('the record keeps at most 128 characters of X-Claude-Code-Session-Id and 256 of User-Agent', () => {
    const emitted: RequestRecord[] = [];
    const req = new Request('http://gw.local/v1/messages', { method: 'POST', headers: { 'x-claude-code-session-id': 's'.repeat(300), 'user-agent': 'u'.repeat(300) } });
    const trace = new RequestTrace('rid-1', req, '/v1/messages', (r) => emitted.push(r));
    trace.end(200);
    trace.end(500);
    assert.equal(emitted.length, 1, 'end() emits once');
    assert.equal(emitted[0]!.sessionId, 's'.repeat(128));
    assert.equal(emitted[0]!.userAgent, 'u'.repeat(256));
    assert.equal(emitted[0]!.status, 200);
  });
});
