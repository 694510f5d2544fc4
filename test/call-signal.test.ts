import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ClientLeave, LazySignal, webSignal } from '../shared/http/client-signal.ts';
import { GatewayError } from '../shared/http/errors.ts';
import { upstreamFetch } from '../shared/http/node-fetch.ts';
import { parseConfig } from '../shared/config/load.ts';
import { Deadline } from '../shared/routing/deadline.ts';
import { Router } from '../shared/routing/router.ts';
import { isoNow } from '../shared/telemetry/record.ts';
import { inheritTrace, parseTraceparent, startTrace, traceCalls, upstreamTraceHeaders } from '../shared/tracing/context.ts';
import { startLoopback, type Loopback } from './helpers/loopback.ts';

/**
 * The request path's parts made cheaper for issue #17 (CPU per keyed request), by their behaviour:
 * - an attempt's deadline is a LazySignal: listeners in a list, a web AbortSignal only when a call
 *   asks for one (then aborted with the deadline), the trace context carried on it;
 * - an upstream call under such a signal is cancelled by it, before the answer and mid-body;
 * - the record's timestamp is the ISO string of the clock, across second boundaries;
 * - a route plan names its targets once (what a budget prices a request at).
 */

const limits = (ms: number) => ({ firstByteTimeoutMs: ms, idleTimeoutMs: 10_000, totalTimeoutMs: 10_000 });

describe('LazySignal', () => {
  it('tells each listener (object or function) once, forgets removed ones, and makes a web signal only when asked', () => {
    const s = new LazySignal();
    const seen: string[] = [];
    const obj = { handleEvent: () => seen.push('object') };
    const fn = () => seen.push('function');
    const gone = () => seen.push('removed');
    s.addEventListener('abort', obj);
    s.addEventListener('abort', fn, { once: true });
    s.addEventListener('abort', gone);
    s.removeEventListener('abort', gone);
    const reason = new Error('why');
    s.abort(reason);
    s.abort(new Error('again'));
    assert.deepEqual(seen, ['object', 'function']);
    assert.equal(s.aborted, true);
    assert.equal(s.reason, reason);
    // Asked for after the abort: already aborted, with the same reason.
    assert.equal(s.signal.aborted, true);
    assert.equal(s.signal.reason, reason);
    assert.equal(webSignal(s), s.signal);
  });

  it('aborts a web signal made before the abort, and passes a real AbortSignal through webSignal', () => {
    const s = new ClientLeave();
    const web = s.signal;
    assert.equal(web.aborted, false);
    s.leave();
    assert.equal(web.aborted, true);
    assert.equal((web.reason as DOMException).name, 'AbortError');
    const real = new AbortController().signal;
    assert.equal(webSignal(real), real);
  });
});

describe("an attempt's deadline as the call's signal", () => {
  let alive: NodeJS.Timeout;
  let upstream: Loopback;
  before(async () => {
    // The deadline's timer is unref'd: keep the test alive while it runs.
    alive = setInterval(() => {}, 1000);
    upstream = await startLoopback((req, res) => {
      if (req.url === '/silent') return; // never answers
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first');
      if (req.url === '/stalls') return; // the body never ends
      res.end();
    });
  });
  after(async () => {
    clearInterval(alive);
    await upstream.close();
  });

  it('aborts on its limit with the timeout as the reason, and a web signal made from it follows', async () => {
    const d = new Deadline('slow', limits(30), new ClientLeave());
    const web = webSignal(d.signal);
    assert.ok(d.signal instanceof LazySignal);
    const err = await d.race(new Promise(() => {})).then(
      () => assert.fail('expected a timeout'),
      (e: unknown) => e as GatewayError,
    );
    assert.equal(err.code, 'upstream_timeout');
    assert.equal(d.signal.aborted, true);
    assert.equal(web.aborted, true);
    assert.equal((web.reason as GatewayError).code, 'upstream_timeout');
    d.release();
  });

  it('carries the trace: calls under it (and under a web signal inheriting it) get a child traceparent', () => {
    const tc = startTrace(new Headers({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }));
    const d = new Deadline('any', limits(10_000), new ClientLeave());
    assert.equal(upstreamTraceHeaders(d.signal), undefined);
    traceCalls(d.signal, tc);
    assert.equal(parseTraceparent(upstreamTraceHeaders(d.signal)!.traceparent)?.traceId, tc.traceId);
    const child = new AbortController().signal;
    inheritTrace(child, d.signal);
    assert.equal(parseTraceparent(upstreamTraceHeaders(child)!.traceparent)?.traceId, tc.traceId);
    d.release();
  });

  it('cancels an upstream call before its answer when the client leaves, and mid-body when it fires', async () => {
    const client = new ClientLeave();
    const d = new Deadline('up', limits(10_000), client);
    const pending = upstreamFetch(`${upstream.url}/silent`, { signal: d.signal });
    setTimeout(() => client.leave(), 20);
    await assert.rejects(pending, (e: unknown) => (e as DOMException).name === 'AbortError');
    // The deadline names it the client's leaving.
    assert.equal((d.error(d.signal.reason) as GatewayError).code, 'client_closed');
    d.release();

    const mid = new Deadline('up', { firstByteTimeoutMs: 10_000, idleTimeoutMs: 40, totalTimeoutMs: 10_000 }, new ClientLeave());
    const res = await mid.race(upstreamFetch(`${upstream.url}/stalls`, { signal: mid.signal }));
    mid.gotFirstByte();
    const reader = res.body!.getReader();
    assert.equal(new TextDecoder().decode((await mid.race(reader.read(), true)).value), 'first');
    await assert.rejects(mid.race(reader.read(), true), (e: GatewayError) => e.code === 'upstream_timeout');
    // The body read itself fails too: the socket was destroyed with the deadline's reason.
    await assert.rejects(reader.read());
    mid.release();
  });
});

describe('record timestamp', () => {
  it('is the ISO string of the clock, across milliseconds, seconds, days and years', () => {
    for (const base of [Date.parse('2026-12-01T04:59:59.990Z'), Date.parse('2026-12-31T23:59:59.995Z'), Date.parse('2028-02-29T12:00:00.000Z')]) {
      for (let ms = base; ms < base + 2_100; ms += 3) assert.equal(isoNow(ms), new Date(ms).toISOString());
    }
  });
});

describe('route plan targets', () => {
  it('names every target of an alias and of a direct provider/model, once per plan', () => {
    const config = parseConfig(
      {
        providers: { a: { type: 'mock' }, b: { type: 'mock' } },
        models: { m: { groups: [{ targets: [{ provider: 'a', model: 'x' }, { provider: 'b', model: 'y' }] }, { targets: [{ provider: 'b', model: 'z' }] }] } },
        routing: { directTargets: true },
      },
      'test',
    );
    const live = (name: string) => ({ name, type: 'mock', live: true }) as never;
    const router = new Router(config, new Map([['a', live('a')], ['b', live('b')]]));
    const plan = router.resolve('m');
    assert.deepEqual(plan.targets, [
      { provider: 'a', model: 'x' },
      { provider: 'b', model: 'y' },
      { provider: 'b', model: 'z' },
    ]);
    assert.equal(router.resolve('m').targets, plan.targets, 'made once per plan');
    assert.deepEqual(router.resolve('a/other').targets, [{ provider: 'a', model: 'other' }]);
  });
});
