import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ChatRequest, StreamEvent } from '../shared/core/types.ts';
import { GatewayError } from '../shared/http/errors.ts';
import { toChatCompletionsBody, type OpenAIFlavor } from '../shared/wire/openai-chat/body.ts';
import { chatCompletionEvents } from '../shared/wire/openai-chat/events.ts';

/**
 * The openai provider's translation, case by case from fixture tables (test/fixtures/openai-*.json,
 * built from the examples of OpenAI's API reference and guides): neutral request -> Chat
 * Completions body, and Chat Completions answers (SSE and JSON) -> neutral events. The answers are
 * fed as real web Responses, whole and cut into small byte pieces.
 */

interface Table<C> {
  cases: C[];
}

function load<C>(name: string): Table<C> {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as Table<C>;
}

const requestCases = load<{ name: string; flavor: OpenAIFlavor; upstreamModel: string; request: ChatRequest; body?: unknown; error?: string }>('openai-chat-request.json').cases;
const streamCases = load<{ name: string; chunks: unknown[]; events: StreamEvent[]; error?: string }>('openai-chat-stream.json').cases;
const completionCases = load<{ name: string; response: unknown; events: StreamEvent[] }>('openai-chat-completion.json').cases;

/** A Response whose body arrives in pieces of `size` bytes (0: all at once). */
function responseOf(text: string, size = 0): Response {
  const bytes = new TextEncoder().encode(text);
  if (!size) return new Response(bytes);
  let at = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (at >= bytes.length) return ctrl.close();
        ctrl.enqueue(bytes.slice(at, at + size));
        at += size;
      },
    }),
  );
}

function sse(chunks: unknown[]): string {
  return chunks.map((c) => `data: ${typeof c === 'string' ? c : JSON.stringify(c)}\n\n`).join('');
}

/** Read the iterator to its end; returns the events and the error it threw, if any. */
async function drain(it: AsyncIterator<StreamEvent>): Promise<{ events: StreamEvent[]; error?: unknown }> {
  const events: StreamEvent[] = [];
  try {
    for (let r = await it.next(); !r.done; r = await it.next()) events.push(r.value);
  } catch (error) {
    return { events, error };
  }
  return { events };
}

describe('ChatRequest -> Chat Completions body (fixtures)', () => {
  for (const c of requestCases) {
    it(c.name, () => {
      if (c.error) {
        assert.throws(
          () => toChatCompletionsBody(c.request, c.upstreamModel, c.flavor),
          (err: unknown) => err instanceof GatewayError && err.status === 400 && err.param === c.error,
        );
        return;
      }
      assert.deepEqual(toChatCompletionsBody(c.request, c.upstreamModel, c.flavor), c.body);
    });
  }
});

describe('Chat Completions SSE -> events (fixtures)', () => {
  for (const c of streamCases) {
    for (const size of [0, 7, 1]) {
      it(`${c.name}${size ? ` (in ${size}-byte pieces)` : ''}`, async () => {
        const { events, error } = await drain(chatCompletionEvents(responseOf(sse(c.chunks), size), true, 'test-provider', 'fallback-model'));
        assert.deepEqual(events, c.events);
        if (c.error) {
          assert.ok(error instanceof GatewayError, `expected a GatewayError, got ${String(error)}`);
          assert.equal(error.code, c.error);
          assert.ok(error.status >= 500, 'a mid-stream failure is the upstream\'s');
        } else assert.equal(error, undefined);
      });
    }
  }

  it('reads CRLF line endings, comments and a data: without a space as the same events', async () => {
    const c = streamCases[0]!;
    const text = `: keep-alive\r\n\r\n${c.chunks.map((x) => `data:${typeof x === 'string' ? x : JSON.stringify(x)}\r\n\r\n`).join('')}`;
    const { events, error } = await drain(chatCompletionEvents(responseOf(text, 5), true, 'p', 'm'));
    assert.equal(error, undefined);
    assert.deepEqual(events, c.events);
  });

  it('ignores whatever follows [DONE]', async () => {
    const c = streamCases[0]!;
    const { events, error } = await drain(chatCompletionEvents(responseOf(`${sse(c.chunks)}data: {"id":"late","choices":[{"index":0,"delta":{"content":"late"}}]}\n\n`), true, 'p', 'm'));
    assert.equal(error, undefined);
    assert.deepEqual(events, c.events);
  });

  it('a broken connection becomes a GatewayError, and return() cancels a pending read at once', async () => {
    const c = streamCases[0]!;
    const first = new TextEncoder().encode(sse(c.chunks.slice(0, 2)));
    let sent = false;
    const broken = new Response(
      new ReadableStream<Uint8Array>({
        pull(ctrl) {
          if (sent) return ctrl.error(new TypeError('terminated'));
          sent = true;
          ctrl.enqueue(first);
        },
      }),
    );
    const r = await drain(chatCompletionEvents(broken, true, 'p', 'm'));
    assert.deepEqual(r.events, c.events.slice(0, 2));
    assert.ok(r.error instanceof GatewayError);
    assert.equal(r.error.code, 'upstream_stream_error');
    assert.match(r.error.message, /provider "p"/);

    let cancelled: unknown = 'not cancelled';
    const hanging = new Response(
      new ReadableStream<Uint8Array>({
        start(ctrl) {
          ctrl.enqueue(first);
        },
        cancel(why) {
          cancelled = why;
        },
      }),
    );
    const it = chatCompletionEvents(hanging, true, 'p', 'm');
    assert.deepEqual((await it.next()).value, c.events[0]);
    assert.deepEqual((await it.next()).value, c.events[1]);
    const pending = it.next(); // waits on a body that never sends more
    await it.return!();
    assert.notEqual(cancelled, 'not cancelled', 'the upstream body was cancelled');
    assert.deepEqual(await pending, { done: true, value: undefined });
  });
});

describe('Chat Completions JSON -> events (fixtures)', () => {
  for (const c of completionCases) {
    it(c.name, async () => {
      const { events, error } = await drain(chatCompletionEvents(responseOf(JSON.stringify(c.response), 9), false, 'p', 'm'));
      assert.equal(error, undefined);
      assert.deepEqual(events, c.events);
    });
  }

  it('an answer that is not JSON is an upstream error', async () => {
    const { events, error } = await drain(chatCompletionEvents(responseOf('<html>Bad gateway</html>'), false, 'p', 'm'));
    assert.deepEqual(events, []);
    assert.ok(error instanceof GatewayError);
    assert.equal(error.status, 502);
  });
});
