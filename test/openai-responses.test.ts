import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { APIError } from 'openai';
import type { FunctionTool, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { assertCleanErrorText, CLIENT_KEY, noRetries, startGateway, UPSTREAM_KEY, type StartedGateway } from './helpers/gateway.ts';
import { createGate, openaiErrorJson, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { startMockResponsesUpstream, type MockResponsesUpstream } from './helpers/mock-openai-responses.ts';

/**
 * `POST /v1/responses` driven by the official openai SDK: answered from the mock provider, passed
 * through to an OpenAI upstream (`type: openai`, mock /v1/responses on loopback), and translated
 * through Chat Completions for an `openai-compatible` upstream (mock /v1/chat/completions).
 */

const KEY_ENV = 'TEST_RESPONSES_UPSTREAM_KEY';
const COMPAT_KEY = 'sk-compat-COMPATKEY-99aa';
const COMPAT_KEY_ENV = 'TEST_RESPONSES_COMPAT_KEY';

let responsesUpstream: MockResponsesUpstream;
let chatUpstream: MockOpenAI;
let srv: StartedGateway;
let client: OpenAI;

before(async () => {
  responsesUpstream = await startMockResponsesUpstream();
  chatUpstream = await startMockOpenAI();
  srv = await startGateway({
    providers: {
      mock: { type: 'mock', wordDelayMs: 0 },
      oai: { type: 'openai', baseUrl: responsesUpstream.baseUrl, apiKeyEnv: KEY_ENV },
      compat: { type: 'openai-compatible', baseUrl: chatUpstream.baseUrl, apiKeyEnv: COMPAT_KEY_ENV },
    },
    models: {
      mock: { provider: 'mock', model: 'mock-echo-1' },
      'gpt-5': { provider: 'oai', model: 'gpt-5-2025-08-07' },
      llama: { provider: 'compat', model: 'llama-3.1-8b-instruct' },
    },
    // No retries: each scripted upstream answer is the one the client gets.
    config: noRetries(),
    env: { [KEY_ENV]: UPSTREAM_KEY, [COMPAT_KEY_ENV]: COMPAT_KEY },
  });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await responsesUpstream?.close();
  await chatUpstream?.close();
});

beforeEach(() => {
  responsesUpstream.reset();
  chatUpstream.reset();
});

const weather: FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  strict: true,
};

async function collect(stream: AsyncIterable<ResponseStreamEvent>): Promise<ResponseStreamEvent[]> {
  const events: ResponseStreamEvent[] = [];
  for await (const ev of stream) events.push(ev);
  return events;
}

/** Sequence numbers start at 0 and rise by one. */
function assertSequence(events: ResponseStreamEvent[]): void {
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
}

async function expectApiError(p: Promise<unknown>, status: number, param?: string | null): Promise<APIError> {
  const err = await p.then(
    () => assert.fail('expected the call to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof APIError, `expected an APIError, got ${String(err)}`);
  assert.equal(err.status, status, err.message);
  if (param !== undefined) assert.equal(err.param, param);
  assertCleanErrorText(`${err.message} ${JSON.stringify(err.error ?? null)}`);
  return err;
}

describe('responses door -> mock provider', () => {
  it('answers a text request with a Response object and usage', async () => {
    const { data: r, response } = await client.responses.create({ model: 'mock', instructions: 'Be brief.', input: 'Hello responses world' }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_[0-9a-f]{48}$/);
    assert.equal(r.status, 'completed');
    assert.equal(r.model, 'mock-echo-1');
    assert.equal(r.instructions, 'Be brief.');
    assert.equal(r.output.length, 1);
    const msg = r.output[0]!;
    assert.equal(msg.type, 'message');
    assert.ok(msg.type === 'message');
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.status, 'completed');
    assert.deepEqual(msg.content, [{ type: 'output_text', annotations: [], logprobs: [], text: 'Hello responses world' }]);
    assert.equal(r.output_text, 'Hello responses world');
    // One token per word: 2 instruction words + 3 input words; 3 out.
    assert.deepEqual(r.usage, { input_tokens: 5, input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 8 });
  });

  it('streams the event sequence from response.created to response.completed', async () => {
    const stream = await client.responses.create({ model: 'mock', input: [{ role: 'user', content: 'one two three' }], stream: true });
    const events = await collect(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        'response.output_text.delta',
        'response.output_text.delta',
        'response.output_text.delta',
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ],
    );
    assertSequence(events);
    const created = events[0]!;
    assert.ok(created.type === 'response.created');
    assert.equal(created.response.status, 'in_progress');
    assert.deepEqual(created.response.output, []);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    assert.equal(deltas.map((d) => d.delta).join(''), 'one two three');
    const done = events.find((e) => e.type === 'response.output_text.done');
    assert.ok(done?.type === 'response.output_text.done');
    assert.equal(done.text, 'one two three');
    const completed = events.at(-1)!;
    assert.ok(completed.type === 'response.completed');
    assert.equal(completed.response.id, created.response.id);
    assert.equal(completed.response.status, 'completed');
    assert.equal(completed.response.usage?.output_tokens, 3);
    assert.equal(completed.response.usage?.input_tokens, 3);
  });

  it('assembles the final response with responses.stream().finalResponse()', async () => {
    const final = await client.responses.stream({ model: 'mock', input: 'assemble me please' }).finalResponse();
    assert.equal(final.status, 'completed');
    assert.equal(final.output_text, 'assemble me please');
  });

  it('calls a function tool, then answers from the function_call_output', async () => {
    const r = await client.responses.create({ model: 'mock', input: 'call get_weather for Paris', tools: [weather] });
    assert.equal(r.status, 'completed');
    assert.equal(r.output.length, 1);
    const call = r.output[0]!;
    assert.ok(call.type === 'function_call');
    assert.match(call.id!, /^fc_/);
    assert.equal(call.name, 'get_weather');
    assert.equal(call.status, 'completed');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'call get_weather for Paris' });
    assert.deepEqual(r.tools, [weather]);

    const next = await client.responses.create({
      model: 'mock',
      tools: [weather],
      input: [
        { role: 'user', content: 'call get_weather for Paris' },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' },
      ],
    });
    assert.equal(next.output_text, 'get_weather returned: sunny, 21 C');
  });

  it('streams a function call with arguments delta and done events', async () => {
    const events = await collect(await client.responses.create({ model: 'mock', input: 'call get_weather Oslo', tools: [weather], stream: true }));
    assert.deepEqual(
      events.map((e) => e.type),
      ['response.created', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.delta', 'response.function_call_arguments.done', 'response.output_item.done', 'response.completed'],
    );
    assertSequence(events);
    const doneEv = events.find((e) => e.type === 'response.function_call_arguments.done');
    assert.ok(doneEv?.type === 'response.function_call_arguments.done');
    // The function's name is on its output item (openai 7 types the arguments-done event without it).
    const itemDone = events.find((e) => e.type === 'response.output_item.done');
    assert.ok(itemDone?.type === 'response.output_item.done' && itemDone.item.type === 'function_call');
    assert.equal(itemDone.item.name, 'get_weather');
    assert.deepEqual(JSON.parse(doneEv.arguments), { city: 'call get_weather Oslo' });
    const completed = events.at(-1)!;
    assert.ok(completed.type === 'response.completed');
    const item = completed.response.output[0]!;
    assert.ok(item.type === 'function_call');
    assert.equal(item.arguments, doneEv.arguments);
  });

  it('ends as incomplete when max_output_tokens cuts the answer', async () => {
    const r = await client.responses.create({ model: 'mock', input: 'a b c d e f', max_output_tokens: 16 });
    assert.equal(r.status, 'completed');
    const short = await client.responses.create({ model: 'mock', input: Array.from({ length: 20 }, (_, i) => `w${i}`).join(' '), max_output_tokens: 16 });
    assert.equal(short.status, 'incomplete');
    assert.deepEqual(short.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(short.usage?.output_tokens, 16);
    const events = await collect(await client.responses.create({ model: 'mock', input: Array.from({ length: 20 }, (_, i) => `w${i}`).join(' '), max_output_tokens: 16, stream: true }));
    const last = events.at(-1)!;
    assert.equal(last.type, 'response.incomplete');
    assert.ok(last.type === 'response.incomplete');
    assert.deepEqual(last.response.incomplete_details, { reason: 'max_output_tokens' });
    const itemDone = events.find((e) => e.type === 'response.output_item.done');
    assert.ok(itemDone?.type === 'response.output_item.done');
    assert.ok(itemDone.item.type === 'message');
    assert.equal(itemDone.item.status, 'incomplete');
  });
});

describe('responses door -> openai provider (pass-through)', () => {
  it('forwards the body unchanged except the model, with the gateway credential', async () => {
    const params = {
      model: 'gpt-5',
      input: [{ role: 'user' as const, content: 'Hello upstream' }],
      instructions: 'Be nice.',
      previous_response_id: 'resp_abc123',
      store: true,
      metadata: { team: 'search' },
      reasoning: { effort: 'low' as const },
      tools: [{ type: 'web_search' as const }, weather],
      include: ['reasoning.encrypted_content' as const],
    };
    const r = await client.responses.create(params);
    const rec = responsesUpstream.requests[0]!;
    assert.equal(rec.path, '/v1/responses');
    assert.deepEqual(rec.body, { ...params, model: 'gpt-5-2025-08-07' });
    assert.equal(rec.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.ok(!JSON.stringify(rec.headers).includes(CLIENT_KEY));
    const sent = JSON.parse(rec.sent);
    assert.equal(r.id, sent.id);
    assert.deepEqual(r.output, sent.output);
    assert.equal(r.output_text, 'Hello upstream');
  });

  it('passes the JSON answer through byte for byte and logs its usage', async () => {
    const res = await fetch(`${srv.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'resp-pt-json' }, body: JSON.stringify({ model: 'gpt-5', input: 'bytes please' }) });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), responsesUpstream.requests[0]!.sent);
    assert.equal(res.headers.get('x-gateway-provider'), 'oai');
    const rec = await srv.waitForRecord('resp-pt-json');
    assert.equal(rec.inputTokens, 12);
    assert.equal(rec.outputTokens, 3);
    assert.equal(rec.cacheReadTokens, 4);
    assert.equal(rec.frontDoor, 'openai-responses');
  });

  it('passes the SSE stream through event by event, untouched', async () => {
    const res = await fetch(`${srv.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'resp-pt-sse' }, body: JSON.stringify({ model: 'gpt-5', input: 'stream these words', stream: true }) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await res.text();
    assert.equal(text, responsesUpstream.requests[0]!.sent);
    assert.ok(text.includes('event: response.completed'));
    const rec = await srv.waitForRecord('resp-pt-sse');
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.outputTokens, 3);

    const events = await collect(await client.responses.create({ model: 'gpt-5', input: 'via the sdk', stream: true }));
    assert.equal(events.at(-1)!.type, 'response.completed');
    assertSequence(events);
    const final = await client.responses.stream({ model: 'gpt-5', input: 'final answer here' }).finalResponse();
    assert.equal(final.output_text, 'final answer here');
  });

  it('passes a streamed function call through', async () => {
    responsesUpstream.script({ type: 'function_call', callId: 'call_pt1', name: 'get_weather', argumentPieces: ['{"city":', '"Rome"}'] });
    const final = await client.responses.stream({ model: 'gpt-5', input: 'weather in Rome', tools: [weather] }).finalResponse();
    const call = final.output[0]!;
    assert.ok(call.type === 'function_call');
    assert.equal(call.call_id, 'call_pt1');
    assert.equal(call.arguments, '{"city":"Rome"}');
  });

  it("passes the upstream's 400 error body through, and turns its 401 into a 502", async () => {
    responsesUpstream.script({ type: 'error', status: 400, body: openaiErrorJson(400, "Previous response with id 'resp_x' not found.", 'invalid_request_error', null, 'previous_response_id') });
    const err = await expectApiError(client.responses.create({ model: 'gpt-5', input: 'hi', previous_response_id: 'resp_x' }), 400, 'previous_response_id');
    assert.match(err.message, /resp_x' not found/);
    responsesUpstream.script({ type: 'error', status: 401, body: openaiErrorJson(401, `Incorrect API key provided: ${UPSTREAM_KEY.slice(0, 14)}...`) });
    const auth = await expectApiError(client.responses.create({ model: 'gpt-5', input: 'hi' }), 502);
    assert.equal(auth.code, 'upstream_auth_failed');
  });

  it('ends a stream the upstream cut with response.failed and an error the SDK throws', async () => {
    const gate = createGate();
    responsesUpstream.script({ type: 'text', pieces: ['one ', 'two ', 'three ', 'four'], cutAfter: 2, gate });
    const stream = await client.responses.create({ model: 'gpt-5', input: 'cut me', stream: true });
    const seen: string[] = [];
    const err = await (async () => {
      for await (const ev of stream) {
        seen.push(ev.type);
        if (ev.type === 'response.output_text.delta' && seen.filter((t) => t === 'response.output_text.delta').length === 2) gate.open();
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof APIError, `expected the SDK to throw, saw ${seen.join(', ')}`);
    assert.ok(seen.includes('response.failed'));
    assert.ok(!seen.includes('response.completed'));
    assertCleanErrorText(String(err.message));
  });
});

describe('responses door -> openai-compatible provider (translated through Chat Completions)', () => {
  it('translates a text request and the answer', async () => {
    chatUpstream.script({ type: 'text', pieces: ['Bonjour', ' le', ' monde'], usage: { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 } });
    const r = await client.responses.create({
      model: 'llama',
      instructions: 'Answer in French.',
      input: [
        { role: 'developer', content: 'Keep it short.' },
        { role: 'user', content: 'Say hello' },
        { type: 'message', id: 'msg_prev', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hi!', annotations: [] }] },
        { role: 'user', content: [{ type: 'input_text', text: 'In French' }] },
      ],
      max_output_tokens: 64,
      temperature: 0.2,
      top_p: 0.9,
      user: 'user-42',
      store: false,
      metadata: { run: '7' },
    });
    const body = chatUpstream.lastChatRequest().body;
    assert.deepEqual(body, {
      model: 'llama-3.1-8b-instruct',
      messages: [
        { role: 'system', content: 'Answer in French.\n\nKeep it short.' },
        { role: 'user', content: 'Say hello' },
        { role: 'assistant', content: 'Hi!' },
        { role: 'user', content: 'In French' },
      ],
      max_tokens: 64,
      temperature: 0.2,
      top_p: 0.9,
      user: 'user-42',
    });
    assert.equal(chatUpstream.lastChatRequest().headers.authorization, `Bearer ${COMPAT_KEY}`);
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, 'Bonjour le monde');
    assert.equal(r.model, 'llama-3.1-8b-instruct');
    assert.deepEqual(r.metadata, { run: '7' });
    assert.equal(r.usage?.input_tokens, 20);
    assert.equal(r.usage?.output_tokens, 3);
    assert.equal(r.usage?.total_tokens, 23);
  });

  it('streams a translated answer, asking the upstream for usage', async () => {
    chatUpstream.script({ type: 'text', pieces: ['Hello', ' there', '!'], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } });
    const events = await collect(await client.responses.create({ model: 'llama', input: 'hi', stream: true }));
    const body = chatUpstream.lastChatRequest().body;
    assert.equal(body.stream, true);
    assert.deepEqual(body.stream_options, { include_usage: true });
    assertSequence(events);
    assert.deepEqual(
      events.filter((e) => e.type === 'response.output_text.delta').map((e) => (e as { delta: string }).delta),
      ['Hello', ' there', '!'],
    );
    const last = events.at(-1)!;
    assert.ok(last.type === 'response.completed');
    assert.equal(last.response.output_text ?? (last.response.output[0] as any).content[0].text, 'Hello there!');
    assert.equal(last.response.usage?.input_tokens, 9);
    assert.equal(last.response.usage?.output_tokens, 3);
  });

  it('translates tools, tool_choice and parallel streamed function calls', async () => {
    chatUpstream.script({
      type: 'tool_calls',
      calls: [
        { id: 'call_a', name: 'get_weather', arguments: ['{"ci', 'ty": "Paris"}'] },
        { id: 'call_b', name: 'get_weather', arguments: ['{"city": "Lima"}'] },
      ],
    });
    const stream = client.responses.stream({ model: 'llama', input: 'weather in Paris and Lima', tools: [weather], tool_choice: { type: 'function', name: 'get_weather' } });
    const types: string[] = [];
    stream.on('event', (e) => types.push(e.type));
    const final = await stream.finalResponse();
    const body = chatUpstream.lastChatRequest().body;
    assert.deepEqual(body.tools, [{ type: 'function', function: { name: 'get_weather', description: 'Current weather for a city', parameters: weather.parameters } }]);
    assert.deepEqual(body.tool_choice, { type: 'function', function: { name: 'get_weather' } });
    assert.equal(final.output.length, 2);
    const [a, b] = final.output;
    assert.ok(a?.type === 'function_call' && b?.type === 'function_call');
    assert.deepEqual([a.call_id, a.name, a.arguments], ['call_a', 'get_weather', '{"city": "Paris"}']);
    assert.deepEqual([b.call_id, b.arguments], ['call_b', '{"city": "Lima"}']);
    assert.equal(types.filter((t) => t === 'response.function_call_arguments.delta').length, 3);
    assert.equal(types.filter((t) => t === 'response.output_item.done').length, 2);
    assert.equal(types.at(-1), 'response.completed');
  });

  it('sends function calls and their outputs back as assistant tool_calls and tool messages, images as image_url', async () => {
    chatUpstream.script({ type: 'text', pieces: ['Both sunny.'] });
    const r = await client.responses.create({
      model: 'llama',
      tools: [weather],
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'Weather here?' }, { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' }, { type: 'input_image', image_url: 'https://example.com/a.jpg', detail: 'low' }] },
        { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call', call_id: 'call_2', name: 'get_weather', arguments: '{"city":"Lima"}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
        { type: 'function_call_output', call_id: 'call_2', output: [{ type: 'input_text', text: 'also sunny' }] },
      ],
    });
    assert.equal(r.output_text, 'Both sunny.');
    assert.deepEqual(chatUpstream.lastChatRequest().body.messages, [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Weather here?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          { type: 'image_url', image_url: { url: 'https://example.com/a.jpg' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Lima"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      { role: 'tool', tool_call_id: 'call_2', content: 'also sunny' },
    ]);
  });

  it('maps finish_reason length to an incomplete response', async () => {
    chatUpstream.script({ type: 'text', pieces: ['cut', ' short'], finishReason: 'length' });
    const r = await client.responses.create({ model: 'llama', input: 'long story', max_output_tokens: 2 });
    assert.equal(r.status, 'incomplete');
    assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(chatUpstream.lastChatRequest().body.max_tokens, 2);
  });

  it('ends a stream cut mid-way with response.failed and an SDK error, and logs a stream_error', async () => {
    const gate = createGate();
    chatUpstream.script({ type: 'text', pieces: ['one ', 'two ', 'three'], pauseAfter: 2, gate, cutAfter: 2 });
    const stream = await client.responses.create({ model: 'llama', input: 'cut', stream: true }).withResponse();
    const requestId = stream.response.headers.get('x-request-id')!;
    const seen: ResponseStreamEvent[] = [];
    const err = await (async () => {
      for await (const ev of stream.data) {
        seen.push(ev);
        if (ev.type === 'response.output_text.delta' && seen.filter((e) => e.type === 'response.output_text.delta').length === 2) gate.open();
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof APIError, `expected the SDK to throw, saw ${seen.map((e) => e.type).join(', ')}`);
    assertCleanErrorText(err.message);
    const failed = seen.find((e) => e.type === 'response.failed');
    assert.ok(failed?.type === 'response.failed');
    assert.equal(failed.response.status, 'failed');
    assert.equal(failed.response.error?.code, 'server_error');
    assert.ok(!seen.some((e) => e.type === 'response.completed'));
    const rec = await srv.waitForRecord(requestId);
    assert.equal(rec.outcome, 'stream_error');
  });

  it('treats a stream that ends without [DONE] as a failure', async () => {
    chatUpstream.script({ type: 'text', pieces: ['partial'], omitDone: true });
    const final = client.responses.stream({ model: 'llama', input: 'no done' }).finalResponse();
    const err = await final.then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof APIError);
    assert.match(err.message, /ended the stream before it was complete/);
  });

  it("keeps the upstream's error status (429) before the stream starts", async () => {
    chatUpstream.script({ type: 'error', status: 429, body: openaiErrorJson(429, 'Rate limit reached for requests', 'requests', 'rate_limit_exceeded') });
    const err = await expectApiError(client.responses.create({ model: 'llama', input: 'hi', stream: true }), 429);
    assert.match(err.message, /Rate limit reached/);
  });
});

describe('responses door: request errors', () => {
  it('rejects what only OpenAI can serve with a 400 naming the parameter', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ previous_response_id: 'resp_1' }, 'previous_response_id'],
      [{ background: true }, 'background'],
      [{ tools: [{ type: 'web_search' }] }, 'tools[0].type'],
      // json_object and object schemas are emulated (test/structured-output.test.ts); a non-object root cannot be.
      [{ text: { format: { type: 'json_schema', name: 'list', schema: { type: 'array', items: { type: 'string' } } } } }, 'text.format'],
      [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0]'],
      [{ input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }] }, 'input[0].content[0].type'],
    ];
    for (const model of ['llama', 'mock']) {
      for (const [extra, param] of cases) {
        const err = await expectApiError(client.responses.create({ model, input: 'hi', ...extra } as any), 400, param);
        assert.equal(err.code, 'unsupported_parameter');
        assert.match(err.message, new RegExp(param.replace(/[[\].]/g, '\\$&')));
      }
    }
    assert.equal(chatUpstream.chatRequests().length, 0, 'nothing reached the upstream');
  });

  it('rejects malformed requests with a 400 naming the parameter', async () => {
    await expectApiError(client.responses.create({ model: 'mock', input: 42 } as any), 400, 'input');
    await expectApiError(client.responses.create({ model: 'mock' } as any), 400, 'input');
    await expectApiError(client.responses.create({ model: 'mock', input: 'x', temperature: 5 }), 400, 'temperature');
    await expectApiError(client.responses.create({ model: 'mock', input: [{ role: 'robot', content: 'x' }] } as any), 400, 'input[0].role');
    await expectApiError(client.responses.create({ model: 'mock', input: 'x', tool_choice: 7 } as any), 400, 'tool_choice');
  });

  it('answers an unknown model with 404 model_not_found', async () => {
    const err = await expectApiError(client.responses.create({ model: 'no-such-model', input: 'hi' }), 404, 'model');
    assert.equal(err.code, 'model_not_found');
  });
});
