import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { parseConfig } from '../shared/config/load.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import { MemorySink } from './helpers/gateway.ts';
import { eventually } from './helpers/keys.ts';

/**
 * Upstream calls that used to run outside the attempt runner's deadline, or past it (issue #20):
 * - an OpenAI-compatible embeddings answer whose body stalls after its headers is now read inside
 *   the attempt, so the target times out and the call falls back to the next one;
 * - an MCP server that never answers, or whose event stream falls silent, is cut by the runner's
 *   deadline (first byte; whole exchange) and the record says `upstream_timeout`.
 * Loopback upstreams: a plain node:http server speaking OpenAI's `/v1/embeddings` (the healthy one
 * answers, the stalling one sends headers and half a body), and one playing an MCP server that
 * hangs before its headers (`/hang`) or sends one event of a stream and then nothing (`/silent`).
 */
describe('the runner deadline covers every upstream call', () => {
  const open: ServerResponse[] = [];
  let upstreamUrl = '';
  let srv: LocalServer;
  const sink = new MemorySink();
  const upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      open.push(res);
      if (req.url?.startsWith('/stall/v1/embeddings')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"object":"list","data":[{"object":"embedding","index":0,');
        return; // and nothing more
      }
      if (req.url?.startsWith('/ok/v1/embeddings')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { model: string };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }], model: body.model, usage: { prompt_tokens: 2, total_tokens: 2 } }));
        return;
      }
      if (req.url?.startsWith('/hang')) return; // no headers, ever
      if (req.url?.startsWith('/silent')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'working' } })}\n\n`);
        return; // and then silence
      }
      res.writeHead(404);
      res.end();
    });
  });

  before(async () => {
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const config = parseConfig({
      providers: {
        stall: { type: 'openai-compatible', baseUrl: `${upstreamUrl}/stall/v1`, firstByteTimeoutMs: 300 },
        ok: { type: 'openai-compatible', baseUrl: `${upstreamUrl}/ok/v1` },
      },
      models: { embed: { groups: [{ targets: [{ provider: 'stall', model: 'e-stall' }] }, { targets: [{ provider: 'ok', model: 'e-ok' }] }] } },
      routing: { retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } },
      mcp: {
        servers: {
          hang: { url: `${upstreamUrl}/hang`, firstByteTimeoutMs: 300 },
          silent: { url: `${upstreamUrl}/silent`, totalTimeoutMs: 500 },
        },
      },
    });
    srv = await startLocalServer({ config, env: {}, port: 0, host: '127.0.0.1', sinks: [sink] });
  });
  after(async () => {
    await srv.close();
    for (const res of open) res.destroy();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  it('an embeddings answer whose body stalls after its headers times out and falls back', async () => {
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${srv.url}/v1`, maxRetries: 0 });
    const { data, response } = await client.embeddings.create({ model: 'embed', input: 'hello', encoding_format: 'float' }).withResponse();
    assert.deepEqual(data.data[0]!.embedding, [0.5, 0.25]);
    assert.equal(response.headers.get('x-gateway-provider'), 'ok');
    const r = sink.records.find((x) => x.path === '/v1/embeddings')!;
    assert.equal(r.status, 200);
    assert.equal(r.provider, 'ok');
    assert.equal(r.fallbacks, 1);
    assert.deepEqual(
      r.attemptLog!.map((a) => [a.provider, a.status, a.errorCode]),
      [
        ['stall', 504, 'upstream_timeout'],
        ['ok', 200, undefined],
      ],
    );
  });

  it('an MCP server that never answers is cut at its first-byte deadline', async () => {
    const res = await fetch(`${srv.url}/mcp/hang`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
    });
    assert.equal(res.status, 504);
    const body = (await res.json()) as { id: number; error: { message: string } };
    assert.equal(body.id, 7);
    assert.match(body.error.message, /did not answer within 300 ms/);
    const r = sink.records.find((x) => x.path === '/mcp/hang')!;
    assert.equal(r.errorCode, 'upstream_timeout');
  });

  it('an MCP event stream that falls silent is cut at the exchange deadline', async () => {
    const res = await fetch(`${srv.url}/mcp/silent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'slow', arguments: {} } }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let text = '';
    const failure = await (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return undefined;
          text += new TextDecoder().decode(value);
        }
      } catch (err) {
        return err;
      }
    })();
    assert.match(text, /notifications\/message/);
    assert.ok(failure, 'the relayed stream ends in an error, not a clean end');
    const r = await eventually(async () => sink.records.find((x) => x.path === '/mcp/silent'), 'the MCP record');
    assert.equal(r.outcome, 'stream_error');
    assert.equal(r.errorCode, 'upstream_timeout');
  });
});
