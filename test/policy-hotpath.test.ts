import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { parseConfig } from '../shared/config/load.ts';
import type { ChatRequest } from '../shared/core/types.ts';
import { GatewayError } from '../shared/http/errors.ts';
import { intText, limitHeaders } from '../shared/policy/headers.ts';
import { createPolicy, type Policy } from '../shared/policy/index.ts';
import { newKey } from '../shared/policy/keys.ts';
import { createDynamoStore, type DynamoStore } from '../shared/store/dynamodb.ts';
import { RequestTrace, type RequestRecord } from '../shared/telemetry/record.ts';
import { startDynamo, TestClock } from './helpers/keys.ts';

/**
 * The policy on a warm key (issue #17): admission is synchronous work answered from the instance's
 * caches and leases, with the same decisions as a cold one. Counted on the real store (dynalite).
 */
describe('policy hot path: a warm key is admitted from memory', () => {
  let dynamo: LocalDynamo;
  let store: DynamoStore;
  let policy: Policy;
  let config: ReturnType<typeof parseConfig>;
  let calls: string[] = [];
  const clock = new TestClock();
  const k = newKey();
  const records: RequestRecord[] = [];
  const pending: Promise<unknown>[] = [];
  const extras = { waitUntil: (p: Promise<unknown>) => void pending.push(p) };
  const chat: ChatRequest = { model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello.' }] }], maxTokens: 16, stream: false, includeUsage: false };
  const targets = [{ provider: 'up', model: 'gpt-up' }];

  const requestWith = (key: string) => new Request('http://gateway.local/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}` } });
  const traceOf = (request: Request) => new RequestTrace(`r${records.length}`, request, '/v1/chat/completions', (r) => void records.push(r));
  /** What a promise holds if it is already settled (its reaction is queued before the marker's), else 'pending'. */
  const PENDING = Symbol('pending');
  const settledValue = <T>(p: Promise<T>) => Promise.race([p, Promise.resolve(PENDING)]).then((v) => (v === PENDING ? 'pending' : { v: v as T }), (e: unknown) => ({ e }));

  before(async () => {
    const d = await startDynamo();
    dynamo = d.dynamo;
    const raw = createDynamoStore(d.settings);
    // Every store method counts its calls; each still goes to dynalite.
    store = new Proxy(raw, {
      get(target, name, receiver) {
        const v = Reflect.get(target, name, receiver);
        return typeof v === 'function' && name !== 'close' ? (...args: unknown[]) => (calls.push(String(name)), v.apply(target, args)) : v;
      },
    });
    config = parseConfig(
      {
        providers: { up: { type: 'mock' } },
        models: { gpt: { provider: 'up', model: 'gpt-up' } },
        pricing: { 'gpt-up': { input: 0.15, output: 0.6 } },
        auth: { required: true },
        // Leases of 100 requests: the loop below stays within the first one (a lease renewed ahead
        // is a round trip this loop never yields to).
        limits: { leaseRequests: 100 },
        store: { region: 'local', keysTable: d.settings.tables.keys, usageTable: d.settings.tables.usage },
      },
      'test',
    );
    policy = createPolicy(config, {}, store, clock.now)!;
    const at = new Date(clock.t).toISOString();
    await raw.createKey({ id: k.id, hash: k.hash, name: 'warm', models: ['gpt'], limits: { rpm: 1000, tpm: 1_000_000 }, budget: { usdPerDay: 100 }, createdAt: at, updatedAt: at, metadata: {}, version: 1 });
  });
  after(async () => {
    await Promise.allSettled(pending);
    await policy.flush();
    store.close();
    await dynamo.close();
  });

  async function oneRequest(key = k.key): Promise<{ headers: Record<string, string>; record: RequestRecord }> {
    const request = requestWith(key);
    const trace = traceOf(request);
    await policy.authenticate(request, trace, extras);
    const headers = await policy.admitChat(trace, chat, 'openai-chat', targets);
    trace.record.upstreamModel = 'gpt-up';
    trace.record.provider = 'up';
    trace.usage({ inputTokens: 10, outputTokens: 4 });
    trace.end(200);
    return { headers, record: trace.record };
  }

  it('after the first request, authenticate and admitChat are settled at once, with no store read or write per request', async () => {
    const first = await oneRequest();
    assert.equal(first.record.keyId, k.id);
    assert.equal(first.headers['x-ratelimit-limit-requests'], '1000');
    await Promise.allSettled(pending);
    calls = [];
    for (let i = 0; i < 20; i++) {
      const request = requestWith(k.key);
      const trace = traceOf(request);
      const auth = await settledValue(policy.authenticate(request, trace, extras));
      assert.ok(auth !== 'pending' && 'v' in auth, 'authenticate is settled');
      assert.equal(auth.v.key.id, k.id);
      const admitted = await settledValue(policy.admitChat(trace, chat, 'openai-chat', targets));
      assert.ok(admitted !== 'pending' && 'v' in admitted, 'admitChat is settled');
      assert.equal(admitted.v['x-ratelimit-remaining-requests'], String(1000 - 2 - i));
      assert.match(admitted.v['x-gateway-budget-remaining-usd']!, /^\d+(\.\d+)?$/);
      trace.record.upstreamModel = 'gpt-up';
      trace.usage({ inputTokens: 10, outputTokens: 4 });
      trace.end(200);
      assert.equal(trace.record.rateLimit, 'allowed');
      assert.ok(trace.record.costUsd! > 0, 'the request is priced when it ends');
    }
    // No key or counter read and no usage write per request: at most a lease renewed ahead of need,
    // in the background (the admissions above were settled without it).
    assert.deepEqual(calls.filter((c) => c !== 'reserve' && c !== 'lease'), [], 'no read or usage write on a warm key');
    assert.ok(calls.length <= 2, `${calls.length} store calls for 20 requests`);
  });

  it('a wrong secret for a cached key id, or a key not allowed the model, is refused as before', async () => {
    const forged = `gwk_${k.id}_${'A'.repeat(43)}`;
    await assert.rejects(oneRequest(forged), (e: GatewayError) => e.code === 'invalid_api_key' && e.status === 401);
    const request = requestWith(k.key);
    const trace = traceOf(request);
    await policy.authenticate(request, trace, extras);
    await assert.rejects(policy.admitChat(trace, { ...chat, model: 'other' }, 'openai-chat'), (e: GatewayError) => e.code === 'model_not_allowed' && e.status === 403);
    trace.end(403);
  });

  it('a cold instance under concurrent requests reads each budget counter once, not once per request', async () => {
    const cold = createPolicy(config, {}, store, clock.now)!;
    const k2 = newKey();
    const at = new Date(clock.t).toISOString();
    await store.createKey({ id: k2.id, hash: k2.hash, name: 'cold', models: ['gpt'], limits: { rpm: 1000, tpm: 1_000_000 }, budget: { usdPerDay: 100 }, createdAt: at, updatedAt: at, metadata: {}, version: 1 });
    await Promise.allSettled(pending);
    calls = [];
    const admitted = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const request = requestWith(k2.key);
        const trace = traceOf(request);
        await cold.authenticate(request, trace, extras);
        const headers = await cold.admitChat(trace, chat, 'openai-chat', targets);
        trace.end(200);
        return headers;
      }),
    );
    assert.equal(admitted.length, 30);
    for (const h of admitted) assert.match(h['x-gateway-budget-remaining-usd']!, /^\d+(\.\d+)?$/);
    assert.equal(calls.filter((c) => c === 'getKey').length, 1, 'one key read');
    assert.equal(calls.filter((c) => c === 'getCounters').length, 1, 'one read of the day counter for 30 requests');
    await Promise.allSettled(pending);
    await cold.flush();
  });

  it('usage settled from memory reaches the counters on flush', async () => {
    await Promise.allSettled(pending);
    await policy.flush();
    const res = await store.getCounters([`use:key:${k.id}:d:${new Date(clock.t).toISOString().slice(0, 10)}`]);
    const totals = [...res.values()][0]!;
    assert.equal(totals.requests, 21);
    assert.equal(totals.tokens, 21 * 14);
  });
});

describe('limit headers: values formatted once are right when they change back and forth', () => {
  it('remaining USD and Anthropic reset times follow their inputs', () => {
    const now = Date.parse('2026-12-01T02:00:30.500Z');
    const status = (resetAt: number) => [{ rpm: 10, remainingRequests: 4, resetAt }];
    for (const [usd, text] of [[12.5, '12.5'], [0, '0'], [12.5, '12.5'], [3.0000001, '3'], [99.123456789, '99.123457']] as const) {
      assert.equal(limitHeaders('openai-chat', [], { remainingUsd: usd }, now)['x-gateway-budget-remaining-usd'], text);
    }
    const a = limitHeaders('anthropic-messages', status(Date.parse('2026-12-01T02:01:00Z')), {}, now);
    const b = limitHeaders('anthropic-messages', status(Date.parse('2026-12-01T02:02:00Z')), {}, now);
    const c = limitHeaders('anthropic-messages', status(Date.parse('2026-12-01T02:01:00Z')), {}, now);
    assert.equal(a['anthropic-ratelimit-requests-reset'], '2026-12-01T02:01:00Z');
    assert.equal(b['anthropic-ratelimit-requests-reset'], '2026-12-01T02:02:00Z');
    assert.deepEqual(c, a);
    assert.deepEqual(limitHeaders('openai-chat', status(now + 29_500), {}, now), { 'x-ratelimit-limit-requests': '10', 'x-ratelimit-remaining-requests': '4', 'x-ratelimit-reset-requests': '30s' });
  });

  it('counts and limits read as String() writes them, large ones included, and alternating dimensions keep their own', () => {
    const samples = [0, 1, 9.99, 2147483647, 2147483648, 2147483648.7, 999_999_999_971, 1e12, 1e12 + 0.5, 1_000_000_000_000_000, 2 ** 53 - 1, 2 ** 53, 1e300, -5.5, -3e12, NaN, Infinity];
    for (let i = 0; i < 200; i++) samples.push(Math.random() * 10 ** (i % 16), Math.floor(Math.random() * 2 ** 53));
    for (const n of samples) assert.equal(intText(n), String(Math.floor(n)), `intText(${n})`);
    const now = Date.parse('2026-12-01T02:00:30.500Z');
    const one = (rpm: number, tpm: number, left: number) => limitHeaders('openai-chat', [{ rpm, tpm, remainingRequests: rpm - 1, remainingTokens: left, resetAt: now + 1000 }], {}, now);
    for (const [rpm, tpm, left] of [[10, 1_000_000_000_000, 999_999_999_971.25], [20, 5000, 4000], [10, 1_000_000_000_000, 12.9]] as const) {
      const h = one(rpm, tpm, left);
      assert.equal(h['x-ratelimit-limit-requests'], String(rpm));
      assert.equal(h['x-ratelimit-limit-tokens'], String(tpm));
      assert.equal(h['x-ratelimit-remaining-tokens'], String(Math.floor(left)));
    }
  });
});
