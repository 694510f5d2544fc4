import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startLocalDynamo, type LocalDynamo } from '../local/dynamodb.ts';
import { dynamoClient } from '../shared/store/dynamodb.ts';
import { DynamoCacheBackend, ensureCacheTable } from '../shared/cache/backend.ts';
import { decodeEntry } from '../shared/cache/entry.ts';
import { CLIENT_KEY, MemorySink, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { TestClock, eventually, startKeyedGateway } from './helpers/keys.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';

/**
 * The response cache end to end: official SDK clients -> gateway -> loopback upstreams, with the
 * cache table in dynalite (a real DynamoDB API). The mock upstream counts its calls, so a hit is
 * proven to make none.
 */

const UPSTREAM_KEY = 'sk-upstream-CACHETEST-8d2e4f60';
const UPSTREAM_KEY_ENV = 'TEST_CACHE_UPSTREAM_KEY';
const TABLE = 'test-cache';

let upstream: MockOpenAI;
let dynamo: LocalDynamo;
let srv: StartedGateway;
let sink: MemorySink;
let clock: TestClock;
let openai: OpenAI;
let claude: Anthropic;

before(async () => {
  upstream = await startMockOpenAI();
  dynamo = await startLocalDynamo();
  const client = dynamoClient({ tables: { keys: '', usage: '' }, endpoint: dynamo.endpoint, region: 'local' });
  await ensureCacheTable(client, TABLE);
  client.destroy();
  clock = new TestClock();
  srv = await startGateway({
    providers: {
      openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: UPSTREAM_KEY_ENV },
      mock: { type: 'mock', wordDelayMs: 0 },
    },
    models: {
      gpt: { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
      'gpt-nocache': { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
      'gpt-small': { provider: 'openai', model: 'gpt-4.1-2025-04-14' },
      mock: { provider: 'mock', model: 'mock-echo-1' },
      'mock-embed': { provider: 'mock', model: 'mock-embed-1' },
      'mock-sem': { provider: 'mock', model: 'mock-echo-sem' },
    },
    config: {
      routing: { retry: { retries: 0 }, fallbackOn: [] },
      pricing: { 'gpt-4o-mini-2024-07-18': { input: 1, output: 2 } },
      cache: {
        table: 'ignored-because-env-wins',
        maxTemperature: 0.3,
        models: {
          gpt: {},
          'gpt-small': { ttlSeconds: 60 },
          mock: {},
          'mock-sem': { semantic: { embeddingModel: 'mock-embed', threshold: 0.9, bands: 4, bitsPerBand: 8 } },
        },
        maxItemBytes: 4096,
      },
    },
    env: { [UPSTREAM_KEY_ENV]: UPSTREAM_KEY, DYNAMODB_ENDPOINT: dynamo.endpoint, GATEWAY_CACHE_TABLE: TABLE, AWS_REGION: 'local' },
    now: clock.now,
    label: 'cache test configuration',
  });
  sink = srv.sink;
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
  claude = new Anthropic({ baseURL: srv.url, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await upstream?.close();
  await dynamo?.close();
});

beforeEach(() => upstream.reset());

const cache = () => srv.gateway.cache!;

/** Wait until the background cache write of the last miss has landed. */
async function stored(before: number): Promise<void> {
  await eventually(async () => cache().stats.stored > before, 'the cache write');
}

function unique(label: string): string {
  return `${label} ${randomBytes(4).toString('hex')}`;
}

describe('exact cache, OpenAI Chat Completions (pass-through route)', () => {
  it('a repeated request is answered from the cache with no upstream call, zero cost, and the same answer', async () => {
    const prompt = unique('Tell me about caching');
    const s0 = cache().stats.stored;
    const first = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0 }).withResponse();
    assert.equal(first.response.headers.get('x-gateway-cache'), 'miss');
    assert.equal(upstream.chatRequests().length, 1);
    const r1 = await srv.recordOf(first.response.headers.get('x-request-id'));
    assert.equal(r1.cacheStatus, 'stored');
    assert.ok((r1.costUsd ?? 0) > 0, 'the miss is priced');
    await stored(s0);

    const second = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0 }).withResponse();
    assert.equal(upstream.chatRequests().length, 1, 'the hit made no upstream call');
    assert.equal(second.response.headers.get('x-gateway-cache'), 'hit');
    assert.equal(second.response.headers.get('x-gateway-attempts'), '0');
    assert.equal(second.data.choices[0]!.message.content, first.data.choices[0]!.message.content);
    assert.deepEqual(second.data.usage?.prompt_tokens, first.data.usage?.prompt_tokens);
    assert.deepEqual(second.data.usage?.completion_tokens, first.data.usage?.completion_tokens);
    const r2 = await srv.recordOf(second.response.headers.get('x-request-id'));
    assert.equal(r2.cacheHit, true);
    assert.equal(r2.cacheStatus, 'hit');
    assert.equal(r2.costUsd, 0);
    assert.equal(r2.attempts, 0);
    assert.equal(r2.inputTokens, first.data.usage?.prompt_tokens, 'usage of the replayed answer is reported');
  });

  it('a streamed upstream answer is stored from the bytes that streamed past, and replays as JSON and as a stream', async () => {
    const prompt = unique('Stream this answer please');
    const s0 = cache().stats.stored;
    const stream = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    assert.equal(text, prompt.split(/(?<=\s)/).join(''));
    await stored(s0);
    assert.equal(upstream.chatRequests().length, 1);

    const json = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0 });
    assert.equal(json.choices[0]!.message.content, text);
    assert.equal(json.usage?.total_tokens, usage?.total_tokens);

    const replay = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0, stream: true, stream_options: { include_usage: true } }).withResponse();
    assert.equal(replay.response.headers.get('x-gateway-cache'), 'hit');
    assert.match(replay.response.headers.get('content-type') ?? '', /text\/event-stream/);
    let replayed = '';
    let replayUsage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null | undefined;
    for await (const c of replay.data) {
      replayed += c.choices[0]?.delta.content ?? '';
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) replayUsage = c.usage;
    }
    assert.equal(replayed, text);
    assert.equal(finish, 'stop');
    assert.deepEqual({ p: replayUsage?.prompt_tokens, c: replayUsage?.completion_tokens }, { p: usage?.prompt_tokens, c: usage?.completion_tokens });
    assert.equal(upstream.chatRequests().length, 1, 'neither replay reached the upstream');
  });

  it('tool calls are cached and replayed', async () => {
    const prompt = unique('What is the weather in Paris?');
    const s0 = cache().stats.stored;
    upstream.script({ type: 'tool_calls', calls: [{ id: 'call_abc', name: 'get_weather', arguments: ['{"city":', '"Paris"}'] }] });
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const first = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], tools, temperature: 0, stream: true });
    for await (const _ of first) void _;
    await stored(s0);
    const hit = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], tools, temperature: 0 });
    assert.equal(upstream.chatRequests().length, 1);
    assert.equal(hit.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(hit.choices[0]!.message.tool_calls?.[0]?.id, 'call_abc');
    assert.equal((hit.choices[0]!.message.tool_calls?.[0] as { function: { arguments: string } }).function.arguments, '{"city":"Paris"}');
    // Different tools are a different request.
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0 });
    assert.equal(upstream.chatRequests().length, 2);
  });

  it('parameters that change the answer are part of the key; models not opted in are never cached', async () => {
    const prompt = unique('Keyed on parameters');
    const s0 = cache().stats.stored;
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 20 });
    await stored(s0);
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 21 });
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 20, seed: 7 });
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: prompt }], temperature: 0, max_tokens: 20 });
    assert.equal(upstream.chatRequests().length, 4);
    const res = await openai.chat.completions.create({ model: 'gpt-nocache', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 20 }).withResponse();
    await openai.chat.completions.create({ model: 'gpt-nocache', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 20 });
    assert.equal(res.response.headers.get('x-gateway-cache'), null);
    assert.equal(upstream.chatRequests().length, 6);
    const rec = await srv.recordOf(res.response.headers.get('x-request-id'));
    assert.equal(rec.cacheStatus, undefined);
  });

  it('x-gateway-cache: no-cache refreshes, no-store bypasses; a high temperature bypasses unless forced', async () => {
    const prompt = unique('Header directives');
    const body = { model: 'gpt', messages: [{ role: 'user' as const, content: prompt }], temperature: 0 };
    let s0 = cache().stats.stored;
    await openai.chat.completions.create(body);
    await stored(s0);
    s0 = cache().stats.stored;
    const refresh = await openai.chat.completions.create(body, { headers: { 'x-gateway-cache': 'no-cache' } }).withResponse();
    assert.equal(upstream.chatRequests().length, 2, 'no-cache skips the lookup');
    assert.equal((await srv.recordOf(refresh.response.headers.get('x-request-id'))).cacheStatus, 'stored');
    await stored(s0);
    const noStore = await openai.chat.completions.create({ ...body, messages: [{ role: 'user', content: `${prompt} (2)` }] }, { headers: { 'x-gateway-cache': 'no-store' } }).withResponse();
    assert.equal(noStore.response.headers.get('x-gateway-cache'), 'bypass');
    assert.equal((await srv.recordOf(noStore.response.headers.get('x-request-id'))).cacheStatus, 'bypass');
    await openai.chat.completions.create({ ...body, messages: [{ role: 'user', content: `${prompt} (2)` }] });
    assert.equal(upstream.chatRequests().length, 4, 'nothing was stored under no-store');

    const hot = { ...body, messages: [{ role: 'user' as const, content: `${prompt} (hot)` }], temperature: 0.9 };
    const h1 = await openai.chat.completions.create(hot).withResponse();
    assert.equal(h1.response.headers.get('x-gateway-cache'), 'bypass');
    await openai.chat.completions.create(hot);
    assert.equal(upstream.chatRequests().length, 6);
    s0 = cache().stats.stored;
    await openai.chat.completions.create(hot, { headers: { 'x-gateway-cache': 'force' } });
    await stored(s0);
    const forced = await openai.chat.completions.create(hot, { headers: { 'x-gateway-cache': 'force' } }).withResponse();
    assert.equal(forced.response.headers.get('x-gateway-cache'), 'hit');
    assert.equal(upstream.chatRequests().length, 7);
  });

  it('entries expire after their TTL (x-gateway-cache-ttl, checked on read)', async () => {
    const prompt = unique('Short lived');
    const body = { model: 'gpt', messages: [{ role: 'user' as const, content: prompt }], temperature: 0 };
    const s0 = cache().stats.stored;
    await openai.chat.completions.create(body, { headers: { 'x-gateway-cache-ttl': '5' } });
    await stored(s0);
    clock.advance(3_000);
    assert.equal((await openai.chat.completions.create(body).withResponse()).response.headers.get('x-gateway-cache'), 'hit');
    clock.advance(3_000);
    const late = await openai.chat.completions.create(body).withResponse();
    assert.equal(late.response.headers.get('x-gateway-cache'), 'miss');
    assert.equal(upstream.chatRequests().length, 2);
  });

  it('an answer too large for an item is skipped and counted, not truncated', async () => {
    const prompt = unique('Give me a long answer');
    // Random base64 barely compresses: ~12 KB of it cannot fit in 4 KB.
    const big = randomBytes(9_000).toString('base64');
    upstream.script({ type: 'text', pieces: [big.slice(0, 6000), big.slice(6000)] });
    const tooLarge0 = cache().stats.tooLarge;
    const res = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0 }).withResponse();
    assert.equal(res.data.choices[0]!.message.content, big, 'the client got the whole answer');
    const rec = await srv.recordOf(res.response.headers.get('x-request-id'));
    assert.equal(rec.cacheStatus, 'too_large');
    assert.equal(cache().stats.tooLarge, tooLarge0 + 1);
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0 });
    assert.equal(upstream.chatRequests().length, 2);
  });

  it('entries are stored compressed in the table', async () => {
    const prompt = unique('Compressed storage check with a somewhat longer prompt so the answer repeats repeats repeats');
    const s0 = cache().stats.stored;
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: prompt }], temperature: 0, stream: true }).then(async (s) => {
      for await (const _ of s) void _;
    });
    await stored(s0);
    const backend = cache().backend as DynamoCacheBackend;
    assert.ok(backend instanceof DynamoCacheBackend);
    // Scan what is there through the real API: the newest entry decodes to the raw upstream SSE.
    const { ScanCommand, DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
    const c = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    const items = (await c.send(new ScanCommand({ TableName: TABLE }))).Items ?? [];
    c.destroy();
    const entries = items.map((i) => ({ size: i.body!.B!.byteLength, entry: decodeEntry(i.body!.B!) })).filter((e) => e.entry?.raw?.text.includes(prompt.split(' ').pop()!));
    assert.equal(entries.length, 1);
    const { size, entry } = entries[0]!;
    assert.ok(size < Buffer.byteLength(entry!.raw!.text) / 2, `compressed ${size} bytes vs ${Buffer.byteLength(entry!.raw!.text)} raw`);
  });
});

describe('exact cache across formats (translated route)', () => {
  it('an answer stored from Chat Completions replays to Anthropic Messages and OpenAI Responses clients, streamed and not', async () => {
    const prompt = unique('Cross format replay of this sentence');
    const s0 = cache().stats.stored;
    const first = await openai.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 64 });
    const text = first.choices[0]!.message.content!;
    assert.ok(text.length > 0);
    await stored(s0);
    const hits0 = cache().stats.hits;

    const params = { model: 'mock', max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: prompt }] } as Anthropic.MessageCreateParamsNonStreaming;
    const msg = await claude.messages.create(params).withResponse();
    assert.equal(msg.response.headers.get('x-gateway-cache'), 'hit');
    assert.equal(msg.data.content[0]?.type === 'text' ? msg.data.content[0].text : '', text);
    assert.equal(msg.data.usage.output_tokens, first.usage?.completion_tokens);

    const stream = claude.messages.stream({ model: 'mock', max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: prompt }] });
    const final = await stream.finalMessage();
    assert.equal(final.content[0]?.type === 'text' ? final.content[0].text : '', text);
    assert.equal(final.stop_reason, 'end_turn');

    const resp = await openai.responses.create({ model: 'mock', input: prompt, temperature: 0, max_output_tokens: 64 });
    assert.equal(resp.output_text, text);
    const rstream = await openai.responses.create({ model: 'mock', input: prompt, temperature: 0, max_output_tokens: 64, stream: true });
    let rtext = '';
    let completed = false;
    for await (const ev of rstream) {
      if (ev.type === 'response.output_text.delta') rtext += ev.delta;
      if (ev.type === 'response.completed') completed = true;
    }
    assert.equal(rtext, text);
    assert.ok(completed);
    assert.equal(cache().stats.hits, hits0 + 4);
  });

  it('an Anthropic client on an OpenAI upstream: streamed miss stored from the events, replayed streamed', async () => {
    const prompt = unique('Anthropic through the cache');
    const s0 = cache().stats.stored;
    const stream = claude.messages.stream({ model: 'gpt-small', max_tokens: 50, temperature: 0, messages: [{ role: 'user', content: prompt }] });
    const first = await stream.finalMessage();
    await stored(s0);
    const again = claude.messages.stream({ model: 'gpt-small', max_tokens: 50, temperature: 0, messages: [{ role: 'user', content: prompt }] });
    const second = await again.finalMessage();
    assert.equal(upstream.chatRequests().length, 1);
    assert.deepEqual(second.content, first.content);
    assert.equal(second.usage.input_tokens, first.usage.input_tokens);
    assert.equal(second.usage.output_tokens, first.usage.output_tokens);
  });
});

describe('semantic cache', () => {
  it('a prompt worded the same but written differently is served from a stored neighbour; unrelated prompts are not', async () => {
    const tag = randomBytes(3).toString('hex');
    const s0 = cache().stats.stored;
    const first = await openai.chat.completions.create({ model: 'mock-sem', messages: [{ role: 'user', content: `What is the capital of France, ${tag}?` }], temperature: 0 });
    await stored(s0);
    const sem0 = cache().stats.semanticHits;
    const near = await openai.chat.completions.create({ model: 'mock-sem', messages: [{ role: 'user', content: `what is the capital of france ${tag}` }], temperature: 0 }).withResponse();
    assert.equal(near.response.headers.get('x-gateway-cache'), 'semantic-hit');
    assert.equal(near.data.choices[0]!.message.content, first.choices[0]!.message.content);
    // The log record tells a semantic hit from an exact one (docs/log-schema.md: `semantic_hit`).
    const nearRecord = await srv.recordOf(near.response.headers.get('x-request-id'));
    assert.equal(nearRecord.cacheStatus, 'semantic_hit');
    assert.equal(nearRecord.cacheHit, true);
    assert.equal(cache().stats.semanticHits, sem0 + 1);
    const far = await openai.chat.completions.create({ model: 'mock-sem', messages: [{ role: 'user', content: `Describe the rings of Saturn in detail ${tag}` }], temperature: 0 }).withResponse();
    assert.equal(far.response.headers.get('x-gateway-cache'), 'miss');
    assert.match(far.data.choices[0]!.message.content ?? '', /Saturn/);
  });
});

describe('cache namespaces', () => {
  it('answers are shared within a team and not across teams; a hit settles no spend against budgets', async () => {
    const g = await startKeyedGateway({ config: { cache: { backend: 'memory', models: { mock: {} } } } });
    try {
      await g.admin('PUT', '/admin/teams/red', { limits: {} });
      await g.admin('PUT', '/admin/teams/blue', { limits: {} });
      const red1 = await g.createKey({ name: 'red-1', team: 'red' });
      const red2 = await g.createKey({ name: 'red-2', team: 'red' });
      const blue = await g.createKey({ name: 'blue-1', team: 'blue' });
      const costs: number[] = [];
      const ask = async (key: string) => {
        const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: key, maxRetries: 0 });
        const { response } = await c.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'namespaced question' }], temperature: 0 }).withResponse();
        const rec = await eventually(async () => g.sink.records.find((r) => r.requestId === response.headers.get('x-request-id')), 'record');
        costs.push(rec.costUsd!);
        return `${response.headers.get('x-gateway-cache')} ${rec.costUsd! > 0 ? 'paid' : 'free'}`;
      };
      const gw = g.servers[0]!.gateway.cache!;
      assert.equal(await ask(red1.key), 'miss paid');
      await eventually(async () => gw.stats.stored >= 1, 'store');
      assert.equal(await ask(red2.key), 'hit free');
      assert.equal(await ask(blue.key), 'miss paid');
      // The red team's spend is its one miss: the hit added nothing.
      const usage = await eventually(async () => {
        const r = await g.admin('GET', '/admin/teams/red/usage');
        return r.status === 200 && r.json.day.requests === 2 ? r : undefined;
      }, 'team usage');
      assert.ok(costs[0]! > 0 && Math.abs(usage.json.day.costUsd - costs[0]!) < 1e-9, JSON.stringify(usage.json.day));
    } finally {
      await g.close();
    }
  });
});

describe('exact cache on pass-through routes of the other APIs', () => {
  it('a streamed Responses answer and a streamed Anthropic answer are stored as they came and replay in their own API, streamed or not', async () => {
    const { startMockResponsesUpstream } = await import('./helpers/mock-openai-responses.ts');
    const { startMockAnthropic } = await import('./helpers/mock-anthropic.ts');
    const responsesUp = await startMockResponsesUpstream();
    const anthropicUp = await startMockAnthropic({ apiKey: 'sk-ant-upstream-CACHE-0001' });
    const s2 = await startGateway({
      providers: {
        oai: { type: 'openai', baseUrl: responsesUp.baseUrl, apiKeyEnv: 'TEST_CACHE_OAI' },
        ant: { type: 'anthropic', baseUrl: anthropicUp.baseUrl, apiKeyEnv: 'TEST_CACHE_ANT' },
      },
      models: { resp: { provider: 'oai', model: 'gpt-4.1' }, claude: { provider: 'ant', model: 'claude-sonnet-4-5' } },
      config: {
        routing: { retry: { retries: 0 }, fallbackOn: [] },
        cache: { backend: 'memory', models: { '*': {} } },
      },
      env: { TEST_CACHE_OAI: 'sk-oai-CACHE-0002', TEST_CACHE_ANT: 'sk-ant-upstream-CACHE-0001' },
      label: 't',
    });
    try {
      const c = s2.gateway.cache!;
      const oai = new OpenAI({ baseURL: `${s2.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0 });
      // Responses, streamed, with a function call.
      responsesUp.script({ type: 'function_call', callId: 'call_r1', name: 'lookup', argumentPieces: ['{"q":', '"tides"}'] });
      const tools: OpenAI.Responses.Tool[] = [{ type: 'function', name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } }, strict: false }];
      const s0 = c.stats.stored;
      const live = await oai.responses.create({ model: 'resp', input: 'when is high tide?', tools, temperature: 0, stream: true });
      for await (const _ of live) void _;
      await eventually(async () => c.stats.stored > s0, 'store');
      const replay = await oai.responses.create({ model: 'resp', input: 'when is high tide?', tools, temperature: 0 });
      assert.equal(responsesUp.requests.length, 1);
      const call = replay.output.find((o) => o.type === 'function_call') as OpenAI.Responses.ResponseFunctionToolCall | undefined;
      assert.equal(call?.call_id, 'call_r1');
      assert.equal(call?.arguments, '{"q":"tides"}');
      assert.equal(replay.usage?.input_tokens, 12);

      // Responses text, non-streamed upstream JSON replayed as a stream.
      responsesUp.script({ type: 'text', pieces: ['Low ', 'tide ', 'at noon.'] });
      const s1 = c.stats.stored;
      const first = await oai.responses.create({ model: 'resp', input: 'and low tide?', temperature: 0 });
      await eventually(async () => c.stats.stored > s1, 'store');
      let streamed = '';
      for await (const ev of await oai.responses.create({ model: 'resp', input: 'and low tide?', temperature: 0, stream: true })) if (ev.type === 'response.output_text.delta') streamed += ev.delta;
      assert.equal(streamed, first.output_text);
      assert.equal(streamed, 'Low tide at noon.');
      assert.equal(responsesUp.requests.length, 2);

      // Anthropic, streamed upstream, replayed as JSON.
      const claudeClient = new Anthropic({ baseURL: s2.url, apiKey: CLIENT_KEY, maxRetries: 0 });
      anthropicUp.script({ type: 'text', pieces: ['Tides ', 'follow ', 'the moon.'] });
      const s3 = c.stats.stored;
      const msg = await claudeClient.messages.stream({ model: 'claude', max_tokens: 40, temperature: 0, messages: [{ role: 'user', content: 'why tides?' }] }).finalMessage();
      await eventually(async () => c.stats.stored > s3, 'store');
      const again = await claudeClient.messages.create({ model: 'claude', max_tokens: 40, temperature: 0, messages: [{ role: 'user', content: 'why tides?' }] } as Anthropic.MessageCreateParamsNonStreaming);
      assert.equal(anthropicUp.messageRequests().length, 1);
      assert.deepEqual(again.content, msg.content);
      assert.equal(again.usage.output_tokens, msg.usage.output_tokens);
    } finally {
      await s2.close();
      await responsesUp.close();
      await anthropicUp.close();
    }
  });
});

describe('exact cache on the Bedrock InvokeModel door', () => {
  it('an InvokeModel answer passed through from Bedrock is stored and replayed, streamed or not, with no second upstream call', async () => {
    process.env.AWS_ACCESS_KEY_ID ??= 'AKIDCACHETEST';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'cache-test-secret';
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    const { startMockBedrock } = await import('./helpers/mock-bedrock.ts');
    const bedrock = await startMockBedrock();
    const MODEL_ID = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
    const s2 = await startGateway({
      providers: { bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint } },
      models: { 'claude-on-bedrock': { provider: 'bedrock', model: MODEL_ID } },
      config: {
        routing: { retry: { retries: 0 }, fallbackOn: [] },
        cache: { backend: 'memory', models: { 'claude-on-bedrock': {} } },
      },
      label: 't',
    });
    try {
      const c = s2.gateway.cache!;
      bedrock.script({ type: 'answer', text: ['Tides ', 'come ', 'twice a day.'], usage: { inputTokens: 9, outputTokens: 5 } });
      const body = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 50, temperature: 0, messages: [{ role: 'user', content: 'how often are tides?' }] });
      const invoke = () => fetch(`${s2.url}/bedrock/model/${MODEL_ID}/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const s0 = c.stats.stored;
      const first = await invoke();
      assert.equal(first.status, 200);
      const firstMsg = await first.json();
      await eventually(async () => c.stats.stored > s0, 'store');
      const second = await invoke();
      assert.equal(second.status, 200);
      assert.equal(second.headers.get('x-gateway-cache'), 'hit');
      const secondMsg = await second.json();
      assert.deepEqual(secondMsg.content, firstMsg.content);
      assert.deepEqual(secondMsg.content, [{ type: 'text', text: 'Tides come twice a day.' }]);
      assert.equal(secondMsg.usage.output_tokens, 5);
      const streamed = await fetch(`${s2.url}/bedrock/model/${MODEL_ID}/invoke-with-response-stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(streamed.status, 200);
      assert.equal(streamed.headers.get('x-gateway-cache'), 'hit');
      assert.match(streamed.headers.get('content-type') ?? '', /amazon\.eventstream/);
      assert.ok((await streamed.arrayBuffer()).byteLength > 0);
      assert.equal(bedrock.requests.filter((r) => r.operation === 'invoke' || r.operation === 'invoke-with-response-stream').length, 1);
    } finally {
      await s2.close();
      await bedrock.close();
    }
  });
});

describe('cache request headers are checked (issue #15)', () => {
  for (const [header, value] of [
    ['x-gateway-cache', 'bogus'],
    ['x-gateway-cache-ttl', 'abc'],
    ['x-gateway-cache-ttl', '0'],
    ['x-gateway-cache-ttl', '-5'],
    ['x-gateway-cache-ttl', '1.5'],
  ] as const) {
    it(`${header}: ${JSON.stringify(value)} is a 400 naming the header and the allowed values, in the caller's format`, async () => {
      const before = upstream.chatRequests().length;
      const err = await openai.chat.completions
        .create({ model: 'gpt', messages: [{ role: 'user', content: unique('bad header') }], temperature: 0 }, { headers: { [header]: value } })
        .then(() => undefined, (e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
      assert.ok(err, 'refused');
      assert.equal(err.status, 400);
      assert.equal(err.code, 'invalid_cache_header');
      assert.equal(err.param, header);
      assert.ok(err.message.includes(header), err.message);
      assert.match(err.message, header === 'x-gateway-cache' ? /no-cache, no-store, force/ : /whole number of seconds from 1/);
      assert.equal(upstream.chatRequests().length, before, 'nothing went upstream');
    });
  }

  it('on /v1/messages the 400 is in Anthropic\'s shape', async () => {
    const err = await claude.messages
      .create({ model: 'mock', max_tokens: 20, messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'x-gateway-cache': 'sometimes' } })
      .then(() => undefined, (e: unknown) => e as InstanceType<typeof Anthropic.APIError>);
    assert.equal(err?.status, 400);
    const body = err!.error as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(body.error.message, /x-gateway-cache.*no-cache, no-store, force/);
  });

  it('valid values still work; a TTL above cache.maxTtlSeconds is capped, not refused; empty values count as absent', async () => {
    const body = { model: 'gpt', messages: [{ role: 'user' as const, content: unique('valid headers') }], temperature: 0 };
    const ok = await openai.chat.completions.create(body, { headers: { 'x-gateway-cache': ' No-Cache ', 'x-gateway-cache-ttl': '999999999' } }).withResponse();
    assert.equal(ok.response.status, 200);
    const empty = await openai.chat.completions.create({ ...body, messages: [{ role: 'user', content: unique('empty headers') }] }, { headers: { 'x-gateway-cache': '', 'x-gateway-cache-ttl': ' ' } }).withResponse();
    assert.equal(empty.response.status, 200);
  });
});

describe('cache entries do not cross aliases or guardrail profiles (issue #15)', () => {
  it('an alias without guardrails is never served the answer redacted for an alias with them, and vice versa', async () => {
    const s2 = await startGateway({
      providers: { mock: { type: 'mock', wordDelayMs: 0 } },
      models: { guarded: { provider: 'mock', model: 'mock-echo-1' }, open: { provider: 'mock', model: 'mock-echo-1' }, 'open-too': { provider: 'mock', model: 'mock-echo-1' } },
      config: {
        guardrails: {
          profiles: { pii: { rules: [{ name: 'pii', detect: ['email'], action: 'redact', on: ['output'] }] } },
          apply: { models: { guarded: 'pii' } },
        },
        cache: { backend: 'memory', namespace: 'global', models: { '*': {} } },
      },
      label: 'alias cache test',
    });
    try {
      const c = s2.gateway.cache!;
      const oai = new OpenAI({ baseURL: `${s2.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0 });
      const prompt = `please write to alice@example.com ${randomBytes(3).toString('hex')}`;
      const ask = async (model: string, stream = false) => {
        if (!stream) {
          const { data, response } = await oai.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], temperature: 0 }).withResponse();
          return { text: data.choices[0]!.message.content ?? '', cache: response.headers.get('x-gateway-cache') };
        }
        const { data, response } = await oai.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: prompt }], temperature: 0 }).withResponse();
        let text = '';
        for await (const chunk of data) text += chunk.choices[0]?.delta?.content ?? '';
        return { text, cache: response.headers.get('x-gateway-cache') };
      };
      let s0 = c.stats.stored;
      const g1 = await ask('guarded');
      assert.equal(g1.cache, 'miss');
      assert.ok(!g1.text.includes('alice@example.com'), `redacted for the guarded alias: ${g1.text}`);
      await eventually(async () => c.stats.stored > s0, 'store');

      // Same target, no guardrails: before, this was a hit serving the redacted text.
      s0 = c.stats.stored;
      const o1 = await ask('open', true);
      assert.equal(o1.cache, 'miss');
      assert.match(o1.text, /alice@example\.com/);
      await eventually(async () => c.stats.stored > s0, 'store');

      // Each alias then hits its own entry; a third alias has none.
      const g2 = await ask('guarded', true);
      assert.equal(g2.cache, 'hit');
      assert.equal(g2.text, g1.text);
      const o2 = await ask('open');
      assert.equal(o2.cache, 'hit');
      assert.match(o2.text, /alice@example\.com/);
      assert.equal((await ask('open-too')).cache, 'miss');
    } finally {
      await s2.close();
    }
  });
});
