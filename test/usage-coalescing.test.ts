import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BudgetTracker, usageCounterId } from '../shared/policy/budgets.ts';
import { RateLimiter } from '../shared/policy/rate-limits.ts';
import type { Store } from '../shared/store/types.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { startCountedStore } from './helpers/keys.ts';

/**
 * Settling usage: concurrent requests of one subject share their counter writes (one write in
 * flight per counter, the rest summed into the next), and the totals still add up exactly.
 */
describe('usage counters: concurrent settlements are coalesced, never lost', () => {
  let dynamo: LocalDynamo;
  let store: Store;
  let calls = 0;

  // Count the store's writes; every call still goes to the real DynamoDB API.
  before(async () => {
    ({ dynamo, store } = await startCountedStore('addUsage', () => calls++));
  });
  after(() => dynamo.close());

  it('200 concurrent settlements of one key land in far fewer writes, with exact totals', async () => {
    const tracker = new BudgetTracker(store, 60_000);
    const now = Date.parse('2026-11-25T12:00:00Z');
    const n = 200;
    await Promise.all(
      Array.from({ length: n }, (_, i) => tracker.record(['key:coalesce'], { inputTokens: 10 + (i % 3), outputTokens: 5, cacheReadTokens: 1, cacheWriteTokens: 0, microUsd: 7 }, now)),
    );
    const expectedTokens = Array.from({ length: n }, (_, i) => 10 + (i % 3) + 5).reduce((a, b) => a + b, 0);
    const counters = await store.getCounters([usageCounterId('key:coalesce', 'd', now), usageCounterId('key:coalesce', 'm', now)]);
    for (const totals of counters.values()) {
      assert.equal(totals.requests, n);
      assert.equal(totals.tokens, expectedTokens);
      assert.equal(totals.microUsd, 7 * n);
    }
    assert.equal(counters.size, 2);
    // Two counters (day, month): at most one write in flight each, the rest merged.
    assert.ok(calls < n, `${calls} writes for ${2 * n} settlements`);
    assert.ok(calls >= 2);
  });

  it('a lone settlement is written at once (no timer), and a failed write rejects only its own batch', async () => {
    calls = 0;
    const tracker = new BudgetTracker(store, 60_000);
    const now = Date.parse('2026-11-25T13:00:00Z');
    await tracker.record(['key:lone'], { inputTokens: 3, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 1 }, now);
    assert.equal(calls, 2);
    const counters = await store.getCounters([usageCounterId('key:lone', 'd', now)]);
    assert.equal([...counters.values()][0]!.tokens, 5);

    const errors: unknown[] = [];
    const failing: Store = { ...store, addUsage: async () => Promise.reject(new Error('store down')) } as Store;
    const broken = new BudgetTracker(failing, 60_000, (e) => errors.push(e));
    await broken.record(['key:broken'], { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 0 }, now);
    assert.equal(errors.length, 2, 'each counter write failure is reported');
  });
});

describe('usage counters: time-bounded batching (the policy flushes about once a second)', () => {
  let dynamo: LocalDynamo;
  let store: Store;
  let calls = 0;

  before(async () => {
    ({ dynamo, store } = await startCountedStore('addUsage', () => calls++));
  });
  after(() => dynamo.close());

  const usage = { inputTokens: 4, outputTokens: 6, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 3 };

  it('sequential settlements write nothing until the flush, then one write per counter with exact totals', async () => {
    calls = 0;
    // A long interval: only flush() writes here.
    const tracker = new BudgetTracker(store, 60_000, undefined, 3_600_000);
    const now = Date.parse('2026-11-25T14:00:00Z');
    for (let i = 0; i < 120; i++) await tracker.record(['key:batched', 'team:batched'], usage, now);
    assert.equal(calls, 0, 'no write per request');
    await tracker.flush();
    assert.equal(calls, 4, 'key and team, day and month: one write each');
    const counters = await store.getCounters([usageCounterId('key:batched', 'd', now), usageCounterId('team:batched', 'm', now)]);
    for (const totals of counters.values()) {
      assert.equal(totals.requests, 120);
      assert.equal(totals.tokens, 1200);
      assert.equal(totals.microUsd, 360);
    }
    await tracker.flush();
    assert.equal(calls, 4, 'nothing left to write');
  });

  it('a full batch (flushRecords) is written without waiting for the interval; a failed write is kept for the next flush', async () => {
    calls = 0;
    const tracker = new BudgetTracker(store, 60_000, undefined, 3_600_000, 50);
    const now = Date.parse('2026-11-25T15:00:00Z');
    for (let i = 0; i < 50; i++) await tracker.record(['key:full'], usage, now);
    await tracker.flush(); // waits for the write the 50th record started
    assert.equal(calls, 2);

    let fail = true;
    const errors: unknown[] = [];
    const flaky: Store = { ...store, getCounters: store.getCounters.bind(store), addUsage: (id, d, e) => (fail ? Promise.reject(new Error('store down')) : store.addUsage(id, d, e)) } as Store;
    const t2 = new BudgetTracker(flaky, 60_000, (e) => errors.push(e), 3_600_000);
    await t2.record(['key:retry'], usage, now);
    await t2.flush();
    assert.equal(errors.length, 2);
    fail = false;
    await t2.record(['key:retry'], usage, now);
    await t2.flush();
    const got = await store.getCounters([usageCounterId('key:retry', 'd', now)]);
    assert.equal([...got.values()][0]!.requests, 2, 'the failed batch was written with the next one');
  });
});

describe('rate-limit leases: blocks follow the traffic, renewed ahead, never past the limit', () => {
  let dynamo: LocalDynamo;
  let store: Store;
  let leases = 0;

  before(async () => {
    ({ dynamo, store } = await startCountedStore('lease', () => leases++));
  });
  after(() => dynamo.close());

  it('a busy subject leases about ten seconds of its traffic at a time: 2000 requests, a handful of leases', async () => {
    leases = 0;
    const limiter = new RateLimiter({ store, leaseRequests: 10, leaseTokens: 20_000 });
    const start = Date.parse('2026-11-25T16:00:00.000Z');
    let admitted = 0;
    // 200 requests a second for 10 seconds, one at a time.
    for (let i = 0; i < 2000; i++) {
      const r = await limiter.take('key:busy', { rpm: 1_000_000, tpm: 100_000_000 }, 50, start + i * 5);
      if (r.ok) admitted++;
    }
    assert.equal(admitted, 2000);
    // With fixed blocks of 10 this took 200 leases.
    assert.ok(leases <= 15, `${leases} leases`);
  });

  it('with leases ahead of need, 300 concurrent requests against rpm 100 on two instances admit exactly 100', async () => {
    const now = Date.parse('2026-11-25T16:30:10.000Z');
    const a = new RateLimiter({ store, leaseRequests: 10, leaseTokens: 20_000 });
    const b = new RateLimiter({ store, leaseRequests: 10, leaseTokens: 20_000 });
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 ? a : b).take('key:exact', { rpm: 100 }, 0, now)));
    assert.equal(results.filter((r) => r.ok).length, 100);
    const counters = await store.getCounters([`rl:key:exact:${Math.floor(now / 60_000)}`]);
    assert.ok([...counters.values()][0]!.requests <= 100);
  });
});
