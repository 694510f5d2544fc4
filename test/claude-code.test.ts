import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
  ServiceUnavailableException,
  ThrottlingException,
  ValidationException,
  type InvokeModelWithResponseStreamCommandOutput,
} from '@aws-sdk/client-bedrock-runtime';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { gatewayBedrockClient } from './helpers/bedrock-client.ts';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { parseConfig } from '../shared/config/load.ts';
import { anthropicModelName, BedrockModelIndex, parseBedrockPath } from '../shared/wire/bedrock-invoke/door.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { assertCleanErrorText, awaitRecord } from './helpers/gateway.ts';
import type { KeyedGateway } from './helpers/keys.ts';
import { KEYED_UPSTREAM_KEY, startClaudeCodeRig, type ClaudeCodeRig } from './helpers/claude-code.ts';
import { anthropicErrorJson, type MockAnthropic } from './helpers/mock-anthropic.ts';
import type { MockBedrock } from './helpers/mock-bedrock.ts';
import { createGate, type MockOpenAI } from './helpers/mock-openai.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * Claude Code behind the gateway, both ways it can be pointed at one:
 * - ANTHROPIC_BASE_URL: a recorded-shape Claude Code 2.1.x request (system blocks, 24 tools,
 *   thinking, context_management, metadata, stream, a long anthropic-beta list) replayed byte for
 *   byte with fetch, and through @anthropic-ai/sdk, to mock Anthropic, Bedrock and OpenAI upstreams;
 * - CLAUDE_CODE_USE_BEDROCK + ANTHROPIC_BEDROCK_BASE_URL=<gateway>/bedrock: Bedrock's InvokeModel
 *   API, driven with the real @aws-sdk/client-bedrock-runtime client (bearer token, as with
 *   AWS_BEARER_TOKEN_BEDROCK, or x-api-key) and with raw fetch, to a mock Bedrock (InvokeModel
 *   pass-through), a mock Anthropic and a mock OpenAI upstream; event-stream frames decoded by the SDK;
 *   and Converse / ConverseStream on the same prefix for other Bedrock clients.
 * Keys are real (dynalite): Bearer and x-api-key both work, a revoked key gets 401.
 */

// Dummy AWS credentials for the gateway's own Bedrock client (loopback mock only).
useDummyAwsCredentials('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY');

const UPSTREAM_KEY = KEYED_UPSTREAM_KEY;
const SONNET_BEDROCK = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
const HAIKU_BEDROCK = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
const OPUS_BEDROCK = 'global.anthropic.claude-opus-4-5-20251101-v1:0';

interface Fixture {
  path: string;
  headers: Record<string, string>;
  body: Record<string, any>;
  bedrock: { path: string; probe: Record<string, unknown> };
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/claude-code-request.json', import.meta.url), 'utf8')) as Fixture;
const BETAS = fixture.headers['anthropic-beta']!;
const SESSION = fixture.headers['x-claude-code-session-id']!;

/** The same turn as Claude Code sends it on the Bedrock path: betas and version in the body, no model, no stream. */
function bedrockBody(): Record<string, unknown> {
  const { model: _m, stream: _s, ...rest } = fixture.body;
  return { anthropic_version: 'bedrock-2023-05-31', anthropic_beta: BETAS.split(','), ...rest };
}

let claude: MockAnthropic;
let bedrock: MockBedrock;
let openaiUp: MockOpenAI;
let gw: KeyedGateway;
let key: string;
let keyId: string;

let rig: ClaudeCodeRig;

before(async () => {
  rig = await startClaudeCodeRig('claude-code-dev', ({ claude, bedrock, openaiUp }) => ({
    // Keep-alives after 250 ms of silence (a gated mock stream shows them on the Bedrock path).
    server: { maxBodyBytes: 512 * 1024, sseKeepAliveMs: 250 },
    providers: {
      anthropic: { type: 'anthropic', baseUrl: claude.baseUrl, apiKeyEnv: 'TEST_UPSTREAM_KEY' },
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint },
      openai: { type: 'openai', baseUrl: openaiUp.baseUrl, apiKeyEnv: 'TEST_UPSTREAM_KEY' },
    },
    models: {
      // Claude Code's own model names, mapped to other upstream ids on purpose.
      'claude-sonnet-4-5-20250929': { provider: 'anthropic', model: 'claude-sonnet-4-5' },
      'claude-haiku-4-5': { provider: 'anthropic', model: 'claude-haiku-4-5-20251001' },
      'claude-on-bedrock': { provider: 'bedrock', model: SONNET_BEDROCK },
      'claude-via-openai': { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
    },
    bedrockApi: { models: { [OPUS_BEDROCK]: 'claude-via-openai' } },
    // One attempt per request: each scripted upstream failure is what the client sees.
    routing: { retry: { retries: 0 }, fallbackOn: [] },
  }));
  ({ claude, bedrock, openaiUp, gw, key, keyId } = rig);
});

after(() => rig?.close());

beforeEach(() => rig.reset());

function recordFor(res: Response | { $metadata: { requestId?: string } }): Promise<RequestRecord> {
  return gw.recordOf(res instanceof Response ? res : res.$metadata.requestId);
}

/** Claude Code's request, as it sends it: its headers, a Bearer token, the query string. */
function claudeCodeFetch(body: Record<string, unknown>, auth: Record<string, string> = { authorization: `Bearer ${key}` }): Promise<Response> {
  return fetch(`${gw.url}${fixture.path}`, { method: 'POST', headers: { ...fixture.headers, ...auth }, body: JSON.stringify(body) });
}

/** Parse Anthropic SSE text into [event, data] pairs. */
function sseEvents(text: string): { event: string; data: any }[] {
  return text
    .split('\n\n')
    .filter((b) => b.trim())
    .map((b) => {
      const event = /^event: (.*)$/m.exec(b)?.[1] ?? '';
      const data = /^data: (.*)$/m.exec(b)?.[1];
      return { event, data: data ? JSON.parse(data) : undefined };
    });
}

describe('Claude Code on the Anthropic path (ANTHROPIC_BASE_URL)', () => {
  it('answers the HEAD / connectivity probe without a key', async () => {
    const res = await fetch(`${gw.url}/`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '');
  });

  it('passes the recorded request through to Anthropic: body, query, betas and version unchanged, the answer byte for byte', async () => {
    claude.script({
      type: 'tool_use',
      thinking: { pieces: ['The test fails because ', 'the name is not escaped.'], signature: 'sig-abc' },
      text: 'Let me look at the cart.',
      calls: [{ id: 'toolu_01A', name: 'Read', input: ['{"file_path":', '"/home/dev/shop/src/cart.ts"}'] }],
      usage: { input_tokens: 5120, output_tokens: 88, cache_read_input_tokens: 4096, cache_creation_input_tokens: 512 },
    });
    const res = await claudeCodeFetch(fixture.body);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const text = await res.text();

    const up = claude.lastMessageRequest();
    assert.equal(up.path, '/v1/messages');
    assert.equal(up.search, '?beta=true');
    assert.equal(up.headers['anthropic-beta'], BETAS);
    assert.equal(up.headers['anthropic-version'], '2023-06-01');
    assert.equal(up.headers['x-api-key'], UPSTREAM_KEY);
    assert.equal(up.headers.authorization, undefined);
    assert.ok(!JSON.stringify(up.headers).includes(key), 'the gateway key never goes upstream');
    // The body exactly as Claude Code sent it, but for the model id the alias maps to.
    assert.equal(up.raw, JSON.stringify({ ...fixture.body, model: 'claude-sonnet-4-5' }));
    // The client gets the upstream's stream unchanged (keep-alive comments aside, should a silence need one).
    assert.equal(text.replaceAll(': keepalive\n\n', ''), up.sent);
    const events = sseEvents(text);
    assert.equal(events.at(-1)!.event, 'message_stop');
    assert.ok(events.some((e) => e.data?.delta?.type === 'thinking_delta'));

    const rec = await recordFor(res);
    assert.equal(rec.sessionId, SESSION);
    assert.equal(rec.frontDoor, 'anthropic-messages');
    assert.equal(rec.keyId, keyId);
    assert.equal(rec.model, 'claude-sonnet-4-5-20250929');
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.cacheReadTokens, 4096);
    assert.equal(rec.outputTokens, 88);
    assert.equal(rec.outcome, 'ok');
  });

  it('serves the same request to @anthropic-ai/sdk with x-api-key, assembled by the SDK', async () => {
    claude.script({ type: 'text', pieces: ['Fixed: ', 'the name is escaped now.'], thinking: { pieces: ['Escape it.'], signature: 'sig-1' } });
    const client = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0, defaultHeaders: { 'x-claude-code-session-id': SESSION } });
    const { model: _m, stream: _s, ...params } = fixture.body;
    const stream = client.messages.stream({ ...params, model: 'claude-sonnet-4-5-20250929' } as never, { query: { beta: 'true' }, headers: { 'anthropic-beta': BETAS } });
    const msg = await stream.finalMessage();
    assert.equal(msg.stop_reason, 'end_turn');
    assert.deepEqual(
      msg.content.map((b) => b.type),
      ['thinking', 'text'],
    );
    assert.equal((msg.content[1] as { text: string }).text, 'Fixed: the name is escaped now.');
    const up = claude.lastMessageRequest();
    assert.equal(up.search, '?beta=true');
    assert.equal(up.headers['anthropic-beta'], BETAS);
    assert.deepEqual(up.body.context_management, fixture.body.context_management);
    assert.deepEqual(up.body.system, fixture.body.system);
    assert.equal(up.body.tools.length, 24);
  });

  it('returns Anthropic upstream errors unmodified (status and wording)', async () => {
    const tooLong = anthropicErrorJson('invalid_request_error', 'prompt is too long: 215431 tokens > 200000 maximum');
    const overloaded = anthropicErrorJson('overloaded_error', 'Overloaded');
    claude.script({ type: 'error', status: 400, body: tooLong }, { type: 'error', status: 529, body: overloaded });
    const a = await claudeCodeFetch(fixture.body);
    assert.equal(a.status, 400);
    assert.deepEqual(await a.json(), tooLong);
    const b = await claudeCodeFetch(fixture.body);
    assert.equal(b.status, 529);
    assert.deepEqual(await b.json(), overloaded);
  });

  it('answers 401 in Anthropic shape for an unknown or revoked key (what makes apiKeyHelper refresh)', async () => {
    const unknown = await claudeCodeFetch(fixture.body, { authorization: 'Bearer sk-gw-not-a-real-key' });
    assert.equal(unknown.status, 401);
    assert.equal((await unknown.json()).error.type, 'authentication_error');
    const doomed = await gw.createKey({ name: 'leaver' });
    const ok = await claudeCodeFetch({ ...fixture.body, stream: false, max_tokens: 16 }, { 'x-api-key': doomed.key });
    assert.equal(ok.status, 200);
    await ok.text();
    assert.equal((await gw.admin('POST', `/admin/keys/${doomed.id}/revoke`)).status, 200);
    const revoked = await claudeCodeFetch(fixture.body, { 'x-api-key': doomed.key });
    assert.equal(revoked.status, 401);
    const body = await revoked.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'authentication_error');
    assert.match(body.error.message, /revoked/);
    assert.equal(claude.messageRequests().length, 1, 'refused requests never reach the upstream');
  });

  it('forwards count_tokens with its query string and betas', async () => {
    claude.scriptCount(4242);
    const { stream: _s, max_tokens: _m, metadata: _md, ...countBody } = fixture.body;
    const res = await fetch(`${gw.url}/v1/messages/count_tokens?beta=true`, { method: 'POST', headers: { ...fixture.headers, authorization: `Bearer ${key}` }, body: JSON.stringify(countBody) });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { input_tokens: 4242 });
    const up = claude.countRequests().at(-1)!;
    assert.equal(up.search, '?beta=true');
    assert.equal(up.headers['anthropic-beta'], BETAS);
    assert.equal(up.body.model, 'claude-sonnet-4-5');
  });

  it('lists the models a key may use, in Anthropic shape for Anthropic clients and OpenAI shape otherwise', async () => {
    const limited = await gw.createKey({ name: 'bedrock-only', models: ['claude-on-bedrock', 'claude-haiku-*'] });
    const client = new Anthropic({ baseURL: gw.url, apiKey: limited.key, maxRetries: 0 });
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      assert.equal(m.type, 'model');
      ids.push(m.id);
    }
    assert.deepEqual(ids.sort(), ['claude-haiku-4-5', 'claude-on-bedrock']);
    const page = await (await fetch(`${gw.url}/v1/models?limit=1`, { headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01' } })).json();
    assert.equal(page.data.length, 1);
    assert.equal(page.has_more, true);
    assert.equal(page.first_id, page.data[0].id);
    const openaiShape = await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).json();
    assert.equal(openaiShape.object, 'list');
    assert.deepEqual(openaiShape.data.map((m: { id: string }) => m.id).sort(), ['claude-haiku-4-5', 'claude-on-bedrock', 'claude-sonnet-4-5-20250929', 'claude-via-openai']);
    const one = await client.models.retrieve('claude-on-bedrock');
    assert.equal(one.id, 'claude-on-bedrock');
  });

  it('translates the request for a Bedrock (Converse) target: betas and context_management dropped, thinking mapped', async () => {
    bedrock.script({ type: 'answer', reasoning: { pieces: ['Look at cart.ts'], signature: 'sig-b' }, text: ['On ', 'it.'], usage: { inputTokens: 900, outputTokens: 7 } });
    const res = await claudeCodeFetch({ ...fixture.body, model: 'claude-on-bedrock' });
    assert.equal(res.status, 200);
    const events = sseEvents(await res.text());
    assert.deepEqual(events.map((e) => e.event).filter((e) => e !== 'ping').at(0), 'message_start');
    assert.equal(events.at(-1)!.event, 'message_stop');
    assert.ok(events.some((e) => e.data?.delta?.thinking === 'Look at cart.ts'));
    const up = bedrock.last('converse-stream');
    assert.equal(up.modelId, SONNET_BEDROCK);
    assert.equal(up.body.toolConfig.tools.length, 24);
    assert.deepEqual(up.body.additionalModelRequestFields, { thinking: { type: 'enabled', budget_tokens: 31999 } });
    assert.equal(up.body.system[0].text, fixture.body.system.map((b: { text: string }) => b.text).join('\n\n'));
    const sent = JSON.stringify(up.body);
    for (const dropped of ['context_management', 'clear_thinking', 'cache_control', 'claude-code-20250219', 'user_id']) assert.ok(!sent.includes(dropped), `${dropped} is not sent to Converse`);
    const rec = await recordFor(res);
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.sessionId, SESSION);
  });

  it('translates the request for an OpenAI target: tools as functions, thinking and context_management dropped', async () => {
    openaiUp.script({ type: 'tool_calls', calls: [{ id: 'call_1', name: 'Bash', arguments: ['{"command":', '"npm test"}'] }] });
    const res = await claudeCodeFetch({ ...fixture.body, model: 'claude-via-openai' });
    assert.equal(res.status, 200);
    const events = sseEvents(await res.text());
    const start = events.find((e) => e.event === 'content_block_start' && e.data.content_block.type === 'tool_use');
    assert.equal(start?.data.content_block.name, 'Bash');
    assert.equal(events.find((e) => e.event === 'message_delta')?.data.delta.stop_reason, 'tool_use');
    const up = openaiUp.lastChatRequest().body;
    assert.equal(up.model, 'gpt-4o-mini-2024-07-18');
    assert.equal(up.tools.length, 24);
    assert.equal(up.tools[2].function.name, 'Bash');
    assert.equal(up.messages[0].role, 'system');
    assert.equal(up.user, fixture.body.metadata.user_id);
    for (const k of ['thinking', 'context_management', 'metadata']) assert.equal(up[k], undefined);
  });
});

// ---------------------------------------------------------------------------------------------

const frameCodec = new EventStreamCodec(
  (b) => Buffer.from(b).toString('utf8'),
  (s) => new Uint8Array(Buffer.from(s, 'utf8')),
);

/** Split and decode an event-stream body into its messages. */
function decodeFrames(buf: Buffer): { headers: Record<string, string>; json: any }[] {
  const out: { headers: Record<string, string>; json: any }[] = [];
  for (let off = 0; off < buf.length; ) {
    const len = buf.readUInt32BE(off);
    const msg = frameCodec.decode(buf.subarray(off, off + len));
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(msg.headers)) headers[k] = String(v.value);
    out.push({ headers, json: JSON.parse(Buffer.from(msg.body).toString('utf8')) });
    off += len;
  }
  return out;
}

/** A Bedrock Runtime client pointed at the gateway, with the gateway key as a bearer token (AWS_BEARER_TOKEN_BEDROCK). */
function bearerClient(token = key): BedrockRuntimeClient {
  return new BedrockRuntimeClient({
    region: 'us-east-1',
    endpoint: `${gw.url}/bedrock`,
    token: { token },
    authSchemePreference: ['httpBearerAuth'],
    requestHandler: new NodeHttpHandler(),
    maxAttempts: 1,
  });
}

/** A SigV4 client (dummy credentials, as with CLAUDE_CODE_SKIP_BEDROCK_AUTH) that adds `x-api-key` (ANTHROPIC_CUSTOM_HEADERS). */
function apiKeyClient(apiKey = key): BedrockRuntimeClient {
  return gatewayBedrockClient(gw.url, { accessKeyId: 'AKIDCLAUDECODE000000', beforeSend: (r) => void (r.headers['x-api-key'] = apiKey) });
}

const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

/** Read an InvokeModelWithResponseStream answer the way a client does: the Anthropic events of the chunks. */
async function streamEvents(out: InvokeModelWithResponseStreamCommandOutput): Promise<any[]> {
  const events: any[] = [];
  for await (const ev of out.body!) if (ev.chunk?.bytes) events.push(JSON.parse(Buffer.from(ev.chunk.bytes).toString('utf8')));
  return events;
}

function assembled(events: any[]): { text: string; thinking: string; stop?: string; input?: number; output?: number; metrics?: any } {
  const r: ReturnType<typeof assembled> = { text: '', thinking: '' };
  for (const e of events) {
    if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') r.text += e.delta.text;
    if (e.type === 'content_block_delta' && e.delta.type === 'thinking_delta') r.thinking += e.delta.thinking;
    if (e.type === 'message_start') r.input = e.message.usage.input_tokens;
    if (e.type === 'message_delta') (r.stop = e.delta.stop_reason), (r.output = e.usage.output_tokens);
    if (e.type === 'message_stop') r.metrics = e['amazon-bedrock-invocationMetrics'];
  }
  return r;
}

describe('Claude Code on the Bedrock path (ANTHROPIC_BEDROCK_BASE_URL=<gateway>/bedrock)', () => {
  it('lists the configured Claude profiles at /bedrock/inference-profiles without a key', async () => {
    const res = await fetch(`${gw.url}/bedrock/inference-profiles?type=SYSTEM_DEFINED`);
    assert.equal(res.status, 200);
    const body = await res.json();
    const ids = body.inferenceProfileSummaries.map((p: { inferenceProfileId: string }) => p.inferenceProfileId);
    assert.deepEqual(ids.sort(), [OPUS_BEDROCK, SONNET_BEDROCK].sort());
    const sonnet = body.inferenceProfileSummaries.find((p: { inferenceProfileId: string }) => p.inferenceProfileId === SONNET_BEDROCK);
    assert.equal(sonnet.status, 'ACTIVE');
    assert.equal(sonnet.type, 'SYSTEM_DEFINED');
    assert.match(sonnet.inferenceProfileArn, /^arn:aws:bedrock:us-east-1::inference-profile\//);
  });

  it('answers the model probe (raw `:` in the path, Bearer key) with InvokeModel on Bedrock, body unchanged', async () => {
    bedrock.script({ type: 'answer', text: ['.'], usage: { inputTokens: 8, outputTokens: 1 } });
    const res = await fetch(`${gw.url}/bedrock/model/${SONNET_BEDROCK}/invoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'user-agent': 'claude-cli/2.1.197 (external, cli)' },
      body: JSON.stringify(fixture.bedrock.probe),
    });
    assert.equal(res.status, 200);
    const msg = await res.json();
    assert.equal(msg.type, 'message');
    assert.deepEqual(msg.content, [{ type: 'text', text: '.' }]);
    assert.deepEqual(msg.usage, { input_tokens: 8, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    const up = bedrock.last('invoke');
    assert.equal(up.modelId, SONNET_BEDROCK);
    assert.deepEqual(up.body, fixture.bedrock.probe);
    const rec = await recordFor(res);
    assert.equal(rec.frontDoor, 'bedrock-invoke');
    assert.equal(rec.model, 'claude-on-bedrock');
    assert.equal(rec.upstreamModel, SONNET_BEDROCK);
    assert.equal(rec.inputTokens, 8);
    assert.equal(rec.keyId, keyId);
  });

  it('answers an unknown model id with Bedrock ValidationException (status, x-amzn-errortype, message)', async () => {
    const res = await fetch(`${gw.url}/bedrock/model/us.anthropic.claude-3-haiku-20240307-v1:0/invoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(fixture.bedrock.probe),
    });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('x-amzn-errortype'), 'ValidationException');
    assert.deepEqual(await res.json(), { message: 'The provided model identifier is invalid.' });
    const rec = await recordFor(res);
    assert.equal(rec.outcome, 'error');
    assert.equal(rec.status, 400);
  });

  it('streams the recorded turn (x-api-key, as with SKIP_BEDROCK_AUTH) as chunk frames; the Bedrock upstream gets the body as sent', async () => {
    bedrock.script({
      type: 'answer',
      reasoning: { pieces: ['Check ', 'escaping.'], signature: 'sig-x' },
      text: ['The ', 'name ', 'is ', 'not escaped.'],
      usage: { inputTokens: 3000, outputTokens: 42 },
    });
    const res = await fetch(`${gw.url}${fixture.bedrock.path}`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json', 'x-claude-code-session-id': SESSION },
      body: JSON.stringify(bedrockBody()),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/vnd.amazon.eventstream');
    const frames = decodeFrames(Buffer.from(await res.arrayBuffer()));
    for (const f of frames) {
      assert.equal(f.headers[':event-type'], 'chunk');
      assert.equal(f.headers[':message-type'], 'event');
    }
    const events = frames.map((f) => JSON.parse(Buffer.from(f.json.bytes, 'base64').toString('utf8')));
    const a = assembled(events);
    assert.equal(a.text, 'The name is not escaped.');
    assert.equal(a.thinking, 'Check escaping.');
    assert.equal(a.stop, 'end_turn');
    assert.deepEqual(a.metrics, { inputTokenCount: 3000, outputTokenCount: 42, invocationLatency: 60, firstByteLatency: 20 }, "Bedrock's own metrics pass through");

    const up = bedrock.last('invoke-with-response-stream');
    assert.equal(up.modelId, SONNET_BEDROCK);
    assert.deepEqual(up.body, bedrockBody());
    assert.match(String(up.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE\//, "the gateway's own IAM identity signs the call");
    const rec = await recordFor(res);
    assert.equal(rec.sessionId, SESSION);
    assert.equal(rec.stream, true);
    assert.equal(rec.outputTokens, 42);
    assert.equal(rec.outcome, 'ok');
  });

  it('serves the AWS SDK (bearer token) with InvokeModelWithResponseStream from Bedrock, events decoded by the SDK', async () => {
    bedrock.script({ type: 'answer', toolCalls: [{ id: 'toolu_9', name: 'Bash', input: ['{"command":"npm', ' test"}'] }], usage: { inputTokens: 100, outputTokens: 12 } });
    const out = await bearerClient().send(new InvokeModelWithResponseStreamCommand({ modelId: SONNET_BEDROCK, contentType: 'application/json', body: enc(bedrockBody()) }));
    const events = await streamEvents(out);
    const start = events.find((e) => e.type === 'content_block_start');
    assert.deepEqual(start.content_block, { type: 'tool_use', id: 'toolu_9', name: 'Bash', input: {} });
    const args = events.filter((e) => e.delta?.type === 'input_json_delta').map((e) => e.delta.partial_json).join('');
    assert.deepEqual(JSON.parse(args), { command: 'npm test' });
    const a = assembled(events);
    assert.equal(a.stop, 'tool_use');
    assert.equal(a.input, 100);
    assert.equal(a.output, 12);
    // The SDK's signed path reaches the gateway with the id percent-encoded; the upstream sees the same id.
    assert.equal(bedrock.last('invoke-with-response-stream').modelId, SONNET_BEDROCK);
  });

  it('serves InvokeModel from an Anthropic upstream (id resolved by Claude name): betas to the header, body otherwise unchanged', async () => {
    claude.script({ type: 'text', pieces: ['Hi', ' there'], usage: { input_tokens: 20, output_tokens: 2 } });
    const body = { ...bedrockBody(), stream: undefined };
    const out = await apiKeyClient().send(new InvokeModelCommand({ modelId: HAIKU_BEDROCK, contentType: 'application/json', accept: 'application/json', body: enc(body) }));
    const msg = JSON.parse(Buffer.from(out.body).toString('utf8'));
    assert.deepEqual(msg.content, [{ type: 'text', text: 'Hi there' }]);
    assert.equal(msg.stop_reason, 'end_turn');
    const up = claude.lastMessageRequest();
    assert.equal(up.path, '/v1/messages');
    assert.equal(up.search, '');
    assert.equal(up.headers['anthropic-version'], '2023-06-01');
    assert.equal(up.headers['anthropic-beta'], BETAS);
    assert.equal(up.headers['x-api-key'], UPSTREAM_KEY);
    const { anthropic_version: _v, anthropic_beta: _b, ...rest } = bedrockBody();
    assert.deepEqual(up.body, { ...rest, model: 'claude-haiku-4-5-20251001', stream: false });
  });

  it('streams from an Anthropic upstream as Bedrock frames, with the invocation metrics Bedrock adds', async () => {
    claude.script({ type: 'text', pieces: ['one ', 'two ', 'three'], usage: { input_tokens: 50, output_tokens: 3 } });
    const out = await bearerClient().send(new InvokeModelWithResponseStreamCommand({ modelId: HAIKU_BEDROCK, body: enc(fixture.bedrock.probe) }));
    const a = assembled(await streamEvents(out));
    assert.equal(a.text, 'one two three');
    assert.equal(a.stop, 'end_turn');
    assert.equal(a.metrics.inputTokenCount, 50);
    assert.equal(a.metrics.outputTokenCount, 3);
    assert.equal(claude.lastMessageRequest().body.stream, true);
  });

  it('streams from an OpenAI upstream (id mapped in bedrockApi.models), translated', async () => {
    openaiUp.script({ type: 'text', pieces: ['Translated ', 'answer.'] });
    const out = await bearerClient().send(new InvokeModelWithResponseStreamCommand({ modelId: OPUS_BEDROCK, body: enc(bedrockBody()) }));
    const a = assembled(await streamEvents(out));
    assert.equal(a.text, 'Translated answer.');
    assert.equal(a.stop, 'end_turn');
    const up = openaiUp.lastChatRequest().body;
    assert.equal(up.tools.length, 24);
    assert.equal(up.stream, true);
  });

  it('keeps a silent stream alive with ping events', async () => {
    const gate = createGate();
    bedrock.script({ type: 'answer', text: ['before ', 'after'], pauseAfter: 1, gate });
    const failsafe = setTimeout(() => gate.open(), 5_000);
    const out = await bearerClient().send(new InvokeModelWithResponseStreamCommand({ modelId: SONNET_BEDROCK, body: enc(fixture.bedrock.probe) }));
    const types: string[] = [];
    let text = '';
    for await (const ev of out.body!) {
      const e = JSON.parse(Buffer.from(ev.chunk!.bytes!).toString('utf8'));
      types.push(e.type);
      if (e.delta?.text) text += e.delta.text;
      if (e.type === 'ping' && text === 'before ') gate.open();
    }
    clearTimeout(failsafe);
    assert.equal(text, 'before after');
    const firstPing = types.indexOf('ping');
    assert.ok(firstPing > types.indexOf('content_block_delta') && firstPing < types.lastIndexOf('content_block_delta'), `a ping in the silence: ${types.join(',')}`);
    assert.equal(types.at(-1), 'message_stop');
  });

  it('turns errors into the SDK exceptions Bedrock would raise', async () => {
    // Unknown model id.
    await assert.rejects(bearerClient().send(new InvokeModelCommand({ modelId: 'anthropic.claude-v2', body: enc(fixture.bedrock.probe) })), (err: unknown) => {
      assert.ok(err instanceof ValidationException);
      assert.equal(err.$metadata.httpStatusCode, 400);
      assert.equal(err.message, 'The provided model identifier is invalid.');
      return true;
    });
    // A key the gateway does not know: 401.
    await assert.rejects(bearerClient('sk-gw-unknown').send(new InvokeModelCommand({ modelId: SONNET_BEDROCK, body: enc(fixture.bedrock.probe) })), (err: any) => {
      assert.equal(err.$metadata.httpStatusCode, 401);
      assert.equal(err.name, 'UnrecognizedClientException');
      assertCleanErrorText(String(err.message));
      return true;
    });
    // Bedrock throttles: the SDK's ThrottlingException, with Bedrock's words.
    bedrock.script({ type: 'error', status: 429, errorType: 'ThrottlingException', message: 'Too many requests, please wait before trying again.' });
    await assert.rejects(bearerClient().send(new InvokeModelCommand({ modelId: SONNET_BEDROCK, body: enc(fixture.bedrock.probe) })), (err: unknown) => {
      assert.ok(err instanceof ThrottlingException);
      assert.equal(err.$metadata.httpStatusCode, 429);
      assert.match(err.message, /Too many requests/);
      return true;
    });
    // Anthropic is overloaded (529): ServiceUnavailableException with Anthropic's message.
    claude.script({ type: 'error', status: 529, body: anthropicErrorJson('overloaded_error', 'Overloaded') });
    await assert.rejects(bearerClient().send(new InvokeModelCommand({ modelId: HAIKU_BEDROCK, body: enc(fixture.bedrock.probe) })), (err: unknown) => {
      assert.ok(err instanceof ServiceUnavailableException);
      assert.equal(err.message, 'Overloaded');
      return true;
    });
    // Bad anthropic_beta in the body: Bedrock's validation error, before any upstream call.
    await assert.rejects(bearerClient().send(new InvokeModelCommand({ modelId: SONNET_BEDROCK, body: enc({ ...fixture.bedrock.probe, anthropic_beta: 'not-a-list' }) })), ValidationException);
    assert.equal(bedrock.requests.length, 1);
  });

  it('ends a stream that fails mid-way with an exception frame the SDK raises', async () => {
    bedrock.script({ type: 'answer', text: ['a ', 'b ', 'c'], exceptionAfter: 1, exception: { type: 'throttlingException', message: 'Rate exceeded mid-stream' } });
    const out = await bearerClient().send(new InvokeModelWithResponseStreamCommand({ modelId: SONNET_BEDROCK, body: enc(fixture.bedrock.probe) }));
    const seen: any[] = [];
    await assert.rejects(
      (async () => {
        for await (const ev of out.body!) if (ev.chunk?.bytes) seen.push(JSON.parse(Buffer.from(ev.chunk.bytes).toString('utf8')));
      })(),
      (err: unknown) => {
        assert.ok(err instanceof ThrottlingException);
        assert.match(err.message, /Rate exceeded mid-stream/);
        return true;
      },
    );
    assert.ok(seen.some((e) => e.delta?.text === 'a '), 'the events before the failure arrived');
    const rec = await awaitRecord(gw.sink.records, (r) => r.frontDoor === 'bedrock-invoke' && r.outcome === 'stream_error', 'the stream_error record');
    assert.equal(rec.status, 502, 'docs/log-schema.md: a failure after the stream started is logged as 502');

    // An Anthropic upstream whose stream is cut: the client gets an exception, never a clean end.
    const gate = createGate();
    claude.script({ type: 'text', pieces: ['x ', 'y ', 'z'], pauseAfter: 1, gate, cutAfter: 1 });
    const cut = await bearerClient().send(new InvokeModelWithResponseStreamCommand({ modelId: HAIKU_BEDROCK, body: enc(fixture.bedrock.probe) }));
    const it = cut.body![Symbol.asyncIterator]();
    const got: any[] = [];
    await assert.rejects(
      (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          const ev = JSON.parse(Buffer.from(r.value.chunk!.bytes!).toString('utf8'));
          got.push(ev);
          if (ev.delta?.text === 'x ') gate.open();
        }
      })(),
      (err: any) => {
        assert.equal(err.name, 'ModelStreamErrorException');
        return true;
      },
    );
    assert.ok(got.some((e) => e.delta?.text === 'x '));
    assert.ok(!got.some((e) => e.type === 'message_stop'), 'never a clean end');
  });
});

describe('Bedrock model ids', () => {
  it('parses the path with a raw or percent-encoded `:` and resolves ids through the configuration', () => {
    assert.deepEqual(parseBedrockPath(`/bedrock/model/${SONNET_BEDROCK}/invoke`), { modelId: SONNET_BEDROCK, operation: 'invoke' });
    assert.deepEqual(parseBedrockPath(`/bedrock/model/${encodeURIComponent(SONNET_BEDROCK)}/invoke-with-response-stream`), { modelId: SONNET_BEDROCK, operation: 'invoke-with-response-stream' });
    assert.equal(parseBedrockPath('/bedrock/model//invoke'), undefined);
    assert.equal(anthropicModelName(SONNET_BEDROCK), 'claude-sonnet-4-5-20250929');
    assert.equal(anthropicModelName('arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-1-20250805-v1:0'), 'claude-opus-4-1-20250805');
    assert.equal(anthropicModelName('amazon.nova-lite-v1:0'), undefined);

    const index = new BedrockModelIndex(gw.config);
    assert.equal(index.resolve(SONNET_BEDROCK), 'claude-on-bedrock', 'a bedrock target of that id');
    assert.equal(index.resolve('eu.anthropic.claude-sonnet-4-5-20250929-v1:0'), 'claude-on-bedrock', 'another region prefix of the same model');
    assert.equal(index.resolve(HAIKU_BEDROCK), 'claude-haiku-4-5', 'an anthropic target of the Claude model');
    assert.equal(index.resolve(OPUS_BEDROCK), 'claude-via-openai', 'the bedrockApi.models table');
    assert.equal(index.resolve('claude-via-openai'), 'claude-via-openai', 'a configured name');
    assert.equal(index.resolve('us.anthropic.claude-3-haiku-20240307-v1:0'), undefined);
  });

  it('rejects a bedrockApi.models entry that names no configured model', () => {
    assert.throws(
      () => parseConfig({ providers: { mock: { type: 'mock' } }, models: { m: { provider: 'mock', model: 'x' } }, bedrockApi: { models: { 'us.anthropic.claude-x-v1:0': 'nope' } } }, 'test'),
      /bedrockApi\.models.*nope/s,
    );
  });
});

describe('Other Bedrock clients: Converse and ConverseStream on /bedrock', () => {
  const messages = [{ role: 'user' as const, content: [{ text: 'Run the tests' }] }];
  const toolConfig = { tools: [{ toolSpec: { name: 'Bash', description: 'Run a command', inputSchema: { json: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] } } } }] };

  it('streams from an Anthropic upstream as ConverseStream events the SDK decodes', async () => {
    claude.script({ type: 'tool_use', text: 'Running them.', calls: [{ id: 'toolu_c1', name: 'Bash', input: ['{"command":', '"npm test"}'] }], usage: { input_tokens: 30, output_tokens: 9, cache_read_input_tokens: 10 } });
    const out = await bearerClient().send(new ConverseStreamCommand({ modelId: HAIKU_BEDROCK, messages, toolConfig, inferenceConfig: { maxTokens: 256 }, system: [{ text: 'Be brief.' }] }));
    let text = '';
    let args = '';
    let tool: { toolUseId?: string; name?: string } | undefined;
    let stop: string | undefined;
    let usage: any;
    for await (const ev of out.stream!) {
      if (ev.contentBlockDelta?.delta?.text) text += ev.contentBlockDelta.delta.text;
      if (ev.contentBlockStart?.start?.toolUse) tool = ev.contentBlockStart.start.toolUse;
      if (ev.contentBlockDelta?.delta?.toolUse?.input) args += ev.contentBlockDelta.delta.toolUse.input;
      if (ev.messageStop) stop = ev.messageStop.stopReason;
      if (ev.metadata) usage = ev.metadata.usage;
    }
    assert.equal(text, 'Running them.');
    assert.deepEqual(tool, { toolUseId: 'toolu_c1', name: 'Bash' });
    assert.deepEqual(JSON.parse(args), { command: 'npm test' });
    assert.equal(stop, 'tool_use');
    assert.deepEqual(usage, { inputTokens: 30, outputTokens: 9, totalTokens: 49, cacheReadInputTokens: 10 });
    const up = claude.lastMessageRequest().body;
    assert.equal(up.model, 'claude-haiku-4-5-20251001');
    assert.equal(up.system, 'Be brief.');
    assert.equal(up.tools[0].name, 'Bash');
    assert.equal(up.max_tokens, 256);
  });

  it('answers Converse from a Bedrock upstream (Converse again) and from OpenAI', async () => {
    bedrock.script({ type: 'answer', text: ['From ', 'Bedrock.'], usage: { inputTokens: 11, outputTokens: 2 } });
    const a = await apiKeyClient().send(new ConverseCommand({ modelId: SONNET_BEDROCK, messages, inferenceConfig: { maxTokens: 64, temperature: 0.2 } }));
    assert.deepEqual(a.output?.message?.content, [{ text: 'From Bedrock.' }]);
    assert.equal(a.stopReason, 'end_turn');
    assert.equal(a.usage?.inputTokens, 11);
    const up = bedrock.last('converse');
    assert.equal(up.modelId, SONNET_BEDROCK);
    assert.deepEqual(up.body.inferenceConfig, { maxTokens: 64, temperature: 0.2 });

    openaiUp.script({ type: 'text', pieces: ['From ', 'OpenAI.'] });
    const b = await bearerClient().send(new ConverseCommand({ modelId: OPUS_BEDROCK, messages }));
    assert.deepEqual(b.output?.message?.content, [{ text: 'From OpenAI.' }]);
    const rec = await recordFor(b);
    assert.equal(rec.frontDoor, 'bedrock-converse');
    assert.equal(rec.provider, 'openai');
  });

  it('refuses unknown model ids, and fields a translated route cannot carry, with ValidationException', async () => {
    await assert.rejects(bearerClient().send(new ConverseCommand({ modelId: 'meta.llama3-70b-instruct-v1:0', messages })), ValidationException);
    // OPUS_BEDROCK is served by OpenAI here: translated, so Bedrock's guardrailConfig is refused, named.
    await assert.rejects(bearerClient().send(new ConverseCommand({ modelId: OPUS_BEDROCK, messages, guardrailConfig: { guardrailIdentifier: 'g', guardrailVersion: '1' } })), (err: unknown) => {
      assert.ok(err instanceof ValidationException);
      assert.match(err.message, /guardrailConfig/);
      return true;
    });
    assert.equal(bedrock.requests.length, 0);
    assert.equal(openaiUp.requests.length, 0);
  });

  it('passes a Converse field the gateway does not translate through to a Bedrock target (issue #14)', async () => {
    // Same format: Bedrock, not the gateway, judges guardrailConfig.
    bedrock.script({ type: 'answer', text: ['Guarded.'], usage: { inputTokens: 3, outputTokens: 1 } });
    const res = await bearerClient().send(new ConverseCommand({ modelId: SONNET_BEDROCK, messages, guardrailConfig: { guardrailIdentifier: 'g', guardrailVersion: '1' } }));
    assert.deepEqual(res.output?.message?.content, [{ text: 'Guarded.' }]);
    assert.deepEqual(bedrock.last('converse').body.guardrailConfig, { guardrailIdentifier: 'g', guardrailVersion: '1' });
  });
});
