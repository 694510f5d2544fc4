import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GatewayError } from '../shared/http/errors.ts';
import { Deadline } from '../shared/routing/deadline.ts';
import { RouteTable } from '../shared/routes.ts';
import { newSpanId, startTrace, traceCalls, upstreamTraceHeaders, parseTraceparent } from '../shared/tracing/context.ts';

/**
 * The request pipeline's parts made cheaper for issue #17, by their behaviour (no timings):
 * - the attempt deadline's one timer: each limit still fires with its own error, the idle limit
 *   counts only the waits on the upstream (not the time between them), the client's leaving is a 499;
 * - the route table's literal-path lookup keeps the table's order and its 405s;
 * - span ids are valid W3C ids and distinct; the trace context reaches an upstream call through
 *   the call's signal, with no async context.
 */

const never = new Promise<never>(() => {});
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => assert.fail('expected the wait to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `a GatewayError: ${String(err)}`);
  return err;
}

describe('attempt deadline (one timer for three limits)', () => {
  const client = () => new AbortController();
  // The deadline's timer is unref'd (it never keeps a process alive): the test keeps this one alive.
  let alive: NodeJS.Timeout;
  before(() => {
    alive = setInterval(() => {}, 1000);
  });
  after(() => clearInterval(alive));

  it('fires the first-byte limit while the answer has not started, and aborts its signal', async () => {
    const d = new Deadline('slow', { firstByteTimeoutMs: 30, idleTimeoutMs: 10_000, totalTimeoutMs: 10_000 }, client().signal);
    const err = await rejection(d.race(never));
    assert.equal(err.code, 'upstream_timeout');
    assert.match(err.message, /did not answer within 30 ms/);
    assert.equal(d.signal.aborted, true);
    d.release();
  });

  it('fires the total limit once the answer has started', async () => {
    const d = new Deadline('slow', { firstByteTimeoutMs: 10_000, idleTimeoutMs: 10_000, totalTimeoutMs: 60 }, client().signal);
    d.gotFirstByte();
    const err = await rejection(d.race(never, true));
    assert.match(err.message, /did not finish within 60 ms/);
    d.release();
  });

  it('counts only the waits on the upstream against the idle limit', async () => {
    const d = new Deadline('quiet', { firstByteTimeoutMs: 10_000, idleTimeoutMs: 40, totalTimeoutMs: 10_000 }, client().signal);
    d.gotFirstByte();
    assert.equal(await d.race(Promise.resolve('one'), true), 'one');
    // Longer than the idle limit, but not spent waiting on the upstream (a slow reader downstream).
    await pause(120);
    assert.equal(d.signal.aborted, false, 'no idle timeout between waits');
    assert.equal(await d.race(Promise.resolve('two'), true), 'two');
    const err = await rejection(d.race(never, true));
    assert.match(err.message, /went silent for 40 ms mid-answer/);
    d.release();
  });

  it('names the client leaving 499 client_closed, and a released deadline fires nothing', async () => {
    const c = client();
    const d = new Deadline('any', { firstByteTimeoutMs: 10_000, idleTimeoutMs: 10_000, totalTimeoutMs: 10_000 }, c.signal);
    const waiting = rejection(d.race(never));
    c.abort();
    const err = await waiting;
    assert.equal(err.status, 499);
    assert.equal(err.code, 'client_closed');

    const released = new Deadline('any', { firstByteTimeoutMs: 20, idleTimeoutMs: 20, totalTimeoutMs: 20 }, client().signal);
    released.release();
    await pause(60);
    assert.equal(released.signal.aborted, false);
    assert.equal(released.done, true);
  });

  it('settles every wait raced at once when it fires', async () => {
    const d = new Deadline('two', { firstByteTimeoutMs: 30, idleTimeoutMs: 10_000, totalTimeoutMs: 10_000 }, client().signal);
    const [a, b] = await Promise.all([rejection(d.race(never)), rejection(d.race(never))]);
    assert.equal(a.code, 'upstream_timeout');
    assert.equal(b.code, 'upstream_timeout');
    d.release();
  });
});

describe('route table literal lookup', () => {
  const table = new RouteTable<string>([
    { methods: ['GET'], path: '/v1/models', handler: () => new Response('list') },
    { methods: '*', path: '/admin/{rest+}', handler: () => new Response('admin') },
    { methods: ['POST'], path: '/admin/keys', handler: () => new Response('never reached: /admin/{rest+} comes first') },
    { methods: ['POST'], path: '/v1/chat/completions', handler: () => new Response('chat') },
    { methods: ['GET'], path: '/v1/chat/completions', handler: () => new Response('second entry, same path') },
  ]);

  it('answers a literal path from its entries in table order, 405 with every method they take', () => {
    assert.equal(table.match('POST', '/v1/chat/completions').route?.methods[0], 'POST');
    assert.equal(table.match('GET', '/v1/chat/completions').route?.methods[0], 'GET');
    assert.deepEqual(table.match('DELETE', '/v1/chat/completions'), { allow: 'POST, GET' });
    assert.deepEqual(table.match('GET', '/v1/models'), { route: table.match('GET', '/v1/models').route, params: {} });
  });

  it('keeps an earlier pattern entry ahead of a later literal one', () => {
    const hit = table.match('POST', '/admin/keys');
    assert.equal(hit.route?.path, '/admin/{rest+}');
    assert.deepEqual(hit.route && hit.params, { rest: 'keys' });
  });
});

describe('trace ids and context', () => {
  it('makes span ids that are valid, non-zero and distinct', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const id = newSpanId();
      assert.match(id, /^[0-9a-f]{16}$/);
      assert.notEqual(id, '0'.repeat(16));
      ids.add(id);
    }
    assert.equal(ids.size, 10_000);
  });

  it('gives an upstream call under a traced signal a child traceparent, and none without one', () => {
    const tc = startTrace(new Headers({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'v=1' }));
    const signal = new AbortController().signal;
    assert.equal(upstreamTraceHeaders(signal), undefined);
    traceCalls(signal, tc);
    const h = upstreamTraceHeaders(signal)!;
    const p = parseTraceparent(h.traceparent);
    assert.equal(p?.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.notEqual(p?.parentId, tc.spanId, 'a new child span per call');
    assert.equal(h.tracestate, 'v=1');
  });
});
