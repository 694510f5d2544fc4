import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eventually, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

/**
 * Budgets under concurrency (issue #15): a $0.10 daily budget and requests that cost $0.017 each.
 * Before, the budget was compared with settled spend only, so everything in flight got through:
 * 100 concurrent requests spent $1.46 (streams: $1.70). Now each request reserves its worst case
 * (prompt estimate + max_tokens at the price) before it goes upstream; the figure to reach is at
 * most $0.12 spent, through the real local server and dynalite, on one instance and on two.
 */

// mock-echo-1 echoes the prompt word by word, up to max_tokens: 10 output tokens at $1700 per
// million = $0.017 a request (input is free, so the prompt estimate does not move the price).
const PRICING = { 'mock-echo-1': { input: 0, output: 1700 }, 'mock-echo-2': { input: 1, output: 1 } };
const PROMPT = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen';
const BUDGET = 0.1;

async function chat(url: string, key: string, stream: boolean): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock', max_tokens: 10, stream, ...(stream ? { stream_options: { include_usage: true } } : {}), messages: [{ role: 'user', content: PROMPT }] }),
  });
  await res.text(); // a stream is spent when its body is read to the end
  return res.status;
}

/** 100 requests at once (spread over the instances); the spend once every admitted one has settled. */
async function burst(g: KeyedGateway, stream: boolean, name: string, budget = BUDGET): Promise<{ admitted: number; refused: number; spentUsd: number }> {
  const { id, key } = await g.createKey({ name, budget: { usdPerDay: budget } });
  const statuses = await Promise.all(Array.from({ length: 100 }, (_, i) => chat(g.urls[i % g.urls.length]!, key, stream)));
  const admitted = statuses.filter((s) => s === 200).length;
  const refused = statuses.filter((s) => s === 429).length;
  assert.equal(admitted + refused, 100, `statuses: ${[...new Set(statuses)].join(', ')}`);
  const usage = await eventually(async () => {
    const u = (await g.admin('GET', `/admin/keys/${id}/usage`)).json;
    return u.day.requests === admitted && u;
  }, 'settlement');
  const records = g.sink.records.filter((r) => r.keyId === id && r.status === 200);
  assert.ok(records.every((r) => r.outputTokens === 10 && Math.abs((r.costUsd ?? 0) - 0.017) < 1e-9), 'each request cost $0.017');
  return { admitted, refused, spentUsd: usage.day.costUsd };
}

describe('budgets under 100 concurrent requests ($0.10 a day, $0.017 a request)', () => {
  let g: KeyedGateway;
  before(async () => {
    g = await startKeyedGateway({ config: { pricing: PRICING, limits: { budgetRefreshSeconds: 0 } } });
  });
  after(() => g.close());

  for (const stream of [false, true]) {
    test(`${stream ? 'streamed' : 'not streamed'}: at most $0.12 spent`, async (t) => {
      const r = await burst(g, stream, `burst-${stream}`);
      t.diagnostic(`admitted ${r.admitted}, spent $${r.spentUsd}`);
      assert.ok(r.spentUsd <= 0.12 + 1e-9, `spent $${r.spentUsd} with ${r.admitted} admitted`);
      assert.ok(r.admitted >= 5, `admitted ${r.admitted}: the budget is used, not just guarded`);
    });
  }

  test('one at a time: admitted while something remains, as before (6 requests, $0.102)', async () => {
    const { id, key } = await g.createKey({ name: 'sequential', budget: { usdPerDay: BUDGET } });
    let admitted = 0;
    for (let i = 0; i < 10; i++) {
      const status = await chat(g.url, key, i % 2 === 1);
      if (status !== 200) {
        assert.equal(status, 429);
        break;
      }
      admitted++;
      await eventually(async () => (await g.admin('GET', `/admin/keys/${id}/usage`)).json.day.requests === admitted, 'settlement');
    }
    assert.equal(admitted, 6);
  });

  test('a reservation is released when the request settles: a refused burst leaves the budget usable', async () => {
    // Worst-case reservations ($0.017: max_tokens 10) settle to the real cost (the echo of 'hi' is
    // one token, $0.0017): nothing stays stuck, or the third request would be refused.
    const { id, key } = await g.createKey({ name: 'release', budget: { usdPerDay: 0.05 } });
    const short = () =>
      fetch(`${g.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mock', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
      }).then(async (r) => (await r.text(), r.status));
    // Each reserves $0.017 but costs $0.0017: 10 sequential requests spend $0.017 in all.
    for (let i = 0; i < 10; i++) assert.equal(await short(), 200, `request ${i + 1}`);
    const u = await eventually(async () => {
      const x = (await g.admin('GET', `/admin/keys/${id}/usage`)).json;
      return x.day.requests === 10 && x;
    }, 'settlement');
    assert.ok(Math.abs(u.day.costUsd - 0.017) < 1e-9, `spent ${u.day.costUsd}`);
  });
});

describe('budgets across two gateway instances sharing one dynalite', () => {
  let g: KeyedGateway;
  before(async () => {
    g = await startKeyedGateway({ instances: 2, config: { pricing: PRICING, limits: { budgetRefreshSeconds: 0 } } });
  });
  after(() => g.close());

  for (const stream of [false, true]) {
    test(`${stream ? 'streamed' : 'not streamed'}: 100 concurrent requests over both instances spend at most $0.12`, async (t) => {
      const r = await burst(g, stream, `two-${stream}`);
      t.diagnostic(`admitted ${r.admitted}, spent $${r.spentUsd}`);
      assert.ok(r.spentUsd <= 0.12 + 1e-9, `spent $${r.spentUsd} with ${r.admitted} admitted`);
      assert.ok(r.admitted >= 5, `admitted ${r.admitted}`);
    });
  }

  test('a larger budget ($1) is spent through leased blocks: at most one request over, at most a block under', async (t) => {
    const r = await burst(g, false, 'two-blocks', 1);
    t.diagnostic(`admitted ${r.admitted}, spent $${r.spentUsd}`);
    assert.ok(r.spentUsd <= 1 + 0.017 + 1e-9, `spent $${r.spentUsd}`);
    // A block is a tenth of the budget: the other instance's unspent block is the most left unused.
    assert.ok(r.spentUsd >= 0.9 - 0.017 - 1e-9, `spent $${r.spentUsd} with ${r.admitted} admitted`);
  });
});
