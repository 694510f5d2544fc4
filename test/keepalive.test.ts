import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { withSseKeepAlive } from '../shared/http/keepalive.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { createGate, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * API Gateway closes a streamed response after 5 idle minutes (Regional endpoints), and proxies
 * often sooner. During a silence the gateway sends SSE comment lines, which SSE clients skip.
 * Silences here are held open with gates (the upstream waits until the test has seen a comment),
 * not measured with clocks.
 */
describe('SSE keepalive during long silences', () => {
  let upstream: MockOpenAI;
  let srv: StartedGateway;

  before(async () => {
    upstream = await startMockOpenAI();
    srv = await startGateway({
      providers: {
        openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: 'UPSTREAM_KEY' },
        mock: { type: 'mock', wordDelayMs: 0 },
      },
      models: { gpt: { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' }, mock: { provider: 'mock', model: 'mock-echo-1' } },
      config: {
        server: { sseKeepAliveMs: 40 },
        routing: { retry: { retries: 0 } },
      },
      env: { UPSTREAM_KEY: 'sk-upstream' },
    });
  });
  after(async () => {
    await srv.close();
    await upstream.close();
  });

  it('inserts `: keepalive` between events while the upstream is silent; the openai SDK still assembles the answer', async () => {
    // Raw bytes first: read until a comment arrives during the held silence, then let the upstream go on.
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['Still', ' here', ' after', ' a', ' pause'], pauseAfter: 1, gate });
    const res = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes(': keepalive\n\n')) {
      const { done, value } = await reader.read();
      assert.ok(!done, 'the stream stays open during the pause');
      text += decoder.decode(value, { stream: true });
    }
    gate.open();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true });
    // Comments stand alone between events, never inside one.
    for (const block of text.split('\n\n').filter(Boolean)) assert.ok(block === ': keepalive' || block.startsWith('data: '), `a whole event or a comment: ${JSON.stringify(block)}`);
    assert.ok(text.trimEnd().endsWith('data: [DONE]'));

    const gate2 = createGate();
    upstream.script({ type: 'text', pieces: ['Still', ' here', ' after', ' a', ' pause'], pauseAfter: 2, gate: gate2 });
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let content = '';
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    content += first.value.choices[0]?.delta?.content ?? '';
    await gate2.reached;
    // Hold the silence long enough for several keepalive intervals, then release.
    setTimeout(() => gate2.open(), 200);
    for (let r = await it.next(); !r.done; r = await it.next()) content += r.value.choices[0]?.delta?.content ?? '';
    assert.equal(content, 'Still here after a pause');
  });

  it('the Anthropic SDK skips the comments too', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['One', ' two', ' three'], pauseAfter: 1, gate });
    const anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0 });
    const stream = await anthropic.messages.create({ model: 'gpt', max_tokens: 20, stream: true, messages: [{ role: 'user', content: 'count' }] });
    let text = '';
    const types: string[] = [];
    setTimeout(() => gate.open(), 200);
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    }
    assert.equal(text, 'One two three');
    assert.equal(types.at(-1), 'message_stop');
  });

  it('never splits an event: a comment waits for the end of a half-sent event', async () => {
    const enc = new TextEncoder();
    let push!: (s: string | null) => void;
    const source = new ReadableStream<Uint8Array>({
      start(c) {
        push = (s) => (s === null ? c.close() : c.enqueue(enc.encode(s)));
      },
    });
    const wrapped = withSseKeepAlive(new Response(source, { headers: { 'content-type': 'text/event-stream' } }), 10);
    const reader = wrapped.body!.getReader();
    const dec = new TextDecoder();
    push('data: {"half":');
    assert.equal(dec.decode((await reader.read()).value), 'data: {"half":');
    // Several intervals pass inside the event: nothing may be inserted.
    await new Promise((r) => setTimeout(r, 60));
    push('true}\n\n');
    assert.equal(dec.decode((await reader.read()).value), 'true}\n\n');
    // Now between events: the next read is a comment (the source is silent).
    assert.equal(dec.decode((await reader.read()).value), ': keepalive\n\n');
    push(null);
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += dec.decode(r.value);
    assert.match(rest, /^(: keepalive\n\n)*$/);
  });

  it('leaves non-SSE responses alone', () => {
    const json = new Response('{}', { headers: { 'content-type': 'application/json' } });
    assert.equal(withSseKeepAlive(json, 10), json);
  });
});
