import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { parseConfig } from '../shared/config/load.ts';
import { createDynamoStore, type DynamoStore } from '../shared/store/dynamodb.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { MemorySink } from './helpers/gateway.ts';
import { ADMIN_TOKEN, eventually, startDynamo, TestClock } from './helpers/keys.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { startMockResponsesUpstream, type MockResponsesUpstream } from './helpers/mock-openai-responses.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * Stateful Responses (issue #18): `store`, `previous_response_id`, retrieve / input_items / delete,
 * driven by the official openai SDK against the real gateway, with dynalite as DynamoDB and
 * loopback upstreams in each provider's wire format. One conversation's turns go to different
 * providers; each upstream must receive the whole rebuilt conversation.
 */

let dynamo: LocalDynamo;
let store: DynamoStore;
let anthropic: MockAnthropic;
let compat: MockOpenAI;
let oai: MockResponsesUpstream;
let bedrock: MockBedrock;
let srv: LocalServer;
let plain: LocalServer;
let sink: MemorySink;
let alice: OpenAI;
let bob: OpenAI;
let aliceKey: string;

const NOVA = 'amazon.nova-lite-v1:0';

function providers() {
  return {
    mock: { type: 'mock', wordDelayMs: 0 },
    anthropic: { type: 'anthropic', baseUrl: anthropic.baseUrl, apiKeyEnv: 'TEST_RS_ANTHROPIC_KEY' },
    compat: { type: 'openai-compatible', baseUrl: compat.baseUrl, apiKeyEnv: 'TEST_RS_COMPAT_KEY' },
    oai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'TEST_RS_OPENAI_KEY' },
    bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint },
  };
}
const models = {
  mock: { provider: 'mock', model: 'mock-echo-1' },
  claude: { provider: 'anthropic', model: 'claude-sonnet-4-5' },
  llama: { provider: 'compat', model: 'llama-3.1-8b-instruct' },
  'gpt-5': { provider: 'oai', model: 'gpt-5-2025-08-07' },
  nova: { provider: 'bedrock', model: NOVA },
};
const upstreamEnv = { TEST_RS_ANTHROPIC_KEY: 'sk-ant-rs-0001', TEST_RS_COMPAT_KEY: 'sk-compat-rs-0002', TEST_RS_OPENAI_KEY: 'sk-openai-rs-0003' };

before(async () => {
  useDummyAwsCredentials('AKIDRESPONSESTEST', 'responses-test-secret');
  const d = await startDynamo();
  dynamo = d.dynamo;
  store = createDynamoStore(d.settings);
  anthropic = await startMockAnthropic({ apiKey: upstreamEnv.TEST_RS_ANTHROPIC_KEY });
  compat = await startMockOpenAI();
  oai = await startMockResponsesUpstream();
  bedrock = await startMockBedrock();
  sink = new MemorySink();
  const config = parseConfig(
    {
      providers: providers(),
      models,
      auth: { required: true },
      routing: { retry: { retries: 0 } },
      logging: { localDir: 'data/test-logs-unused', bodies: { enabled: true, redact: ['SECRET-\\d+'] } },
      responses: { ttlDays: 7 },
    },
    'test configuration',
  );
  const env = { ...upstreamEnv, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, DYNAMODB_ENDPOINT: dynamo.endpoint, GATEWAY_KEYS_TABLE: 'test-keys', GATEWAY_USAGE_TABLE: 'test-usage', AWS_REGION: 'local' };
  srv = await startLocalServer({ config, env, port: 0, host: '127.0.0.1', sinks: [sink], store });
  const key = async (name: string) => {
    const res = await fetch(`${srv.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
    assert.equal(res.status, 201);
    return ((await res.json()) as { key: string }).key;
  };
  aliceKey = await key('alice');
  alice = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: aliceKey, maxRetries: 0, timeout: 20_000 });
  bob = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: await key('bob'), maxRetries: 0, timeout: 20_000 });
  // The same providers with body logging off (the default): nothing may be kept.
  const plainConfig = parseConfig({ providers: providers(), models, routing: { retry: { retries: 0 } }, logging: { localDir: 'data/test-logs-unused' } }, 'test configuration');
  plain = await startLocalServer({ config: plainConfig, env: { ...upstreamEnv, DYNAMODB_ENDPOINT: dynamo.endpoint, GATEWAY_USAGE_TABLE: 'test-usage', AWS_REGION: 'local' }, port: 0, host: '127.0.0.1', sinks: [] });
});

after(async () => {
  await srv?.close();
  await plain?.close();
  store?.close();
  await Promise.all([anthropic?.close(), compat?.close(), oai?.close(), bedrock?.close()]);
  await dynamo?.close();
});

beforeEach(() => {
  anthropic.reset();
  compat.reset();
  oai.reset();
  bedrock.reset();
});

/** Wait (bounded) until the gateway has stored a response: it does so after the client has its bytes. */
async function stored(client: OpenAI, id: string): Promise<OpenAI.Responses.Response> {
  return eventually(() => client.responses.retrieve(id).catch(() => undefined), `response ${id} stored`);
}

async function streamed(client: OpenAI, params: OpenAI.Responses.ResponseCreateParamsStreaming): Promise<OpenAI.Responses.Response> {
  let done: OpenAI.Responses.Response | undefined;
  for await (const ev of await client.responses.create(params)) if (ev.type === 'response.completed') done = ev.response;
  assert.ok(done, 'the stream completed');
  return done;
}

async function expectStatus(p: Promise<unknown>, status: number, param?: string): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, String(err));
    assert.equal(err.status, status, err.message);
    if (param !== undefined) assert.equal((err.error as { param?: string } | undefined)?.param ?? err.param, param);
    return err;
  }
  assert.fail(`expected ${status}`);
}

const text = (m: { content: unknown }) => (typeof m.content === 'string' ? m.content : (m.content as { text?: string }[]).map((p) => p.text ?? '').join(''));

describe('stateful Responses across providers', () => {
  it('continues one conversation on the mock, Anthropic, an OpenAI-compatible and a Bedrock upstream, each getting the whole rebuilt conversation', async () => {
    const t1 = await alice.responses.create({ model: 'mock', instructions: 'Be brief.', input: 'first question' });
    assert.match(t1.id, /^resp_[0-9a-f]{48}$/);
    assert.equal(t1.output_text, 'first question');
    // The client's own copy says what the gateway did with it, as OpenAI's does.
    assert.equal((t1 as { store?: boolean }).store, true);
    assert.equal(t1.previous_response_id, null);
    await stored(alice, t1.id);

    // Turn 2, streamed, on Anthropic: turn 1's input and output, then the new input; turn 1's instructions are not inherited.
    const t2 = await streamed(alice, { model: 'claude', input: 'second question', previous_response_id: t1.id, stream: true });
    const up2 = anthropic.lastMessageRequest().body;
    assert.equal(up2.system, undefined);
    assert.deepEqual(
      up2.messages.map((m: any) => [m.role, text(m)]),
      [['user', 'first question'], ['assistant', 'first question'], ['user', 'second question']],
    );
    assert.notEqual(t2.id, t1.id);
    assert.equal(t2.previous_response_id, t1.id, 'the streamed response.completed names the response it continues');
    assert.equal((t2 as { store?: boolean }).store, true);
    const got2 = await stored(alice, t2.id);
    assert.equal(got2.previous_response_id, t1.id);
    assert.equal((got2 as { store?: boolean }).store, true);
    assert.equal(got2.output_text, 'second question');

    // Turn 3 on an OpenAI-compatible upstream (Chat Completions), with instructions of its own.
    const t3 = await alice.responses.create({ model: 'llama', instructions: 'Answer in French.', input: [{ role: 'user', content: 'third question' }], previous_response_id: t2.id });
    assert.deepEqual(
      compat.lastChatRequest().body.messages.map((m: any) => [m.role, text(m)]),
      [['system', 'Answer in French.'], ['user', 'first question'], ['assistant', 'first question'], ['user', 'second question'], ['assistant', 'second question'], ['user', 'third question']],
    );
    assert.equal(t3.previous_response_id, t2.id);
    await stored(alice, t3.id);

    // Turn 4, streamed, on Bedrock (Converse).
    const t4 = await streamed(alice, { model: 'nova', input: 'fourth question', previous_response_id: t3.id, stream: true });
    const conv = bedrock.last('converse-stream').body;
    assert.deepEqual(
      conv.messages.map((m: any) => [m.role, m.content.map((c: any) => c.text).join('')]),
      [['user', 'first question'], ['assistant', 'first question'], ['user', 'second question'], ['assistant', 'second question'], ['user', 'third question'], ['assistant', 'third question'], ['user', 'fourth question']],
    );
    await stored(alice, t4.id);

    // input_items: the whole conversation this response answered, newest first by default, paged.
    const items = await alice.responses.inputItems.list(t4.id);
    assert.equal(items.data.length, 7);
    assert.equal(text(items.data[0] as any), 'fourth question');
    assert.equal(text(items.data[6] as any), 'first question');
    const page = await fetch(`${srv.url}/v1/responses/${t4.id}/input_items?order=asc&limit=2`, { headers: { authorization: `Bearer ${aliceKey}` } });
    const pj = (await page.json()) as any;
    assert.equal(pj.object, 'list');
    assert.deepEqual(pj.data.map((d: any) => text(d)), ['first question', 'first question']);
    assert.equal(pj.has_more, true);
    assert.equal(pj.first_id, pj.data[0].id);
    assert.equal(pj.last_id, pj.data[1].id);
    const next = (await (await fetch(`${srv.url}/v1/responses/${t4.id}/input_items?order=asc&limit=100&after=${pj.last_id}`, { headers: { authorization: `Bearer ${aliceKey}` } })).json()) as any;
    assert.equal(next.data.length, 5);
    assert.equal(next.has_more, false);
    assert.equal(text(next.data[0]), 'second question');
    const back = (await (await fetch(`${srv.url}/v1/responses/${t4.id}/input_items?order=asc&limit=2&before=${next.data[2].id}`, { headers: { authorization: `Bearer ${aliceKey}` } })).json()) as any;
    assert.deepEqual(back.data.map((d: any) => text(d)), ['second question', 'second question']);
    assert.equal(back.has_more, true);
  });

  it('carries a tool loop across providers: the function call of one turn and its output in the next', async () => {
    const tools = [{ type: 'function' as const, name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, strict: false }];
    const t1 = await alice.responses.create({ model: 'mock', tools, input: 'call get_weather {"city":"Oslo"}' });
    const call = t1.output.find((o) => o.type === 'function_call');
    assert.ok(call?.type === 'function_call');
    await stored(alice, t1.id);
    await alice.responses.create({ model: 'claude', tools, previous_response_id: t1.id, input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21C' }] });
    const messages = anthropic.lastMessageRequest().body.messages;
    assert.equal(messages.length, 3);
    assert.deepEqual(messages[1].content.find((c: any) => c.type === 'tool_use'), { type: 'tool_use', id: call.call_id, name: 'get_weather', input: { city: 'Oslo' } });
    assert.deepEqual(messages[2].content[0].type, 'tool_result');
    assert.equal(messages[2].content[0].tool_use_id, call.call_id);
  });

  it('passes an id OpenAI issued through untouched to OpenAI, and rebuilds it for another provider', async () => {
    const t1 = await alice.responses.create({ model: 'gpt-5', input: 'hello openai' });
    assert.deepEqual(oai.requests[0]!.body, { model: 'gpt-5-2025-08-07', input: 'hello openai' });
    await stored(alice, t1.id);
    await alice.responses.create({ model: 'gpt-5', input: 'again', previous_response_id: t1.id });
    assert.deepEqual(oai.requests[1]!.body, { model: 'gpt-5-2025-08-07', input: 'again', previous_response_id: t1.id });
    await alice.responses.create({ model: 'claude', input: 'now you', previous_response_id: t1.id });
    assert.deepEqual(
      anthropic.lastMessageRequest().body.messages.map((m: any) => [m.role, text(m)]),
      [['user', 'hello openai'], ['assistant', 'hello openai'], ['user', 'now you']],
    );
  });

  it('sends a conversation the gateway keeps to OpenAI as input, without the ids other upstreams cannot know', async () => {
    const t1 = await alice.responses.create({ model: 'mock', input: 'made elsewhere' });
    await stored(alice, t1.id);
    await alice.responses.create({ model: 'gpt-5', input: 'continue', previous_response_id: t1.id });
    const body = oai.requests[0]!.body;
    assert.equal(body.previous_response_id, undefined);
    assert.deepEqual(body.input.map((i: any) => [i.role, i.id, text(i)]), [['user', undefined, 'made elsewhere'], ['assistant', undefined, 'made elsewhere'], ['user', undefined, 'continue']]);
  });

  it('keeps nothing with store: false', async () => {
    const r = await alice.responses.create({ model: 'mock', input: 'forget me', store: false });
    assert.equal((r as { store?: boolean }).store, false);
    // A stored response of the same key, written after it, is readable: the unstored one was never written.
    const marker = await alice.responses.create({ model: 'mock', input: 'remember me' });
    await stored(alice, marker.id);
    await expectStatus(alice.responses.retrieve(r.id), 404);
    const err = await expectStatus(alice.responses.create({ model: 'mock', input: 'x', previous_response_id: r.id }), 404, 'previous_response_id');
    assert.equal((err.error as { message?: string }).message, `Previous response with id '${r.id}' not found.`);
  });

  it("never shows one key's response to another key", async () => {
    const r = await alice.responses.create({ model: 'mock', input: 'private words' });
    await stored(alice, r.id);
    await expectStatus(bob.responses.retrieve(r.id), 404);
    await expectStatus(bob.responses.inputItems.list(r.id), 404);
    await expectStatus(bob.responses.delete(r.id), 404);
    await expectStatus(bob.responses.create({ model: 'llama', input: 'steal', previous_response_id: r.id }), 404, 'previous_response_id');
    // Not even through an OpenAI route, where an unknown id would be passed on.
    await expectStatus(bob.responses.create({ model: 'gpt-5', input: 'steal', previous_response_id: r.id }), 404, 'previous_response_id');
    assert.equal(compat.chatRequests().length + oai.requests.length, 0, 'nothing reached an upstream');
    assert.equal((await alice.responses.retrieve(r.id)).output_text, 'private words');
  });

  it('deletes a response, then answers 404 for it everywhere', async () => {
    const r = await alice.responses.create({ model: 'mock', input: 'short lived' });
    await stored(alice, r.id);
    const res = await fetch(`${srv.url}/v1/responses/${r.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${aliceKey}` } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { id: r.id, object: 'response', deleted: true });
    await expectStatus(alice.responses.retrieve(r.id), 404);
    await expectStatus(alice.responses.inputItems.list(r.id), 404);
    await expectStatus(alice.responses.delete(r.id), 404);
    await expectStatus(alice.responses.create({ model: 'claude', input: 'x', previous_response_id: r.id }), 404, 'previous_response_id');
    const unknown = await expectStatus(alice.responses.create({ model: 'mock', input: 'x', previous_response_id: 'resp_nope' }), 404, 'previous_response_id');
    assert.equal((unknown.error as { message?: string }).message, "Previous response with id 'resp_nope' not found.");
  });

  it('stores conversations redacted like logged bodies, and answers each of the three routes in OpenAI error shape', async () => {
    const r = await alice.responses.create({ model: 'mock', input: 'my code is SECRET-1234' });
    assert.equal(r.output_text, 'my code is SECRET-1234');
    const got = await stored(alice, r.id);
    assert.equal(got.output_text, 'my code is [REDACTED]');
    const items = await alice.responses.inputItems.list(r.id);
    assert.equal(text(items.data[0] as any), 'my code is [REDACTED]');
    const bad = await fetch(`${srv.url}/v1/responses/${r.id}/input_items?limit=0`, { headers: { authorization: `Bearer ${aliceKey}` } });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).error.param, 'limit');
    const put = await fetch(`${srv.url}/v1/responses/${r.id}`, { method: 'PUT', headers: { authorization: `Bearer ${aliceKey}` } });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, DELETE');
    const anon = await fetch(`${srv.url}/v1/responses/${r.id}`);
    assert.equal(anon.status, 401);
  });

  it('logs one record per call of the new routes', async () => {
    const r = await alice.responses.create({ model: 'mock', input: 'logged' }, { headers: { 'x-request-id': 'rs-create' } });
    await stored(alice, r.id);
    await alice.responses.retrieve(r.id, {}, { headers: { 'x-request-id': 'rs-get' } });
    await eventually(async () => sink.records.some((x) => x.requestId === 'rs-get'), 'the retrieve record');
    const recs = sink.records.filter((x) => x.requestId === 'rs-get');
    assert.equal(recs.length, 1);
    assert.equal(recs[0]!.status, 200);
    assert.equal(recs[0]!.frontDoor, 'openai-responses');
  });
});

describe('stateful Responses with body logging off', () => {
  let client: OpenAI;
  before(() => {
    client = new OpenAI({ baseURL: `${plain.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
  });

  it('answers as before and keeps nothing', async () => {
    const r = await client.responses.create({ model: 'mock', input: 'not kept' });
    assert.equal(r.output_text, 'not kept');
    await expectStatus(client.responses.retrieve(r.id), 404);
  });

  it('refuses store: true and previous_response_id on a translated route with a 400 naming the setting', async () => {
    const s = await expectStatus(client.responses.create({ model: 'claude', input: 'x', store: true }), 400, 'store');
    assert.match(s.message, /logging\.bodies\.enabled/);
    const p = await expectStatus(client.responses.create({ model: 'llama', input: 'x', previous_response_id: 'resp_1' }), 400, 'previous_response_id');
    assert.match(p.message, /logging\.bodies\.enabled/);
    assert.equal(anthropic.messageRequests().length + compat.chatRequests().length, 0);
  });

  it('still passes both through to OpenAI, which keeps its own state', async () => {
    await client.responses.create({ model: 'gpt-5', input: 'x', store: true, previous_response_id: 'resp_abc' });
    assert.deepEqual(oai.requests[0]!.body, { model: 'gpt-5-2025-08-07', input: 'x', store: true, previous_response_id: 'resp_abc' });
  });
});

describe('stored responses: expiry and size', () => {
  let small: LocalServer;
  let client: OpenAI;
  const clock = new TestClock();
  before(async () => {
    const config = parseConfig(
      { providers: providers(), models, logging: { localDir: 'data/test-logs-unused', bodies: { enabled: true } }, responses: { ttlDays: 1, maxItemBytes: 1024 } },
      'test configuration',
    );
    small = await startLocalServer({ config, env: { ...upstreamEnv, DYNAMODB_ENDPOINT: dynamo.endpoint, GATEWAY_USAGE_TABLE: 'test-usage', AWS_REGION: 'local' }, port: 0, host: '127.0.0.1', sinks: [], now: clock.now });
    client = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
  });
  after(() => small?.close());

  it('answers 404 for a response past its TTL, without waiting for DynamoDB to delete it', async () => {
    const r = await client.responses.create({ model: 'mock', input: 'brief' });
    await stored(client, r.id);
    clock.advance(86_400_000 + 1_000);
    await expectStatus(client.responses.retrieve(r.id), 404);
    await expectStatus(client.responses.create({ model: 'mock', input: 'x', previous_response_id: r.id }), 404, 'previous_response_id');
  });

  it('does not store a conversation whose compressed record exceeds responses.maxItemBytes, and says so in a log line', async () => {
    const lines: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    try {
      const big = await client.responses.create({ model: 'mock', input: randomBytes(1500).toString('hex') });
      assert.equal(big.output_text.length, 3000, 'the client gets its whole answer');
      const marker = await client.responses.create({ model: 'mock', input: 'small enough' });
      await stored(client, marker.id);
      await expectStatus(client.responses.retrieve(big.id), 404);
      const line = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((l) => l.responseId === big.id);
      assert.equal(line?.level, 'WARN');
      assert.match(line.message, /response not stored: .*responses\.maxItemBytes/);
      assert.ok(line.bytes > 1024);
    } finally {
      console.error = original;
    }
  });
});
