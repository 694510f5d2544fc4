import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { anthropicErrorJson, startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { startFaultUpstream, type FaultUpstream } from './helpers/fault-upstream.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

// Static dummy credentials for the Bedrock SDK's default chain (loopback mock only).
useDummyAwsCredentials('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY');

const ANTHROPIC_KEY = 'sk-ant-upstream-test';
const CLAUDE_ON_BEDROCK = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';

/**
 * Fallback across formats: an Anthropic Messages request whose Anthropic target fails is served by
 * Bedrock (Converse) or by an OpenAI-compatible upstream, translated, streaming and not; and an
 * OpenAI request whose OpenAI target fails is served by Anthropic. The client sees one clean answer
 * in its own format; the record names every attempt.
 */
describe('routing: cross-format fallback', () => {
  let claude: MockAnthropic;
  let bedrock: MockBedrock;
  let openaiUp: FaultUpstream;
  let srv: StartedGateway;
  let anthropic: Anthropic;
  let openai: OpenAI;

  before(async () => {
    [claude, bedrock, openaiUp] = await Promise.all([startMockAnthropic({ apiKey: ANTHROPIC_KEY }), startMockBedrock(), startFaultUpstream('gpt')]);
    srv = await startGateway({
      providers: {
        anthropic: { type: 'anthropic', baseUrl: claude.baseUrl, apiKeyEnv: 'ANTHROPIC_API_KEY' },
        bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint },
        'bedrock-invoke': { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint, messagesViaInvokeModel: true },
        gpt: { type: 'openai-compatible', baseUrl: openaiUp.baseUrl },
      },
      models: {
        // Anthropic first, Bedrock (same model family) as the fallback.
        claude: { groups: [{ targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] }, { targets: [{ provider: 'bedrock', model: CLAUDE_ON_BEDROCK }] }] },
        // The same, with Messages requests reaching Claude on Bedrock through InvokeModel as sent.
        'claude-invoke': { groups: [{ targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] }, { targets: [{ provider: 'bedrock-invoke', model: CLAUDE_ON_BEDROCK }] }] },
        // Anthropic first, an OpenAI-compatible server as the fallback.
        'claude-or-gpt': { groups: [{ targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] }, { targets: [{ provider: 'gpt', model: 'gpt-x' }] }] },
        // The other way round: OpenAI-compatible first, Anthropic as the fallback.
        'gpt-or-claude': { groups: [{ targets: [{ provider: 'gpt', model: 'gpt-x' }] }, { targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] }] },
      },
      config: {
        // No cooldown here: each test scripts its own failures (cooldown has its own test).
        routing: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } },
      },
      env: { ANTHROPIC_API_KEY: ANTHROPIC_KEY },
    });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
  });
  after(async () => {
    await srv.close();
    await Promise.all([claude.close(), bedrock.close(), openaiUp.close()]);
  });
  beforeEach(() => {
    claude.reset();
    bedrock.reset();
    openaiUp.fault = 'ok';
    openaiUp.hits = 0;
  });

  const overloaded = { type: 'error' as const, status: 529, body: anthropicErrorJson('overloaded_error', 'Overloaded') };

  it('Anthropic 529 -> Bedrock Converse, not streaming: a Messages answer translated back', async () => {
    claude.script(overloaded);
    bedrock.script({ type: 'answer', text: ['Paris ', 'is the capital.'], usage: { inputTokens: 14, outputTokens: 5 } });
    const { data: msg, response } = await anthropic.messages.create({ model: 'claude', max_tokens: 100, messages: [{ role: 'user', content: 'Capital of France?' }] }).withResponse();
    assert.equal(msg.type, 'message');
    assert.deepEqual(msg.content.map((b) => (b.type === 'text' ? b.text : b.type)), ['Paris is the capital.']);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, 14);
    assert.equal(msg.usage.output_tokens, 5);
    assert.equal(response.headers.get('x-gateway-provider'), 'bedrock');
    assert.equal(response.headers.get('x-gateway-model'), CLAUDE_ON_BEDROCK);
    assert.equal(response.headers.get('x-gateway-attempts'), '2');
    // What Bedrock received is a Converse request carrying the Anthropic conversation.
    const sent = bedrock.last('converse');
    assert.equal(sent.modelId, CLAUDE_ON_BEDROCK);
    assert.equal(sent.body.messages[0].content[0].text, 'Capital of France?');
    assert.equal(sent.body.inferenceConfig.maxTokens, 100);
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.status, 200);
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.attempts, 2);
    assert.equal(rec.fallbacks, 1);
    assert.deepEqual(
      rec.attemptLog?.map((a) => [a.provider, a.status, a.errorCode]),
      [
        // Anthropic's 529 is a 503 for clients of other APIs; the code keeps Anthropic's error type.
        ['anthropic', 503, 'upstream_overloaded_error'],
        ['bedrock', 200, undefined],
      ],
    );
  });

  it('Anthropic 529 -> Bedrock ConverseStream, streaming: the Messages event sequence from the fallback', async () => {
    claude.script(overloaded);
    bedrock.script({ type: 'answer', text: ['Bonjour', ' le', ' monde'], usage: { inputTokens: 9, outputTokens: 3 } });
    const { data: stream, response } = await anthropic.messages.create({ model: 'claude', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'Say hello in French' }] }).withResponse();
    const types: string[] = [];
    let text = '';
    let stop: string | null = null;
    let outputTokens = 0;
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
      if (ev.type === 'message_delta') {
        stop = ev.delta.stop_reason;
        outputTokens = ev.usage.output_tokens;
      }
    }
    assert.equal(text, 'Bonjour le monde');
    assert.equal(stop, 'end_turn');
    assert.equal(outputTokens, 3);
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(bedrock.last('converse-stream').modelId, CLAUDE_ON_BEDROCK);
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.status, 200);
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.fallbacks, 1);
  });

  it('Anthropic 529 -> Claude on Bedrock through InvokeModel (messagesViaInvokeModel): betas, cache_control and context_management survive', async () => {
    claude.script(overloaded);
    bedrock.script({ type: 'answer', text: ['Cached ', 'prompt ', 'answer.'], usage: { inputTokens: 30, outputTokens: 3 } });
    const params = {
      model: 'claude-invoke',
      max_tokens: 64,
      system: [{ type: 'text', text: 'A long, stable system prompt.', cache_control: { type: 'ephemeral' } }],
      context_management: { edits: [{ type: 'clear_tool_uses_20250919' }] },
      messages: [{ role: 'user', content: 'Use the cache.' }],
    };
    const { data: msg, response } = await anthropic.messages
      .create(params as unknown as Anthropic.MessageCreateParamsNonStreaming, { headers: { 'anthropic-beta': 'context-management-2025-06-27,prompt-caching-2024-07-31' } })
      .withResponse();
    assert.deepEqual(msg.content.map((b) => (b.type === 'text' ? b.text : b.type)), ['Cached prompt answer.']);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(response.headers.get('x-gateway-provider'), 'bedrock-invoke');
    const sent = bedrock.last('invoke');
    assert.equal(sent.modelId, CLAUDE_ON_BEDROCK);
    assert.equal(sent.body.anthropic_version, 'bedrock-2023-05-31');
    assert.deepEqual(sent.body.anthropic_beta, ['context-management-2025-06-27', 'prompt-caching-2024-07-31']);
    assert.deepEqual(sent.body.system, params.system);
    assert.deepEqual(sent.body.context_management, params.context_management);
    assert.equal(sent.body.model, undefined);
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.status, 200);
    assert.equal(rec.provider, 'bedrock-invoke');
    assert.equal(rec.outputTokens, 3);

    // Streaming: the Anthropic events Bedrock sends, as Messages SSE to the client.
    claude.script(overloaded);
    bedrock.script({ type: 'answer', text: ['Streamed ', 'via ', 'invoke'], usage: { inputTokens: 9, outputTokens: 3 } });
    const stream = await anthropic.messages.create({ model: 'claude-invoke', max_tokens: 32, stream: true, messages: [{ role: 'user', content: 'stream it' }] });
    let text = '';
    const types: string[] = [];
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    }
    assert.equal(text, 'Streamed via invoke');
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(bedrock.last('invoke-with-response-stream').modelId, CLAUDE_ON_BEDROCK);
  });

  it('Anthropic connection refused -> OpenAI-compatible upstream, translated through Chat Completions', async () => {
    claude.script({ type: 'error', status: 503, body: anthropicErrorJson('api_error', 'Service Unavailable') });
    const { data: msg, response } = await anthropic.messages.create({ model: 'claude-or-gpt', max_tokens: 64, messages: [{ role: 'user', content: 'hi there' }] }).withResponse();
    assert.equal(msg.type, 'message');
    assert.ok(msg.content.length > 0 && msg.content[0]!.type === 'text' && msg.content[0]!.text.length > 0, 'text from the fallback');
    assert.equal(response.headers.get('x-gateway-provider'), 'gpt');
    assert.equal(openaiUp.hits, 1);
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.deepEqual(
      rec.attemptLog?.map((a) => a.provider),
      ['anthropic', 'gpt'],
    );
  });

  it('OpenAI 500 -> Anthropic, streaming Chat Completions chunks translated from Messages events', async () => {
    openaiUp.fault = '500';
    claude.script({ type: 'text', pieces: ['Hello', ' from', ' Claude'], usage: { input_tokens: 6, output_tokens: 3 } });
    const stream = await openai.chat.completions.create({ model: 'gpt-or-claude', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'Hello from Claude');
    assert.equal(finish, 'stop');
    assert.equal(usage?.prompt_tokens, 6);
    assert.equal(usage?.completion_tokens, 3);
    assert.equal(claude.lastMessageRequest().headers['x-api-key'], ANTHROPIC_KEY);
  });

  it('a 400 from the Anthropic target is not a reason to fall back: the client gets it unmodified', async () => {
    claude.script({ type: 'error', status: 400, body: anthropicErrorJson('invalid_request_error', 'messages.0.content: Input should be a valid list') });
    const err = await anthropic.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).then(
      (m) => assert.fail(`expected a 400, got ${JSON.stringify(m)}`),
      (e: unknown) => e as InstanceType<typeof Anthropic.APIError>,
    );
    assert.equal(err.status, 400);
    assert.equal((err.error as { error: { message: string } }).error.message, 'messages.0.content: Input should be a valid list');
    assert.equal(bedrock.requests.length, 0);
  });
});
