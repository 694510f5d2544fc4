import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { assertCleanErrorText, CLIENT_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { createGate, openaiErrorJson, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * The official `@anthropic-ai/sdk` client -> gateway `/v1/messages` -> `openai` provider, which
 * translates through Chat Completions to a loopback OpenAI upstream (JSON and SSE): text, stream,
 * tool use and tool results, images, stop reasons, usage, and failures.
 */

const OPENAI_KEY = 'sk-openai-upstream-ANTHTEST-51c2';
const OPENAI_KEY_ENV = 'TEST_ANTHROPIC_TO_OPENAI_KEY';

let upstream: MockOpenAI;
let srv: StartedGateway;
let claude: Anthropic;

before(async () => {
  upstream = await startMockOpenAI();
  srv = await startGateway({
    providers: {
      openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: OPENAI_KEY_ENV },
      local: { type: 'openai-compatible', baseUrl: upstream.baseUrl },
    },
    models: {
      gpt: { provider: 'openai', model: 'gpt-4.1-2025-04-14' },
      llama: { provider: 'local', model: 'llama3.1:8b' },
    },
    config: {
      routing: { retry: { retries: 0 }, fallbackOn: [] },
    },
    env: { [OPENAI_KEY_ENV]: OPENAI_KEY },
    label: 'anthropic -> openai test configuration',
  });
  claude = new Anthropic({ baseURL: srv.url, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await upstream?.close();
});

beforeEach(() => upstream.reset());

const weatherTool = {
  name: 'get_weather',
  description: 'Get the current weather in a given location',
  input_schema: { type: 'object' as const, properties: { location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' } }, required: ['location'] },
};

describe('Anthropic client -> openai provider (translated through Chat Completions)', () => {
  it('answers a text message: system, multi-turn, sampling, usage with cached tokens', async () => {
    upstream.script({
      type: 'text',
      pieces: ['Paris is the capital of France.'],
      usage: { prompt_tokens: 2006, completion_tokens: 7, total_tokens: 2013, prompt_tokens_details: { cached_tokens: 1920 } } as any,
    });
    const msg = await claude.messages.create({
      model: 'gpt',
      max_tokens: 300,
      system: [{ type: 'text', text: 'You are a geography tutor.' }],
      temperature: 0.3,
      top_p: 0.8,
      stop_sequences: ['###'],
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello! Ask me anything.' },
        { role: 'user', content: [{ type: 'text', text: 'Capital of France?' }] },
      ],
      // This SDK release no longer types temperature/top_p; the wire still carries them.
    } as Anthropic.MessageCreateParamsNonStreaming);
    const body = upstream.lastChatRequest().body;
    assert.deepEqual(body, {
      model: 'gpt-4.1-2025-04-14',
      messages: [
        { role: 'system', content: 'You are a geography tutor.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello! Ask me anything.' },
        { role: 'user', content: 'Capital of France?' },
      ],
      max_completion_tokens: 300,
      temperature: 0.3,
      top_p: 0.8,
      stop: ['###'],
    });
    assert.equal(upstream.lastChatRequest().headers.authorization, `Bearer ${OPENAI_KEY}`);
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.model, 'gpt-4.1-2025-04-14');
    assert.deepEqual(msg.content.map((b) => (b.type === 'text' ? b.text : b.type)), ['Paris is the capital of France.']);
    assert.equal(msg.stop_reason, 'end_turn');
    // OpenAI's prompt_tokens include the cached ones; Anthropic's input_tokens do not.
    assert.equal(msg.usage.input_tokens, 86);
    assert.equal(msg.usage.cache_read_input_tokens, 1920);
    assert.equal(msg.usage.output_tokens, 7);
  });

  it('streams text with the Messages event sequence and the usage', async () => {
    upstream.script({ type: 'text', pieces: ['Hello', ' from', ' GPT'], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 } });
    const stream = claude.messages.stream({ model: 'gpt', max_tokens: 50, messages: [{ role: 'user', content: 'greet me' }] });
    const types: string[] = [];
    const deltas: string[] = [];
    stream.on('streamEvent', (ev) => {
      types.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') deltas.push(ev.delta.text);
    });
    const final = await stream.finalMessage();
    const body = upstream.lastChatRequest().body;
    assert.equal(body.stream, true);
    assert.deepEqual(body.stream_options, { include_usage: true });
    assert.deepEqual(deltas, ['Hello', ' from', ' GPT']);
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.ok(types.includes('content_block_start') && types.includes('content_block_stop') && types.includes('message_delta'));
    assert.equal(final.content[0]?.type === 'text' && final.content[0].text, 'Hello from GPT');
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, 3);
    assert.equal(final.usage.input_tokens, 11);
  });

  it('turns streamed tool calls into tool_use blocks with input_json_delta', async () => {
    upstream.script({ type: 'tool_calls', calls: [{ id: 'call_sf', name: 'get_weather', arguments: ['{"locat', 'ion": "San Francisco, CA"}'] }] });
    const stream = claude.messages.stream({ model: 'gpt', max_tokens: 200, tools: [weatherTool], tool_choice: { type: 'tool', name: 'get_weather' }, messages: [{ role: 'user', content: 'Weather in SF?' }] });
    const jsonDeltas: string[] = [];
    stream.on('streamEvent', (ev) => {
      if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') jsonDeltas.push(ev.delta.partial_json);
    });
    const final = await stream.finalMessage();
    const body = upstream.lastChatRequest().body;
    assert.deepEqual(body.tools, [{ type: 'function', function: { name: 'get_weather', description: weatherTool.description, parameters: weatherTool.input_schema } }]);
    assert.deepEqual(body.tool_choice, { type: 'function', function: { name: 'get_weather' } });
    assert.equal(jsonDeltas.join(''), '{"location": "San Francisco, CA"}');
    assert.equal(final.stop_reason, 'tool_use');
    const use = final.content.find((b) => b.type === 'tool_use');
    assert.ok(use?.type === 'tool_use');
    assert.equal(use.id, 'call_sf');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { location: 'San Francisco, CA' });
  });

  it('answers a tool use without streaming, then carries the tool_result back as a tool message', async () => {
    upstream.script({ type: 'tool_calls', calls: [{ id: 'call_a', name: 'get_weather', arguments: ['{"location":"Paris"}'] }] });
    const first = await claude.messages.create({ model: 'gpt', max_tokens: 100, tools: [weatherTool], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    assert.ok(use?.type === 'tool_use');
    assert.deepEqual(use.input, { location: 'Paris' });

    upstream.script({ type: 'text', pieces: ['It is 15 C in Paris.'] });
    const second = await claude.messages.create({
      model: 'gpt',
      max_tokens: 100,
      tools: [weatherTool],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '15 C, cloudy' }] },
      ],
    });
    assert.equal(second.content[0]?.type === 'text' && second.content[0].text, 'It is 15 C in Paris.');
    assert.deepEqual(upstream.lastChatRequest().body.messages, [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_a', content: '15 C, cloudy' },
    ]);
  });

  it('sends base64 and URL images as image_url; max_tokens for openai-compatible; length -> max_tokens', async () => {
    upstream.script({ type: 'text', pieces: ['A cat'], finishReason: 'length' });
    const msg = await claude.messages.create({
      model: 'llama',
      max_tokens: 2,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
            { type: 'text', text: 'What is this?' },
          ],
        },
      ],
    });
    const body = upstream.lastChatRequest().body;
    assert.equal(body.max_tokens, 2);
    assert.equal(body.max_completion_tokens, undefined);
    assert.deepEqual(body.messages[0].content, [
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
      { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
      { type: 'text', text: 'What is this?' },
    ]);
    assert.equal(msg.stop_reason, 'max_tokens');
  });

  it('ends a stream the upstream cut with an error event the SDK throws, and logs a stream_error', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['one ', 'two ', 'three'], pauseAfter: 2, gate, cutAfter: 2 });
    const { data: stream, response } = await claude.messages.create({ model: 'gpt', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'cut' }] }).withResponse();
    const seen: string[] = [];
    const err = await (async () => {
      for await (const ev of stream) {
        seen.push(ev.type);
        if (ev.type === 'content_block_delta' && seen.filter((t) => t === 'content_block_delta').length === 2) gate.open();
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error, `expected the SDK to throw, saw ${seen.join(', ')}`);
    assertCleanErrorText(err.message);
    assert.ok(!seen.includes('message_stop'));
    const rec = await srv.recordOf(response.headers.get('x-request-id')!);
    assert.equal(rec.outcome, 'stream_error');
  });

  it("answers an upstream error in Anthropic's shape with its status (429), and a 401 as 502", async () => {
    upstream.script({ type: 'error', status: 429, body: openaiErrorJson(429, 'Rate limit reached for gpt-4.1', 'requests', 'rate_limit_exceeded') });
    const limited = await claude.messages.create({ model: 'gpt', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(limited instanceof Anthropic.RateLimitError);
    assert.equal((limited.error as any)?.error?.type, 'rate_limit_error');
    upstream.script({ type: 'error', status: 401, body: openaiErrorJson(401, `Incorrect API key provided: ${OPENAI_KEY.slice(0, 12)}`) });
    const auth = await claude.messages.create({ model: 'gpt', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(auth instanceof Anthropic.APIError);
    assert.equal(auth.status, 502);
    assert.ok(!JSON.stringify(auth.error).includes(OPENAI_KEY.slice(0, 12)));
  });
});
