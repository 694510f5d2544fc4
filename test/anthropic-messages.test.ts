import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { anthropicMessagesDoor } from '../shared/wire/anthropic-messages/door.ts';
import type { StreamEvent } from '../shared/core/types.ts';
import { RequestTrace, type RequestRecord } from '../shared/telemetry/record.ts';
import { assertCleanErrorText, CLIENT_KEY, collectStream, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { anthropicErrorJson, startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { createGate, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * The `/v1/messages` front door and the `anthropic` provider, driven by the official
 * `@anthropic-ai/sdk` and `openai` clients against a loopback Anthropic upstream:
 * pass-through (Anthropic client -> Anthropic upstream), translation both ways (Anthropic client
 * -> mock provider, OpenAI client -> Anthropic upstream), errors, and count_tokens.
 */

const ANTHROPIC_KEY = 'sk-ant-upstream-TESTKEY-3e8d1f0a9c';
const ANTHROPIC_KEY_ENV = 'TEST_UPSTREAM_ANTHROPIC_KEY';
const OPENAI_KEY_ENV = 'TEST_UPSTREAM_OPENAI_KEY_2';
const CLAUDE_ID = 'claude-sonnet-4-5-20250929';

let upstream: MockAnthropic;
let openaiUpstream: MockOpenAI;
let srv: StartedGateway;
let claude: Anthropic;
/** What the Anthropic SDK client last sent (URL and headers), seen through its fetch. */
let sentByClient: { url: string; headers: Headers } | undefined;

before(async () => {
  upstream = await startMockAnthropic({ apiKey: ANTHROPIC_KEY });
  openaiUpstream = await startMockOpenAI();
  srv = await startGateway({
    providers: {
      mock: { type: 'mock', wordDelayMs: 1 },
      anthropic: { type: 'anthropic', baseUrl: upstream.baseUrl, apiKeyEnv: ANTHROPIC_KEY_ENV, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      'anthropic-badkey': { type: 'anthropic', baseUrl: upstream.baseUrl, apiKeyEnv: 'TEST_ANTHROPIC_WRONG_KEY' },
      'anthropic-off': { type: 'anthropic', baseUrl: upstream.baseUrl, apiKeyEnv: 'TEST_ANTHROPIC_KEY_NOT_SET' },
      openai: { type: 'openai', baseUrl: openaiUpstream.baseUrl, apiKeyEnv: OPENAI_KEY_ENV },
    },
    models: {
      mock: { provider: 'mock', model: 'mock-echo-1' },
      claude: { provider: 'anthropic', model: CLAUDE_ID },
      'claude-badkey': { provider: 'anthropic-badkey', model: CLAUDE_ID },
      'claude-off': { provider: 'anthropic-off', model: CLAUDE_ID },
      gpt: { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
    },
    config: {
      server: { maxBodyBytes: 256 * 1024 },
      // One call per request, so each scripted upstream answer is the one the client sees.
      routing: { retry: { retries: 0 }, fallbackOn: [] },
    },
    env: { [ANTHROPIC_KEY_ENV]: ANTHROPIC_KEY, TEST_ANTHROPIC_WRONG_KEY: 'sk-ant-wrong-key-000', [OPENAI_KEY_ENV]: 'sk-openai-upstream-x' },
    label: 'anthropic test configuration',
  });
  claude = new Anthropic({
    baseURL: srv.url,
    apiKey: CLIENT_KEY,
    maxRetries: 0,
    timeout: 20_000,
    fetch: (url, init) => {
      sentByClient = { url: String(url), headers: new Headers(init?.headers) };
      return fetch(url, init);
    },
  });
});

after(async () => {
  await srv?.close();
  await upstream?.close();
  await openaiUpstream?.close();
});

beforeEach(() => {
  upstream.reset();
  openaiUpstream.reset();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ res: Response; text: string; json: any }> {
  const res = await fetch(`${srv.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
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

/** `event:` names of an SSE body, in order. */
function eventNames(sse: string): string[] {
  return [...sse.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]!);
}

function assertAnthropicError(json: any, type: string, messageIncludes?: string): void {
  assert.equal(json?.type, 'error', `not an Anthropic error body: ${JSON.stringify(json)}`);
  assert.equal(json.error?.type, type);
  assert.equal(typeof json.error.message, 'string');
  if (messageIncludes) assert.ok(json.error.message.includes(messageIncludes), `message "${json.error.message}" should include "${messageIncludes}"`);
  assertCleanErrorText(JSON.stringify(json));
}

async function expectSdkError<T extends new (...a: any[]) => Error>(p: Promise<unknown>, cls: T): Promise<InstanceType<T>> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${(caught as Error)?.constructor?.name}: ${(caught as Error)?.message}`);
  return caught as InstanceType<T>;
}

const weatherTool = {
  name: 'get_weather',
  description: 'Get the current weather in a given location',
  input_schema: { type: 'object' as const, properties: { location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' } }, required: ['location'] },
};

describe('Anthropic client -> anthropic provider (pass-through)', () => {
  it('sends the body unchanged but for the model, with the gateway key and the client Anthropic headers', async () => {
    upstream.script({ type: 'text', pieces: ['Hello', ' from', ' Claude'], usage: { input_tokens: 12, cache_creation_input_tokens: 3, cache_read_input_tokens: 100, output_tokens: 3 } });
    const params = {
      model: 'claude',
      max_tokens: 256,
      system: [{ type: 'text' as const, text: 'You are terse.', cache_control: { type: 'ephemeral' as const } }],
      messages: [{ role: 'user' as const, content: 'Say hello' }],
      temperature: 0.2,
      metadata: { user_id: 'user-42' },
    };
    const { data, response } = await claude.messages.create(params, { headers: { 'anthropic-beta': 'prompt-caching-2024-07-31,context-1m-2025-08-07' } }).withResponse();
    assert.equal(data.content[0]?.type, 'text');
    assert.equal((data.content[0] as Anthropic.TextBlock).text, 'Hello from Claude');
    assert.equal(data.stop_reason, 'end_turn');
    assert.equal(data.usage.cache_read_input_tokens, 100);
    assert.equal(response.headers.get('x-gateway-provider'), 'anthropic');

    const up = upstream.lastMessageRequest();
    assert.deepEqual(up.body, { ...params, model: CLAUDE_ID }, 'every field but model reaches the upstream untouched');
    assert.deepEqual(Object.keys(up.body), Object.keys(params), 'field order kept');
    assert.equal(up.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(up.headers.authorization, undefined);
    // The SDK sends its key as x-api-key or Authorization: Bearer (depending on version and host).
    assert.ok(`${sentByClient?.headers.get('x-api-key')} ${sentByClient?.headers.get('authorization')}`.includes(CLIENT_KEY));
    assert.ok(sentByClient?.headers.get('anthropic-version'));
    assert.equal(up.headers['anthropic-version'], sentByClient?.headers.get('anthropic-version'), "the client's anthropic-version is forwarded");
    assert.equal(up.headers['anthropic-beta'], 'prompt-caching-2024-07-31,context-1m-2025-08-07');
    assert.ok(!JSON.stringify(up.headers).includes(CLIENT_KEY), 'the client key never goes upstream');

    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.frontDoor, 'anthropic-messages');
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.upstreamModel, CLAUDE_ID);
    // Neutral usage counts cached input as input: 12 + 3 + 100.
    assert.equal(rec.inputTokens, 115);
    assert.equal(rec.cacheReadTokens, 100);
    assert.equal(rec.cacheWriteTokens, 3);
    assert.equal(rec.outputTokens, 3);
  });

  it('streams the upstream SSE through byte for byte', async () => {
    upstream.script({ type: 'text', pieces: ['Bonjour', ' 🌍', ' à', ' vous'], usage: { input_tokens: 9, output_tokens: 4 } });
    const { res, text } = await post('/v1/messages', { model: 'claude', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'Salut' }] });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const up = upstream.lastMessageRequest();
    assert.equal(text, up.sent, 'the client gets exactly the bytes the upstream sent');
    assert.deepEqual(eventNames(text), [
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const rec = await srv.recordOf(res.headers.get('x-request-id'));
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.inputTokens, 9);
    assert.equal(rec.outputTokens, 4);
    assert.equal(rec.stream, true);
  });

  it('keeps ?beta=true (as Claude Code sends it) and the beta header, and accepts Authorization: Bearer without forwarding it', async () => {
    upstream.script({ type: 'text', pieces: ['ok'] });
    const bearer = new Anthropic({ baseURL: srv.url, apiKey: null, authToken: CLIENT_KEY, maxRetries: 0 });
    const msg = await bearer.beta.messages.create({ model: 'claude', max_tokens: 16, betas: ['interleaved-thinking-2025-05-14'], messages: [{ role: 'user', content: 'hi' }] }, { query: { beta: 'true' } });
    assert.equal((msg.content[0] as { text: string }).text, 'ok');
    const up = upstream.lastMessageRequest();
    assert.equal(up.search, '?beta=true');
    assert.equal(up.headers['anthropic-beta'], 'interleaved-thinking-2025-05-14');
    assert.equal(up.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(up.headers.authorization, undefined);
    assert.equal(up.body.model, CLAUDE_ID);
  });

  it('defaults anthropic-version to 2023-06-01 when the client sends none', async () => {
    upstream.script({ type: 'text', pieces: ['ok'] });
    const res = await fetch(`${srv.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 200);
    await res.text();
    assert.equal(upstream.lastMessageRequest().headers['anthropic-version'], '2023-06-01');
  });

  it('passes thinking and tool_use through to the SDK stream helper', async () => {
    upstream.script({
      type: 'tool_use',
      thinking: { pieces: ['The user wants ', 'the weather.'], signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds' },
      text: 'Let me check.',
      calls: [{ id: 'toolu_01A09q90qw90lq917835lq9', name: 'get_weather', input: ['{"location":', ' "San Francisco, CA"}'] }],
    });
    const stream = claude.messages.stream({
      model: 'claude',
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      tools: [weatherTool],
      messages: [{ role: 'user', content: 'What is the weather in San Francisco?' }],
    });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    assert.deepEqual(
      final.content.map((b) => b.type),
      ['thinking', 'text', 'tool_use'],
    );
    const thinking = final.content[0] as Anthropic.ThinkingBlock;
    assert.equal(thinking.thinking, 'The user wants the weather.');
    assert.equal(thinking.signature, 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds');
    const call = final.content[2] as Anthropic.ToolUseBlock;
    assert.equal(call.id, 'toolu_01A09q90qw90lq917835lq9');
    assert.deepEqual(call.input, { location: 'San Francisco, CA' });
    assert.deepEqual(upstream.lastMessageRequest().body.thinking, { type: 'enabled', budget_tokens: 1024 });
  });
});

describe('Anthropic client -> mock provider (translated)', () => {
  it('answers a non-streaming message', async () => {
    const msg = await claude.messages.create({ model: 'mock', max_tokens: 100, system: 'Be nice.', messages: [{ role: 'user', content: 'Hello gateway friend' }] });
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.model, 'mock-echo-1');
    assert.deepEqual(msg.content, [{ type: 'text', text: 'Hello gateway friend' }]);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.stop_sequence, null);
    assert.equal(msg.usage.output_tokens, 3);
    assert.equal(msg.usage.input_tokens, 5);
  });

  it('streams the exact Anthropic event sequence, and the SDK assembles it', async () => {
    const { res, text } = await post('/v1/messages', { model: 'mock', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'one two three' }] });
    assert.equal(res.status, 200);
    assert.deepEqual(eventNames(text), ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    const events = text
      .split('\n\n')
      .filter(Boolean)
      .map((e) => JSON.parse(e.split('\n').find((l) => l.startsWith('data: '))!.slice(6)));
    const start = events[0];
    assert.deepEqual(Object.keys(start.message).sort(), ['content', 'id', 'model', 'role', 'stop_reason', 'stop_sequence', 'type', 'usage']);
    assert.deepEqual(start.message.content, []);
    assert.equal(start.message.stop_reason, null);
    assert.deepEqual(events[2], { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    assert.deepEqual(events[3], { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'one ' } });
    assert.deepEqual(events[6], { type: 'content_block_stop', index: 0 });
    assert.equal(events[7].delta.stop_reason, 'end_turn');
    assert.equal(events[7].usage.output_tokens, 3);
    assert.deepEqual(events[8], { type: 'message_stop' });

    const final = await claude.messages.stream({ model: 'mock', max_tokens: 100, messages: [{ role: 'user', content: 'streamed words here' }] }).finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'streamed words here' }]);
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, 3);
    assert.equal(final.usage.input_tokens, 3);
  });

  it('calls a tool (streaming and not) and reads the tool result back', async () => {
    const params = {
      model: 'mock',
      max_tokens: 200,
      tools: [weatherTool],
      messages: [{ role: 'user' as const, content: 'call get_weather for Paris' }],
    };
    const msg = await claude.messages.create(params);
    assert.equal(msg.stop_reason, 'tool_use');
    const call = msg.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
    assert.ok(call);
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(call.input, { location: 'call get_weather for Paris' });

    const final = await claude.messages.stream({ ...params, tool_choice: { type: 'tool', name: 'get_weather' } }).finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const streamed = final.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
    assert.deepEqual(streamed?.input, { location: 'call get_weather for Paris' });

    const followUp = await claude.messages.create({
      ...params,
      messages: [
        ...params.messages,
        { role: 'assistant', content: [{ type: 'tool_use', id: call.id, name: call.name, input: call.input }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: '15 degrees, sunny' }] },
      ],
    });
    assert.deepEqual(followUp.content, [{ type: 'text', text: 'get_weather returned: 15 degrees, sunny' }]);
    assert.equal(followUp.stop_reason, 'end_turn');
  });

  it('reports max_tokens as the stop reason when the answer is cut by it', async () => {
    const msg = await claude.messages.create({ model: 'mock', max_tokens: 2, messages: [{ role: 'user', content: 'a b c d e' }] });
    assert.deepEqual(msg.content, [{ type: 'text', text: 'a b ' }]);
    assert.equal(msg.stop_reason, 'max_tokens');
  });

  it('rejects, naming the parameter, what cannot be translated for a non-Anthropic provider', async () => {
    const doc = await post('/v1/messages', {
      model: 'gpt',
      max_tokens: 10,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Summarize' }, { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } }] }],
    });
    assert.equal(doc.res.status, 400);
    assertAnthropicError(doc.json, 'invalid_request_error', 'messages.0.content.1.type');
    assert.equal(openaiUpstream.requests.length, 0, 'nothing reached the upstream');

    const tool = await post('/v1/messages', { model: 'mock', max_tokens: 10, tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 5 }], messages: [{ role: 'user', content: 'news?' }] });
    assert.equal(tool.res.status, 400);
    assertAnthropicError(tool.json, 'invalid_request_error', 'tools.0.type');

    // The same request to an Anthropic model passes through.
    upstream.script({ type: 'text', pieces: ['searched'] });
    const ok = await post('/v1/messages', { model: 'claude', max_tokens: 10, tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 5 }], messages: [{ role: 'user', content: 'news?' }] });
    assert.equal(ok.res.status, 200);
    assert.deepEqual(upstream.lastMessageRequest().body.tools, [{ type: 'web_search_20250305', name: 'web_search', max_uses: 5 }]);
  });

  it('drops what only tunes Anthropic (cache_control, context_management) when translating', async () => {
    const { res, json } = await post('/v1/messages', {
      model: 'mock',
      max_tokens: 50,
      context_management: { edits: [{ type: 'clear_tool_uses_20250919' }] },
      system: [{ type: 'text', text: 'sys', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'cached words', cache_control: { type: 'ephemeral' } }] }],
    });
    assert.equal(res.status, 200);
    assert.deepEqual(json.content, [{ type: 'text', text: 'cached words' }]);
  });
});

describe('OpenAI client -> anthropic provider (translated)', () => {
  let openai: OpenAI;
  before(() => {
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
  });

  it('answers a chat completion from an Anthropic message', async () => {
    upstream.script({ type: 'text', pieces: ['Hi', ' there'], usage: { input_tokens: 10, cache_read_input_tokens: 20, cache_creation_input_tokens: 0, output_tokens: 2 } });
    const reply = await openai.chat.completions.create({
      model: 'claude',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      temperature: 0.5,
      stop: ['END'],
      user: 'u-1',
    });
    assert.equal(reply.choices[0]!.message.content, 'Hi there');
    assert.equal(reply.choices[0]!.finish_reason, 'stop');
    assert.equal(reply.usage?.prompt_tokens, 30);
    assert.equal(reply.usage?.completion_tokens, 2);
    assert.equal(reply.usage?.prompt_tokens_details?.cached_tokens, 20);

    const up = upstream.lastMessageRequest();
    assert.deepEqual(up.body, {
      model: CLAUDE_ID,
      max_tokens: 4096,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }],
      system: 'Be brief.',
      temperature: 0.5,
      stop_sequences: ['END'],
      metadata: { user_id: 'u-1' },
    });
    assert.equal(up.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(up.headers['anthropic-version'], '2023-06-01');
    assert.equal(up.headers.authorization, undefined);
  });

  it('streams text with the usage chunk', async () => {
    upstream.script({ type: 'text', pieces: ['one', ' two', ' three'], usage: { input_tokens: 7, output_tokens: 3 } });
    const stream = await openai.chat.completions.create({ model: 'claude', stream: true, stream_options: { include_usage: true }, max_tokens: 50, messages: [{ role: 'user', content: 'count' }] });
    const got = await collectStream(stream);
    assert.equal(got.content, 'one two three');
    assert.equal(got.finishReason, 'stop');
    assert.equal(got.usage?.prompt_tokens, 7);
    assert.equal(got.usage?.completion_tokens, 3);
    assert.equal(upstream.lastMessageRequest().body.stream, true);
    assert.equal(upstream.lastMessageRequest().body.max_tokens, 50);
  });

  it('translates tools, tool calls (streamed) and tool results with images', async () => {
    upstream.script({ type: 'tool_use', calls: [{ id: 'toolu_01', name: 'get_weather', input: ['{"loc', 'ation": "Paris"}'] }] });
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];
    const stream = await openai.chat.completions.create({ model: 'claude', stream: true, tools, tool_choice: 'required', messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    const got = await collectStream(stream);
    assert.equal(got.finishReason, 'tool_calls');
    assert.deepEqual(got.toolCalls, [{ id: 'toolu_01', name: 'get_weather', arguments: '{"location": "Paris"}' }]);
    let up = upstream.lastMessageRequest();
    assert.deepEqual(up.body.tools, [{ name: 'get_weather', input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] }, description: 'Weather' }]);
    assert.deepEqual(up.body.tool_choice, { type: 'any' });

    upstream.script({ type: 'text', pieces: ['It is sunny.'] });
    const reply = await openai.chat.completions.create({
      model: 'claude',
      tools,
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Weather in Paris? See:' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }, { type: 'image_url', image_url: { url: 'https://example.com/sky.jpg' } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'toolu_01', content: '15C sunny' },
      ],
    });
    assert.equal(reply.choices[0]!.message.content, 'It is sunny.');
    up = upstream.lastMessageRequest();
    assert.deepEqual(up.body.messages, [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Weather in Paris? See:' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/sky.jpg' } },
        ],
      },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { location: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: '15C sunny' }] },
    ]);
  });

  it('answers a non-streaming tool call', async () => {
    upstream.script({ type: 'tool_use', text: 'Checking.', calls: [{ id: 'toolu_02', name: 'get_weather', input: ['{"location":"Oslo"}'] }] });
    const reply = await openai.chat.completions.create({
      model: 'claude',
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } } }],
      messages: [{ role: 'user', content: 'Oslo?' }],
    });
    const choice = reply.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, 'Checking.');
    assert.deepEqual(choice.message.tool_calls, [{ id: 'toolu_02', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Oslo"}' } }]);
  });

  it('rejects a temperature above Anthropic range, naming it, before calling the upstream', async () => {
    const err = await expectSdkError(openai.chat.completions.create({ model: 'claude', temperature: 1.5, messages: [{ role: 'user', content: 'hi' }] }), OpenAI.BadRequestError);
    assert.equal(err.status, 400);
    assert.equal(err.param, 'temperature');
    assert.equal(upstream.messageRequests().length, 0);
  });

  it('maps upstream errors into OpenAI errors with the upstream message', async () => {
    upstream.script({ type: 'error', status: 429, body: anthropicErrorJson('rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit'), headers: { 'retry-after': '30' } });
    const limited = await expectSdkError(openai.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'hi' }] }), OpenAI.RateLimitError);
    assert.match(limited.message, /per-minute rate limit/);
    upstream.script({ type: 'error', status: 529, body: anthropicErrorJson('overloaded_error', 'Overloaded') });
    const overloaded = await expectSdkError(openai.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'hi' }] }), OpenAI.InternalServerError);
    assert.equal(overloaded.status, 503);
  });

  it('ends an OpenAI stream with an error event when the Anthropic stream is cut', async () => {
    const gate = createGate();
    upstream.script({ type: 'text', pieces: ['a', 'b', 'c', 'd'], pauseAfter: 2, cutAfter: 2, gate });
    const stream = await openai.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (text === 'ab') gate.open();
      }
    });
    assert.equal(text, 'ab');
  });
});

describe('errors on /v1/messages', () => {
  it('400 naming the parameter, in Anthropic shape', async () => {
    const err = await expectSdkError(claude.messages.create({ model: 'mock', messages: [{ role: 'user', content: 'hi' }] } as unknown as Anthropic.MessageCreateParamsNonStreaming), Anthropic.BadRequestError);
    assert.equal(err.status, 400);
    const missing = await post('/v1/messages', { model: 'mock', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(missing.res.status, 400);
    assertAnthropicError(missing.json, 'invalid_request_error', 'max_tokens');
    assert.deepEqual(Object.keys(missing.json).sort(), ['error', 'type']);

    // An unknown role is rejected on a translated route (a same-format upstream judges it itself).
    const role = await post('/v1/messages', { model: 'mock', max_tokens: 5, messages: [{ role: 'narrator', content: 'hi' }] });
    assertAnthropicError(role.json, 'invalid_request_error', 'messages.0.role');
    const temp = await post('/v1/messages', { model: 'mock', max_tokens: 5, temperature: 1.5, messages: [{ role: 'user', content: 'hi' }] });
    assertAnthropicError(temp.json, 'invalid_request_error', 'temperature');
    const choice = await post('/v1/messages', { model: 'mock', max_tokens: 5, tool_choice: { type: 'sometimes' }, messages: [{ role: 'user', content: 'hi' }] });
    assertAnthropicError(choice.json, 'invalid_request_error', 'tool_choice.type');
    const json = await post('/v1/messages', '{"model":');
    assert.equal(json.res.status, 400);
    assertAnthropicError(json.json, 'invalid_request_error');
  });

  it('404 for an unknown or disabled model, in Anthropic shape', async () => {
    const err = await expectSdkError(claude.messages.create({ model: 'claude-nope', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), Anthropic.NotFoundError);
    assert.equal(err.status, 404);
    assert.equal((err.error as any)?.error?.type, 'not_found_error');
    const off = await post('/v1/messages', { model: 'claude-off', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(off.res.status, 404);
    assertAnthropicError(off.json, 'not_found_error');
  });

  it('passes upstream 429 and 529 errors through unmodified (body and status)', async () => {
    const body429 = anthropicErrorJson('rate_limit_error', 'This request would exceed the rate limit for your organization of 50 requests per minute.');
    upstream.script({ type: 'error', status: 429, body: body429, headers: { 'retry-after': '17' } });
    const limited = await post('/v1/messages', { model: 'claude', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(limited.res.status, 429);
    assert.equal(limited.text, JSON.stringify(body429));
    assert.equal(limited.res.headers.get('retry-after'), '17');

    const body529 = anthropicErrorJson('overloaded_error', 'Overloaded');
    upstream.script({ type: 'error', status: 529, body: body529 });
    const err = await expectSdkError(claude.messages.create({ model: 'claude', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), Anthropic.OverloadedError);
    assert.equal(err.status, 529);
    assert.deepEqual(err.error, body529);

    const body400 = anthropicErrorJson('invalid_request_error', 'messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`.');
    upstream.script({ type: 'error', status: 400, body: body400 });
    const rejected = await post('/v1/messages', { model: 'claude', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(rejected.res.status, 400);
    assert.equal(rejected.text, JSON.stringify(body400));
  });

  it('turns a 401 for the gateway upstream credential into a 502 that leaks nothing', async () => {
    const err = await expectSdkError(claude.messages.create({ model: 'claude-badkey', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), Anthropic.APIError);
    assert.equal(err.status, 502);
    assert.equal((err.error as any)?.type, 'error');
    assert.equal((err.error as any)?.error?.type, 'api_error');
    assert.ok(!JSON.stringify(err.error).includes('invalid x-api-key'));
    assert.ok(!JSON.stringify(err.error).includes('sk-ant-wrong-key'));
  });

  it('ends a cut upstream stream with an error event; the SDK throws and the log says stream_error', async () => {
    let gate = createGate();
    upstream.script({ type: 'text', pieces: ['one', ' two', ' three', ' four'], pauseAfter: 2, cutAfter: 2, gate });
    const stream = claude.messages.stream({ model: 'claude', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    stream.on('text', (_delta, snapshot) => {
      if (snapshot === 'one two') gate.open();
    });
    await assert.rejects(stream.finalMessage(), (err: unknown) => err instanceof Anthropic.APIError);

    // The same, read raw: the bytes before the cut, then an error event.
    gate = createGate();
    upstream.script({ type: 'text', pieces: ['one', ' two', ' three'], pauseAfter: 1, cutAfter: 1, gate });
    const res = await fetch(`${srv.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 200);
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body! as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes('text_delta')) gate.open();
    }
    const names = eventNames(text);
    assert.equal(names[names.length - 1], 'error');
    assert.ok(!names.includes('message_stop'));
    assert.ok(text.startsWith(upstream.lastMessageRequest().sent), 'what the upstream sent before the cut went through unchanged');
    const rec = await srv.recordOf(res.headers.get('x-request-id'));
    assert.equal(rec.outcome, 'stream_error');
  });

  it('appends an error event when the upstream stream ends cleanly without message_stop', async () => {
    upstream.script({ type: 'text', pieces: ['a', 'b'], omitStop: true });
    const { text, res } = await post('/v1/messages', { model: 'claude', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const names = eventNames(text);
    assert.equal(names[names.length - 1], 'error');
    const data = JSON.parse(text.trim().split('\n').pop()!.slice(6));
    assert.equal(data.type, 'error');
    assert.equal(data.error.type, 'api_error');
    assert.equal((await srv.recordOf(res.headers.get('x-request-id'))).outcome, 'stream_error');
  });

  it('passes an upstream mid-stream error event through (once) and the SDK raises it', async () => {
    upstream.script({ type: 'text', pieces: ['a', 'b', 'c'], errorAfter: { after: 1, type: 'overloaded_error', message: 'Overloaded' } });
    const stream = claude.messages.stream({ model: 'claude', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    const err = await stream.finalMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Anthropic.APIError);
    assert.equal((err.error as any)?.error?.type, 'overloaded_error');

    upstream.script({ type: 'text', pieces: ['a', 'b', 'c'], errorAfter: { after: 1, type: 'overloaded_error', message: 'Overloaded' } });
    const { text, res } = await post('/v1/messages', { model: 'claude', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(text, upstream.lastMessageRequest().sent);
    assert.equal(eventNames(text).filter((n) => n === 'error').length, 1);
    assert.equal((await srv.recordOf(res.headers.get('x-request-id'))).outcome, 'stream_error');
  });

  it('ends a translated stream that fails mid-way with an error event, never message_stop', async () => {
    async function* failing(): AsyncGenerator<StreamEvent> {
      yield { type: 'text', delta: 'partial ' };
      throw new Error('socket hang up');
    }
    const records: RequestRecord[] = [];
    const trace = new RequestTrace('req-fail-1', new Request('http://gw/v1/messages', { method: 'POST' }), '/v1/messages', (r) => records.push(r));
    const req = anthropicMessagesDoor.parse({ model: 'mock', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'x' }] }, new Request('http://gw/'));
    const res = await anthropicMessagesDoor.respondFromEvents(req, { done: false, value: { type: 'start', id: 'abc', model: 'm' } }, failing(), { created: 0, headers: {} }, trace);
    const text = await res.text();
    assert.deepEqual(eventNames(text), ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'error']);
    assert.match(text, /"type":"error","error":\{"type":"api_error"/);
    assert.equal(records[0]?.outcome, 'stream_error');
    assertCleanErrorText(text);
  });
});

describe('POST /v1/messages/count_tokens', () => {
  it('asks the Anthropic upstream for an exact count', async () => {
    upstream.scriptCount(2095);
    const params = { model: 'claude', system: 'You are a scientist', messages: [{ role: 'user' as const, content: 'Hello, Claude' }], tools: [weatherTool] };
    const { data, response } = await claude.messages.countTokens(params).withResponse();
    assert.deepEqual(data, { input_tokens: 2095 });
    assert.equal(response.headers.get('x-gateway-token-count'), 'exact');
    const up = upstream.countRequests()[0]!;
    assert.deepEqual(up.body, { ...params, model: CLAUDE_ID });
    assert.equal(up.headers['x-api-key'], ANTHROPIC_KEY);
    assert.ok(!JSON.stringify(up.headers).includes(CLIENT_KEY));
  });

  it('estimates with a tokenizer for other providers, and says so', async () => {
    const small = await claude.messages.countTokens({ model: 'mock', messages: [{ role: 'user', content: 'Hello, Claude' }] }).withResponse();
    assert.equal(small.response.headers.get('x-gateway-token-count'), 'estimate');
    assert.ok(small.data.input_tokens >= 4 && small.data.input_tokens <= 12, `estimate ${small.data.input_tokens}`);
    const big = await claude.messages.countTokens({ model: 'mock', system: 'x '.repeat(500), messages: [{ role: 'user', content: 'Hello, Claude' }], tools: [weatherTool] });
    assert.ok(big.input_tokens > small.data.input_tokens + 500, `estimate ${big.input_tokens}`);
    assert.equal(upstream.requests.length, 0);
  });

  it('answers errors in Anthropic shape', async () => {
    const unknown = await post('/v1/messages/count_tokens', { model: 'nope', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(unknown.res.status, 404);
    assertAnthropicError(unknown.json, 'not_found_error');
    const bad = await post('/v1/messages/count_tokens', { model: 'mock' });
    assert.equal(bad.res.status, 400);
    assertAnthropicError(bad.json, 'invalid_request_error', 'messages');
    // Anthropic's own count_tokens errors pass through unmodified.
    const body = anthropicErrorJson('invalid_request_error', 'max_tokens: Extra inputs are not permitted');
    upstream.scriptCount({ status: 400, body });
    const upstreamBad = await post('/v1/messages/count_tokens', { model: 'claude', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(upstreamBad.res.status, 400);
    assert.equal(upstreamBad.text, JSON.stringify(body));
    assert.equal(upstream.countRequests()[0]?.body.max_tokens, 5);
  });
});
