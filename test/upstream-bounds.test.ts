import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import fc from 'fast-check';
import OpenAI from 'openai';
import { GatewayError } from '../shared/http/errors.ts';
import { MAX_ANSWER_CHARS } from '../shared/http/answer.ts';
import { boundedSseParser, MAX_SSE_EVENT_CHARS, SseSplitter } from '../shared/http/sse.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { usageFromTail } from '../shared/wire/relay.ts';
import { piecesAt } from './helpers/cuts.ts';
import { HUGE_TEXT_BYTES, startFaultUpstream, type FaultUpstream } from './helpers/fault-upstream.ts';
import { startLoopback, type Loopback } from './helpers/loopback.ts';
import { readMessagesStream, readResponsesStream } from './helpers/sdk-streams.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';

/**
 * Upstream answers of any size. Server-sent events of any size and any cut: the splitter every same-format relay, the MCP relay
 * and the answer checks use gives the events a whole-text split gives, however the bytes are cut,
 * in time linear in the stream; an event that never ends is cut off at MAX_SSE_EVENT_CHARS as a
 * broken upstream answer (before the first byte: the fallback serves; after it: the caller's
 * error ending and a 502 record), and the upstream is hung up on. Before, the splitter searched
 * the whole unfinished event again at every chunk: a 16 MB event in 64 KiB chunks took 1.5 s of
 * the event loop, and an event that never ended grew without limit. A non-streamed answer the
 * gateway must read whole (to translate it, or to pass on a one-shot call's answer) is read up to
 * MAX_ANSWER_BYTES, past which it is a broken answer (502 `upstream_answer_too_large`: the
 * fallback serves); a same-format answer past it is relayed as it arrives, unchecked, and only
 * its last 64 KiB are kept past the bound, to read its usage. An embeddings answer, legitimately large, may hold 256 MiB.
 */

/** The events of a whole text, split at once (the reference the splitter must agree with). */
function splitWhole(text: string, bareCr: boolean): { events: string[]; rest: string } {
  const blank = bareCr ? /\r\n\r\n|\n\n|\r\r/ : /\r\n\r\n|\n\n/;
  const events: string[] = [];
  let rest = text;
  for (let m = blank.exec(rest); m; m = blank.exec(rest)) {
    const end = m.index + m[0].length;
    events.push(rest.slice(0, end));
    rest = rest.slice(end);
  }
  return { events, rest };
}

const textArb = fc.array(fc.constantFrom('a', 'é', '€', '😀', '\n', '\r', 'data: ', 'event: x', ':', ' ', '{"k":1}'), { maxLength: 300 }).map((p) => p.join(''));

describe('SseSplitter', () => {
  test('gives the events of a whole-text split under any cut of the bytes (CR-LF and LF, multi-byte characters, bare CR for MCP)', () => {
    fc.assert(
      fc.property(textArb, fc.array(fc.nat({ max: 2000 }), { maxLength: 40 }), fc.boolean(), (text, cuts, bareCr) => {
        const want = splitWhole(text, bareCr);
        const s = new SseSplitter({ bareCr });
        const got: string[] = [];
        for (const p of piecesAt(new TextEncoder().encode(text), cuts)) got.push(...s.push(p));
        assert.deepEqual(got, want.events);
        assert.equal(s.end(), want.rest);
      }),
      { numRuns: 2000 },
    );
  });

  test('an event past the bound throws a broken-answer error (502); one at the bound does not', () => {
    const s = new SseSplitter({ maxEventChars: 100 });
    const enc = new TextEncoder();
    assert.deepEqual(s.push(enc.encode(`data: ${'x'.repeat(94)}`)), []);
    assert.deepEqual(s.push(enc.encode('\n\n')), [`data: ${'x'.repeat(94)}\n\n`]);
    // Completed events do not count toward the next one.
    assert.deepEqual(s.push(enc.encode(`data: a\n\ndata: ${'y'.repeat(94)}`)), ['data: a\n\n']);
    assert.throws(
      () => s.push(enc.encode('z')),
      (err: unknown) => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response' && /larger than 100 characters/.test(err.message),
    );
  });

  test('an event that never ends, in 16 KiB chunks, is cut off once it passes MAX_SSE_EVENT_CHARS', () => {
    const s = new SseSplitter();
    const chunk = new TextEncoder().encode('x'.repeat(16 * 1024));
    s.push(new TextEncoder().encode('data: "'));
    let fed = 7;
    let error: unknown;
    while (fed < 48 * 1024 * 1024) {
      try {
        s.push(chunk);
      } catch (err) {
        error = err;
        break;
      }
      fed += chunk.byteLength;
    }
    assert.ok(error instanceof GatewayError, 'the splitter gave up');
    assert.ok(fed > MAX_SSE_EVENT_CHARS - chunk.byteLength && fed <= MAX_SSE_EVENT_CHARS, `cut off after ${fed} characters`);
  });
});

describe('usageFromTail', () => {
  test('reads the top-level usage object from the end of an answer, nested details included', () => {
    assert.deepEqual(usageFromTail('xxxx"}}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}'), { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
    assert.deepEqual(usageFromTail('"usage": {"input_tokens":5,"input_tokens_details":{"cached_tokens":1},"output_tokens":3},"user":null}'), { input_tokens: 5, input_tokens_details: { cached_tokens: 1 }, output_tokens: 3 });
  });
  test('a "usage" inside a string is escaped, so never taken; none, null or cut off gives nothing', () => {
    const text = JSON.stringify({ choices: [{ message: { content: 'say "usage": {"prompt_tokens": 999}' } }], usage: { prompt_tokens: 5, completion_tokens: 3 } });
    assert.deepEqual(usageFromTail(text), { prompt_tokens: 5, completion_tokens: 3 });
    assert.equal(usageFromTail(JSON.stringify({ choices: [{ message: { content: 'say "usage": {"prompt_tokens": 999}' } }] })), undefined);
    assert.equal(usageFromTail('"usage":null}'), undefined);
    assert.equal(usageFromTail('"usage":{"prompt_tokens":5,'), undefined);
  });
});

describe('boundedSseParser', () => {
  test('passes any number of events under the bound, and throws once an unfinished one passes it', () => {
    const data: string[] = [];
    const p = boundedSseParser((e) => data.push(e.data), 100);
    for (let i = 0; i < 1000; i++) p.feed(`data: ${i}\n\n`);
    assert.equal(data.length, 1000);
    p.feed(`data: ${'x'.repeat(90)}`);
    assert.throws(() => p.feed('x'.repeat(20)), (err: unknown) => err instanceof GatewayError && err.status === 502);
  });
});

describe('an upstream event that never ends, and an answer too large to hold, through the gateway', () => {
  let bad: FaultUpstream, good: FaultUpstream;
  let srv: StartedGateway;
  const records: RequestRecord[] = [];
  let openai: OpenAI;
  let anthropic: Anthropic;
  let seq = 0;

  before(async () => {
    [bad, good] = await Promise.all([startFaultUpstream('bad'), startFaultUpstream('good')]);
    // Limits far above the time the bound takes to reach: the bound, not a timeout, must end these.
    const limits = { firstByteTimeoutMs: 30_000, idleTimeoutMs: 30_000, totalTimeoutMs: 60_000 };
    const providers: Record<string, unknown> = {};
    for (const [suffix, up] of [['bad', bad], ['good', good]] as const) {
      providers[`oa-${suffix}`] = { type: 'openai-compatible', baseUrl: up.baseUrl, ...limits };
      providers[`an-${suffix}`] = { type: 'anthropic', baseUrl: up.origin, apiKeyEnv: 'BOUNDS_ANTHROPIC_KEY', ...limits };
    }
    const route = (family: string, model: string) => ({ groups: [{ targets: [{ provider: `${family}-bad`, model }] }, { targets: [{ provider: `${family}-good`, model }] }] });
    srv = await startGateway({
      providers,
      models: { 'oa-route': route('oa', 'gpt-x'), 'an-route': route('an', 'claude-x') },
      config: { routing: { retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 10 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } }, server: { sseKeepAliveMs: 0 } },
      env: { BOUNDS_ANTHROPIC_KEY: 'sk-ant-bounds' },
      sinks: [{ write: (r) => void records.push(structuredClone(r)) }],
    });
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
  });
  after(async () => {
    await srv?.close();
    await Promise.all([bad?.close(), good?.close()]);
  });

  /** The upstream's count of endless events cut short, once it reaches `n` (it notices the hang-up a little after the gateway's answer ends). */
  async function cutReaches(n: number): Promise<number> {
    for (let i = 0; i < 400 && bad.cutShort < n; i++) await new Promise((r) => setTimeout(r, 5));
    return bad.cutShort;
  }

  async function recordOf(id: string): Promise<RequestRecord> {
    for (let i = 0; i < 400; i++) {
      const r = records.find((x) => x.requestId === id);
      if (r) return r;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no record for ${id}`);
  }

  /** A streamed request through the official SDK of the door: the text it got, and the error it met. */
  async function stream(door: 'chat' | 'messages' | 'responses', model: string): Promise<{ id: string; text: string; error?: string }> {
    const id = `bounds-${++seq}`;
    const out: { id: string; text: string; error?: string } = { id, text: '' };
    try {
      if (door === 'chat') {
        const s = await openai.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } });
        for await (const c of s) out.text += c.choices[0]?.delta?.content ?? '';
      } else if (door === 'responses') {
        Object.assign(out, await readResponsesStream(await openai.responses.create({ model, input: 'hi', stream: true }, { headers: { 'x-request-id': id } })));
      } else {
        Object.assign(out, await readMessagesStream(await anthropic.messages.create({ model, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } })));
      }
    } catch (err) {
      out.error = `${(err as Error).name}: ${(err as Error).message}`;
    }
    return out;
  }

  // Same format (the relay's splitter and the answer check), and translated both ways (eventsource-parser).
  const cases = [
    { door: 'chat', model: 'oa-route', what: 'OpenAI Chat client -> OpenAI-compatible upstream (same format)' },
    { door: 'messages', model: 'oa-route', what: 'Anthropic client -> OpenAI-compatible upstream (translated)' },
    { door: 'chat', model: 'an-route', what: 'OpenAI Chat client -> Anthropic upstream (translated)' },
    { door: 'messages', model: 'an-route', what: 'Anthropic client -> Anthropic upstream (same format)' },
  ] as const;

  // A translated answer of endless small events: each event is whole, but the doors may hold the
  // answer whole (a Responses stream's final event carries all its output).
  for (const c of [
    { door: 'responses', model: 'oa-route', what: 'OpenAI Responses client -> OpenAI-compatible upstream (translated)' },
    { door: 'messages', model: 'oa-route', what: 'Anthropic client -> OpenAI-compatible upstream (translated)' },
    { door: 'chat', model: 'an-route', what: 'OpenAI Chat client -> Anthropic upstream (translated)' },
  ] as const) {
    it(`${c.what}: text deltas without end are cut off past ${MAX_ANSWER_CHARS} characters, with the caller's error and a 502 record`, async () => {
      bad.fault = 'endless-deltas';
      const cut = bad.cutShort;
      const out = await stream(c.door, c.model);
      assert.ok(out.error, 'the client sees the stream fail, not a clean end');
      const rec = await recordOf(out.id);
      assert.equal(rec.status, 502);
      assert.equal(rec.outcome, 'stream_error');
      assert.equal(rec.errorCode, 'upstream_answer_too_large');
      assert.equal(await cutReaches(cut + 1), cut + 1, 'the gateway hung up on the endless answer');
    });
  }

  /** A non-streamed request through the official SDK of the door: the length of the text it got, and the error it met. */
  async function whole(door: 'chat' | 'messages', model: string): Promise<{ id: string; length: number; head: string; error?: string }> {
    const id = `bounds-${++seq}`;
    try {
      const text =
        door === 'chat'
          ? ((await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } })).choices[0]?.message.content ?? '')
          : (await anthropic.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-request-id': id } })).content.map((b) => (b.type === 'text' ? b.text : '')).join('');
      return { id, length: text.length, head: text.slice(0, 20) };
    } catch (err) {
      return { id, length: 0, head: '', error: `${(err as Error).name}: ${(err as Error).message}` };
    }
  }

  for (const c of cases) {
    const translated = c.what.includes('translated');
    it(`${c.what}: a ${HUGE_TEXT_BYTES / 1024 / 1024} MiB non-streamed answer is ${translated ? 'a broken answer (the fallback serves)' : 'relayed whole, unchecked'}`, async () => {
      bad.fault = 'huge-json';
      const cut = bad.cutShort;
      const out = await whole(c.door, c.model);
      assert.equal(out.error, undefined);
      const rec = await recordOf(out.id);
      assert.equal(rec.status, 200);
      assert.equal(rec.outcome, 'ok');
      if (translated) {
        assert.equal(out.head, 'served by good');
        assert.equal(rec.attemptLog?.[0]?.errorCode, 'upstream_answer_too_large');
        assert.equal(await cutReaches(cut + 1), cut + 1, 'the gateway hung up on the huge answer');
      } else {
        // Every byte of the text, through the relay; its usage read from the answer's last bytes.
        assert.equal(out.length, HUGE_TEXT_BYTES);
        assert.equal(rec.provider, c.model === 'oa-route' ? 'oa-bad' : 'an-bad');
        assert.equal(rec.inputTokens, 5);
        assert.equal(rec.outputTokens, 3);
        assert.equal(bad.cutShort, cut);
      }
    });


    it(`${c.what}: as the first event, the fallback serves; after the first events, the caller's error and a 502 record`, async () => {
      bad.fault = 'endless-first-event';
      let cut = bad.cutShort;
      const first = await stream(c.door, c.model);
      assert.equal(first.error, undefined);
      assert.equal(first.text, 'served by good');
      let rec = await recordOf(first.id);
      assert.equal(rec.status, 200);
      assert.equal(rec.attemptLog?.[0]?.provider, c.model === 'oa-route' ? 'oa-bad' : 'an-bad');
      assert.equal(rec.attemptLog?.[0]?.errorCode, 'upstream_invalid_response');
      assert.equal(await cutReaches(cut + 1), cut + 1, 'the gateway hung up on the endless event');

      bad.fault = 'endless-event';
      cut = bad.cutShort;
      const later = await stream(c.door, c.model);
      assert.ok(later.error, 'the client sees the stream fail, not a clean end');
      assert.ok(!later.text.includes('served by good'));
      rec = await recordOf(later.id);
      assert.equal(rec.status, 502);
      assert.equal(rec.outcome, 'stream_error');
      assert.equal(rec.errorCode, 'upstream_invalid_response');
      assert.equal(await cutReaches(cut + 1), cut + 1, 'the gateway hung up on the endless event');
    });
  }
});

describe('a large embeddings answer, through the gateway', () => {
  let up: Loopback;
  let srv: StartedGateway;
  const DIMS = 3072;
  const INPUTS = 1200;

  before(async () => {
    // An OpenAI-compatible embeddings endpoint answering like OpenAI: one vector of DIMS floats per
    // input, as JSON numbers (about 45 MiB for 1,200 inputs: past the 32 MiB a chat answer may hold).
    up = await startLoopback(async (req, res) => {
      let raw = '';
      for await (const c of req) raw += c;
      const body = JSON.parse(raw) as { input: string[]; model: string };
      const vector = `[${Array.from({ length: DIMS }, (_, i) => (((i % 97) - 48) / 1000).toFixed(9)).join(',')}]`;
      const data = body.input.map((_, i) => `{"object":"embedding","index":${i},"embedding":${vector}}`).join(',');
      const text = `{"object":"list","data":[${data}],"model":"${body.model}","usage":{"prompt_tokens":${body.input.length},"total_tokens":${body.input.length}}}`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    srv = await startGateway({
      providers: { emb: { type: 'openai-compatible', baseUrl: `${up.url}/v1` } },
      models: { 'emb-large': { provider: 'emb', model: 'text-embedding-3-large' } },
    });
  });
  after(async () => {
    await srv?.close();
    await up?.close();
  });

  it('passes on every vector of an answer larger than 32 MiB (embeddings may hold up to 256 MiB)', async () => {
    const openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    const input = Array.from({ length: INPUTS }, (_, i) => `text ${i}`);
    const res = await openai.embeddings.create({ model: 'emb-large', input, encoding_format: 'float' });
    assert.equal(res.data.length, INPUTS);
    assert.equal(res.data[INPUTS - 1]!.embedding.length, DIMS);
    assert.equal(res.data[INPUTS - 1]!.index, INPUTS - 1);
  });
});
