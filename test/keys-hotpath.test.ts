import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { parseConfig } from '../shared/config/load.ts';
import { DynamoStore, dynamoClient, type LeanDynamoCaller } from '../shared/store/dynamodb.ts';
import { ADMIN_TOKEN, eventually, startDynamo, TestClock } from './helpers/keys.ts';
import { MemorySink } from './helpers/gateway.ts';
import { createGate, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * The hot path's DynamoDB budget, counted on the real client: every command the store sends to
 * dynalite passes a middleware added to the DynamoDBClient's stack, which records it (and can hold
 * reads back, to show that a request does not wait for them). A streaming upstream pauses after its
 * first chunk, so the count taken there is everything the gateway asked DynamoDB before (and just
 * after) the first upstream byte.
 */

interface Call {
  name: string;
  /** The item an UpdateItem writes (its `pk`). */
  item?: string;
  started: number;
  ended?: number;
}

/** Whether the calls overlap in time: all started before any ended (one round trip of latency). */
function oneRoundTrip(calls: Call[]): boolean {
  if (!calls.length) return true;
  const lastStart = Math.max(...calls.map((c) => c.started));
  return calls.every((c) => c.ended === undefined || c.ended > lastStart);
}

describe('hot path: DynamoDB round trips before the first upstream byte', () => {
  let dynamo: LocalDynamo;
  let store: DynamoStore;
  let upstream: MockOpenAI;
  let srv: LocalServer;
  const clock = new TestClock();
  const sink = new MemorySink();
  const calls: Call[] = [];
  let tick = 0;
  /** While set, GetItem and BatchGetItem (and UpdateItem with holdWrites) wait for it before going out. */
  let holdReads: Promise<void> | undefined;
  let holdWrites = false;
  let releaseReads = (): void => {};
  let client: OpenAI;

  before(async () => {
    const d = await startDynamo();
    dynamo = d.dynamo;
    // A local endpoint: the lean client, whose middleware stack has the SDK's shape.
    const ddb = dynamoClient(d.settings) as LeanDynamoCaller;
    ddb.middlewareStack.add(
      (next, context) => async (args) => {
        const call: Call = { name: String(context.commandName), item: (args.input as { Key?: { pk?: { S?: string } } }).Key?.pk?.S, started: ++tick };
        calls.push(call);
        if (holdReads && (call.name === 'GetItemCommand' || call.name === 'BatchGetItemCommand' || (holdWrites && call.name === 'UpdateItemCommand'))) await holdReads;
        try {
          return await next(args);
        } finally {
          call.ended = ++tick;
        }
      },
      { step: 'initialize', name: 'countDynamoCalls' },
    );
    store = new DynamoStore({ client: ddb, tables: d.settings.tables });
    upstream = await startMockOpenAI();
    const config = parseConfig(
      {
        providers: { openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: 'HOT_UPSTREAM_KEY' } },
        models: { gpt: { provider: 'openai', model: 'gpt-4o-mini' } },
        auth: { required: true, cacheTtlSeconds: 10 },
        limits: { leaseRequests: 10, leaseTokens: 20_000, budgetRefreshSeconds: 5 },
        pricing: { 'gpt-4o-mini': { input: 0.15, output: 0.6 } },
      },
      'hot-path test configuration',
    );
    srv = await startLocalServer({ config, env: { GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, HOT_UPSTREAM_KEY: 'sk-upstream-hot-000' }, port: 0, host: '127.0.0.1', sinks: [sink], store, now: clock.now });
    const admin = async (method: string, path: string, body: unknown) => {
      const res = await fetch(`${srv.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.ok(res.ok, `${method} ${path}: ${res.status}`);
      return (await res.json()) as { key: string };
    };
    await admin('PUT', '/admin/teams/hot', { limits: { rpm: 1000, tpm: 1_000_000 }, budget: { tokensPerDay: 1_000_000 } });
    const { key } = await admin('POST', '/admin/keys', { name: 'hot', team: 'hot', limits: { rpm: 1000, tpm: 1_000_000 }, budget: { usdPerDay: 100 } });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 });
  });

  after(async () => {
    await srv?.close();
    store?.close();
    await upstream?.close();
    await dynamo?.close();
  });

  /** Wait until every DynamoDB call has returned and no new one started for a moment (settlement). */
  async function quiet(): Promise<void> {
    let seen = -1;
    await eventually(async () => {
      const done = calls.every((c) => c.ended !== undefined) && calls.length === seen;
      seen = calls.length;
      return done;
    }, 'DynamoDB calls to settle');
  }

  /** One streamed request; returns the DynamoDB calls made between its start and the upstream's first chunk. */
  async function streamedRequest(whileHeld?: () => void): Promise<Call[]> {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['warm ', 'path'], pauseAfter: 0, gate });
    const from = calls.length;
    const pending = client.chat.completions.create({ model: 'gpt', stream: true, max_tokens: 50, messages: [{ role: 'user', content: 'count my round trips' }] });
    let timer: NodeJS.Timeout | undefined;
    const reached = await Promise.race([gate.reached.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5_000)))]);
    clearTimeout(timer);
    if (!reached) {
      // The request is waiting on DynamoDB: let held reads go so the test fails instead of hanging.
      releaseReads();
      await gate.reached;
    }
    const during = calls.slice(from).map((c) => ({ ...c }));
    assert.ok(reached, `the request did not reach the upstream while DynamoDB reads were held: ${during.map((c) => c.name).join(', ')}`);
    try {
      whileHeld?.();
    } finally {
      gate.open();
    }
    let text = '';
    for await (const chunk of await pending) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, 'warm path');
    await quiet();
    return during;
  }

  test('a cold instance reads the key once; warm requests never wait on DynamoDB: leases are renewed in the background before they run out', async () => {
    const cold = await streamedRequest();
    assert.ok(cold.some((c) => c.name === 'GetItemCommand'), `the cold request reads the key: ${cold.map((c) => c.name).join(', ')}`);

    // Leases of 10 requests per subject (key and team), budget blocks of 50 worst-case requests: the
    // next block is leased once half of one is spent, in the background. Every DynamoDB call is held
    // back while each request runs: a request that waited on one would never reach the upstream.
    const during: string[] = [];
    for (let i = 2; i <= 30; i++) {
      holdReads = new Promise<void>((r) => (releaseReads = r));
      holdWrites = true;
      const calls = await streamedRequest(() => {
        holdReads = undefined;
        holdWrites = false;
        releaseReads();
      });
      // The FinOps report's day item is written on its own clock (at most every 5 s, see
      // test/finops-report.test.ts), so how many land here depends on how long the loop takes.
      during.push(...calls.filter((c) => !c.item?.startsWith('rpt:')).map((c) => c.name));
    }
    assert.ok(
      during.every((n) => n === 'UpdateItemCommand'),
      `only lease renewals and batched usage writes (UpdateItem), none waited on: ${during.join(', ')}`,
    );
    // Renewals are blocks, not per request: far fewer calls than requests.
    assert.ok(during.length <= 12, `${during.length} calls for 29 warm requests`);

    // Settlement is batched in memory (about a second) and written per counter; an admin usage read
    // writes this instance's batch first.
    const usage = await (await fetch(`${srv.url}/admin/teams/hot/usage`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal((usage as { day: { requests: number } }).day.requests, 30);
  });

  test('past half the key cache TTL the key is re-read in the background: the request does not wait for it', async () => {
    clock.advance(6_000); // cacheTtlSeconds 10: past half, not yet expired; budget view (5 s) stale too
    holdReads = new Promise<void>((r) => (releaseReads = r));
    const during = await streamedRequest(() => {
      // The upstream already has the request, while the key and budget reads are still held back.
      const inFlight = calls.some((c) => c.name === 'GetItemCommand' && c.ended === undefined);
      holdReads = undefined;
      releaseReads();
      assert.ok(inFlight, 'a key re-read is in flight');
    });
    assert.ok(during.every((c) => c.name !== 'UpdateItemCommand'), 'no lease was needed');
    // The refreshed entry serves the next requests without a read (a batched usage write may go out meanwhile).
    const next = await streamedRequest();
    assert.deepEqual(
      next.map((c) => c.name).filter((n) => n !== 'UpdateItemCommand'),
      [],
    );
  });

  test('once the key cache entry has expired, the key read is the one round trip', async () => {
    clock.advance(11_000); // past the TTL (same minute window: the pinned clock started at :30)
    const during = await streamedRequest();
    const names = during.map((c) => c.name);
    assert.ok(names.includes('GetItemCommand'), names.join(', '));
    // The key and its team (known from the expired entry) are read in parallel.
    const reads = during.filter((c) => c.name === 'GetItemCommand');
    assert.equal(reads.length, 2);
    assert.ok(oneRoundTrip(reads), 'key and team reads overlap');
    assert.equal(sink.records.filter((r) => r.frontDoor === 'openai-chat' && r.status === 200).length, 33, 'every request was served');
  });
});
