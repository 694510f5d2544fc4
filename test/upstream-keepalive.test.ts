import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';

/**
 * Kept-alive upstream connections that the server closes while idle. A server's idle timeout can
 * close a connection just as the gateway sends its next request on it: the request fails with a
 * reset (or a hang-up) before any answer, and the server never handled it. The gateway sends such
 * a request once more on a new connection when the reused one had been idle a second or more (never
 * one that failed on a new connection, or on one idle only a moment: that server is failing, not
 * timing out).
 *
 * The upstream here is a raw TCP server speaking just enough HTTP/1.1 to answer a chat completion,
 * so it can fail exactly where a real server's idle timeout strikes: on the second request of a
 * connection it resets the socket (or closes it) instead of answering.
 */

type OnReuse = 'answer' | 'reset' | 'close';

interface RawUpstream {
  url: string;
  /** Connections accepted. */
  connections: number;
  /** Each request the server read: its connection's number and its place on that connection (1, 2...). */
  requests: { connection: number; nth: number; model: string }[];
  /** What the server does with a request that is not the first on its connection. */
  onReuse: OnReuse;
  /** Reset every request for this model, a connection's first included. */
  resetAllFor?: string;
  /** A `Keep-Alive` header to send with each answer (a server announcing its idle timeout). */
  keepAliveHeader?: string;
  close(): Promise<void>;
}

async function startRawUpstream(): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>();
  const up: RawUpstream = { url: '', connections: 0, requests: [], onReuse: 'answer', close: async () => {} };
  const server = net.createServer((socket) => {
    const connection = ++up.connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let nth = 0;
    let buf = Buffer.alloc(0);
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = buf.subarray(0, headEnd).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < headEnd + 4 + length) return;
        const body = buf.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8');
        buf = buf.subarray(headEnd + 4 + length);
        const model = (JSON.parse(body) as { model: string }).model;
        up.requests.push({ connection, nth: ++nth, model });
        if ((nth > 1 && up.onReuse === 'reset') || model === up.resetAllFor) {
          socket.resetAndDestroy();
          return;
        }
        if (nth > 1 && up.onReuse === 'close') {
          socket.end();
          return;
        }
        const answer = JSON.stringify({
          id: `chatcmpl-${connection}-${nth}`,
          object: 'chat.completion',
          created: 1,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: `connection ${connection}, request ${nth}` }, logprobs: null, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
        });
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(answer)}\r\nconnection: keep-alive\r\n${up.keepAliveHeader ? `keep-alive: ${up.keepAliveHeader}\r\n` : ''}\r\n${answer}`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1`;
  up.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return up;
}

describe('upstream connections the server closes while idle', () => {
  let up: RawUpstream;
  let srv: StartedGateway;
  const records: RequestRecord[] = [];
  let openai: OpenAI;
  let seq = 0;

  before(async () => {
    up = await startRawUpstream();
    srv = await startGateway({
      providers: { raw: { type: 'openai-compatible', baseUrl: up.url } },
      models: { 'raw-a': { provider: 'raw', model: 'model-a' }, 'raw-fresh': { provider: 'raw', model: 'reset-fresh' } },
      // No retries: a resend here is the connection's, not the routing's.
      config: { routing: { retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 10 } } },
      sinks: [{ write: (r) => void records.push(structuredClone(r)) }],
    });
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
  });
  after(async () => {
    await srv?.close();
    await up?.close();
  });

  async function ask(model: string): Promise<{ text?: string; error?: string; record: RequestRecord | undefined }> {
    const id = `keepalive-${++seq}`;
    let text: string | undefined;
    let error: string | undefined;
    try {
      text = (await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } })).choices[0]?.message.content ?? '';
    } catch (err) {
      error = (err as Error).message;
    }
    for (let i = 0; i < 200 && !records.some((r) => r.requestId === id); i++) await sleep(5);
    return { text, error, record: records.find((r) => r.requestId === id) };
  }

  for (const onReuse of ['reset', 'close'] as const) {
    it(`a request on a reused connection the server ${onReuse === 'reset' ? 'resets' : 'closes'} is sent once more on a new one`, async () => {
      up.onReuse = 'answer';
      const first = await ask('raw-a');
      assert.equal(first.error, undefined);
      const from = up.requests.length;
      up.onReuse = onReuse;
      // Idle long enough for a server's idle timeout (the gateway's mark is one second)...
      await sleep(1_200);
      // ...then kept alive: this one goes out on the first's connection, which the server now drops.
      const second = await ask('raw-a');
      assert.equal(second.error, undefined, 'the client never sees the stale connection');
      assert.equal(second.record?.status, 200);
      assert.equal(second.record?.attempts, 1);
      const seen = up.requests.slice(from);
      assert.equal(seen.length, 2, 'the server read it twice: on the reused connection, then on a new one');
      assert.ok(seen[0]!.nth > 1, 'first on the reused connection');
      assert.equal(seen[1]!.nth, 1, 'then as the first request of a new connection');
      assert.equal(second.text, `connection ${seen[1]!.connection}, request 1`);
    });
  }

  it('a reset on a connection idle only a moment is the server failing: not sent again', async () => {
    up.onReuse = 'answer';
    await ask('raw-a');
    const from = up.requests.length;
    up.onReuse = 'reset';
    try {
      const out = await ask('raw-a');
      assert.ok(out.error, 'the client gets the failure');
      assert.equal(out.record?.status, 502);
      const seen = up.requests.slice(from);
      assert.equal(seen.length, 1);
      assert.ok(seen[0]!.nth > 1);
    } finally {
      up.onReuse = 'answer';
    }
  });

  it('a request that fails on a new connection is not sent again', async () => {
    up.onReuse = 'answer';
    up.resetAllFor = 'reset-fresh';
    try {
      const from = up.requests.length;
      await sleep(1_200);
      const out = await ask('raw-fresh');
      assert.ok(out.error, 'the client gets the failure');
      assert.equal(out.record?.status, 502);
      // Sent on the idle connection (reset), then once on a new one (reset too), and no more.
      const seen = up.requests.slice(from);
      assert.ok(seen.length === 1 || seen.length === 2, `read ${seen.length} times`);
      assert.equal(seen.at(-1)!.nth, 1, 'the last send was on a new connection');
      if (seen.length === 2) assert.ok(seen[0]!.nth > 1, 'the first send was on a reused connection');
    } finally {
      up.resetAllFor = undefined;
    }
  });

  // node's agent stops reusing a connection a second before the server's announced idle timeout:
  // a server that announces one second or less gets a new connection for every request.
  for (const [header, reused] of [
    ['timeout=1', false],
    ['timeout=5, max=1000', true],
  ] as const) {
    it(`an answer announcing Keep-Alive: ${header} ${reused ? 'leaves its connection for the next request' : 'is the last on its connection'}`, async () => {
      up.onReuse = 'answer';
      up.keepAliveHeader = header;
      try {
        // A fresh connection first (the pool may hold one from before).
        await ask('raw-a');
        const from = up.requests.length;
        for (let i = 0; i < 3; i++) assert.equal((await ask('raw-a')).error, undefined);
        const seen = up.requests.slice(from);
        assert.equal(seen.length, 3);
        if (reused) assert.deepEqual(seen.map((r) => r.nth > 1), [true, true, true], 'each went out on a kept connection');
        else assert.deepEqual(seen.map((r) => r.nth), [1, 1, 1], 'each went out on a new connection');
      } finally {
        up.keepAliveHeader = undefined;
      }
    });
  }
});
