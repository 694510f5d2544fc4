import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { startFaultUpstream, type FaultUpstream } from './helpers/fault-upstream.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';

/**
 * Routing through real loopback upstreams that fail on demand: fallback on 429/5xx/timeouts/
 * connection errors, never on 4xx; retries with backoff honouring Retry-After; weights; cooldown;
 * commitment after the first byte; direct provider/model targets.
 */
describe('routing: aliases, fallback, retries, timeouts, weights, cooldown', () => {
  let a: FaultUpstream, b: FaultUpstream, c: FaultUpstream;
  let srv: StartedGateway;
  const records: RequestRecord[] = [];
  let client: OpenAI;

  before(async () => {
    [a, b, c] = await Promise.all([startFaultUpstream('alpha'), startFaultUpstream('beta'), startFaultUpstream('gamma')]);
    const provider = (u: FaultUpstream) => ({ type: 'openai-compatible', baseUrl: u.baseUrl, firstByteTimeoutMs: 10_000 });
    srv = await startGateway({
      providers: { alpha: provider(a), beta: provider(b), gamma: provider(c) },
      models: {
        // primary alpha, fallback beta; alpha's first byte must come within 300 ms
        chain: { groups: [{ targets: [{ provider: 'alpha', model: 'a-1', firstByteTimeoutMs: 300 }] }, { targets: [{ provider: 'beta', model: 'b-1' }] }] },
        // 3:1 spread over alpha and beta, gamma as fallback
        spread: { groups: [{ targets: [{ provider: 'alpha', model: 'a-1', weight: 3 }, { provider: 'beta', model: 'b-1', weight: 1 }] }, { targets: [{ provider: 'gamma', model: 'g-1' }] }] },
        noretry: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 }, groups: [{ targets: [{ provider: 'alpha', model: 'a-1' }] }, { targets: [{ provider: 'beta', model: 'b-1' }] }] },
        onlyalpha: { provider: 'alpha', model: 'a-1', params: { temperature: 0.25 } },
      },
      config: {
        routing: { retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 50 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } },
      },
      sinks: [{ write: (r) => void records.push(structuredClone(r)) }],
    });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await srv.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  });
  beforeEach(() => {
    for (const u of [a, b, c]) {
      u.hits = 0;
      u.abandoned = 0;
      u.fault = 'ok';
      u.slowMs = 2_000;
    }
    records.length = 0;
  });

  async function chat(model: string, stream = false) {
    const res = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const text = await res.text();
    return { res, text, record: await recordOf(res.headers.get('x-request-id')!) };
  }

  async function recordOf(id: string): Promise<RequestRecord> {
    for (let i = 0; i < 200; i++) {
      const r = records.find((x) => x.requestId === id);
      if (r) return r;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no record for ${id}`);
  }

  for (const fault of ['500', '503', '429', 'reset'] as const) {
    it(`falls back when the primary answers ${fault}, after one retry`, async () => {
      a.fault = fault;
      const { res, text, record } = await chat('chain');
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(text).choices[0].message.content, 'served by beta');
      assert.equal(res.headers.get('x-gateway-provider'), 'beta');
      assert.equal(res.headers.get('x-gateway-model'), 'b-1');
      assert.equal(res.headers.get('x-gateway-attempts'), '3');
      assert.equal(a.hits, 2, 'primary tried twice (one retry)');
      assert.equal(b.hits, 1);
      assert.equal(record.attempts, 3);
      assert.equal(record.fallbacks, 1);
      assert.deepEqual(record.attemptLog!.map((x) => x.provider), ['alpha', 'alpha', 'beta']);
      assert.equal(record.attemptLog![2]!.status, 200);
      assert.equal(record.provider, 'beta');
    });
  }

  it('moves on at once when Retry-After is longer than the retry cap', async () => {
    a.fault = '429-long';
    const { res, record } = await chat('chain');
    assert.equal(res.status, 200);
    assert.equal(a.hits, 1, 'no retry of a target that asked for an hour');
    assert.equal(record.attempts, 2);
  });

  it('falls back when the primary is slower than its first-byte timeout (headers, streaming first chunk)', async () => {
    a.fault = 'slow-headers';
    const slow = await chat('chain');
    assert.equal(slow.res.status, 200);
    assert.match(slow.text, /served by beta/);
    assert.equal(slow.record.attemptLog![0]!.status, 504);
    assert.equal(slow.record.attemptLog![0]!.errorCode, 'upstream_timeout');

    a.fault = 'slow-first-chunk';
    const stream = await client.chat.completions.create({ model: 'chain', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, 'served by beta');
  });

  it('falls back when the stream dies before its first chunk', async () => {
    a.fault = 'cut-before-first-chunk';
    const { res, text } = await chat('chain', true);
    assert.equal(res.status, 200);
    const content = text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? '').join('');
    assert.equal(content, 'served by beta');
    assert.match(text, /data: \[DONE\]\n\n$/);
    assert.equal(b.hits, 1);
  });

  it('never falls back on a 400: the client gets it as is', async () => {
    a.fault = '400';
    const { res, text, record } = await chat('chain');
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(text).error.message, 'alpha: bad request');
    assert.equal(a.hits, 1);
    assert.equal(b.hits, 0);
    assert.equal(record.attempts, 1);
    assert.equal(record.status, 400);
  });

  it('after the first byte, a broken stream ends with an error event, not a fallback', async () => {
    a.fault = 'cut-mid-stream';
    const stream = await client.chat.completions.create({ model: 'chain', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    });
    assert.equal(text, 'served by', 'the client kept what it had');
    assert.equal(b.hits, 0);
    const record = records.find((r) => r.outcome === 'stream_error') ?? (await new Promise<RequestRecord>((r) => setTimeout(() => r(records.at(-1)!), 100)));
    assert.equal(record.outcome, 'stream_error');
    assert.equal(record.provider, 'alpha');
  });

  it('answers with the last error when every target fails', async () => {
    a.fault = '503';
    b.fault = '500';
    const { res, text, record } = await chat('chain');
    assert.equal(res.status, 500);
    assert.equal(JSON.parse(text).error.message, 'beta: internal error');
    assert.equal(record.attempts, 4);
    assert.equal(record.outcome, 'error');
  });

  it('spreads traffic by weight within a group (3:1 over 400 requests)', async () => {
    const n = 400;
    for (let i = 0; i < n; i += 20) await Promise.all(Array.from({ length: 20 }, () => chat('spread')));
    // Binomial(400, 0.75): sd ~ 8.7; allow 5 sd.
    assert.ok(Math.abs(a.hits - 300) <= 44, `alpha served ${a.hits} of ${n}`);
    assert.equal(a.hits + b.hits, n);
    assert.equal(c.hits, 0);
  });

  it('with 30% injected failures on the primary, every request succeeds through the fallback (500 requests)', async () => {
    let rnd = 0x2545f491;
    const failing = () => {
      rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
      return rnd % 100 < 30;
    };
    a.fault = () => (failing() ? '503' : 'ok');
    let ok = 0;
    for (let i = 0; i < 500; i += 25) {
      const results = await Promise.all(Array.from({ length: 25 }, () => chat('noretry')));
      ok += results.filter((r) => r.res.status === 200).length;
    }
    assert.equal(ok, 500);
    assert.ok(b.hits > 100 && b.hits < 200, `fallback served ${b.hits}`);
    assert.equal(a.hits, 500);
  });

  it('a client disconnect cancels the upstream call', async () => {
    a.fault = 'slow-first-chunk';
    a.slowMs = 150;
    const ctrl = new AbortController();
    const pending = fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'onlyalpha', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      signal: ctrl.signal,
    });
    while (a.hits === 0) await new Promise((r) => setTimeout(r, 5));
    ctrl.abort();
    await assert.rejects(pending);
    for (let i = 0; i < 200 && a.abandoned === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(a.abandoned, 1, 'the upstream saw the gateway hang up');
  });

  it('serves provider/model named directly, and applies target parameter overrides', async () => {
    const direct = await chat('gamma/some-model');
    assert.equal(direct.res.status, 200);
    assert.equal(direct.res.headers.get('x-gateway-provider'), 'gamma');
    assert.equal(direct.res.headers.get('x-gateway-model'), 'some-model');
    const unknown = await chat('nowhere/some-model');
    assert.equal(unknown.res.status, 404);
    assert.equal(JSON.parse(unknown.text).error.code, 'model_not_found');
  });

  it('lists aliases, not targets, on /v1/models', async () => {
    const list = await client.models.list();
    assert.deepEqual(list.data.map((m) => m.id).sort(), ['chain', 'noretry', 'onlyalpha', 'spread']);
  });
});

describe('routing: cooldown skips a failing target, then tries it again', () => {
  it('skips the primary after N failures and returns to it after the cooldown', async () => {
    const a = await startFaultUpstream('alpha', '500');
    const b = await startFaultUpstream('beta');
    const srv = await startGateway({
      providers: { alpha: { type: 'openai-compatible', baseUrl: a.baseUrl }, beta: { type: 'openai-compatible', baseUrl: b.baseUrl } },
      models: { m: { groups: [{ targets: [{ provider: 'alpha', model: 'x' }] }, { targets: [{ provider: 'beta', model: 'y' }] }] } },
      config: {
        routing: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 }, cooldown: { failures: 2, windowMs: 10_000, cooldownMs: 300 } },
      },
    });
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    try {
      const ask = () => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
      for (let i = 0; i < 5; i++) assert.equal((await ask()).choices[0]!.message.content, 'served by beta');
      assert.equal(a.hits, 2, 'two failures, then the primary cools down');
      assert.equal(b.hits, 5);
      await new Promise((r) => setTimeout(r, 350));
      a.fault = 'ok';
      assert.equal((await ask()).choices[0]!.message.content, 'served by alpha', 'tried again after the cooldown');
      assert.equal(a.hits, 3);
    } finally {
      await srv.close();
      await a.close();
      await b.close();
    }
  });
});
