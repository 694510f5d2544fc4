import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { assertCleanErrorText, CLIENT_KEY, collectStream, UPSTREAM_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { createGate, startMockOpenAI, type Gate, type MockOpenAI } from './helpers/mock-openai.ts';
import { startMockResponsesUpstream, type MockResponsesUpstream } from './helpers/mock-openai-responses.ts';
import { startPathProxy, type PathProxy } from './helpers/path-proxy.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * The whole matrix: every front door (Chat Completions and Responses through the official openai
 * SDK, Messages through @anthropic-ai/sdk) against every provider (OpenAI, Anthropic and Bedrock
 * mocks on loopback, the Bedrock one reached through the real AWS SDK client; the built-in mock
 * provider), streaming and not, for a text answer and a tool call. Each case checks what the
 * client assembled (text, or the tool call's name and parsed arguments), the stop reason, and the
 * usage numbers (input, output, cached input), and that the log record carries the same usage.
 * Then, for every door against a pass-through and translated providers: an upstream that fails
 * after streaming began ends the client's stream with an error event in the client's own format,
 * and the log record says stream_error.
 */

// Static dummy credentials for the AWS SDK's default chain (environment first).
useDummyAwsCredentials('AKIATESTMATRIX000001', 'matrix-test-secret-4c1d9e');

const OPENAI_KEY_ENV = 'TEST_MATRIX_OPENAI_KEY';
const ANTHROPIC_KEY_ENV = 'TEST_MATRIX_ANTHROPIC_KEY';
const ANTHROPIC_KEY = 'sk-ant-matrix-UPSTREAM-77d2';

type Door = 'chat' | 'messages' | 'responses';
type ProviderName = 'openai' | 'anthropic' | 'bedrock' | 'mock';
type Kind = 'text' | 'tool';

const DOORS: Door[] = ['chat', 'messages', 'responses'];
const PROVIDERS: ProviderName[] = ['openai', 'anthropic', 'bedrock', 'mock'];
const MODEL: Record<ProviderName, string> = { openai: 'm-openai', anthropic: 'm-anthropic', bedrock: 'm-bedrock', mock: 'm-mock' };
const UPSTREAM_MODEL: Record<ProviderName, string> = {
  openai: 'gpt-4o-mini-2024-07-18',
  anthropic: 'claude-sonnet-4-5-20250929',
  bedrock: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
  mock: 'mock-echo-1',
};

const TEXT_PROMPT = 'Hello from the matrix.';
const TEXT_PIECES = ['Hello ', 'from ', 'the ', 'matrix.'];
const TOOL_PROMPT = 'call get_weather for Paris';
const ARG_PIECES = ['{"city":', '"Paris"}'];
const WEATHER_SCHEMA = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } as const;

/** Usage in neutral terms: `input` counts every prompt token, cached ones included. */
interface NeutralUsage {
  input: number;
  output: number;
  cacheRead: number;
}

/** What the scripted upstreams report (uncached input 16 + 5 cache reads; 4 output tokens). */
const SCRIPTED_USAGE: NeutralUsage = { input: 21, output: 4, cacheRead: 5 };
/** The mock Responses upstream's fixed usage. */
const RESPONSES_USAGE: NeutralUsage = { input: 12, output: 3, cacheRead: 4 };

interface Expected {
  text?: string;
  tool?: { id?: RegExp | string; name: string; args: Record<string, unknown> };
  usage: NeutralUsage;
}

function expected(door: Door, provider: ProviderName, kind: Kind): Expected {
  if (provider === 'mock') {
    // The mock provider echoes the user text (one token per word), or calls the tool a `call <tool>` line
    // names with its required string argument set to that text.
    if (kind === 'text') return { text: TEXT_PROMPT, usage: { input: 4, output: 4, cacheRead: 0 } };
    return { tool: { id: /^call_mock_/, name: 'get_weather', args: { city: TOOL_PROMPT } }, usage: { input: 4, output: 5, cacheRead: 0 } };
  }
  const usage = door === 'responses' && provider === 'openai' ? RESPONSES_USAGE : SCRIPTED_USAGE;
  if (kind === 'text') return { text: TEXT_PROMPT, usage };
  const id = { openai: 'call_matrix_1', anthropic: 'toolu_matrix_1', bedrock: 'tooluse_matrix_1' }[provider];
  return { tool: { id, name: 'get_weather', args: { city: 'Paris' } }, usage };
}

let openaiChat: MockOpenAI;
let openaiResponses: MockResponsesUpstream;
let proxy: PathProxy;
let anthropicUp: MockAnthropic;
let bedrock: MockBedrock;
let srv: StartedGateway;
let openai: OpenAI;
let claude: Anthropic;

before(async () => {
  [openaiChat, openaiResponses, anthropicUp, bedrock] = await Promise.all([startMockOpenAI(), startMockResponsesUpstream(), startMockAnthropic({ apiKey: ANTHROPIC_KEY }), startMockBedrock()]);
  // One OpenAI base URL for both APIs: /v1/responses to the Responses mock, the rest to the Chat Completions mock.
  proxy = await startPathProxy([
    { prefix: '/v1/responses', origin: new URL(openaiResponses.baseUrl).origin },
    { prefix: '/v1/', origin: new URL(openaiChat.baseUrl).origin },
  ]);
  srv = await startGateway({
    providers: {
      openai: { type: 'openai', baseUrl: proxy.baseUrl, apiKeyEnv: OPENAI_KEY_ENV, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      anthropic: { type: 'anthropic', baseUrl: anthropicUp.baseUrl, apiKeyEnv: ANTHROPIC_KEY_ENV, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      mock: { type: 'mock', wordDelayMs: 0 },
    },
    models: Object.fromEntries(PROVIDERS.map((p) => [MODEL[p], { provider: p, model: UPSTREAM_MODEL[p] }])),
    config: {
      // One attempt per request: each scripted upstream answer is the one the client gets.
      routing: { retry: { retries: 0 }, fallbackOn: [] },
    },
    env: { [OPENAI_KEY_ENV]: UPSTREAM_KEY, [ANTHROPIC_KEY_ENV]: ANTHROPIC_KEY },
    label: 'matrix test configuration',
  });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
  claude = new Anthropic({ baseURL: srv.url, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await proxy?.close();
  await Promise.all([openaiChat?.close(), openaiResponses?.close(), anthropicUp?.close(), bedrock?.close()]);
});

beforeEach(() => {
  openaiChat.reset();
  openaiResponses.reset();
  anthropicUp.reset();
  bedrock.reset();
});

/** Queue the upstream answer for one case (the built-in mock provider needs none). */
function script(door: Door, provider: ProviderName, kind: Kind, failure?: Gate): void {
  const fail = failure ? { pauseAfter: 1, gate: failure } : {};
  switch (provider) {
    case 'openai':
      if (door === 'responses') {
        if (kind === 'text') openaiResponses.script({ type: 'text', pieces: TEXT_PIECES, ...(failure ? { cutAfter: 1, gate: failure } : {}) });
        else openaiResponses.script({ type: 'function_call', callId: 'call_matrix_1', name: 'get_weather', argumentPieces: ARG_PIECES });
      } else {
        const usage = { prompt_tokens: 21, completion_tokens: 4, total_tokens: 25, prompt_tokens_details: { cached_tokens: 5 } };
        if (kind === 'text') openaiChat.script({ type: 'text', pieces: TEXT_PIECES, usage, ...fail, ...(failure ? { cutAfter: 1 } : {}) });
        else openaiChat.script({ type: 'tool_calls', calls: [{ id: 'call_matrix_1', name: 'get_weather', arguments: ARG_PIECES }], usage });
      }
      return;
    case 'anthropic': {
      const usage = { input_tokens: 16, cache_read_input_tokens: 5, cache_creation_input_tokens: 0, output_tokens: 4 };
      if (kind === 'text') anthropicUp.script({ type: 'text', pieces: TEXT_PIECES, usage, ...fail, ...(failure ? { errorAfter: { after: 1, type: 'overloaded_error', message: 'Overloaded' } } : {}) });
      else anthropicUp.script({ type: 'tool_use', calls: [{ id: 'toolu_matrix_1', name: 'get_weather', input: ARG_PIECES }], usage });
      return;
    }
    case 'bedrock': {
      const usage = { inputTokens: 16, outputTokens: 4, cacheReadInputTokens: 5 };
      const ex = failure ? { exceptionAfter: 1, exception: { type: 'modelStreamErrorException', message: 'The model stream failed.' } } : {};
      if (kind === 'text') bedrock.script({ type: 'answer', text: TEXT_PIECES, usage, ...fail, ...ex });
      else bedrock.script({ type: 'answer', toolCalls: [{ id: 'tooluse_matrix_1', name: 'get_weather', input: ARG_PIECES }], usage });
      return;
    }
    case 'mock':
      return;
  }
}

/** What a client made of one answer, in neutral terms. */
interface Assembled {
  requestId: string | null;
  text: string;
  tools: { id: string; name: string; arguments: string }[];
  /** chat: finish_reason; messages: stop_reason; responses: the Response's status. */
  stop: string | null | undefined;
  usage: NeutralUsage;
}

async function viaChat(model: string, kind: Kind, stream: boolean): Promise<Assembled> {
  const base = {
    model,
    max_tokens: 200,
    messages: [{ role: 'user' as const, content: kind === 'text' ? TEXT_PROMPT : TOOL_PROMPT }],
    ...(kind === 'tool' ? { tools: [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather for a city', parameters: WEATHER_SCHEMA } }] } : {}),
  };
  if (!stream) {
    const { data, response } = await openai.chat.completions.create(base).withResponse();
    const m = data.choices[0]!.message;
    return {
      requestId: response.headers.get('x-request-id'),
      text: m.content ?? '',
      tools: (m.tool_calls ?? []).map((c) => {
        assert.equal(c.type, 'function');
        return { id: c.id, name: c.type === 'function' ? c.function.name : '', arguments: c.type === 'function' ? c.function.arguments : '' };
      }),
      stop: data.choices[0]!.finish_reason,
      usage: { input: data.usage!.prompt_tokens, output: data.usage!.completion_tokens, cacheRead: data.usage!.prompt_tokens_details?.cached_tokens ?? 0 },
    };
  }
  const { data, response } = await openai.chat.completions.create({ ...base, stream: true, stream_options: { include_usage: true } }).withResponse();
  const c = await collectStream(data);
  assert.ok(c.usage, 'the stream ends with a usage chunk');
  assert.equal(c.chunks[c.chunks.length - 1]!.choices.length, 0, 'the usage chunk has empty choices');
  return {
    requestId: response.headers.get('x-request-id'),
    text: c.content,
    tools: c.toolCalls,
    stop: c.finishReason,
    usage: { input: c.usage.prompt_tokens, output: c.usage.completion_tokens, cacheRead: c.usage.prompt_tokens_details?.cached_tokens ?? 0 },
  };
}

function anthropicUsage(u: { input_tokens: number | null; output_tokens: number | null; cache_read_input_tokens?: number | null; cache_creation_input_tokens?: number | null }): NeutralUsage {
  const read = u.cache_read_input_tokens ?? 0;
  return { input: (u.input_tokens ?? 0) + read + (u.cache_creation_input_tokens ?? 0), output: u.output_tokens ?? 0, cacheRead: read };
}

async function viaMessages(model: string, kind: Kind, stream: boolean): Promise<Assembled> {
  const base = {
    model,
    max_tokens: 200,
    messages: [{ role: 'user' as const, content: kind === 'text' ? TEXT_PROMPT : TOOL_PROMPT }],
    ...(kind === 'tool' ? { tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: WEATHER_SCHEMA as unknown as Anthropic.Tool.InputSchema }] } : {}),
  };
  if (!stream) {
    const { data, response } = await claude.messages.create(base).withResponse();
    return {
      requestId: response.headers.get('x-request-id'),
      text: data.content.map((b) => (b.type === 'text' ? b.text : '')).join(''),
      tools: data.content.flatMap((b) => (b.type === 'tool_use' ? [{ id: b.id, name: b.name, arguments: JSON.stringify(b.input) }] : [])),
      stop: data.stop_reason,
      usage: anthropicUsage(data.usage),
    };
  }
  const { data, response } = await claude.messages.create({ ...base, stream: true }).withResponse();
  const names: string[] = [];
  let text = '';
  const blocks = new Map<number, { id: string; name: string; arguments: string }>();
  let stop: string | null | undefined;
  let usage = { input_tokens: 0 as number | null, output_tokens: 0 as number | null, cache_read_input_tokens: 0 as number | null | undefined, cache_creation_input_tokens: 0 as number | null | undefined };
  for await (const ev of data) {
    names.push(ev.type);
    if (ev.type === 'message_start') usage = { ...ev.message.usage };
    else if (ev.type === 'content_block_start' && ev.content_block.type === 'tool_use') blocks.set(ev.index, { id: ev.content_block.id, name: ev.content_block.name, arguments: '' });
    else if (ev.type === 'content_block_delta') {
      if (ev.delta.type === 'text_delta') text += ev.delta.text;
      else if (ev.delta.type === 'input_json_delta') blocks.get(ev.index)!.arguments += ev.delta.partial_json;
    } else if (ev.type === 'message_delta') {
      stop = ev.delta.stop_reason;
      // Later counts replace earlier ones, as the SDK's own accumulator does.
      for (const [k, v] of Object.entries(ev.usage)) if (v !== null && v !== undefined) (usage as Record<string, unknown>)[k] = v;
    }
  }
  // message_start, then whole blocks (start, deltas, stop), then message_delta and message_stop; pings may come anywhere.
  const seq = names.filter((n) => n !== 'ping').join(' ');
  assert.match(seq, /^message_start( content_block_start( content_block_delta)* content_block_stop)+ message_delta message_stop$/, seq);
  return { requestId: response.headers.get('x-request-id'), text, tools: [...blocks.values()], stop, usage: anthropicUsage(usage) };
}

async function viaResponses(model: string, kind: Kind, stream: boolean): Promise<Assembled> {
  const base = {
    model,
    max_output_tokens: 200,
    input: kind === 'text' ? TEXT_PROMPT : TOOL_PROMPT,
    ...(kind === 'tool' ? { tools: [{ type: 'function' as const, name: 'get_weather', description: 'Weather for a city', parameters: { ...WEATHER_SCHEMA }, strict: false }] } : {}),
  };
  if (!stream) {
    const { data, response } = await openai.responses.create(base).withResponse();
    return {
      requestId: response.headers.get('x-request-id'),
      text: data.output_text,
      tools: data.output.flatMap((o) => (o.type === 'function_call' ? [{ id: o.call_id, name: o.name, arguments: o.arguments }] : [])),
      stop: data.status,
      usage: { input: data.usage!.input_tokens, output: data.usage!.output_tokens, cacheRead: data.usage!.input_tokens_details.cached_tokens },
    };
  }
  const { data, response } = await openai.responses.create({ ...base, stream: true }).withResponse();
  let text = '';
  const calls = new Map<number, { id: string; name: string; arguments: string }>();
  let terminal: { status?: string; usage?: { input_tokens: number; output_tokens: number; input_tokens_details: { cached_tokens: number } } | null; output_text?: string } | undefined;
  const types: string[] = [];
  let seq = -1;
  for await (const ev of data) {
    types.push(ev.type);
    assert.ok(ev.sequence_number > seq, 'sequence numbers rise');
    seq = ev.sequence_number;
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    else if (ev.type === 'response.output_item.added' && ev.item.type === 'function_call') calls.set(ev.output_index, { id: ev.item.call_id, name: ev.item.name, arguments: '' });
    else if (ev.type === 'response.function_call_arguments.delta') calls.get(ev.output_index)!.arguments += ev.delta;
    else if (ev.type === 'response.completed') terminal = ev.response;
  }
  assert.equal(types[0], 'response.created');
  assert.equal(types[types.length - 1], 'response.completed');
  assert.ok(terminal?.usage, 'response.completed carries the usage');
  return {
    requestId: response.headers.get('x-request-id'),
    text,
    tools: [...calls.values()],
    stop: terminal.status,
    usage: { input: terminal.usage.input_tokens, output: terminal.usage.output_tokens, cacheRead: terminal.usage.input_tokens_details.cached_tokens },
  };
}

const STOP: Record<Door, Record<Kind, string>> = {
  chat: { text: 'stop', tool: 'tool_calls' },
  messages: { text: 'end_turn', tool: 'tool_use' },
  responses: { text: 'completed', tool: 'completed' },
};

describe('matrix: front door x provider x stream x {text, tool call}', () => {
  for (const door of DOORS) {
    for (const provider of PROVIDERS) {
      for (const stream of [false, true]) {
        for (const kind of ['text', 'tool'] as Kind[]) {
          it(`${door} -> ${provider}, ${stream ? 'stream' : 'no stream'}, ${kind}`, async () => {
            script(door, provider, kind);
            const call = door === 'chat' ? viaChat : door === 'messages' ? viaMessages : viaResponses;
            const got = await call(MODEL[provider], kind, stream);
            const want = expected(door, provider, kind);

            if (want.text !== undefined) {
              assert.equal(got.text, want.text);
              assert.deepEqual(got.tools, []);
            }
            if (want.tool) {
              assert.equal(got.tools.length, 1, JSON.stringify(got.tools));
              const [t] = got.tools;
              assert.equal(t!.name, want.tool.name);
              assert.deepEqual(JSON.parse(t!.arguments), want.tool.args);
              if (typeof want.tool.id === 'string') assert.equal(t!.id, want.tool.id);
              else assert.match(t!.id, want.tool.id!);
            }
            assert.equal(got.stop, STOP[door][kind]);
            assert.deepEqual(got.usage, want.usage);

            const rec = await srv.recordOf(got.requestId);
            assert.equal(rec.outcome, 'ok');
            assert.equal(rec.status, 200);
            assert.equal(rec.provider, provider);
            assert.equal(rec.upstreamModel, UPSTREAM_MODEL[provider]);
            assert.equal(rec.stream, stream);
            assert.equal(rec.inputTokens, want.usage.input);
            assert.equal(rec.outputTokens, want.usage.output);
            assert.equal(rec.cacheReadTokens ?? 0, want.usage.cacheRead);
          });
        }
      }
    }
  }
});

/** Open a streaming call to a door with fetch, for a look at the bytes on the wire. */
async function openStream(door: Door, model: string): Promise<Response> {
  const path = { chat: '/v1/chat/completions', messages: '/v1/messages', responses: '/v1/responses' }[door];
  const body =
    door === 'chat'
      ? { model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: TEXT_PROMPT }] }
      : door === 'messages'
        ? { model, stream: true, max_tokens: 200, messages: [{ role: 'user', content: TEXT_PROMPT }] }
        : { model, stream: true, input: TEXT_PROMPT };
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (door === 'messages') Object.assign(headers, { 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' });
  else headers.authorization = `Bearer ${CLIENT_KEY}`;
  return fetch(`${srv.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
}

/** Read until `seen` appears (the bytes before the failure reached the client), open the gate, read to the end. */
async function readAcrossGate(res: Response, seen: string, gate: Gate): Promise<{ before: string; all: string }> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  while (!text.includes(seen)) {
    const r = await reader.read();
    if (r.done) break;
    text += dec.decode(r.value, { stream: true });
  }
  const before = text;
  gate.open();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    text += dec.decode(r.value, { stream: true });
  }
  return { before, all: text + dec.decode() };
}

/** The SSE events of a text: `event:` name (if any) and parsed `data:` (or the raw text). */
function sseEvents(text: string): { event?: string; data: any }[] {
  return text
    .split(/\n\n/)
    .filter((e) => e.trim())
    .map((e) => {
      let event: string | undefined;
      const data: string[] = [];
      for (const line of e.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trim());
      }
      const raw = data.join('\n');
      let parsed: unknown = raw;
      try {
        parsed = JSON.parse(raw);
      } catch {
        // [DONE] and the like
      }
      return { event, data: parsed };
    });
}

describe('matrix: an upstream failing after streaming began', () => {
  // The openai upstream cuts its connection; the anthropic upstream sends an `event: error`
  // (overloaded); Bedrock sends a modelStreamErrorException frame.
  const FAILING: ProviderName[] = ['openai', 'anthropic', 'bedrock'];
  for (const door of DOORS) {
    for (const provider of FAILING) {
      const passthrough = (door === 'chat' && provider === 'openai') || (door === 'messages' && provider === 'anthropic') || (door === 'responses' && provider === 'openai');
      it(`${door} -> ${provider} (${passthrough ? 'pass-through' : 'translated'}): an error event in the ${door} format, never a clean end`, async () => {
        const gate = createGate();
        script(door, provider, 'text', gate);
        const res = await openStream(door, MODEL[provider]);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
        const { before, all } = await readAcrossGate(res, 'Hello', gate);
        assert.ok(before.includes('Hello'), 'the text before the failure reached the client as it came');
        assertCleanErrorText(all);
        const events = sseEvents(all);
        const last = events[events.length - 1]!;

        if (door === 'chat') {
          assert.ok(!all.includes('[DONE]'), 'no [DONE] after a failure');
          assert.ok(!events.some((e) => e.data?.choices?.[0]?.finish_reason), 'no finish_reason after a failure');
          assert.equal(last.event, undefined);
          assert.equal(typeof last.data?.error?.message, 'string', JSON.stringify(last.data));
          assert.ok(last.data.error.message.length > 0);
        } else if (door === 'messages') {
          assert.ok(!events.some((e) => e.event === 'message_stop' || e.event === 'message_delta'), 'no message_delta/message_stop after a failure');
          assert.equal(last.event, 'error');
          assert.equal(last.data.type, 'error');
          assert.equal(typeof last.data.error.type, 'string');
          assert.equal(typeof last.data.error.message, 'string');
          if (provider === 'anthropic') assert.deepEqual(last.data.error, { type: 'overloaded_error', message: 'Overloaded' });
        } else {
          assert.ok(!events.some((e) => e.event === 'response.completed'), 'no response.completed after a failure');
          const failed = events.find((e) => e.event === 'response.failed');
          assert.ok(failed, 'a response.failed event');
          assert.equal(failed.data.response.status, 'failed');
          assert.equal(typeof failed.data.response.error.message, 'string');
          assert.equal(last.event, 'error');
          assert.equal(last.data.type, 'error');
          assert.equal(typeof last.data.message, 'string');
          const seqs = events.map((e) => e.data.sequence_number as number);
          assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), 'sequence numbers run on through the failure');
        }

        const rec = await srv.recordOf(res.headers.get('x-request-id'));
        assert.equal(rec.outcome, 'stream_error');
        // docs/log-schema.md: the client got a 200 and then the error event; the record says 502.
        assert.equal(rec.status, 502, 'an upstream failure after the stream started');
        assert.ok(rec.errorType, 'the record names the error type');
        assert.ok(rec.errorMessage, 'the record has the error message');
        assert.equal(rec.provider, provider);
        assert.ok(rec.ttfbMs !== undefined, 'bytes reached the client before the failure');
      });
    }
  }

  it('the official SDKs raise the error event of each door', async () => {
    for (const door of DOORS) {
      const gate = createGate();
      script(door, 'bedrock', 'text', gate);
      let seen = '';
      const consume = async () => {
        if (door === 'chat') {
          for await (const c of await openai.chat.completions.create({ model: MODEL.bedrock, stream: true, messages: [{ role: 'user', content: TEXT_PROMPT }] })) {
            seen += c.choices[0]?.delta.content ?? '';
            if (seen) gate.open();
          }
        } else if (door === 'messages') {
          for await (const ev of await claude.messages.create({ model: MODEL.bedrock, max_tokens: 100, stream: true, messages: [{ role: 'user', content: TEXT_PROMPT }] })) {
            if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') seen += ev.delta.text;
            if (seen) gate.open();
          }
        } else {
          for await (const ev of await openai.responses.create({ model: MODEL.bedrock, stream: true, input: TEXT_PROMPT })) {
            if (ev.type === 'response.output_text.delta') seen += ev.delta;
            if (seen) gate.open();
          }
        }
      };
      await assert.rejects(consume(), (err: Error) => {
        assert.ok(err instanceof (door === 'messages' ? Anthropic.APIError : OpenAI.APIError), `${door}: ${String(err)}`);
        assert.match(JSON.stringify(err.error), /The model stream failed\./, `${door}: the error carries the upstream's reason`);
        return true;
      });
      assert.equal(seen, 'Hello ', `${door}: the text before the failure was delivered`);
    }
  });
});
