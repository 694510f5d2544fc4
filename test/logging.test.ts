import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { startLocalServer } from '../local/server.ts';
import { FileLogSink } from '../shared/telemetry/file-sink.ts';
import { LOG_SCHEMA_VERSION, type RequestRecord } from '../shared/telemetry/record.ts';
import { addChunk, emptyCollected, startTestGateway, testConfig, UPSTREAM_KEY, UPSTREAM_MODEL, type CollectedStream, type TestGateway } from './helpers/gateway.ts';
import { eventually } from './helpers/keys.ts';
import { createGate, openaiErrorJson, type MockOpenAI } from './helpers/mock-openai.ts';

/** One log record per request, however it ends, with the fields that say what happened. */

let upstream: MockOpenAI;
let gw: TestGateway;
let client: OpenAI;

before(async () => {
  gw = await startTestGateway({ slowWordDelayMs: 5_000 });
  upstream = gw.upstream!;
  client = gw.client();
});

after(() => gw?.close());

beforeEach(() => upstream.reset());

/**
 * Wait for the request's record, then for the record of a later request (a barrier: anything the
 * first request still had to log is logged by then), and check there is exactly one.
 */
async function theRecord(requestId: string | null): Promise<RequestRecord> {
  assert.ok(requestId, 'the response carries x-request-id');
  const record = await gw.waitForRecord(requestId);
  const barrier = await fetch(`${gw.url}/health`);
  await barrier.arrayBuffer();
  await gw.waitForRecord(barrier.headers.get('x-request-id')!);
  assert.equal(gw.recordsFor(requestId).length, 1, `exactly one record for ${requestId}`);
  // The record a sink was handed is final: nothing changes it after the write.
  const handed = gw.sink.received.find((r) => r.requestId === requestId)!;
  assert.deepEqual(handed, record, 'the record was changed after it was written');
  assertWellFormed(record);
  return record;
}

function assertWellFormed(r: RequestRecord): void {
  assert.equal(r.schemaVersion, LOG_SCHEMA_VERSION);
  assert.ok(!Number.isNaN(Date.parse(r.timestamp)) && r.timestamp.endsWith('Z'), `timestamp ${r.timestamp}`);
  assert.equal(typeof r.latencyMs, 'number');
  assert.ok(r.latencyMs >= 0);
  assert.ok(r.status >= 100 && r.status < 600, `status ${r.status}`);
  assert.ok(['ok', 'error', 'stream_error', 'client_closed'].includes(r.outcome));
  const text = JSON.stringify(r);
  assert.ok(!text.includes(UPSTREAM_KEY.slice(0, 12)), 'no upstream key in a record');
  assert.ok(!text.includes('sk-client'), 'no client key in a record');
}

function assertNoError(r: RequestRecord): void {
  assert.equal(r.outcome, 'ok');
  assert.equal(r.errorType, undefined);
  assert.equal(r.errorCode, undefined);
  assert.equal(r.errorMessage, undefined);
}

async function readUntil(it: AsyncIterator<ChatCompletionChunk>, got: CollectedStream, until: (g: CollectedStream) => boolean): Promise<void> {
  while (!until(got)) {
    const r = await it.next();
    assert.ok(!r.done, 'stream ended early');
    addChunk(got, r.value);
  }
}

describe('one log record per request', () => {
  it('success (non-streaming, mock provider)', async () => {
    const { response } = await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'log this please' }] }).withResponse();
    const r = await theRecord(response.headers.get('x-request-id'));
    assertNoError(r);
    assert.equal(r.status, 200);
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/v1/chat/completions');
    assert.equal(r.frontDoor, 'openai-chat');
    assert.equal(r.model, 'mock');
    assert.equal(r.provider, 'mock');
    assert.equal(r.upstreamModel, 'mock-echo-1');
    assert.equal(r.stream, false);
    assert.equal(r.inputTokens, 3);
    assert.equal(r.outputTokens, 3);
    assert.match(r.userAgent ?? '', /OpenAI\/JS/);
  });

  it('success (non-streaming, openai provider): usage from the upstream', async () => {
    upstream.script({ type: 'text', pieces: ['fine'], usage: { prompt_tokens: 21, completion_tokens: 1, total_tokens: 22 } });
    const { response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    const r = await theRecord(response.headers.get('x-request-id'));
    assertNoError(r);
    assert.equal(r.status, 200);
    assert.equal(r.provider, 'openai');
    assert.equal(r.upstreamModel, UPSTREAM_MODEL);
    assert.equal(r.inputTokens, 21);
    assert.equal(r.outputTokens, 1);
    assert.equal(typeof r.ttfbMs, 'number');
  });

  it('stream success (openai provider): usage known although the client did not ask for it', async () => {
    upstream.script({ type: 'text', pieces: ['a ', 'b ', 'c'], usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 } });
    const { data: stream, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], stream: true }).withResponse();
    for await (const _ of stream) {
      // drain
    }
    const r = await theRecord(response.headers.get('x-request-id'));
    assertNoError(r);
    assert.equal(r.status, 200);
    assert.equal(r.stream, true);
    assert.equal(r.model, 'gpt-4o-mini');
    assert.equal(r.provider, 'openai');
    assert.equal(r.inputTokens, 12);
    assert.equal(r.outputTokens, 3);
    assert.equal(typeof r.ttfbMs, 'number');
  });

  it('stream success (mock provider)', async () => {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock', messages: [{ role: 'user', content: 'four words right here' }], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    for await (const _ of stream) {
      // drain
    }
    const r = await theRecord(response.headers.get('x-request-id'));
    assertNoError(r);
    assert.equal(r.stream, true);
    assert.equal(r.provider, 'mock');
    assert.equal(r.inputTokens, 4);
    assert.equal(r.outputTokens, 4);
  });

  it('400 malformed JSON', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
    await res.arrayBuffer();
    assert.equal(res.status, 400);
    const r = await theRecord(res.headers.get('x-request-id'));
    assert.equal(r.status, 400);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorType, 'invalid_request');
    assert.equal(r.errorCode, 'invalid_json');
    assert.ok(r.errorMessage);
    assert.equal(r.frontDoor, 'openai-chat');
    assert.equal(r.model, undefined);
    assert.equal(r.inputTokens, undefined);
  });

  it('400 invalid parameter, with the client-supplied x-request-id', async () => {
    const requestId = 'client-trace.0001:abc';
    const err = await client.chat.completions
      .create({ model: 'mock', messages: [{ role: 'user', content: 'hi' }], top_p: 3 }, { headers: { 'x-request-id': requestId } })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.requestID, requestId);
    const r = await theRecord(requestId);
    assert.equal(r.status, 400);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorType, 'invalid_request');
    assert.equal(r.errorCode, 'invalid_value');
  });

  it('an unusable client x-request-id is replaced', async () => {
    const res = await fetch(`${gw.url}/health`, { headers: { 'x-request-id': 'has spaces and / slashes' } });
    await res.arrayBuffer();
    const id = res.headers.get('x-request-id');
    assert.ok(id && id !== 'has spaces and / slashes');
    const r = await theRecord(id);
    assert.equal(r.method, 'GET');
    assert.equal(r.path, '/health');
    assert.equal(r.status, 200);
    assertNoError(r);
  });

  it('404 unknown model', async () => {
    const err = await client.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof OpenAI.NotFoundError);
    const r = await theRecord(err.requestID ?? null);
    assert.equal(r.status, 404);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorType, 'not_found');
    assert.equal(r.errorCode, 'model_not_found');
    assert.equal(r.model, 'gpt-9');
    assert.equal(r.provider, undefined);
  });

  it('404 unknown route', async () => {
    const res = await fetch(`${gw.url}/v2/whatever`);
    await res.arrayBuffer();
    const r = await theRecord(res.headers.get('x-request-id'));
    assert.equal(r.status, 404);
    assert.equal(r.errorCode, 'unknown_route');
    assert.equal(r.path, '/v2/whatever');
  });

  it('upstream failure (500)', async () => {
    upstream.script({ type: 'error', status: 500, body: openaiErrorJson(500, 'The server had an error.', 'server_error') });
    const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof OpenAI.InternalServerError);
    const r = await theRecord(err.requestID ?? null);
    assert.equal(r.status, 500);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorType, 'upstream');
    assert.equal(r.errorCode, 'upstream_500');
    assert.equal(r.model, 'gpt-4o-mini');
    // The record names the provider and upstream model that failed (directly, or as the last entry
    // of a per-attempt log where the gateway keeps one).
    const lastAttempt = (r as { attemptLog?: { provider: string; model: string }[] }).attemptLog?.at(-1);
    assert.equal(r.provider ?? lastAttempt?.provider, 'openai');
    assert.equal(r.upstreamModel ?? lastAttempt?.model, UPSTREAM_MODEL);
  });

  it('upstream failure (401 becomes 502), without the upstream message', async () => {
    upstream.script({ type: 'error', status: 401, body: openaiErrorJson(401, `Incorrect API key provided: ${UPSTREAM_KEY.slice(0, 14)}***`, 'invalid_request_error', 'invalid_api_key') });
    const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof OpenAI.APIError);
    assert.equal(err.status, 502);
    const r = await theRecord(err.requestID ?? null);
    assert.equal(r.status, 502);
    assert.equal(r.outcome, 'error');
    assert.equal(r.errorCode, 'upstream_auth_failed');
    assert.ok(!r.errorMessage?.includes('Incorrect API key'));
  });

  it('mid-stream failure', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['some ', 'text ', 'then'], pauseAfter: 1, gate, cutAfter: 1 });
    const { data: stream, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }).withResponse();
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    await readUntil(it, got, (g) => g.content.length > 0);
    gate.open();
    await assert.rejects(
      (async () => {
        for (let r = await it.next(); !r.done; r = await it.next()) addChunk(got, r.value);
      })(),
      OpenAI.APIError,
    );
    const r = await theRecord(response.headers.get('x-request-id'));
    // docs/log-schema.md: the client got a 200 and then an error event; the record says 502.
    assert.equal(r.status, 502, 'an upstream failure after the stream started');
    assert.equal(r.outcome, 'stream_error');
    assert.equal(r.errorType, 'upstream');
    assert.equal(r.errorCode, 'upstream_stream_error');
    assert.ok(r.errorMessage);
    assert.equal(r.stream, true);
    assert.equal(r.provider, 'openai');
    assert.equal(typeof r.ttfbMs, 'number');
  });

  it('client abort mid-stream (openai provider): logged as client_closed and the upstream call is cancelled', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['never ', 'finished ', 'answer'], pauseAfter: 1, gate });
    const ac = new AbortController();
    try {
      const { data: stream, response } = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }, { signal: ac.signal })
        .withResponse();
      const it = stream[Symbol.asyncIterator]();
      const got = emptyCollected();
      await readUntil(it, got, (g) => g.content.length > 0);
      ac.abort();
      await it.next().catch(() => undefined);
      const r = await theRecord(response.headers.get('x-request-id'));
      assert.equal(r.outcome, 'client_closed');
      assert.equal(r.status, 499);
      assert.equal(r.stream, true);
      assert.equal(r.provider, 'openai');
      assert.ok(r.errorMessage);
      // The gateway hung up on the upstream while it was still paused mid-answer.
      const upstreamCall = upstream.lastChatRequest();
      await withTimeout(upstreamCall.closed, 5_000, 'the upstream connection was not closed');
      assert.equal(upstreamCall.completed, false);
    } finally {
      gate.open();
    }
  });

  it('client abort mid-stream (mock provider): logged as client_closed', async () => {
    // mock-slow waits 5 s between words here: the abort lands while it is producing.
    const ac = new AbortController();
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-slow', messages: [{ role: 'user', content: 'one two three' }], stream: true, stream_options: { include_usage: true } }, { signal: ac.signal })
      .withResponse();
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    await readUntil(it, got, (g) => g.content.length > 0);
    ac.abort();
    await it.next().catch(() => undefined);
    const requestId = response.headers.get('x-request-id');
    await gw.waitForRecord(requestId!);
    // Let the provider notice the abort (its pending word delay ends) before checking the record.
    await new Promise((r) => setTimeout(r, 50));
    const r = await theRecord(requestId);
    assert.equal(r.outcome, 'client_closed');
    assert.equal(r.status, 499, 'docs/log-schema.md: a caller that hung up is 499');
    assert.equal(r.stream, true);
    assert.equal(r.provider, 'mock-slow');
    assert.equal(r.model, 'mock-slow');
  });

  it('GET /v1/models is logged too', async () => {
    const page = await client.models.list().withResponse();
    const r = await theRecord(page.response.headers.get('x-request-id'));
    assert.equal(r.method, 'GET');
    assert.equal(r.path, '/v1/models');
    assert.equal(r.status, 200);
  });

  it('no request id was logged twice', () => {
    const ids = gw.records.map((r) => r.requestId);
    assert.ok(ids.length >= 15);
    assert.equal(new Set(ids).size, ids.length);
  });
});

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function record(overrides: Partial<RequestRecord>): RequestRecord {
  return {
    schemaVersion: LOG_SCHEMA_VERSION,
    requestId: 'req-1',
    timestamp: '2024-03-05T07:08:09.123Z',
    method: 'POST',
    path: '/v1/chat/completions',
    status: 200,
    outcome: 'ok',
    latencyMs: 12.5,
    ...overrides,
  };
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length + 1))
    .sort();
}

/** The records of `file` once there are at least `count` (none while it does not exist). */
function recordsOnceThere(file: string, count: number): Promise<RequestRecord[]> {
  return eventually(async () => {
    const lines = await readNdjson(file).catch(() => []);
    return lines.length >= count && lines;
  }, `${count} records in ${file}`);
}

async function readNdjson(file: string): Promise<RequestRecord[]> {
  const text = await readFile(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'NDJSON ends with a newline');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as RequestRecord);
}

describe('file sink', () => {
  const dirs: string[] = [];
  const tempDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'gateway-logs-test-'));
    dirs.push(d);
    return d;
  };
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('writes NDJSON under dt=YYYY-MM-DD/hour=HH and appends on later flushes', async () => {
    const dir = await tempDir();
    const sink = new FileLogSink(dir, 60_000);
    const a = record({ requestId: 'a' });
    const b = record({ requestId: 'b', status: 404, outcome: 'error', errorCode: 'model_not_found' });
    const c = record({ requestId: 'c', timestamp: '2024-03-05T23:59:59.999Z' });
    const d = record({ requestId: 'd', timestamp: '2024-03-06T00:00:00.000Z', inputTokens: 3, outputTokens: 4 });
    for (const r of [a, b, c, d]) sink.write(r);
    await sink.flush();
    assert.deepEqual(await listFiles(dir), [
      join('dt=2024-03-05', 'hour=07', 'requests.ndjson'),
      join('dt=2024-03-05', 'hour=23', 'requests.ndjson'),
      join('dt=2024-03-06', 'hour=00', 'requests.ndjson'),
    ]);
    assert.deepEqual(await readNdjson(join(dir, 'dt=2024-03-05', 'hour=07', 'requests.ndjson')), [a, b]);
    assert.deepEqual(await readNdjson(join(dir, 'dt=2024-03-05', 'hour=23', 'requests.ndjson')), [c]);
    assert.deepEqual(await readNdjson(join(dir, 'dt=2024-03-06', 'hour=00', 'requests.ndjson')), [d]);

    const e = record({ requestId: 'e', timestamp: '2024-03-05T07:30:00.000Z' });
    sink.write(e);
    await sink.flush();
    assert.deepEqual(await readNdjson(join(dir, 'dt=2024-03-05', 'hour=07', 'requests.ndjson')), [a, b, e]);
  });

  it('keeps write order per file across batches of several turns and hours, in UTF-8', async () => {
    const dir = await tempDir();
    const sink = new FileLogSink(dir, 60_000);
    const turn = () => new Promise((r) => setImmediate(r));
    const at7 = (id: string) => record({ requestId: id, timestamp: '2024-03-05T07:10:00.000Z' });
    const at8 = (id: string) => record({ requestId: id, timestamp: '2024-03-05T08:10:00.000Z' });
    // Each turn's records are serialised together (one chunk per run of one hour); the flush writes them all.
    const turns = [[at7('a1'), at8('b1'), at7('a2')], [at8('b2')], [at7('a3'), record({ requestId: 'a4', timestamp: '2024-03-05T07:20:00.000Z', model: 'modèle-é中文-🙂' })]];
    for (const batch of turns) {
      for (const r of batch) sink.write(r);
      await turn();
    }
    await sink.flush();
    const at = (h: string) => readNdjson(join(dir, 'dt=2024-03-05', `hour=${h}`, 'requests.ndjson'));
    assert.deepEqual((await at('07')).map((r) => r.requestId), ['a1', 'a2', 'a3', 'a4']);
    assert.deepEqual((await at('08')).map((r) => r.requestId), ['b1', 'b2']);
    assert.equal((await at('07'))[3]!.model, 'modèle-é中文-🙂');
  });

  it('flushes on its own after flushAfterMs', async () => {
    const dir = await tempDir();
    const sink = new FileLogSink(dir, 5);
    sink.write(record({ requestId: 'timed' }));
    const file = join(dir, 'dt=2024-03-05', 'hour=07', 'requests.ndjson');
    assert.deepEqual((await recordsOnceThere(file, 1)).map((l) => l.requestId), ['timed']);
  });

  it('flushes on its own once flushAtBytes are held, before flushAfterMs', async () => {
    const dir = await tempDir();
    const sink = new FileLogSink(dir, 60_000, 1024);
    const file = join(dir, 'dt=2024-03-05', 'hour=07', 'requests.ndjson');
    sink.write(record({ requestId: 'r0' }));
    await new Promise((r) => setTimeout(r, 100));
    // One record (under 200 bytes) waits for the timer; eleven are past 1 KB.
    assert.deepEqual(await readNdjson(file).catch(() => []), []);
    const ids = Array.from({ length: 10 }, (_, i) => `r${i + 1}`);
    for (const id of ids) sink.write(record({ requestId: id }));
    assert.deepEqual((await recordsOnceThere(file, 11)).map((l) => l.requestId), ['r0', ...ids]);
  });

  it('a write that fails loses its own batch only: later flushes, timed or called, still write', async (t) => {
    const dir = await tempDir();
    const sink = new FileLogSink(dir, 5);
    const errors: string[] = [];
    t.mock.method(console, 'error', (line: string) => errors.push(line));
    // A file where the partition folder must go: mkdir fails, as on a full or read-only disk.
    const blocker = join(dir, 'dt=2024-03-05');
    await writeFile(blocker, 'not a folder');
    sink.write(record({ requestId: 'lost-called' }));
    await assert.rejects(sink.flush());
    sink.write(record({ requestId: 'lost-timed' }));
    // The timed flush reports its failure on stderr (no unhandled rejection).
    assert.match(await eventually(async () => errors[0], 'an error line'), /"message":"request log write failed"/);

    await rm(blocker);
    const file = join(dir, 'dt=2024-03-05', 'hour=07', 'requests.ndjson');
    sink.write(record({ requestId: 'kept-timed' }));
    assert.equal((await recordsOnceThere(file, 1)).length, 1);
    sink.write(record({ requestId: 'kept-called' }));
    await sink.flush();
    assert.deepEqual((await readNdjson(file)).map((r) => r.requestId), ['kept-timed', 'kept-called']);
  });

  it('is the local server default: requests are in the files after close()', async () => {
    const dir = await tempDir();
    const config = { ...testConfig({ upstreamBaseUrl: upstream.baseUrl }), logging: { localDir: dir } };
    const srv = await startLocalServer({ config, env: {}, port: 0 });
    let closed = false;
    try {
      const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'to disk' }] }) });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const requestId = res.headers.get('x-request-id');
      await srv.close();
      closed = true;
      const files = await listFiles(dir);
      assert.equal(files.length, 1);
      assert.match(files[0]!, /^dt=\d{4}-\d{2}-\d{2}[/\\]hour=\d{2}[/\\]requests\.ndjson$/);
      const [r, ...rest] = await readNdjson(join(dir, files[0]!));
      assert.equal(rest.length, 0);
      assert.equal(r!.requestId, requestId);
      assert.equal(r!.status, 200);
      assert.equal(r!.model, 'mock');
      assert.equal(r!.outputTokens, 2);
      assert.ok(files[0]!.startsWith(`dt=${r!.timestamp.slice(0, 10)}`) && files[0]!.includes(`hour=${r!.timestamp.slice(11, 13)}`));
    } finally {
      if (!closed) await srv.close();
    }
  });
});
