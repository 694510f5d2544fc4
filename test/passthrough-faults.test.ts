import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ChatRequest } from '../shared/core/types.ts';
import { respondPassthrough as anthropicPassthrough } from '../shared/wire/anthropic-messages/door.ts';
import { respondPassthrough as chatPassthrough } from '../shared/wire/openai-chat/door.ts';
import { respondPassthrough as responsesPassthrough } from '../shared/wire/openai-responses/door.ts';
import { checkJsonAnswer, SseChecker } from '../shared/wire/relay.ts';
import { RequestTrace, type RequestRecord } from '../shared/telemetry/record.ts';
import { piecesAt } from './helpers/cuts.ts';

/**
 * Property tests of the same-format relays (the doors' respondPassthrough) over any chunking of
 * the upstream's bytes: a good stream goes through byte for byte; a stream cut at any byte, or
 * with junk at any event boundary, ends with an explicit error event in the caller's format (and
 * a 502 / stream_error record), never a clean end.
 */

const enc = new TextEncoder();

const CHAT = [
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n',
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"héllo ✓"},"logprobs":null,"finish_reason":null}]}\n\n',
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]}\n\n',
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n',
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n',
  'data: [DONE]\n\n',
];
const ANTHROPIC = [
  'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
  'event: ping\ndata: {"type": "ping"}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"héllo ✓"}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}\n\n',
  'event: message_stop\ndata: {"type":"message_stop"}\n\n',
];
const RESPONSES = [
  'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}\n\n',
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"héllo ✓"}\n\n',
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" world"}\n\n',
  'event: response.completed\ndata: {"type":"response.completed","sequence_number":3,"response":{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":5,"output_tokens":3,"total_tokens":8}}}\n\n',
];

type Door = 'chat' | 'anthropic' | 'responses';
const EVENTS: Record<Door, string[]> = { chat: CHAT, anthropic: ANTHROPIC, responses: RESPONSES };

function upstreamOf(bytes: Uint8Array, cuts: number[], breakAtEnd: boolean): Response {
  const pieces = piecesAt(bytes, cuts);
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(ctrl) {
      if (i < pieces.length) ctrl.enqueue(pieces[i++]!);
      else if (breakAtEnd) ctrl.error(new Error('socket hang up'));
      else ctrl.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

async function relay(door: Door, upstream: Response): Promise<{ text: string; record: RequestRecord }> {
  let record: RequestRecord | undefined;
  const trace = new RequestTrace('prop', new Request('http://gw/x', { method: 'POST' }), '/x', (r) => (record = structuredClone(r)));
  trace.record.status = 200;
  const req = { model: 'm', messages: [], stream: true, includeUsage: true } as ChatRequest;
  const meta = { created: 1, headers: {} };
  const res = door === 'chat' ? chatPassthrough(req, upstream, meta, trace) : door === 'anthropic' ? anthropicPassthrough(req, upstream, meta, trace) : responsesPassthrough(req, upstream, meta, trace);
  const text = await res.text();
  return { text, record: record! };
}

/** The caller-format error event a broken stream must end with. */
function endsWithError(door: Door, text: string): boolean {
  const events = text.split(/\n\n/).filter((e) => e.trim());
  const last = events.at(-1) ?? '';
  if (door === 'chat') return /^data: \{"error":/.test(last) && !text.includes('data: [DONE]');
  if (door === 'anthropic') return last.startsWith('event: error\ndata: {"type":"error","error":');
  return last.startsWith('event: error\n') && events.some((e) => e.startsWith('event: response.failed\n'));
}

const doorArb = fc.constantFrom<Door>('chat', 'anthropic', 'responses');
const cutsArb = fc.array(fc.nat({ max: 4000 }), { maxLength: 12 });

describe('same-format relays under any chunking', () => {
  it('a good stream goes through byte for byte, with an ok record', async () => {
    await fc.assert(
      fc.asyncProperty(doorArb, cutsArb, async (door, cuts) => {
        const bytes = enc.encode(EVENTS[door].join(''));
        const { text, record } = await relay(door, upstreamOf(bytes, cuts, false));
        assert.equal(text, EVENTS[door].join(''));
        assert.equal(record.outcome, 'ok');
        assert.equal(record.status, 200);
      }),
      { numRuns: 150 },
    );
  });

  it('a stream cut at any byte before its end (cleanly or by a broken connection) ends with an error event and a 502 record', async () => {
    await fc.assert(
      fc.asyncProperty(doorArb, fc.nat(), fc.boolean(), cutsArb, async (door, at, broken, cuts) => {
        const full = enc.encode(EVENTS[door].join(''));
        // Anywhere before the answer is complete: its terminal event (for Chat Completions, the chunk with the finish reason).
        const finishing = door === 'chat' ? 3 : EVENTS[door].length - 1;
        const terminalStart = enc.encode(EVENTS[door].slice(0, finishing).join('')).length;
        const cut = at % (terminalStart + 1);
        const { text, record } = await relay(door, upstreamOf(full.subarray(0, cut), cuts, broken));
        assert.ok(endsWithError(door, text), `no error event at the end of: ${JSON.stringify(text.slice(-300))}`);
        assert.equal(record.outcome, 'stream_error');
        assert.equal(record.status, 502);
        // What went out before the error is whole events of the upstream's, as they came.
        assert.ok(full.length >= 0 && EVENTS[door].join('').startsWith(text.slice(0, text.lastIndexOf(door === 'chat' ? 'data: {"error"' : door === 'anthropic' ? 'event: error' : 'event: response.failed'))));
      }),
      { numRuns: 200 },
    );
  });

  it('junk at any event boundary ends the stream there with an error event, never relayed', async () => {
    const junkArb = fc.constantFrom<string>('<html>502</html>\n\n', 'data: {not json}\n\n', 'data: 42\n\n', 'garbage line\nmore\n\n', 'event: x\ndata: {"no":"type"}\n\n');
    await fc.assert(
      fc.asyncProperty(doorArb, fc.nat(), junkArb, cutsArb, async (door, pos, junk, cuts) => {
        const events = EVENTS[door];
        // Before the terminal event (after it, the answer is already complete).
        const at = pos % events.length;
        if (door === 'chat' && junk === 'event: x\ndata: {"no":"type"}\n\n') junk = 'data: {"no":"choices"}\n\n';
        const text0 = [...events.slice(0, at), junk, ...events.slice(at)].join('');
        const { text, record } = await relay(door, upstreamOf(enc.encode(text0), cuts, false));
        assert.ok(!text.includes(junk), 'the junk never reaches the client');
        assert.ok(endsWithError(door, text), `no error event at the end of: ${JSON.stringify(text.slice(-300))}`);
        assert.ok(text.startsWith(events.slice(0, at).join('')), 'the good events before it went out as they were');
        assert.equal(record.status, 502);
      }),
      { numRuns: 150 },
    );
  });
});

describe('answer checks', () => {
  it('non-streamed answers must be complete JSON of their API (the check hands on the parse of a good one)', () => {
    const problem = (format: Parameters<typeof checkJsonAnswer>[0], body: string) => {
      const r = checkJsonAnswer(format, body);
      return typeof r === 'string' ? r : undefined;
    };
    assert.deepEqual(checkJsonAnswer('openai-chat', '{"id":"x","choices":[]}'), { id: 'x', choices: [] });
    assert.ok(problem('openai-chat', '{"id":"x","choices":[{"ind'));
    assert.ok(problem('openai-chat', '{"error":{"message":"x"}}'));
    assert.deepEqual(checkJsonAnswer('anthropic-messages', Buffer.from('{"type":"message","content":[]}')), { type: 'message', content: [] });
    assert.ok(problem('anthropic-messages', '<html></html>'));
    assert.equal(problem('openai-responses', '{"object":"response","output":[]}'), undefined);
    assert.ok(problem('openai-responses', '[]'));
  });

  it('stream events: comments and keep-alives pass, terminal events are known', () => {
    const c = new SseChecker('openai-chat');
    assert.deepEqual(c.check(': keep-alive\n\n'), { data: false, terminal: false });
    assert.ok(c.check('hello\n\n').problem);
    assert.equal(c.check('data: [DONE]\n\n').terminal, true);
    const a = new SseChecker('anthropic-messages');
    assert.equal(a.check('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n').upstreamError, 'busy');
    assert.equal(a.check('event: message_stop\ndata: {"type":"message_stop"}\n\n').terminal, true);
    assert.equal(a.complete, true);
  });
});
