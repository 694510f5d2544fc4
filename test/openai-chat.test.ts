import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { APIError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { assertCleanErrorText, CLIENT_KEY, collectStream, emptyCollected, addChunk, startTestGateway, UPSTREAM_KEY, UPSTREAM_MODEL, type TestGateway } from './helpers/gateway.ts';
import { createGate, deadBaseUrl, openaiErrorJson, UPSTREAM_MODELS, type MockOpenAI } from './helpers/mock-openai.ts';

/** The official openai SDK against the gateway: the mock provider, and the openai provider over a mock upstream. */

let upstream: MockOpenAI;
let gw: TestGateway;
let client: OpenAI;

before(async () => {
  gw = await startTestGateway({ deadBaseUrl: await deadBaseUrl(), maxBodyBytes: 16 * 1024 });
  upstream = gw.upstream!;
  client = gw.client();
});

after(() => gw?.close());

beforeEach(() => upstream.reset());

interface ExpectedError {
  cls: new (...args: any[]) => APIError;
  status: number | undefined;
  code?: string | null;
  type?: string;
  param?: string | null;
}

/** Await a call that must fail with an OpenAI SDK error of the given shape; returns the error. */
async function expectApiError(p: Promise<unknown>, want: ExpectedError): Promise<APIError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, 'expected the call to fail');
  assert.ok(caught instanceof want.cls, `expected ${want.cls.name}, got ${(caught as Error).constructor.name}: ${(caught as Error).message}`);
  const err = caught as APIError;
  assert.equal(err.status, want.status);
  if (want.code !== undefined) assert.equal(err.code, want.code);
  if (want.type !== undefined) assert.equal(err.type, want.type);
  if (want.param !== undefined) assert.equal(err.param, want.param);
  assertCleanErrorText(`${err.message} ${JSON.stringify(err.error ?? null)}`);
  return err;
}

async function rawPost(body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}): Promise<{ res: Response; text: string; json: any }> {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, ...headers },
    body,
    // @ts-expect-error duplex is required by Node's fetch for streamed bodies but missing from the DOM types
    duplex: 'half',
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { res, text, json };
}

function assertOpenAIErrorShape(json: any, want: { type: string; code: string | null; param?: string | null }): void {
  assert.equal(typeof json?.error, 'object', `not an OpenAI error body: ${JSON.stringify(json)}`);
  assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof json.error.message, 'string');
  assert.ok(json.error.message.length > 0);
  assert.equal(json.error.type, want.type);
  assert.equal(json.error.code, want.code);
  if (want.param !== undefined) assert.equal(json.error.param, want.param);
}

const weatherTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  },
};

const timeTool: ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] } },
};

describe('mock provider through the openai SDK', () => {
  it('answers a non-streaming chat with the echoed text, finish_reason and usage', async () => {
    const { data, response, request_id } = await client.chat.completions
      .create({ model: 'mock', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello gateway world' }] })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.object, 'chat.completion');
    assert.match(data.id, /^chatcmpl-/);
    assert.equal(data.model, 'mock-echo-1');
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0]!.index, 0);
    assert.equal(data.choices[0]!.message.role, 'assistant');
    assert.equal(data.choices[0]!.message.content, 'Hello gateway world');
    assert.equal(data.choices[0]!.finish_reason, 'stop');
    // One token per word: 2 system + 3 user words in, 3 words out.
    assert.deepEqual(data.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
    assert.ok(request_id, 'x-request-id header');
    assert.equal(response.headers.get('x-gateway-provider'), 'mock');
    assert.equal(response.headers.get('x-gateway-model'), 'mock-echo-1');
  });

  it('streams the echo word by word with include_usage: a usage chunk with empty choices comes last', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock',
      messages: [{ role: 'user', content: 'stream me these five words' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const got = await collectStream(stream);
    assert.equal(got.content, 'stream me these five words');
    assert.equal(got.finishReason, 'stop');
    assert.equal(got.chunks[0]!.choices[0]!.delta.role, 'assistant');
    // Word by word: more content chunks than one.
    assert.ok(got.chunks.filter((c) => c.choices[0]?.delta.content).length >= 5);
    const last = got.chunks[got.chunks.length - 1]!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 });
    for (const c of got.chunks.slice(0, -1)) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.usage, null, 'non-final chunks carry usage: null');
      assert.equal(c.id, last.id, 'every chunk has the same id');
    }
  });

  it('streams without a usage chunk when include_usage is not asked for', async () => {
    const stream = await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'no usage please' }], stream: true });
    const got = await collectStream(stream);
    assert.equal(got.content, 'no usage please');
    assert.equal(got.finishReason, 'stop');
    assert.equal(got.usage, undefined);
    for (const c of got.chunks) {
      assert.ok(!('usage' in c), `unexpected usage field in ${JSON.stringify(c)}`);
      assert.equal(c.choices.length, 1);
    }
  });

  it('stops at max_tokens with finish_reason length', async () => {
    const res = await client.chat.completions.create({ model: 'mock', max_tokens: 2, messages: [{ role: 'user', content: 'one two three four' }] });
    assert.equal(res.choices[0]!.message.content, 'one two ');
    assert.equal(res.choices[0]!.finish_reason, 'length');
    assert.equal(res.usage?.completion_tokens, 2);
  });
});

describe('openai provider over the mock upstream', () => {
  it('passes a non-streaming answer through with the upstream usage, using the gateway credential', async () => {
    upstream.script({ type: 'text', pieces: ['The answer', ' is 42.'], usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } });
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: 'You answer questions.' },
      { role: 'user', content: 'What is the answer?' },
    ];
    const { data, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, temperature: 0.2, seed: 7, user: 'user-123' }).withResponse();
    assert.equal(data.choices[0]!.message.content, 'The answer is 42.');
    assert.equal(data.choices[0]!.finish_reason, 'stop');
    assert.equal(data.usage?.prompt_tokens, 11);
    assert.equal(data.usage?.completion_tokens, 7);
    assert.equal(data.usage?.total_tokens, 18);
    assert.equal(response.headers.get('x-gateway-provider'), 'openai');

    const sent = upstream.lastChatRequest();
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.ok(!JSON.stringify(sent.headers).includes(CLIENT_KEY), 'the client key must not reach the upstream');
    assert.equal(sent.headers['x-request-id'], response.headers.get('x-request-id'));
    assert.equal(sent.body.model, UPSTREAM_MODEL, 'model id replaced by the upstream id');
    assert.deepEqual(sent.body.messages, messages);
    assert.equal(sent.body.temperature, 0.2);
    assert.equal(sent.body.seed, 7, 'unknown fields pass through');
    assert.equal(sent.body.user, 'user-123');
    assert.equal(sent.body.stream_options, undefined);
  });

  it('streams with include_usage: content, then a last chunk with the upstream usage', async () => {
    upstream.script({ type: 'text', pieces: ['Hel', 'lo ', 'there', '!'], usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 } });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const got = await collectStream(stream);
    assert.equal(got.content, 'Hello there!');
    assert.equal(got.finishReason, 'stop');
    const last = got.chunks[got.chunks.length - 1]!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    const sent = upstream.lastChatRequest();
    assert.equal(sent.body.stream, true);
    assert.deepEqual(sent.body.stream_options, { include_usage: true });
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
  });

  it('asks the upstream for usage anyway but hides it from a client that did not ask', async () => {
    upstream.script({ type: 'text', pieces: ['quiet ', 'stream'] });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], stream: true });
    const got = await collectStream(stream);
    assert.equal(got.content, 'quiet stream');
    assert.equal(got.finishReason, 'stop');
    assert.equal(got.usage, undefined);
    for (const c of got.chunks) {
      assert.ok(!('usage' in c), `unexpected usage field in ${JSON.stringify(c)}`);
      assert.ok(c.choices.length > 0, 'no usage-only chunk');
    }
    assert.deepEqual(upstream.lastChatRequest().body.stream_options, { include_usage: true }, 'include_usage forced upstream');
  });

  it('forces include_usage upstream even when the client sets it to false, and keeps other stream_options', async () => {
    upstream.script({ type: 'text', pieces: ['a', 'b'] });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'go' }],
      stream: true,
      stream_options: { include_usage: false, include_obfuscation: false },
    });
    const got = await collectStream(stream);
    assert.equal(got.content, 'ab');
    assert.equal(got.usage, undefined);
    assert.deepEqual(upstream.lastChatRequest().body.stream_options, { include_usage: true, include_obfuscation: false });
  });
});

describe('tools', () => {
  const question = 'call get_weather for Paris';

  it('mock provider: returns a tool call (non-streaming)', async () => {
    const res = await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: question }], tools: [timeTool, weatherTool] });
    const choice = res.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls?.length, 1);
    const call = choice.message.tool_calls![0]!;
    assert.equal(call.type, 'function');
    assert.ok(call.type === 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: question });
    assert.match(call.id, /^call_/);
  });

  it('mock provider: streams a tool call whose assembled arguments equal the non-streaming ones', async () => {
    const stream = await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: question }], tools: [weatherTool], stream: true });
    const got = await collectStream(stream);
    assert.equal(got.finishReason, 'tool_calls');
    assert.equal(got.content, '');
    assert.equal(got.toolCalls.length, 1);
    assert.equal(got.toolCalls[0]!.name, 'get_weather');
    assert.match(got.toolCalls[0]!.id, /^call_/);
    assert.deepEqual(JSON.parse(got.toolCalls[0]!.arguments), { city: question });
  });

  it('mock provider: answers from a tool result (round trip)', async () => {
    const first = await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: question }], tools: [weatherTool] });
    const call = first.choices[0]!.message.tool_calls![0]!;
    const second = await client.chat.completions.create({
      model: 'mock',
      tools: [weatherTool],
      messages: [
        { role: 'user', content: question },
        { role: 'assistant', content: null, tool_calls: first.choices[0]!.message.tool_calls },
        { role: 'tool', tool_call_id: call.id, content: '18C and sunny' },
      ],
    });
    assert.equal(second.choices[0]!.message.content, 'get_weather returned: 18C and sunny');
    assert.equal(second.choices[0]!.finish_reason, 'stop');
    assert.equal(second.choices[0]!.message.tool_calls, undefined);
  });

  it('openai provider: passes a tool call through (non-streaming)', async () => {
    upstream.script({ type: 'tool_calls', calls: [{ id: 'call_Abc123', name: 'get_weather', arguments: ['{"city"', ':"Par', 'is"}'] }] });
    const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weatherTool], tool_choice: 'auto' });
    const choice = res.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.deepEqual(choice.message.tool_calls, [{ id: 'call_Abc123', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
    const sent = upstream.lastChatRequest().body;
    assert.deepEqual(sent.tools, [weatherTool]);
    assert.equal(sent.tool_choice, 'auto');
  });

  it('openai provider: streams parallel tool calls whose assembled arguments equal the upstream fragments', async () => {
    const calls = [
      { id: 'call_one', name: 'get_weather', arguments: ['{"ci', 'ty": "Pa', 'ris"}'] },
      { id: 'call_two', name: 'get_time', arguments: ['{"tz":', ' "Europe/', 'Paris"}'] },
    ];
    upstream.script({ type: 'tool_calls', calls });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather and time in Paris?' }], tools: [weatherTool, timeTool], stream: true, stream_options: { include_usage: true } });
    const got = await collectStream(stream);
    assert.equal(got.finishReason, 'tool_calls');
    assert.deepEqual(
      got.toolCalls,
      calls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments.join('') })),
    );
    assert.deepEqual(JSON.parse(got.toolCalls[1]!.arguments), { tz: 'Europe/Paris' });
    assert.ok(got.usage, 'usage chunk at the end');
    // The fragments were not merged: the client saw each one.
    const fragments = got.chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? [])).filter((t) => t.function?.arguments);
    assert.equal(fragments.length, 6);
  });

  it("openai provider: the SDK's own stream helper assembles the streamed tool call", async () => {
    upstream.script({ type: 'tool_calls', calls: [{ id: 'call_helper', name: 'get_weather', arguments: ['{', '"city":', '"Oslo"', '}'] }] });
    const runner = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools: [weatherTool] });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
    const call = final.choices[0]!.message.tool_calls?.[0];
    assert.ok(call && call.type === 'function');
    assert.equal(call.id, 'call_helper');
    assert.equal(call.function.name, 'get_weather');
    assert.equal(call.function.arguments, '{"city":"Oslo"}');
  });

  it('openai provider: sends the tool result round trip upstream as the client wrote it', async () => {
    upstream.script({ type: 'text', pieces: ['It is ', '18C in Paris.'] });
    const messages: ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_Abc123', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_Abc123', content: '{"temp_c":18}' },
    ];
    const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, tools: [weatherTool] });
    assert.equal(res.choices[0]!.message.content, 'It is 18C in Paris.');
    assert.deepEqual(upstream.lastChatRequest().body.messages, messages);
  });
});

describe('models and health', () => {
  it('lists the configured models whose provider is live', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      ids.push(m.id);
      assert.equal(m.object, 'model');
    }
    assert.deepEqual(ids.sort(), ['down', 'gpt-4o-mini', 'mock', 'mock-slow']);
    const m = await client.models.retrieve('gpt-4o-mini');
    assert.equal(m.id, 'gpt-4o-mini');
    assert.equal(m.owned_by, 'openai');
    await expectApiError(client.models.retrieve('gpt-off'), { cls: OpenAI.NotFoundError, status: 404, code: 'model_not_found' });
  });

  it('GET /health answers 200', async () => {
    const res = await fetch(`${gw.url}/health`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { status: string; models: number };
    assert.equal(body.status, 'ok');
    assert.equal(body.models, 4);
    assert.ok(res.headers.get('x-request-id'));
    const head = await fetch(`${gw.url}/health`, { method: 'HEAD' });
    assert.equal(head.status, 200);
  });
});

describe('request errors', () => {
  it('malformed JSON gets a 400 in OpenAI error shape', async () => {
    const { res, text, json } = await rawPost('{"model": "mock", "messages": [');
    assert.equal(res.status, 400);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.ok(res.headers.get('x-request-id'));
    assertOpenAIErrorShape(json, { type: 'invalid_request_error', code: 'invalid_json' });
    assertCleanErrorText(text);
  });

  it('an empty body gets a 400', async () => {
    const { res, json } = await rawPost('');
    assert.equal(res.status, 400);
    assertOpenAIErrorShape(json, { type: 'invalid_request_error', code: 'invalid_json' });
  });

  it('an unknown model gets 404 model_not_found and never reaches an upstream', async () => {
    await expectApiError(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }), {
      cls: OpenAI.NotFoundError,
      status: 404,
      code: 'model_not_found',
      type: 'invalid_request_error',
      param: 'model',
    });
    assert.equal(upstream.requests.length, 0);
  });

  it('a model whose provider is not enabled gets 404', async () => {
    await expectApiError(client.chat.completions.create({ model: 'gpt-off', messages: [{ role: 'user', content: 'hi' }] }), {
      cls: OpenAI.NotFoundError,
      status: 404,
      code: 'model_not_available',
      param: 'model',
    });
    assert.equal(upstream.requests.length, 0);
  });

  it('a missing model or missing/empty messages gets 400 naming the parameter', async () => {
    await expectApiError(client.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] } as unknown as ChatCompletionCreateParamsNonStreaming), {
      cls: OpenAI.BadRequestError,
      status: 400,
      type: 'invalid_request_error',
      param: 'model',
    });
    await expectApiError(client.chat.completions.create({ model: 'mock' } as unknown as ChatCompletionCreateParamsNonStreaming), {
      cls: OpenAI.BadRequestError,
      status: 400,
      type: 'invalid_request_error',
      param: 'messages',
    });
    await expectApiError(client.chat.completions.create({ model: 'mock', messages: [] }), { cls: OpenAI.BadRequestError, status: 400, param: 'messages' });
    await expectApiError(client.chat.completions.create({ model: 'mock', messages: [{ role: 'wizard', content: 'hi' }] } as unknown as ChatCompletionCreateParamsNonStreaming), {
      cls: OpenAI.BadRequestError,
      status: 400,
      param: 'messages[0].role',
    });
    await expectApiError(client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'hi' }], temperature: 7 }), {
      cls: OpenAI.BadRequestError,
      status: 400,
      param: 'temperature',
    });
  });

  it('a body over server.maxBodyBytes gets 413, declared or streamed', async () => {
    const big = 'x'.repeat(20 * 1024);
    const err = await expectApiError(client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: big }] }), {
      cls: OpenAI.APIError,
      status: 413,
      code: 'request_too_large',
      type: 'invalid_request_error',
    });
    assert.match(err.message, /16384/);

    // Without a content-length (chunked upload) the limit is enforced while reading.
    const payload = new TextEncoder().encode(JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: big }] }));
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        for (let i = 0; i < payload.length; i += 4096) ctrl.enqueue(payload.subarray(i, i + 4096));
        ctrl.close();
      },
    });
    const { res, json } = await rawPost(body);
    assert.equal(res.status, 413);
    assertOpenAIErrorShape(json, { type: 'invalid_request_error', code: 'request_too_large' });
    assert.equal(upstream.requests.length, 0);
  });

  it('wrong method and unknown routes get OpenAI-shaped 405 and 404', async () => {
    const r405 = await fetch(`${gw.url}/v1/chat/completions`);
    assert.equal(r405.status, 405);
    assertOpenAIErrorShape(await r405.json(), { type: 'invalid_request_error', code: 'method_not_allowed' });
    const r404 = await fetch(`${gw.url}/v1/nothing-here`);
    assert.equal(r404.status, 404);
    assertOpenAIErrorShape(await r404.json(), { type: 'invalid_request_error', code: 'unknown_route' });
  });
});

describe('upstream errors', () => {
  const ask = () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  const askStream = () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true });

  it('upstream 500 with an OpenAI error body: the client gets that status and body', async () => {
    const upstreamBody = openaiErrorJson(500, 'The server had an error while processing your request. Sorry about that!', 'server_error');
    upstream.script({ type: 'error', status: 500, body: upstreamBody });
    const err = await expectApiError(ask(), { cls: OpenAI.InternalServerError, status: 500, type: 'server_error' });
    assert.deepEqual(err.error, upstreamBody.error);
    assert.ok(err.requestID, 'x-request-id on the error');
  });

  it('upstream 500 with a non-JSON body: 502 in OpenAI shape, the HTML not passed on', async () => {
    upstream.script({ type: 'error', status: 500, body: '<html><body>500 Internal Server Error</body></html>' });
    const { res, text, json } = await rawPost(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(res.status, 502);
    assertOpenAIErrorShape(json, { type: 'api_error', code: 'upstream_500' });
    assert.ok(!text.includes('<html>'));
    assertCleanErrorText(text);
  });

  it('upstream 400 is passed through with its own code', async () => {
    const upstreamBody = openaiErrorJson(400, "This model's maximum context length is 128000 tokens.", 'invalid_request_error', 'context_length_exceeded', 'messages');
    upstream.script({ type: 'error', status: 400, body: upstreamBody });
    const err = await expectApiError(ask(), { cls: OpenAI.BadRequestError, status: 400, code: 'context_length_exceeded', param: 'messages' });
    assert.equal(err.error && (err.error as { message: string }).message, upstreamBody.error.message);
  });

  it('upstream 429 stays 429 with retry-after', async () => {
    upstream.script({ type: 'error', status: 429, body: openaiErrorJson(429, 'Rate limit reached for gpt-4o-mini.', 'requests', 'rate_limit_exceeded'), headers: { 'retry-after': '3' } });
    const err = await expectApiError(askStream(), { cls: OpenAI.RateLimitError, status: 429, code: 'rate_limit_exceeded' });
    assert.equal(err.headers?.get('retry-after'), '3');
  });

  it('upstream 401 becomes 502 without the upstream message (which quotes the key)', async () => {
    const leaky = openaiErrorJson(401, `Incorrect API key provided: ${UPSTREAM_KEY.slice(0, 12)}****${UPSTREAM_KEY.slice(-4)}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', 'invalid_api_key');
    for (const stream of [false, true]) {
      upstream.script({ type: 'error', status: 401, body: leaky });
      const err = await expectApiError(stream ? askStream() : ask(), { cls: OpenAI.InternalServerError, status: 502, code: 'upstream_auth_failed', type: 'api_error' });
      assert.ok(!(err instanceof OpenAI.AuthenticationError));
      assert.ok(!JSON.stringify(err.error).includes('Incorrect API key'));
    }
    upstream.script({ type: 'error', status: 403, body: openaiErrorJson(403, 'Project does not have access', 'invalid_request_error') });
    await expectApiError(ask(), { cls: OpenAI.InternalServerError, status: 502, code: 'upstream_auth_failed' });
  });

  it('an unreachable upstream gets 502 upstream_unreachable', async () => {
    const err = await expectApiError(client.chat.completions.create({ model: 'down', messages: [{ role: 'user', content: 'hi' }] }), {
      cls: OpenAI.InternalServerError,
      status: 502,
      code: 'upstream_unreachable',
      type: 'api_error',
    });
    assert.ok(!err.message.includes('127.0.0.1'), 'no upstream address in the message');
  });

  it('an upstream stream cut mid-way makes the client stream fail, after the content that did arrive', async () => {
    // The upstream sends two pieces, waits until the client has them, then drops the connection.
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['one ', 'two ', 'three ', 'four'], pauseAfter: 2, gate, cutAfter: 2 });
    const stream = await askStream();
    const it = stream[Symbol.asyncIterator]();
    const got = emptyCollected();
    while (got.content !== 'one two ') {
      const r = await it.next();
      assert.ok(!r.done, 'stream ended before the first pieces arrived');
      addChunk(got, r.value);
    }
    gate.open();
    const err = await expectApiError(
      (async () => {
        for (let r = await it.next(); !r.done; r = await it.next()) addChunk(got, r.value);
      })(),
      { cls: OpenAI.APIError, status: undefined, code: 'upstream_stream_error', type: 'api_error' },
    );
    assert.ok(!(err instanceof OpenAI.APIConnectionError), 'an error event in the stream, not a broken connection');
    assert.equal(got.content, 'one two ');
    assert.equal(got.finishReason, null);
  });

  it('an upstream stream that ends without [DONE] makes the client stream fail', async () => {
    upstream.script({ type: 'text', pieces: ['partial ', 'answer'], omitDone: true });
    const stream = await askStream();
    const got = emptyCollected();
    await expectApiError(
      (async () => {
        for await (const c of stream) addChunk(got, c);
      })(),
      { cls: OpenAI.APIError, status: undefined, code: 'upstream_stream_truncated' },
    );
    assert.equal(got.content, 'partial answer');
  });

  it('a non-streaming upstream body cut mid-way is a failed attempt: the client gets a clean 502, never the broken body', async () => {
    const script = () =>
      upstream.script({
        type: 'handler',
        async handle(_req, res) {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' });
          res.write('{"id":"chatcmpl-cut","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"half');
          await new Promise((r) => setTimeout(r, 20));
          res.socket?.destroy();
        },
      });
    script();
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
    // The gateway reads a non-streamed answer whole before it commits (so it could fall back): the cut is an upstream failure.
    assert.equal(res.status, 502);
    const text = await res.text();
    assert.doesNotMatch(text, /half/);
    assert.equal(JSON.parse(text).error.type, 'api_error');
    script();
    await assert.rejects(ask(), (err: unknown) => err instanceof OpenAI.APIError && err.status === 502);
  });
});

describe('the mock upstream itself (the SDK pointed straight at it)', () => {
  it('speaks the wire format the SDK expects: models, chat, streamed tool calls with usage', async () => {
    const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'sk-direct', maxRetries: 0 });
    const models: string[] = [];
    for await (const m of direct.models.list()) models.push(m.id);
    assert.deepEqual(models, UPSTREAM_MODELS);

    const res = await direct.chat.completions.create({ model: 'gpt-x', messages: [{ role: 'user', content: 'echo this' }] });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.choices[0]!.message.content, 'echo this');
    assert.equal(res.usage?.completion_tokens, 2);

    upstream.script({ type: 'tool_calls', calls: [{ id: 'call_1', name: 'get_time', arguments: ['{"tz"', ':"UTC"}'] }] });
    const got = await collectStream(
      await direct.chat.completions.create({ model: 'gpt-x', messages: [{ role: 'user', content: 'time?' }], tools: [timeTool], stream: true, stream_options: { include_usage: true } }),
    );
    assert.deepEqual(got.toolCalls, [{ id: 'call_1', name: 'get_time', arguments: '{"tz":"UTC"}' }]);
    assert.equal(got.finishReason, 'tool_calls');
    assert.ok(got.usage && got.usage.total_tokens > 0);
    assert.equal(upstream.lastChatRequest().headers.authorization, 'Bearer sk-direct');
  });
});
