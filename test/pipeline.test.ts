import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { eventually } from './helpers/keys.ts';

/**
 * The pure pipeline, in process: web Requests handed to gateway.handle() with the extras a shell
 * lends, no socket anywhere (the `mock` provider answers without fetch). Routing, error shapes per
 * front door, one log record per request, streaming and the response cache.
 */

let gw: StartedGateway;

before(async () => {
  gw = await startGateway({
    inProcess: true,
    providers: { mock: { type: 'mock', wordDelayMs: 0 } },
    models: { mock: { provider: 'mock', model: 'mock-echo-1' }, cached: { provider: 'mock', model: 'mock-echo-cached' } },
    config: { cache: { backend: 'memory', models: { cached: {} } } },
  });
});

after(() => gw?.close());

const JSON_HEADERS = { 'content-type': 'application/json' };
const ANTHROPIC_HEADERS = { ...JSON_HEADERS, 'anthropic-version': '2023-06-01' };

function post(path: string, body: unknown, headers: Record<string, string> = JSON_HEADERS): Promise<Response> {
  return gw.fetch(path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

/** The record of a response: waited for, and the only one with its request id. */
async function onlyRecord(res: Response) {
  const rec = await gw.recordOf(res);
  // A later request's record lands after everything the first one logs.
  const barrier = await gw.fetch('/health');
  await barrier.arrayBuffer();
  await gw.recordOf(barrier);
  assert.equal(gw.recordsFor(rec.requestId).length, 1, `exactly one record for ${rec.requestId}`);
  return rec;
}

describe('pipeline in process: answers and their records', () => {
  it('a chat completion from the mock provider, with one ok record naming door, model and provider', async () => {
    const res = await post('/v1/chat/completions', { model: 'mock', messages: [{ role: 'user', content: 'hello pipeline' }] });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { object: string; choices: { message: { content: string } }[]; usage: { prompt_tokens: number } };
    assert.equal(body.object, 'chat.completion');
    assert.ok(body.choices[0]!.message.content.length > 0);
    assert.ok(body.usage.prompt_tokens > 0);
    const rec = await onlyRecord(res);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.status, 200);
    assert.equal(rec.frontDoor, 'openai-chat');
    assert.equal(rec.provider, 'mock');
  });

  it('an Anthropic Messages request to the mock provider answers in the Messages shape', async () => {
    const res = await post('/v1/messages', { model: 'mock', max_tokens: 50, messages: [{ role: 'user', content: 'hi there' }] }, ANTHROPIC_HEADERS);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { type: string; role: string; content: { type: string }[] };
    assert.equal(body.type, 'message');
    assert.equal(body.role, 'assistant');
    assert.equal(body.content[0]!.type, 'text');
    assert.equal((await onlyRecord(res)).frontDoor, 'anthropic-messages');
  });

  it('a streamed chat completion: SSE whose first event is a chat.completion.chunk, ending in [DONE]', async () => {
    const res = await post('/v1/chat/completions', { model: 'mock', stream: true, messages: [{ role: 'user', content: 'stream me please' }] });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await res.text();
    const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
    const first = JSON.parse(events[0]!.slice('data: '.length)) as { object: string; choices: { delta: { role?: string } }[] };
    assert.equal(first.object, 'chat.completion.chunk');
    assert.equal(events.at(-1), 'data: [DONE]');
    const rec = await onlyRecord(res);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.stream, true);
  });
});

describe('pipeline in process: errors in the caller format, each with one record', () => {
  it('an unknown model on the chat door: OpenAI error JSON, 404, one record with the failure', async () => {
    const res = await post('/v1/chat/completions', { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: { message: string; type: string } };
    assert.equal(typeof body.error.message, 'string');
    assert.equal(typeof body.error.type, 'string');
    const rec = await onlyRecord(res);
    assert.equal(rec.status, 404);
    assert.notEqual(rec.outcome, 'ok');
  });

  it('an unknown model on the Messages door: Anthropic error JSON', async () => {
    const res = await post('/v1/messages', { model: 'no-such-model', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }, ANTHROPIC_HEADERS);
    assert.equal(res.status, 404);
    const body = (await res.json()) as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, 'error');
    assert.equal(typeof body.error.type, 'string');
    assert.equal(typeof body.error.message, 'string');
    assert.equal((await onlyRecord(res)).status, 404);
  });

  it('malformed JSON on each door: 400 in that door format', async () => {
    const chat = await post('/v1/chat/completions', '{"model": "mock", ');
    assert.equal(chat.status, 400);
    assert.ok(((await chat.json()) as { error?: unknown }).error);
    const messages = await post('/v1/messages', '{"model": "mock", ', ANTHROPIC_HEADERS);
    assert.equal(messages.status, 400);
    assert.equal(((await messages.json()) as { type?: string }).type, 'error');
    for (const res of [chat, messages]) assert.equal((await onlyRecord(res)).status, 400);
  });

  it('GET on a POST route is 405 and an unknown path is 404, each logged once', async () => {
    const wrongMethod = await gw.fetch('/v1/chat/completions');
    assert.equal(wrongMethod.status, 405);
    await wrongMethod.arrayBuffer();
    assert.equal((await onlyRecord(wrongMethod)).status, 405);
    const unknown = await gw.fetch('/v1/nowhere', { method: 'POST', headers: JSON_HEADERS, body: '{}' });
    assert.equal(unknown.status, 404);
    await unknown.arrayBuffer();
    assert.equal((await onlyRecord(unknown)).status, 404);
  });
});

describe('pipeline in process: response cache (memory backend)', () => {
  it('the second identical request is a hit that replays the first answer, recorded as such', async () => {
    const body = { model: 'cached', temperature: 0, messages: [{ role: 'user', content: 'cache this answer' }] };
    const first = await post('/v1/chat/completions', body);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-gateway-cache'), 'miss');
    const firstBody = (await first.json()) as { choices: { message: { content: string } }[] };
    await onlyRecord(first);
    // The store is written in the background (waitUntil); wait for it.
    const cache = gw.gateway.cache!;
    await eventually(async () => cache.stats.stored > 0, 'the cache write');
    const second = await post('/v1/chat/completions', body);
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('x-gateway-cache'), 'hit');
    const secondBody = (await second.json()) as { choices: { message: { content: string } }[] };
    assert.equal(secondBody.choices[0]!.message.content, firstBody.choices[0]!.message.content);
    const rec = await onlyRecord(second);
    assert.equal(rec.cacheStatus, 'hit');
  });
});
