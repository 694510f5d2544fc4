import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { StreamEvent } from '../shared/core/types.ts';
import { parseAnthropicRequest } from '../shared/wire/anthropic-messages/door.ts';
import { parseChatRequest } from '../shared/wire/openai-chat/door.ts';
import { GatewayError } from '../shared/http/errors.ts';
import { decodeAnthropicStream, toAnthropicBody } from '../shared/wire/anthropic-messages/translate.ts';

/**
 * Anthropic translation, case by case from fixture tables built from Anthropic's and OpenAI's own
 * documentation (each case names its source):
 * - test/fixtures/anthropic-requests.json: Messages request bodies -> the neutral request (what
 *   every non-Anthropic provider is given), or the 400 and the parameter it names;
 * - test/fixtures/anthropic-from-openai.json: Chat Completions bodies -> the Anthropic Messages
 *   body an Anthropic upstream gets, or the 400 naming the parameter;
 * - test/fixtures/anthropic-streams.json: Anthropic SSE streams -> the neutral events the other
 *   front doors encode (text, tool calls, thinking, stop reason, usage), or the error a broken
 *   stream ends with.
 */

interface Case<E = Record<string, unknown>> {
  name: string;
  source: string;
  request?: unknown;
  sse?: string;
  expect?: E;
  error?: string;
}

function table<E = Record<string, unknown>>(name: string): Case<E>[] {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as Case<E>[];
}

/** The parameter a thrown 400 names. */
function paramOf(fn: () => unknown): string | null | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    assert.equal(err.status, 400);
    return err.param;
  }
  assert.fail('expected a 400');
}

/** The parameter a translated route's 400 names for an Anthropic request. */
function rejectedParam(request: unknown): string | null | undefined {
  let req;
  try {
    req = parseAnthropicRequest(request);
  } catch {
    return paramOf(() => parseAnthropicRequest(request));
  }
  assert.ok(req.untranslatable?.length, 'expected a 400, or a part a translated route rejects');
  assert.ok(req.untranslatable[0]!.message.includes(req.untranslatable[0]!.param), 'the message names the parameter');
  return req.untranslatable[0]!.param;
}

describe('Anthropic Messages request -> neutral request (fixtures)', () => {
  for (const c of table('anthropic-requests.json')) {
    it(c.name, () => {
      if (c.error !== undefined) {
        // Either a 400 at once (what the gateway needs: model, max_tokens, stream, the shape of
        // messages), or the first untranslatable part: a 400 naming it on every translated route,
        // while a same-format upstream gets the body as sent and judges it itself (issue #14).
        assert.equal(rejectedParam(c.request), c.error);
        return;
      }
      const req = parseAnthropicRequest(c.request) as unknown as Record<string, unknown>;
      for (const [key, want] of Object.entries(c.expect ?? {})) {
        if (key === 'untranslatable') {
          const got = (req.untranslatable as { param: string; message: string }[] | undefined)?.map((u) => u.param);
          assert.deepEqual(got, want ?? undefined, 'untranslatable parameters');
          for (const u of (req.untranslatable as { param: string; message: string }[] | undefined) ?? []) assert.ok(u.message.includes(u.param), 'the message names the parameter');
        } else assert.deepEqual(req[key], want ?? undefined, key);
      }
    });
  }
});

describe('Chat Completions request -> Anthropic Messages body (fixtures)', () => {
  for (const c of table('anthropic-from-openai.json')) {
    it(c.name, () => {
      const build = () => toAnthropicBody(parseChatRequest(c.request), 'claude-upstream', 4096);
      if (c.error !== undefined) {
        assert.equal(paramOf(build), c.error);
        return;
      }
      const body = build();
      for (const [key, want] of Object.entries(c.expect ?? {})) assert.deepEqual(body[key], want, key);
    });
  }
});

interface StreamExpect {
  id?: string;
  model?: string;
  text?: string;
  thinking?: string;
  signature?: string;
  toolCalls?: { index: number; id: string; name: string; arguments: string }[];
  finish?: string;
  usage?: Record<string, number>;
  error?: { kind: string; code?: string; message?: string };
}

describe('Anthropic SSE -> neutral events (fixtures)', () => {
  for (const c of table<StreamExpect>('anthropic-streams.json')) {
    // Whole, and in 7-byte pieces (events and UTF-8 characters split across reads).
    for (const size of [0, 7]) {
      it(`${c.name}${size ? ` (in ${size}-byte pieces)` : ''}`, async () => {
        const bytes = new TextEncoder().encode(c.sse!);
        const body = new ReadableStream<Uint8Array>({
          start(ctrl) {
            if (!size) ctrl.enqueue(bytes);
            else for (let i = 0; i < bytes.length; i += size) ctrl.enqueue(bytes.slice(i, i + size));
            ctrl.close();
          },
        });
        const events: StreamEvent[] = [];
        let error: unknown;
        try {
          for await (const ev of decodeAnthropicStream(new Response(body, { headers: { 'content-type': 'text/event-stream' } }), 'anthropic')) events.push(ev);
        } catch (err) {
          error = err;
        }
        const want = c.expect!;
        const start = events.find((e) => e.type === 'start');
        if (want.id !== undefined) assert.equal(start?.type === 'start' && start.id, want.id);
        if (want.model !== undefined) assert.equal(start?.type === 'start' && start.model, want.model);
        if (want.text !== undefined) assert.equal(events.map((e) => (e.type === 'text' ? e.delta : '')).join(''), want.text);
        if (want.thinking !== undefined) assert.equal(events.map((e) => (e.type === 'thinking' ? (e.delta ?? '') : '')).join(''), want.thinking);
        if (want.signature !== undefined) assert.equal(events.find((e) => e.type === 'thinking' && e.signature)?.type === 'thinking' && (events.find((e) => e.type === 'thinking' && e.signature) as { signature: string }).signature, want.signature);
        if (want.toolCalls !== undefined) {
          const calls = events.flatMap((e) => (e.type === 'tool_call' ? [{ index: e.index, id: e.id, name: e.name, arguments: '' }] : []));
          for (const e of events) if (e.type === 'tool_args') calls.find((x) => x.index === e.index)!.arguments += e.delta;
          assert.deepEqual(calls, want.toolCalls);
        }
        if (want.finish !== undefined) assert.equal(events.find((e) => e.type === 'finish')?.type === 'finish' && (events.find((e) => e.type === 'finish') as { reason: string }).reason, want.finish);
        if (want.usage !== undefined) {
          const u = events.find((e) => e.type === 'usage');
          assert.ok(u?.type === 'usage', 'a usage event');
          assert.deepEqual(u.usage, want.usage);
        }
        if (want.error) {
          assert.ok(error instanceof GatewayError, `expected the stream to fail, got ${String(error)}`);
          assert.equal(error.kind, want.error.kind);
          if (want.error.code) assert.equal(error.code, want.error.code);
          if (want.error.message) assert.equal(error.message, want.error.message);
          assert.ok(!events.some((e) => e.type === 'finish'), 'no finish before the failure');
        } else assert.equal(error, undefined);
      });
    }
  }
});
