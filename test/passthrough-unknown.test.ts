import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, ValidationException, type Message } from '@aws-sdk/client-bedrock-runtime';
import { gatewayBedrockClient } from './helpers/bedrock-client.ts';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import { cacheKey, requestKeyMaterial } from '../shared/cache/entry.ts';
import { parseChatRequest } from '../shared/wire/openai-chat/door.ts';
import { parseConverseRequest } from '../shared/wire/bedrock-converse/door.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { openaiErrorJson, startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { startMockResponsesUpstream, type MockResponsesUpstream } from './helpers/mock-openai-responses.ts';

/**
 * Issue #14, the pass-through rule for the OpenAI Chat Completions and Bedrock Converse doors: on a
 * same-format route, fields, message roles and content part / block types the gateway has never
 * seen reach the upstream as sent (200); on a translated route (`mock`) they get a 400 naming them,
 * decided per target at attempt time (so a fallback from a same-format target to a translated one
 * is refused there, naming the part). Driven by the official `openai` client and the AWS SDK's
 * BedrockRuntimeClient against loopback upstreams.
 */

useDummyAwsCredentials('AKIATESTPASSUNKNOWN01', 'passthrough-unknown-secret-not-used');

const NOVA = 'amazon.nova-lite-v1:0';

let upstream: MockOpenAI;
let bedrock: MockBedrock;
let responsesUp: MockResponsesUpstream;
let srv: StartedGateway;
let openai: OpenAI;

before(async () => {
  upstream = await startMockOpenAI();
  bedrock = await startMockBedrock();
  responsesUp = await startMockResponsesUpstream();
  srv = await startGateway({
    providers: {
      openai: { type: 'openai-compatible', baseUrl: upstream.baseUrl, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      mock: { type: 'mock', wordDelayMs: 0 },
      // OpenAI itself: the Responses door passes through to its /responses.
      oai: { type: 'openai', baseUrl: responsesUp.baseUrl, apiKeyEnv: 'TEST_PASS_UNKNOWN_OAI_KEY' },
    },
    models: {
      gpt: { provider: 'openai', model: 'gpt-upstream-1' },
      nova: { provider: 'bedrock', model: NOVA },
      mock: { provider: 'mock', model: 'mock-echo-1' },
      'gpt-responses': { provider: 'oai', model: 'gpt-5-upstream' },
      'gpt-guarded': { provider: 'openai', model: 'gpt-upstream-1' },
      'nova-guarded': { provider: 'bedrock', model: NOVA },
      // A same-format target first, a translated one as its fallback.
      'gpt-then-mock': { groups: [{ targets: [{ provider: 'openai', model: 'gpt-upstream-1' }] }, { targets: [{ provider: 'mock', model: 'mock-echo-1' }] }] },
      'nova-then-mock': { groups: [{ targets: [{ provider: 'bedrock', model: NOVA }] }, { targets: [{ provider: 'mock', model: 'mock-echo-1' }] }] },
    },
    config: {
      routing: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 }, fallbackOn: ['5xx'] },
      guardrails: {
        profiles: {
          guard: {
            rules: [
              { name: 'pii', detect: ['email'], action: 'redact' },
              { name: 'codename', patterns: ['project\\s+falcon'], action: 'block', on: ['input'] },
            ],
          },
        },
        apply: { models: { 'gpt-guarded': 'guard', 'nova-guarded': 'guard' } },
      },
    },
    env: { TEST_PASS_UNKNOWN_OAI_KEY: 'sk-upstream-pass-unknown' },
    label: 'pass-through test configuration',
  });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await upstream?.close();
  await bedrock?.close();
  await responsesUp?.close();
});

beforeEach(() => {
  upstream.reset();
  bedrock.reset();
  responsesUp.reset();
});

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions

const FUTURE_FIELD = { level: 'max', list: [1, 'two', { three: null }] };
const NARRATOR = { role: 'narrator', content: 'The scene opens on a quiet harbour.', voice: 'warm' };
const FUTURE_PART = { type: 'hologram', hologram: { id: 'h-1', frames: [0, 1, 2] } };

/** A request with an unknown top-level field, a made-up role and a made-up content part (and a known-field control). */
function chatBody(model: string) {
  return {
    model,
    messages: [NARRATOR, { role: 'user', content: [{ type: 'text', text: 'describe it' }, FUTURE_PART] }],
    max_tokens: 50,
    future_field: FUTURE_FIELD,
    another_new_flag: true,
  } as unknown as ChatCompletionCreateParamsNonStreaming;
}

async function badRequest(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
  const err = await p.then(
    () => assert.fail('expected a 400'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof OpenAI.BadRequestError, `expected a 400, got ${String(err)}`);
  return err;
}

describe('OpenAI door: unknown fields, roles and content parts', () => {
  it('reach an OpenAI-format upstream as sent (200)', async () => {
    const res = await openai.chat.completions.create(chatBody('gpt'));
    assert.equal(res.object, 'chat.completion');
    const sent = upstream.lastChatRequest().body;
    assert.equal(sent.model, 'gpt-upstream-1');
    assert.equal(JSON.stringify(sent.future_field), JSON.stringify(FUTURE_FIELD));
    assert.equal(sent.another_new_flag, true);
    assert.equal(JSON.stringify(sent.messages[0]), JSON.stringify(NARRATOR));
    assert.equal(JSON.stringify(sent.messages[1].content[1]), JSON.stringify(FUTURE_PART));
    assert.equal(sent.max_tokens, 50);
  });

  it('reach it as sent when streaming too', async () => {
    const body = { ...chatBody('gpt'), stream: true } as unknown as ChatCompletionCreateParamsStreaming;
    const stream = await openai.chat.completions.create(body);
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.ok(text.length > 0);
    const sent = upstream.lastChatRequest().body;
    assert.equal(JSON.stringify(sent.future_field), JSON.stringify(FUTURE_FIELD));
    assert.equal(JSON.stringify(sent.messages[0]), JSON.stringify(NARRATOR));
    assert.equal(JSON.stringify(sent.messages[1].content[1]), JSON.stringify(FUTURE_PART));
  });

  it('a custom tool and an unknown tool_choice shape reach the upstream as sent', async () => {
    const tools = [{ type: 'custom', custom: { name: 'grep', description: 'free-form input' } }];
    const toolChoice = { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'custom', custom: { name: 'grep' } }] } };
    await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], tools, tool_choice: toolChoice } as unknown as ChatCompletionCreateParamsNonStreaming);
    const sent = upstream.lastChatRequest().body;
    assert.equal(JSON.stringify(sent.tools), JSON.stringify(tools));
    assert.equal(JSON.stringify(sent.tool_choice), JSON.stringify(toolChoice));
  });

  it('on a translated route (mock): 400 naming the field, the role or the part, and what to use instead', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ model: 'mock', messages: [{ role: 'user', content: 'hi' }], future_field: FUTURE_FIELD }, 'future_field'],
      [{ model: 'mock', messages: [NARRATOR, { role: 'user', content: 'hi' }] }, 'messages[0].role'],
      [{ model: 'mock', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, FUTURE_PART] }] }, 'messages[0].content[1].type'],
    ];
    for (const [body, param] of cases) {
      const err = await badRequest(openai.chat.completions.create(body as unknown as ChatCompletionCreateParamsNonStreaming));
      assert.equal(err.param, param);
      assert.match(err.message, new RegExp(param.replace(/[[\].]/g, '\\$&')));
      assert.match(err.message, /OpenAI or OpenAI-compatible provider/);
    }
    assert.equal(upstream.requests.length, 0);
  });

  it('a fallback from the same-format target to a translated one is refused there, naming the part', async () => {
    upstream.script({ type: 'error', status: 500, body: openaiErrorJson(500, 'boom') });
    const err = await badRequest(openai.chat.completions.create(chatBody('gpt-then-mock')));
    assert.equal(err.param, 'messages[0].role');
    assert.equal(upstream.chatRequests().length, 1, 'the same-format target was tried first, with the body as sent');
    // Without such parts the same fallback is served by the translated target.
    upstream.script({ type: 'error', status: 500, body: openaiErrorJson(500, 'boom') });
    const ok = await openai.chat.completions.create({ model: 'gpt-then-mock', messages: [{ role: 'user', content: 'plain words' }] });
    assert.equal(ok.choices[0]!.message.content, 'plain words');
  });

  it('what the gateway needs is still checked on a pass-through route, before any upstream call', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1.5 }, 'max_tokens'],
      [{ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }, 'stream'],
      [{ model: 'gpt', messages: [{ role: 7, content: 'hi' }] }, 'messages[0].role'],
      [{ model: 'gpt', messages: [{ role: 'user', content: 42 }] }, 'messages[0].content'],
      [{ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ];
    for (const [body, param] of cases) {
      const err = await badRequest(openai.chat.completions.create(body as unknown as ChatCompletionCreateParamsNonStreaming));
      assert.equal(err.param, param);
    }
    assert.equal(upstream.requests.length, 0);
  });
});

describe('Responses door: an unknown role, item field and content part', () => {
  const input = [
    { role: 'narrator', content: 'The scene opens.' },
    { role: 'user', content: [{ type: 'input_text', text: 'go on' }, { type: 'input_hologram', hologram: { id: 'h-3' } }] },
  ];

  it("reach OpenAI's Responses API as sent (200)", async () => {
    const r = await openai.responses.create({ model: 'gpt-responses', input, future_field: FUTURE_FIELD } as never);
    assert.equal((r as { object?: string }).object, 'response');
    const sent = responsesUp.requests[0]!.body;
    assert.equal(JSON.stringify(sent.input), JSON.stringify(input));
    assert.equal(JSON.stringify(sent.future_field), JSON.stringify(FUTURE_FIELD));
  });

  it('on a translated route (mock): 400 naming the first', async () => {
    const err = await badRequest(openai.responses.create({ model: 'mock', input } as never));
    assert.equal(err.param, 'input[0].role');
    const part = await badRequest(openai.responses.create({ model: 'mock', input: input.slice(1) } as never));
    assert.equal(part.param, 'input[0].content[1].type');
    assert.equal(responsesUp.requests.length, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Bedrock Converse

const FUTURE_CONFIG = { mode: 'turbo', knobs: [1, 2, 3] };
const FUTURE_BLOCK = { hologram: { id: 'h-2', frames: [3, 4] } };
const NARRATOR_TURN = { role: 'narrator', content: [{ text: 'The scene opens.' }] };

/**
 * A Bedrock Runtime client pointed at the gateway. The SDK sends only the members it knows, so a
 * build-step middleware (before signing) adds what a newer client would send: `extra` merged into
 * the top level, and `messages` replaced when given.
 */
function converseClient(extra: Record<string, unknown>, messages?: unknown[]): BedrockRuntimeClient {
  return gatewayBedrockClient(srv.url, {
    accessKeyId: 'AKIATESTPASSUNKNOWN01',
    beforeSend: (request) => {
      const body = { ...JSON.parse(request.body), ...extra };
      if (messages) body.messages = messages;
      request.body = JSON.stringify(body);
      for (const h of Object.keys(request.headers)) if (h.toLowerCase() === 'content-length') delete request.headers[h];
      request.headers['content-length'] = String(Buffer.byteLength(request.body));
    },
  });
}

const PLAIN: Message[] = [{ role: 'user', content: [{ text: 'tell me more' }] }];
const UNKNOWN_MESSAGES = [NARRATOR_TURN, { role: 'user', content: [{ text: 'tell me more' }, FUTURE_BLOCK] }];

async function validation(p: Promise<unknown>): Promise<ValidationException> {
  const err = await p.then(
    () => assert.fail('expected a ValidationException'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ValidationException, `expected a ValidationException, got ${String(err)}`);
  return err;
}

describe('Converse door: unknown fields, roles and content blocks', () => {
  it('reach a Bedrock target as sent (200)', async () => {
    const client = converseClient({ futureConfig: FUTURE_CONFIG, guardrailConfig: { guardrailIdentifier: 'g-1', guardrailVersion: '1' } }, UNKNOWN_MESSAGES);
    const res = await client.send(new ConverseCommand({ modelId: 'nova', messages: PLAIN, inferenceConfig: { maxTokens: 64 }, additionalModelRequestFields: { future_knob: 'on' } }));
    assert.equal(res.$metadata.httpStatusCode, 200);
    assert.ok(res.output?.message?.content?.length);
    const sent = bedrock.last('converse');
    assert.equal(sent.modelId, NOVA);
    assert.equal(JSON.stringify(sent.body.futureConfig), JSON.stringify(FUTURE_CONFIG));
    assert.deepEqual(sent.body.guardrailConfig, { guardrailIdentifier: 'g-1', guardrailVersion: '1' });
    assert.equal(JSON.stringify(sent.body.messages), JSON.stringify(UNKNOWN_MESSAGES));
    assert.deepEqual(sent.body.additionalModelRequestFields, { future_knob: 'on' });
    assert.deepEqual(sent.body.inferenceConfig, { maxTokens: 64 });
    assert.equal(sent.body.modelId, undefined);
  });

  it('reach it as sent on ConverseStream too', async () => {
    const client = converseClient({ futureConfig: FUTURE_CONFIG }, UNKNOWN_MESSAGES);
    const res = await client.send(new ConverseStreamCommand({ modelId: 'nova', messages: PLAIN }));
    let text = '';
    let stopped = false;
    for await (const ev of res.stream!) {
      text += ev.contentBlockDelta?.delta?.text ?? '';
      if (ev.messageStop) stopped = true;
    }
    assert.ok(text.length > 0);
    assert.ok(stopped);
    const sent = bedrock.last('converse-stream');
    assert.equal(JSON.stringify(sent.body.futureConfig), JSON.stringify(FUTURE_CONFIG));
    assert.equal(JSON.stringify(sent.body.messages), JSON.stringify(UNKNOWN_MESSAGES));
  });

  it('on a translated route (mock): ValidationException naming the field, the role or the block', async () => {
    const cases: [BedrockRuntimeClient, string][] = [
      [converseClient({ futureConfig: FUTURE_CONFIG }), 'futureConfig'],
      [converseClient({}, [NARRATOR_TURN, ...PLAIN]), 'messages.0.role'],
      [converseClient({}, [{ role: 'user', content: [{ text: 'hi' }, FUTURE_BLOCK] }]), 'messages.0.content.1.hologram'],
    ];
    for (const [client, param] of cases) {
      const err = await validation(client.send(new ConverseCommand({ modelId: 'mock', messages: PLAIN })));
      assert.ok(err.message.includes(param), `${err.message} names ${param}`);
      assert.match(err.message, /Amazon Bedrock/);
    }
    assert.equal(bedrock.requests.length, 0);
  });

  it('a fallback from the Bedrock target to a translated one is refused there, naming the part', async () => {
    bedrock.script({ type: 'error', status: 500, errorType: 'InternalServerException', message: 'boom' });
    const err = await validation(converseClient({ futureConfig: FUTURE_CONFIG }).send(new ConverseCommand({ modelId: 'nova-then-mock', messages: PLAIN })));
    assert.ok(err.message.includes('futureConfig'));
    assert.equal(bedrock.requests.length, 1, 'the Bedrock target was tried first, with the body as sent');
    assert.equal(JSON.stringify(bedrock.last('converse').body.futureConfig), JSON.stringify(FUTURE_CONFIG));
  });

  it('what the gateway needs is still checked on the Bedrock route, before any upstream call', async () => {
    const plain = converseClient({});
    await validation(plain.send(new ConverseCommand({ modelId: 'nova', messages: PLAIN, inferenceConfig: { maxTokens: 0 } })));
    await validation(plain.send(new ConverseCommand({ modelId: 'nova', messages: PLAIN, inferenceConfig: { temperature: 3 } })));
    await validation(converseClient({}, [{ role: 'user', content: 'not a list' }]).send(new ConverseCommand({ modelId: 'nova', messages: PLAIN })));
    await validation(converseClient({}, []).send(new ConverseCommand({ modelId: 'nova', messages: PLAIN })));
    assert.equal(bedrock.requests.length, 0);
  });
});

describe('response cache keys with parts passed through as sent', () => {
  it('two requests that differ only in an unknown role, part or block never share a key', () => {
    const chatKey = (body: Record<string, unknown>) => cacheKey('ns', requestKeyMaterial(parseChatRequest(body), body, 'route'));
    const a = { model: 'gpt', messages: [{ role: 'narrator', content: 'A' }, { role: 'user', content: 'hi' }] };
    const b = { model: 'gpt', messages: [{ role: 'narrator', content: 'B' }, { role: 'user', content: 'hi' }] };
    assert.notEqual(chatKey(a), chatKey(b));
    assert.equal(chatKey(a), chatKey({ ...a, model: 'other-name', stream: true }), 'model and streaming do not change the key');
    const part = (id: string) => ({ model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'hologram', hologram: { id } }] }] });
    assert.notEqual(chatKey(part('1')), chatKey(part('2')));
    const converseKey = (body: Record<string, unknown>) => cacheKey('ns', requestKeyMaterial(parseConverseRequest(body, 'nova', false), body, 'route'));
    const block = (id: string) => ({ messages: [{ role: 'user', content: [{ text: 'hi' }, { hologram: { id } }] }] });
    assert.notEqual(converseKey(block('1')), converseKey(block('2')));
  });
});

describe('guardrails see parts passed through as sent', () => {
  it('an unknown role or part is scanned: redacted in what the upstream gets, or blocked', async () => {
    const body = {
      model: 'gpt-guarded',
      messages: [
        { role: 'narrator', content: 'write to jane.doe@example.com' },
        { role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'hologram', caption: 'or to joe@example.org' }] },
      ],
    };
    await openai.chat.completions.create(body as unknown as ChatCompletionCreateParamsNonStreaming);
    const sent = JSON.stringify(upstream.lastChatRequest().body);
    assert.ok(!sent.includes('jane.doe@example.com') && !sent.includes('joe@example.org'), sent);
    assert.equal(upstream.lastChatRequest().body.messages[0].role, 'narrator');

    const blocked = { model: 'gpt-guarded', messages: [{ role: 'narrator', content: 'about Project Falcon' }, { role: 'user', content: 'hi' }] };
    await assert.rejects(openai.chat.completions.create(blocked as unknown as ChatCompletionCreateParamsNonStreaming), (e: unknown) => e instanceof OpenAI.APIError && e.status === 400);
    assert.equal(upstream.chatRequests().length, 1);
  });

  it('on the Converse door too', async () => {
    await converseClient({}, [{ role: 'user', content: [{ text: 'hi' }, { hologram: { caption: 'mail jane.doe@example.com' } }] }]).send(new ConverseCommand({ modelId: 'nova-guarded', messages: PLAIN }));
    const sent = JSON.stringify(bedrock.last('converse').body);
    assert.ok(!sent.includes('jane.doe@example.com'), sent);
  });
});
