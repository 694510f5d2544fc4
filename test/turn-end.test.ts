import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { upstreamFetch } from '../shared/http/node-fetch.ts';
import { atTurnEnd } from '../shared/http/turn-end.ts';
import { openaiClient, startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { readBody, startLoopback, type Loopback } from './helpers/loopback.ts';

/**
 * Writes held to the end of the event loop's turn while other requests are in flight (issue #17,
 * shared/http/turn-end.ts): the upstream call of a request that is not alone, and the whole answer
 * the local shell writes while other requests are open. What must hold: the order of the jobs, a
 * job that fails does not hold the others back, a call cancelled or refused while it waits fails as
 * it would have at once, and concurrent requests each get their own answer.
 */

describe('atTurnEnd', () => {
  it('runs the jobs in order after the turn, a throwing job does not stop the others, and jobs they queue wait a turn', async () => {
    const seen: string[] = [];
    atTurnEnd(() => seen.push('a'));
    atTurnEnd(() => {
      seen.push('b');
      throw new Error('a job that fails');
    });
    atTurnEnd(() => {
      seen.push('c');
      atTurnEnd(() => seen.push('queued by c'));
    });
    seen.push('now');
    await Promise.resolve();
    assert.deepEqual(seen, ['now']);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, ['now', 'a', 'b', 'c']);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, ['now', 'a', 'b', 'c', 'queued by c']);
  });
});

describe('an upstream call while another is unanswered', { timeout: 20_000 }, () => {
  let upstream: Loopback;
  const held: ServerResponse[] = [];
  before(async () => {
    upstream = await startLoopback(async (req: IncomingMessage, res: ServerResponse) => {
      const body = await readBody(req);
      if (req.url === '/hold') {
        held.push(res);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ echo: body }));
    });
  });
  after(async () => {
    for (const res of held) res.destroy();
    await upstream.close();
  });

  /** One call the upstream holds unanswered (so the next ones wait for the turn's end); ended by `done`. */
  function holdOne(): { done: () => Promise<void> } {
    const c = new AbortController();
    const p = upstreamFetch(`${upstream.url}/hold`, { method: 'POST', body: 'held', signal: c.signal }).catch(() => undefined);
    return {
      done: async () => {
        c.abort();
        await p;
      },
    };
  }

  it('is sent at the end of the turn and answered', async () => {
    const hold = holdOne();
    try {
      const answers = await Promise.all(
        ['one', 'two', 'three'].map(async (text) => {
          const res = await upstreamFetch(`${upstream.url}/echo`, { method: 'POST', body: text, headers: { 'content-type': 'text/plain' } });
          return (await res.json()) as { echo: string };
        }),
      );
      assert.deepEqual(answers, [{ echo: 'one' }, { echo: 'two' }, { echo: 'three' }]);
    } finally {
      await hold.done();
    }
  });

  it('cancelled before the turn ends: rejects with the reason, and the upstream never sees it', async () => {
    const hold = holdOne();
    try {
      // Let the held call reach the upstream first.
      await new Promise((r) => setTimeout(r, 50));
      const before = upstream.seen.length;
      const c = new AbortController();
      const call = upstreamFetch(`${upstream.url}/echo`, { method: 'POST', body: 'never sent', signal: c.signal });
      const why = new Error('the client left');
      c.abort(why);
      await assert.rejects(call, (err) => err === why);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(upstream.seen.length, before);
    } finally {
      await hold.done();
    }
  });

  it('with a header node:http refuses: rejects (nothing thrown out of the turn), and later calls still go out', async () => {
    const hold = holdOne();
    try {
      await assert.rejects(upstreamFetch(`${upstream.url}/echo`, { method: 'POST', body: 'x', headers: { 'x-bad': 'line\r\nbreak' } }), /Invalid character/);
      const res = await upstreamFetch(`${upstream.url}/echo`, { method: 'POST', body: 'after' });
      assert.deepEqual(await res.json(), { echo: 'after' });
    } finally {
      await hold.done();
    }
  });
});

describe('the local shell under concurrent requests', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({});
  });
  after(() => gw?.close());

  it('64 requests at once through the official SDK: each gets its own answer, request id and log record', async () => {
    const client = openaiClient(gw.url);
    const n = 64;
    const results = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const { data, response } = await client.chat.completions
          .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `request number ${i}` }] }, { headers: { 'x-request-id': `turn-end-${i}` } })
          .withResponse();
        return { i, text: data.choices[0]!.message.content, id: response.headers.get('x-request-id'), length: response.headers.get('content-length') };
      }),
    );
    for (const r of results) {
      assert.match(r.text ?? '', new RegExp(`request number ${r.i}\\b`));
      assert.equal(r.id, `turn-end-${r.i}`);
      assert.ok(Number(r.length) > 0, 'a whole answer goes with its length');
    }
    for (let i = 0; i < n; i++) {
      const rec = await gw.waitForRecord(`turn-end-${i}`);
      assert.equal(rec.status, 200);
      assert.equal(gw.recordsFor(`turn-end-${i}`).length, 1);
    }
  });

  it('32 streams at once, one of whose clients leaves mid-way: every other stream is whole and in order, the one that left is logged as such', async () => {
    const client = openaiClient(gw.url);
    const words = (i: number) => Array.from({ length: 12 }, (_, w) => `s${i}w${w}`).join(' ');
    const leaver = new AbortController();
    const results = await Promise.all(
      Array.from({ length: 32 }, async (_, i) => {
        const stream = await client.chat.completions.create(
          { model: 'mock', stream: true, messages: [{ role: 'user', content: words(i) }] },
          { headers: { 'x-request-id': `turn-end-stream-${i}` }, signal: i === 0 ? leaver.signal : undefined },
        );
        let text = '';
        let finish: string | null | undefined;
        try {
          for await (const c of stream) {
            text += c.choices[0]?.delta?.content ?? '';
            finish ??= c.choices[0]?.finish_reason;
            if (i === 0 && text.includes('s0w2')) leaver.abort();
          }
        } catch (err) {
          if (i !== 0) throw err;
        }
        return { i, text, finish };
      }),
    );
    for (const r of results.slice(1)) {
      assert.match(r.text, new RegExp(words(r.i).split(' ').join('\\s+')), `stream ${r.i} whole and in order`);
      assert.equal(r.finish, 'stop');
    }
    const left = await gw.waitForRecord('turn-end-stream-0');
    assert.equal(left.outcome, 'client_closed');
    for (let i = 1; i < 32; i++) assert.equal((await gw.waitForRecord(`turn-end-stream-${i}`)).outcome, 'ok');
  });
});
