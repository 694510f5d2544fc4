import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type OpenAI from 'openai';
import { addChunk, emptyCollected, startTestGateway, type CollectedStream, type TestGateway } from './helpers/gateway.ts';
import { createGate, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * Streams are passed on as they are produced: the client sees the first chunk while the upstream
 * (or the mock provider) is still working on the rest. Ordering is checked with gates, not clocks.
 */

let upstream: MockOpenAI;
let gw: TestGateway;
let client: OpenAI;

before(async () => {
  gw = await startTestGateway({ slowWordDelayMs: 250 });
  upstream = gw.upstream!;
  client = gw.client();
});

after(() => gw?.close());

beforeEach(() => upstream.reset());

/** Pull chunks until `until` holds; fails if the stream ends first. */
async function readUntil(it: AsyncIterator<OpenAI.Chat.Completions.ChatCompletionChunk>, got: CollectedStream, until: (g: CollectedStream) => boolean): Promise<void> {
  while (!until(got)) {
    const r = await it.next();
    assert.ok(!r.done, `stream ended early; content so far: ${JSON.stringify(got.content)}`);
    addChunk(got, r.value);
  }
}

async function readToEnd(it: AsyncIterator<OpenAI.Chat.Completions.ChatCompletionChunk>, got: CollectedStream): Promise<void> {
  for (let r = await it.next(); !r.done; r = await it.next()) addChunk(got, r.value);
}

describe('first chunk before the upstream finishes', () => {
  it('openai provider: the first content chunk reaches the client while the upstream is paused', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['first ', 'second ', 'third'], pauseAfter: 1, gate, usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } });
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'count' }], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const requestId = response.headers.get('x-request-id')!;
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    await readUntil(it, got, (g) => g.content.length > 0);

    // The client holds the first piece; the upstream has not sent the rest and is waiting on the gate.
    assert.equal(got.content, 'first ');
    await gate.reached;
    assert.equal(gate.isOpen, false);
    assert.equal(upstream.lastChatRequest().completed, false);
    assert.equal(gw.recordsFor(requestId).length, 0, 'the request is still in flight');

    gate.open();
    await readToEnd(it, got);
    assert.equal(got.content, 'first second third');
    assert.equal(got.finishReason, 'stop');
    assert.deepEqual(got.usage, { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
    assert.equal(upstream.lastChatRequest().completed, true);
    const record = await gw.waitForRecord(requestId);
    assert.equal(record.outcome, 'ok');
    assert.equal(record.outputTokens, 3);
  });

  it('openai provider: response headers and the opening chunk arrive before any content exists', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['late ', 'content'], pauseAfter: 0, gate });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'wait' }], stream: true });
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    await readUntil(it, got, (g) => g.chunks.length > 0);
    assert.equal(got.chunks[0]!.choices[0]!.delta.role, 'assistant');
    assert.equal(got.content, '');
    await gate.reached;
    assert.equal(gate.isOpen, false);
    gate.open();
    await readToEnd(it, got);
    assert.equal(got.content, 'late content');
  });

  it('openai provider: an event split across upstream writes (mid UTF-8 character) arrives whole', async () => {
    const gate = createGate();
    const text = 'héllo wörld 👋 done';
    upstream.script({
      type: 'handler',
      async handle(req, res) {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        const base = { id: 'chatcmpl-split', object: 'chat.completion.chunk', created: 1, model: req.body.model, system_fingerprint: null, usage: null };
        const ev = (delta: object, finish: string | null = null) => Buffer.from(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`);
        res.write(ev({ role: 'assistant', content: '' }));
        const content = ev({ content: text });
        // Cut inside the 4-byte emoji.
        const cut = content.indexOf(Buffer.from('👋')) + 2;
        res.write(content.subarray(0, cut));
        await gate.wait();
        res.write(content.subarray(cut));
        res.write(ev({}, 'stop'));
        res.write(`data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 } })}\n\n`);
        res.end('data: [DONE]\n\n');
      },
    });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true });
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    await readUntil(it, got, (g) => g.chunks.length > 0);
    await gate.reached;
    // Half an event is held back until its end arrives: nothing but the opening chunk so far.
    assert.equal(got.content, '');
    // Give the gateway a moment to read the first half on its own (a stimulus, not an assertion).
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.content, '');
    gate.open();
    await readToEnd(it, got);
    assert.equal(got.content, text);
    assert.equal(got.finishReason, 'stop');
    assert.equal(got.usage, undefined, 'usage chunk hidden from a client that did not ask');
  });

  it('mock provider: the first word arrives before the last word is produced', async () => {
    // mock-slow waits 250 ms between words, and the request's log record is only written after
    // the last word; so the record's absence at the first word shows the stream is still going.
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-slow', messages: [{ role: 'user', content: 'alpha beta gamma delta' }], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const requestId = response.headers.get('x-request-id')!;
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    await readUntil(it, got, (g) => g.content.length > 0);
    assert.equal(got.content, 'alpha ');
    assert.equal(gw.recordsFor(requestId).length, 0, 'the provider is still producing words');

    await readToEnd(it, got);
    assert.equal(got.content, 'alpha beta gamma delta');
    const contentChunks = got.chunks.filter((c) => c.choices[0]?.delta.content);
    assert.deepEqual(
      contentChunks.map((c) => c.choices[0]!.delta.content),
      ['alpha ', 'beta ', 'gamma ', 'delta'],
    );
    assert.equal(got.usage?.completion_tokens, 4);
    const record = await gw.waitForRecord(requestId);
    assert.equal(record.outcome, 'ok');
    assert.equal(record.stream, true);
  });
});
