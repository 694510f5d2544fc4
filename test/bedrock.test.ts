import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { APIError } from 'openai';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { assertCleanErrorText, collectStream, emptyCollected, addChunk, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { createGate } from './helpers/mock-openai.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * The bedrock provider through the real @aws-sdk/client-bedrock-runtime client (SigV4-signed
 * HTTP/1.1 calls, event-stream decoding) against a loopback Bedrock Runtime, driven by the
 * official `openai` and `@anthropic-ai/sdk` clients through the gateway.
 */

// Static dummy credentials for the SDK's default provider chain (the environment comes first).
const ACCESS_KEY_ID = 'AKIATESTGATEWAY00001';
const SECRET_KEY = 'bedrock-test-secret-DO-NOT-LEAK-4f1e2d';
useDummyAwsCredentials(ACCESS_KEY_ID, SECRET_KEY);

const CLAUDE = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
const NOVA = 'amazon.nova-lite-v1:0';
const PNG_1PX = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

let bedrock: MockBedrock;
let srv: StartedGateway;
let openai: OpenAI;
let anthropic: Anthropic;

before(async () => {
  bedrock = await startMockBedrock();
  srv = await startGateway({
    providers: {
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
      'bedrock-impatient': { type: 'bedrock', region: 'eu-west-1', endpoint: bedrock.endpoint, firstByteTimeoutMs: 300, totalTimeoutMs: 30_000 },
      // No region in the file or in the gateway's environment: off.
      'bedrock-noregion': { type: 'bedrock', endpoint: bedrock.endpoint },
    },
    models: {
      claude: { provider: 'bedrock', model: CLAUDE },
      nova: { provider: 'bedrock', model: NOVA },
      impatient: { provider: 'bedrock-impatient', model: NOVA },
      'claude-off': { provider: 'bedrock-noregion', model: CLAUDE },
    },
    config: {
      // One attempt per request, so each scripted failure is seen as it is.
      routing: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 } },
    },
    label: 'bedrock test configuration',
  });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
  anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await bedrock?.close();
});

beforeEach(() => bedrock.reset());

async function expectApiError(p: Promise<unknown>, status: number): Promise<APIError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof APIError, `expected an APIError, got ${String(caught)}`);
  assert.equal(caught.status, status, caught.message);
  assertCleanErrorText(`${caught.message} ${JSON.stringify(caught.error ?? null)}`);
  assert.ok(!JSON.stringify(caught.error ?? null).includes(SECRET_KEY));
  return caught;
}

const weatherTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

describe('bedrock provider: OpenAI Chat Completions clients', () => {
  it('translates system, multi-turn and sampling parameters into a SigV4-signed Converse call', async () => {
    bedrock.script({ type: 'answer', text: ['Paris ', 'is the capital.'], usage: { inputTokens: 20, outputTokens: 5, cacheReadInputTokens: 7, cacheWriteInputTokens: 3 } });
    const { data: reply, response } = await openai.chat.completions
      .create({
        model: 'nova',
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello.' },
          { role: 'user', content: 'Capital of France?' },
          { role: 'user', content: [{ type: 'text', text: 'One line.' }] },
        ],
        max_tokens: 50,
        temperature: 0.2,
        top_p: 0.9,
        stop: ['END'],
      })
      .withResponse();
    assert.equal(reply.choices[0]!.message.content, 'Paris is the capital.');
    assert.equal(reply.choices[0]!.finish_reason, 'stop');
    // Bedrock counts cache reads and writes apart from inputTokens; OpenAI's prompt_tokens includes them.
    assert.equal(reply.usage?.prompt_tokens, 30);
    assert.equal(reply.usage?.completion_tokens, 5);
    assert.equal(reply.usage?.total_tokens, 35);
    assert.equal(reply.usage?.prompt_tokens_details?.cached_tokens, 7);
    assert.equal(response.headers.get('x-gateway-provider'), 'bedrock');
    assert.equal(response.headers.get('x-gateway-model'), NOVA);

    const call = bedrock.last();
    assert.equal(call.operation, 'converse');
    assert.equal(call.modelId, NOVA);
    assert.equal(call.path, `/model/${encodeURIComponent(NOVA)}/converse`);
    assert.deepEqual(call.body.system, [{ text: 'You are terse.' }]);
    // Consecutive user messages merged: Converse needs the roles to alternate.
    assert.deepEqual(call.body.messages, [
      { role: 'user', content: [{ text: 'Hi' }] },
      { role: 'assistant', content: [{ text: 'Hello.' }] },
      { role: 'user', content: [{ text: 'Capital of France?' }, { text: 'One line.' }] },
    ]);
    assert.deepEqual(call.body.inferenceConfig, { maxTokens: 50, temperature: 0.2, topP: 0.9, stopSequences: ['END'] });
    assert.equal(call.body.toolConfig, undefined);
    // Signed by the SDK with the default chain's credentials, for service "bedrock" in the region.
    const auth = String(call.headers.authorization ?? '');
    assert.match(auth, new RegExp(`^AWS4-HMAC-SHA256 Credential=${ACCESS_KEY_ID}/\\d{8}/us-east-1/bedrock/aws4_request, SignedHeaders=[^,]*host[^,]*x-amz-date[^,]*, Signature=[0-9a-f]{64}$`));
    assert.ok(call.headers['x-amz-date']);

    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.upstreamModel, NOVA);
    assert.equal(rec.status, 200);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.inputTokens, 30);
    assert.equal(rec.outputTokens, 5);
    assert.equal(rec.cacheReadTokens, 7);
    assert.equal(rec.cacheWriteTokens, 3);
  });

  it('streams ConverseStream deltas as chat chunks, with the usage chunk', async () => {
    bedrock.script({ type: 'answer', text: ['Once ', 'upon ', 'a ', 'time.'], usage: { inputTokens: 11, outputTokens: 4 } });
    const stream = await openai.chat.completions.create({ model: 'claude', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Tell a story' }] });
    const got = await collectStream(stream);
    assert.equal(got.content, 'Once upon a time.');
    assert.equal(got.finishReason, 'stop');
    assert.equal(got.usage?.prompt_tokens, 11);
    assert.equal(got.usage?.completion_tokens, 4);
    // One chunk per upstream delta: nothing was buffered into bigger pieces.
    assert.equal(got.chunks.filter((c) => c.choices[0]?.delta?.content).length, 4);
    const call = bedrock.last();
    assert.equal(call.operation, 'converse-stream');
    assert.equal(call.modelId, CLAUDE);
    assert.deepEqual(call.body.messages, [{ role: 'user', content: [{ text: 'Tell a story' }] }]);
  });

  it('round-trips a tool call: toolConfig out, toolUse back (streamed in fragments), tool results in', async () => {
    bedrock.script({
      type: 'answer',
      text: ['Let me check. '],
      toolCalls: [
        { id: 'tooluse_A1', name: 'get_weather', input: ['{"ci', 'ty": "Par', 'is"}'] },
        { id: 'tooluse_B2', name: 'get_weather', input: ['{"city": "Rome"}'] },
      ],
      usage: { inputTokens: 40, outputTokens: 22 },
    });
    const stream = await openai.chat.completions.create({
      model: 'claude',
      stream: true,
      messages: [{ role: 'user', content: 'Weather in Paris and Rome?' }],
      tools: [weatherTool],
      tool_choice: 'required',
    });
    const got = await collectStream(stream);
    assert.equal(got.finishReason, 'tool_calls');
    assert.equal(got.content, 'Let me check. ');
    assert.deepEqual(got.toolCalls, [
      { id: 'tooluse_A1', name: 'get_weather', arguments: '{"city": "Paris"}' },
      { id: 'tooluse_B2', name: 'get_weather', arguments: '{"city": "Rome"}' },
    ]);
    assert.deepEqual(bedrock.last().body.toolConfig, {
      tools: [{ toolSpec: { name: 'get_weather', description: 'Current weather for a city', inputSchema: { json: weatherTool.function.parameters } } }],
      toolChoice: { any: {} },
    });

    // Second turn: the assistant's calls and both results go back.
    bedrock.script({ type: 'answer', text: ['Sunny in Paris, rainy in Rome.'], usage: { inputTokens: 80, outputTokens: 8 } });
    const reply = await openai.chat.completions.create({
      model: 'claude',
      messages: [
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: 'Let me check. ',
          tool_calls: got.toolCalls.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } })),
        },
        { role: 'tool', tool_call_id: 'tooluse_A1', content: 'sunny, 24C' },
        { role: 'tool', tool_call_id: 'tooluse_B2', content: 'rain, 15C' },
      ],
      tools: [weatherTool],
    });
    assert.equal(reply.choices[0]!.message.content, 'Sunny in Paris, rainy in Rome.');
    const body = bedrock.last().body;
    assert.deepEqual(body.messages, [
      { role: 'user', content: [{ text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { text: 'Let me check. ' },
          { toolUse: { toolUseId: 'tooluse_A1', name: 'get_weather', input: { city: 'Paris' } } },
          { toolUse: { toolUseId: 'tooluse_B2', name: 'get_weather', input: { city: 'Rome' } } },
        ],
      },
      {
        role: 'user',
        content: [
          { toolResult: { toolUseId: 'tooluse_A1', content: [{ text: 'sunny, 24C' }] } },
          { toolResult: { toolUseId: 'tooluse_B2', content: [{ text: 'rain, 15C' }] } },
        ],
      },
    ]);
    assert.deepEqual(body.toolConfig.tools.map((t: any) => t.toolSpec.name), ['get_weather']);
    assert.equal(body.toolConfig.toolChoice, undefined);
  });

  it('returns a non-streamed tool call with its arguments as JSON text', async () => {
    bedrock.script({ type: 'answer', toolCalls: [{ id: 'tooluse_X', name: 'get_weather', input: ['{"city":"Oslo"}'] }] });
    const reply = await openai.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'Oslo?' }], tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } } });
    const msg = reply.choices[0]!.message;
    assert.equal(reply.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(msg.tool_calls?.length, 1);
    const tc = msg.tool_calls![0]!;
    assert.ok(tc.type === 'function');
    assert.equal(tc.id, 'tooluse_X');
    assert.equal(tc.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(tc.function.arguments), { city: 'Oslo' });
    assert.deepEqual(bedrock.last().body.toolConfig.toolChoice, { tool: { name: 'get_weather' } });
  });

  it("omits the tools for tool_choice 'none', and keeps them when the history has tool blocks (Converse requires it)", async () => {
    await openai.chat.completions.create({ model: 'nova', messages: [{ role: 'user', content: 'no tools please' }], tools: [weatherTool], tool_choice: 'none' });
    assert.equal(bedrock.last().body.toolConfig, undefined);

    await openai.chat.completions.create({
      model: 'nova',
      messages: [
        { role: 'user', content: 'Oslo?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 't1', type: 'function', function: { name: 'lookup', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 't1', content: 'cold' },
      ],
      tools: [weatherTool],
      tool_choice: 'none',
    });
    const tc = bedrock.last().body.toolConfig;
    // The history's tool, no longer listed by the client, is declared with an open schema.
    assert.deepEqual(tc.tools.map((t: any) => t.toolSpec.name), ['get_weather', 'lookup']);
    assert.deepEqual(tc.tools[1].toolSpec.inputSchema, { json: { type: 'object' } });
    assert.equal(tc.toolChoice, undefined);
  });

  for (const [bedrockReason, openaiReason] of [
    ['end_turn', 'stop'],
    ['max_tokens', 'length'],
    ['stop_sequence', 'stop'],
    ['guardrail_intervened', 'content_filter'],
    ['content_filtered', 'content_filter'],
  ] as const) {
    it(`maps stopReason ${bedrockReason} to finish_reason ${openaiReason}, streaming and not`, async () => {
      bedrock.script({ type: 'answer', text: ['x'], stopReason: bedrockReason }, { type: 'answer', text: ['x'], stopReason: bedrockReason });
      const reply = await openai.chat.completions.create({ model: 'nova', messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(reply.choices[0]!.finish_reason, openaiReason);
      const got = await collectStream(await openai.chat.completions.create({ model: 'nova', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
      assert.equal(got.finishReason, openaiReason);
    });
  }

  it('forwards base64 images as bytes with their format', async () => {
    await openai.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_1PX}` } }] }],
    });
    // Blobs travel base64-encoded in Bedrock's JSON: the same bytes the client sent.
    assert.deepEqual(bedrock.last().body.messages[0].content, [{ text: 'What is this?' }, { image: { format: 'png', source: { bytes: PNG_1PX } } }]);
  });

  it('rejects an image URL (Converse takes bytes only) with a 400 naming the parameter, before any upstream call', async () => {
    const err = await expectApiError(
      openai.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }] }),
      400,
    );
    assert.equal(err.param, 'messages');
    assert.match(err.message, /image URLs/i);
    assert.equal(bedrock.requests.length, 0);
    const gif = await expectApiError(
      openai.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/tiff;base64,AAAA' } }] }] }),
      400,
    );
    assert.match(gif.message, /image\/tiff/);
  });

  it('drops reasoning for Chat Completions clients but keeps the answer', async () => {
    bedrock.script({ type: 'answer', reasoning: { pieces: ['Let me ', 'think.'], signature: 'sig-1' }, text: ['42'] });
    const got = await collectStream(await openai.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'answer?' }] }));
    assert.equal(got.content, '42');
    assert.equal(got.finishReason, 'stop');
  });
});

describe('bedrock provider: errors', () => {
  const cases: { name: string; status: number; errorType: string; message: string; want: number; code: string; exposes?: RegExp }[] = [
    { name: 'ThrottlingException', status: 429, errorType: 'ThrottlingException', message: 'Too many requests, please wait before trying again.', want: 429, code: 'upstream_rate_limited' },
    { name: 'ValidationException', status: 400, errorType: 'ValidationException', message: 'The maximum tokens you requested exceeds the model limit.', want: 400, code: 'upstream_validation_error', exposes: /exceeds the model limit/ },
    { name: 'AccessDeniedException', status: 403, errorType: 'AccessDeniedException', message: 'User: arn:aws:sts::123456789012:assumed-role/gw/x is not authorized to perform: bedrock:InvokeModel', want: 502, code: 'upstream_auth_failed' },
    { name: 'UnrecognizedClientException', status: 403, errorType: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.', want: 502, code: 'upstream_auth_failed' },
    { name: 'ResourceNotFoundException', status: 404, errorType: 'ResourceNotFoundException', message: 'Could not resolve the foundation model from the provided model identifier.', want: 404, code: 'upstream_model_not_found' },
    { name: 'ModelNotReadyException', status: 429, errorType: 'ModelNotReadyException', message: 'Model is not ready for inference.', want: 503, code: 'upstream_model_not_ready' },
    { name: 'ServiceUnavailableException', status: 503, errorType: 'ServiceUnavailableException', message: 'Service unavailable.', want: 503, code: 'upstream_unavailable' },
    { name: 'InternalServerException', status: 500, errorType: 'InternalServerException', message: 'Internal server error.', want: 502, code: 'upstream_error' },
    { name: 'ModelTimeoutException', status: 408, errorType: 'ModelTimeoutException', message: 'Model has timed out.', want: 504, code: 'upstream_timeout' },
  ];
  for (const c of cases) {
    it(`maps ${c.name} (HTTP ${c.status}) to ${c.want}, streaming and not`, async () => {
      for (const stream of [false, true]) {
        bedrock.script({ type: 'error', status: c.status, errorType: c.errorType, message: c.message });
        const p = stream
          ? openai.chat.completions.create({ model: 'nova', stream: true, messages: [{ role: 'user', content: 'hi' }] }).then(collectStream)
          : openai.chat.completions.create({ model: 'nova', messages: [{ role: 'user', content: 'hi' }] });
        const err = await expectApiError(p, c.want);
        assert.equal(err.code, c.code);
        if (c.exposes) assert.match(err.message, c.exposes);
        // AWS's access-denied wording names the account and role: not for the gateway's clients.
        assert.ok(!err.message.includes('123456789012'));
      }
    });
  }

  it('ends the stream with an error event when an exception frame arrives mid-stream, and logs it', async () => {
    bedrock.script({ type: 'answer', text: ['partial ', 'answer ', 'never finished'], exceptionAfter: 2, exception: { type: 'modelStreamErrorException', message: 'The model produced an invalid sequence.' } });
    const { data: stream, response } = await openai.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'go' }] }).withResponse();
    const got = emptyCollected();
    let caught: unknown;
    try {
      for await (const chunk of stream) addChunk(got, chunk);
    } catch (err) {
      caught = err;
    }
    assert.equal(got.content, 'partial answer ');
    assert.ok(caught instanceof APIError, `expected the stream to end with an error, got ${String(caught)}`);
    assert.match(caught.message, /invalid sequence/);
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.outcome, 'stream_error');
    assert.equal(rec.errorCode, 'bedrock_model_stream_error');
  });

  it('maps a throttlingException frame mid-stream to a rate-limit error event', async () => {
    bedrock.script({ type: 'answer', text: ['a ', 'b'], exceptionAfter: 1, exception: { type: 'throttlingException', message: 'Too many tokens per minute.' } });
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nova', stream: true, messages: [{ role: 'user', content: 'go' }] }) });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /"content":"a "/);
    assert.doesNotMatch(text, /\[DONE\]/);
    const last = text.trim().split('\n\n').pop()!;
    const err = JSON.parse(last.replace(/^data: /, '')).error;
    assert.equal(err.type, 'rate_limit_error');
    assert.match(err.message, /Too many tokens per minute/);
  });

  it('ends the stream with an error event when the connection is cut mid-stream', async () => {
    const gate = createGate();
    bedrock.script({ type: 'answer', text: ['one ', 'two ', 'three'], pauseAfter: 2, gate, cutAfter: 2 });
    const { data: stream, response } = await openai.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'go' }] }).withResponse();
    const got = emptyCollected();
    let caught: unknown;
    const reading = (async () => {
      try {
        for await (const chunk of stream) {
          addChunk(got, chunk);
          if (got.content === 'one two ') gate.open();
        }
      } catch (err) {
        caught = err;
      }
    })();
    await reading;
    assert.equal(got.content, 'one two ');
    assert.ok(caught instanceof APIError, 'the stream must not end like a success');
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.outcome, 'stream_error');
  });

  it('treats a stream that ends without messageStop as truncated', async () => {
    bedrock.script({ type: 'answer', text: ['half'], omitStop: true });
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nova', stream: true, messages: [{ role: 'user', content: 'go' }] }) });
    const text = await res.text();
    assert.match(text, /"content":"half"/);
    assert.doesNotMatch(text, /\[DONE\]/);
    assert.match(text, /upstream_stream_truncated/);
  });

  it('answers 504 when Bedrock sends nothing within firstByteTimeoutMs, and aborts the SDK call', async () => {
    const gate = createGate();
    bedrock.script({ type: 'handler', handle: () => gate.wait() });
    for (const stream of [false, true]) {
      if (stream) bedrock.script({ type: 'handler', handle: () => gate.wait() });
      const p = stream
        ? openai.chat.completions.create({ model: 'impatient', stream: true, messages: [{ role: 'user', content: 'hi' }] }).then(collectStream)
        : openai.chat.completions.create({ model: 'impatient', messages: [{ role: 'user', content: 'hi' }] });
      const err = await expectApiError(p, 504);
      assert.equal(err.code, 'upstream_timeout');
      const upstream = bedrock.last();
      // The SDK's abortSignal closed the connection: the upstream saw the gateway hang up.
      await upstream.closed;
      assert.equal(upstream.completed, false);
      assert.match(String(upstream.headers.authorization), /\/eu-west-1\/bedrock\/aws4_request/);
    }
    gate.open();
  });

  it('is off without a region, and its models are not listed', async () => {
    const models = await openai.models.list();
    const ids = models.data.map((m) => m.id);
    assert.ok(ids.includes('claude'));
    assert.ok(!ids.includes('claude-off'));
    await expectApiError(openai.chat.completions.create({ model: 'claude-off', messages: [{ role: 'user', content: 'hi' }] }), 404);
    const p = srv.gateway.providers.get('bedrock-noregion')!;
    assert.equal(p.live, false);
    assert.match(p.notLiveReason ?? '', /region/);
  });

  it('cancels the SDK call when the client goes away mid-stream', async () => {
    const gate = createGate();
    bedrock.script({ type: 'answer', text: ['first ', 'second'], pauseAfter: 1, gate });
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', 'x-request-id': 'bedrock-abort-1' }, body: JSON.stringify({ model: 'nova', stream: true, messages: [{ role: 'user', content: 'go' }] }) });
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /chat\.completion\.chunk/);
    await gate.reached;
    ac.abort();
    const upstream = bedrock.last();
    await upstream.closed;
    gate.open();
    assert.equal(upstream.completed, false);
    const rec = await srv.recordOf('bedrock-abort-1');
    assert.equal(rec.outcome, 'client_closed');
  });
});

describe('bedrock provider: Anthropic Messages clients', { skip: !existsSync(new URL('../shared/wire/anthropic-messages/door.ts', import.meta.url)) }, () => {
  it('answers a text message, with system and usage', async () => {
    bedrock.script({ type: 'answer', text: ['Bonjour ', '!'], usage: { inputTokens: 9, outputTokens: 2 } });
    // top_k is part of the Messages API; this SDK version's types no longer list it.
    const topK = { top_k: 5 };
    const msg = await anthropic.messages.create({ model: 'claude', max_tokens: 64, system: 'Answer in French.', messages: [{ role: 'user', content: 'Hello' }], ...topK });
    assert.equal(msg.role, 'assistant');
    assert.deepEqual(msg.content.map((b) => (b.type === 'text' ? b.text : b.type)), ['Bonjour !']);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, 9);
    assert.equal(msg.usage.output_tokens, 2);
    const body = bedrock.last().body;
    assert.deepEqual(body.system, [{ text: 'Answer in French.' }]);
    assert.deepEqual(body.inferenceConfig, { maxTokens: 64 });
    // Claude on Bedrock takes top_k as a model-specific field.
    assert.deepEqual(body.additionalModelRequestFields, { top_k: 5 });
  });

  it('streams text and thinking with the Anthropic event sequence', async () => {
    bedrock.script({ type: 'answer', reasoning: { pieces: ['Think ', 'hard.'], signature: 'EqQBsig' }, text: ['The ', 'answer.'], usage: { inputTokens: 5, outputTokens: 6 } });
    const stream = anthropic.messages.stream({ model: 'claude', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'Why?' }] });
    const events: string[] = [];
    stream.on('streamEvent', (e) => events.push(e.type));
    const msg = await stream.finalMessage();
    const thinking = msg.content.find((b) => b.type === 'thinking');
    assert.ok(thinking && thinking.type === 'thinking');
    assert.equal(thinking.thinking, 'Think hard.');
    assert.equal(thinking.signature, 'EqQBsig');
    const text = msg.content.find((b) => b.type === 'text');
    assert.ok(text && text.type === 'text');
    assert.equal(text.text, 'The answer.');
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.output_tokens, 6);
    assert.equal(events[0], 'message_start');
    assert.equal(events[events.length - 1], 'message_stop');
    assert.ok(events.includes('message_delta'));
    assert.deepEqual(bedrock.last().body.additionalModelRequestFields, { thinking: { type: 'enabled', budget_tokens: 1024 } });
  });

  it('streams a tool_use block and sends the tool_result back as a Converse toolResult', async () => {
    bedrock.script({ type: 'answer', toolCalls: [{ id: 'tooluse_Q', name: 'get_weather', input: ['{"city":', '"Lima"}'] }], usage: { inputTokens: 30, outputTokens: 12 } });
    const tools: Anthropic.Tool[] = [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
    const msg = await anthropic.messages.stream({ model: 'claude', max_tokens: 256, tools, tool_choice: { type: 'any' }, messages: [{ role: 'user', content: 'Lima?' }] }).finalMessage();
    assert.equal(msg.stop_reason, 'tool_use');
    const use = msg.content.find((b) => b.type === 'tool_use');
    assert.ok(use && use.type === 'tool_use');
    assert.equal(use.id, 'tooluse_Q');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Lima' });
    assert.deepEqual(bedrock.last().body.toolConfig.toolChoice, { any: {} });

    bedrock.script({ type: 'answer', text: ['Warm in Lima.'] });
    const reply = await anthropic.messages.create({
      model: 'claude',
      max_tokens: 256,
      tools,
      messages: [
        { role: 'user', content: 'Lima?' },
        { role: 'assistant', content: msg.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tooluse_Q', content: 'warm, 26C', is_error: false }, { type: 'text', text: 'Summarise.' }] },
      ],
    });
    assert.equal(reply.content[0]?.type === 'text' ? reply.content[0].text : '', 'Warm in Lima.');
    const sent = bedrock.last().body.messages;
    assert.deepEqual(sent[1], { role: 'assistant', content: [{ toolUse: { toolUseId: 'tooluse_Q', name: 'get_weather', input: { city: 'Lima' } } }] });
    assert.deepEqual(sent[2], { role: 'user', content: [{ toolResult: { toolUseId: 'tooluse_Q', content: [{ text: 'warm, 26C' }] } }, { text: 'Summarise.' }] });
  });

  it('sends earlier thinking back as reasoningContent with its signature, and reports the matched stop sequence', async () => {
    bedrock.script({ type: 'answer', text: ['Done'], stopReason: 'stop_sequence', additionalModelResponseFields: { stop_sequence: '###' } });
    const msg = await anthropic.messages.create({
      model: 'claude',
      max_tokens: 2048,
      stop_sequences: ['###'],
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [
        { role: 'user', content: 'Q1' },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'Earlier reasoning.', signature: 'sig-earlier' }, { type: 'text', text: 'A1' }] },
        { role: 'user', content: 'Q2' },
      ],
    });
    assert.equal(msg.stop_reason, 'stop_sequence');
    assert.equal(msg.stop_sequence, '###');
    const body = bedrock.last().body;
    assert.deepEqual(body.messages[1], { role: 'assistant', content: [{ reasoningContent: { reasoningText: { text: 'Earlier reasoning.', signature: 'sig-earlier' } } }, { text: 'A1' }] });
    assert.deepEqual(body.additionalModelResponseFieldPaths, ['/stop_sequence']);
    assert.deepEqual(body.inferenceConfig.stopSequences, ['###']);
  });

  it('answers errors in Anthropic shape', async () => {
    bedrock.script({ type: 'error', status: 429, errorType: 'ThrottlingException', message: 'Too many requests, please wait before trying again.' });
    let caught: unknown;
    try {
      await anthropic.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof Anthropic.APIError);
    assert.equal(caught.status, 429);
    assert.equal((caught.error as any)?.type, 'error');
    assert.equal((caught.error as any)?.error?.type, 'rate_limit_error');
  });
});
