import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import OpenAI from 'openai';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { eventFrame } from './helpers/mock-bedrock.ts';
import { readBody, startLoopback, type Loopback } from './helpers/loopback.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * A Bedrock endpoint that answers with frames or bodies no real one sends, through the real
 * @aws-sdk/client-bedrock-runtime client. The SDK's event-stream decoder allocates each frame at
 * the length its first four bytes declare (up to 4 GiB) before the bytes come, and reads a JSON
 * answer whole without a limit. The gateway checks each frame's prelude as the bytes pass (its
 * checksum, and a declared length of at most 32 MiB and at least the 16 bytes of an empty frame)
 * and bounds a whole answer, so that
 * garbage or a hostile endpoint is a broken answer (502, with fallback before the first byte), never
 * gigabytes of memory or a 500.
 */

useDummyAwsCredentials('AKIATESTGATEWAY00002', 'bedrock-bounds-secret-4f1e2d');

const NOVA = 'amazon.nova-lite-v1:0';
type Mode = 'huge-first-frame' | 'huge-later-frame' | 'garbage' | 'short-frame' | 'endless-json';

let mode: Mode = 'garbage';
let upstream: Loopback;
let gw: StartedGateway;
let client: OpenAI;
/** Answers the upstream stopped sending because the gateway hung up. */
let hungUp = 0;

/** Writes `chunk` over and over at the reader's pace until the gateway hangs up (bounded: 64 MiB). */
function endless(res: ServerResponse, chunk: Buffer): void {
  let sent = 0;
  const more = (): void => {
    while (sent < 64 * 1024 * 1024) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    res.end();
  };
  res.on('close', () => {
    if (!res.writableFinished) hungUp++;
  });
  more();
}

/** A frame's prelude with a valid checksum, declaring `totalLength` bytes and no headers. */
function prelude(totalLength: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32BE(totalLength >>> 0, 0);
  b.writeUInt32BE(crc32(b.subarray(0, 8)), 8);
  return b;
}

async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
  await readBody(req);
  const stream = (req.url ?? '').endsWith('-stream');
  if (mode === 'endless-json') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"output":{"message":{"role":"assistant","content":[{"text":"');
    return endless(res, Buffer.alloc(64 * 1024, 'a'));
  }
  assert.ok(stream, `a stream was asked for in mode ${mode}`);
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
  switch (mode) {
    case 'huge-first-frame':
      res.write(prelude(0x7fff_ffff));
      return endless(res, Buffer.alloc(64 * 1024, 7));
    case 'huge-later-frame':
      res.write(eventFrame('messageStart', { role: 'assistant' }));
      res.write(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hello' } }));
      res.write(prelude(0xffff_fff0));
      return endless(res, Buffer.alloc(64 * 1024, 7));
    case 'short-frame':
      // A declared length shorter than a frame's own prelude and checksum.
      res.end(Buffer.concat([prelude(5), Buffer.alloc(32, 1)]));
      return;
    case 'garbage':
      res.end(Buffer.from('<html><body>502 Bad Gateway from some proxy</body></html>'.repeat(4)));
      return;
  }
}

before(async () => {
  upstream = await startLoopback(answer);
  gw = await startGateway({
    providers: {
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: upstream.url, firstByteTimeoutMs: 20_000, totalTimeoutMs: 60_000 },
      mock: { type: 'mock', wordDelayMs: 0 },
    },
    models: {
      nova: { provider: 'bedrock', model: NOVA },
      // The same, with a fallback that answers.
      'nova-or-mock': { groups: [{ targets: [{ provider: 'bedrock', model: NOVA }] }, { targets: [{ provider: 'mock', model: 'mock-echo-1' }] }] },
    },
    config: { routing: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 } } },
    label: 'bedrock bounds test configuration',
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'client-key', maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

/** The request's outcome as the client sees it: the status and code of an error, or the text of an answer. */
async function ask(model: string, stream: boolean, id: string): Promise<{ status?: number; code?: string; text?: string }> {
  try {
    if (!stream) {
      const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } });
      return { text: r.choices[0]!.message.content ?? '' };
    }
    let text = '';
    for await (const c of await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } })) text += c.choices[0]?.delta?.content ?? '';
    return { text };
  } catch (err) {
    const e = err as { status?: number; code?: string; error?: { code?: string } };
    return { status: e.status, code: e.code ?? e.error?.code ?? (err as Error).message };
  }
}

describe('Bedrock answers past what the gateway reads', { timeout: 120_000 }, () => {
  it('a first frame declaring 2 GiB: a broken answer (502), no memory taken, the upstream let go; with a fallback, the fallback serves', async () => {
    mode = 'huge-first-frame';
    const before = process.memoryUsage().arrayBuffers;
    const hung = hungUp;
    const r = await ask('nova', true, 'bb-huge-first');
    assert.equal(r.status, 502);
    assert.equal(r.code, 'upstream_answer_too_large');
    assert.ok(process.memoryUsage().arrayBuffers - before < 256 * 1024 * 1024, 'no frame allocated at its declared length');
    const rec = await gw.waitForRecord('bb-huge-first');
    assert.equal(rec.status, 502);
    assert.equal(rec.errorCode, 'upstream_answer_too_large');
    await waitFor(() => hungUp > hung, 'the upstream sees the gateway hang up');

    const served = await ask('nova-or-mock', true, 'bb-huge-first-fallback');
    assert.match(served.text ?? '', /hi/);
    const rec2 = await gw.waitForRecord('bb-huge-first-fallback');
    assert.equal(rec2.status, 200);
    assert.equal(rec2.provider, 'mock');
  });

  it('a later frame declaring 4 GiB: the stream fails for the client after what came before, recorded as a 502', async () => {
    mode = 'huge-later-frame';
    const before = process.memoryUsage().arrayBuffers;
    const r = await ask('nova', true, 'bb-huge-later');
    assert.equal(r.text, undefined, 'the client saw the stream fail');
    assert.ok(process.memoryUsage().arrayBuffers - before < 256 * 1024 * 1024, 'no frame allocated at its declared length');
    const rec = await gw.waitForRecord('bb-huge-later');
    assert.equal(rec.status, 502);
  });

  it('a frame shorter than its own prelude, and an HTML page as a stream: a broken answer (502), not the gateway failing (500)', async () => {
    for (const m of ['short-frame', 'garbage'] as const) {
      mode = m;
      const r = await ask('nova', true, `bb-${m}`);
      assert.equal(r.status, 502, `${m}: ${JSON.stringify(r)}`);
      const rec = await gw.waitForRecord(`bb-${m}`);
      assert.equal(rec.status, 502);
      assert.equal(rec.errorCode, 'upstream_invalid_response', m);
    }
  });

  it('a JSON answer without end: a broken answer (502) past 32 MiB, the upstream let go', async () => {
    mode = 'endless-json';
    const hung = hungUp;
    const r = await ask('nova', false, 'bb-endless-json');
    assert.equal(r.status, 502);
    assert.equal(r.code, 'upstream_answer_too_large');
    const rec = await gw.waitForRecord('bb-endless-json', 30_000);
    assert.equal(rec.errorCode, 'upstream_answer_too_large');
    await waitFor(() => hungUp > hung, 'the upstream sees the gateway hang up');
  });
});

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
