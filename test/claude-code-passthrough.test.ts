import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { parseAnthropicRequest } from '../shared/wire/anthropic-messages/door.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';
import { KEYED_UPSTREAM_KEY, startClaudeCodeRig, type ClaudeCodeRig } from './helpers/claude-code.ts';
import type { KeyedGateway } from './helpers/keys.ts';
import type { MockAnthropic } from './helpers/mock-anthropic.ts';
import type { MockBedrock } from './helpers/mock-bedrock.ts';
import type { MockOpenAI } from './helpers/mock-openai.ts';

/**
 * Issue #14 with fetch: what Claude Code sends today passes through to same-format upstreams as
 * sent (unknown fields, roles, block types, headers), translated routes take it (system-role
 * messages, tool_reference blocks, deferred tools), Bedrock's count-tokens route, header forwarding
 * and the agent id in the log record.
 */

useDummyAwsCredentials('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY');
const CLAUDE_BEDROCK = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';

let claude: MockAnthropic;
let bedrock: MockBedrock;
let openaiUp: MockOpenAI;
let gw: KeyedGateway;
let key: string;

let rig: ClaudeCodeRig;

before(async () => {
  rig = await startClaudeCodeRig('cc-passthrough', ({ claude, bedrock, openaiUp }) => ({
    server: { maxBodyBytes: 512 * 1024 },
    providers: {
      mock: { type: 'mock', wordDelayMs: 0 },
      anthropic: { type: 'anthropic', baseUrl: claude.baseUrl, apiKeyEnv: 'TEST_UPSTREAM_KEY' },
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint, messagesViaInvokeModel: true },
      openai: { type: 'openai', baseUrl: openaiUp.baseUrl, apiKeyEnv: 'TEST_UPSTREAM_KEY' },
    },
    models: {
      mock: { provider: 'mock', model: 'mock-echo-1' },
      claude: { provider: 'anthropic', model: 'claude-sonnet-4-5' },
      'claude-on-bedrock': { provider: 'bedrock', model: CLAUDE_BEDROCK },
      'nova-lite': { provider: 'bedrock', model: 'us.amazon.nova-lite-v1:0' },
      gpt: { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
    },
    routing: { retry: { retries: 0 }, fallbackOn: [] },
  }));
  ({ claude, bedrock, openaiUp, gw, key } = rig);
});

after(() => rig?.close());

beforeEach(() => rig.reset());


const CC_HEADERS = {
  'anthropic-version': '2023-06-01',
  'anthropic-beta': 'claude-code-20250219,mid-conversation-system-2026-04-07,advanced-tool-use-2025-11-20',
  'anthropic-dangerous-direct-browser-access': 'true',
  'anthropic-future-header': 'unseen-value',
  'x-claude-code-session-id': 'sess-cc-14',
  'x-claude-code-agent-id': 'agent-cc-14',
};

/** A Claude Code-shaped body with what the gateway does not know (and need not). */
function ccBody(model: string): Record<string, unknown> {
  return {
    model,
    max_tokens: 64,
    stream: false,
    system: [{ type: 'text', text: 'You are Claude Code.', cache_control: { type: 'ephemeral' } }],
    messages: [
      { role: 'user', content: [{ type: 'text', text: '<system-reminder>tools: Bash, Read</system-reminder>' }, { type: 'text', text: 'Find the tool' }] },
      { role: 'system', content: [{ type: 'text', text: 'Mid-conversation system note.' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'ToolSearch', input: { query: 'select:Grep' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'tool_reference', tool_name: 'Grep' }] }] },
    ],
    tools: [
      { name: 'ToolSearch', description: 'Find deferred tools', input_schema: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] } },
      { name: 'Grep', description: 'Search files', input_schema: { type: 'object', properties: { pattern: { type: 'string' } } }, defer_loading: true },
      { name: 'NotebookEdit', description: 'Edit a notebook', input_schema: { type: 'object', properties: {} }, defer_loading: true },
    ],
    thinking: { type: 'adaptive', display: 'updates' },
    output_config: { effort: 'high' },
    context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }] },
    metadata: { user_id: '{"session_id":"sess-cc-14"}' },
  };
}

/** The same with a top-level field nobody knows yet (passes through; a translated route names it in a 400). */
function ccBodyWithUnknown(model: string): Record<string, unknown> {
  return { ...ccBody(model), a_field_from_next_year: { anything: true } };
}

function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers }, body: JSON.stringify(body) });
}

describe('same-format routes pass through what the gateway need not understand', () => {
  it('Anthropic door -> Anthropic: system-role messages, unknown fields and blocks, all anthropic-* headers, session and agent id', async () => {
    const body = ccBodyWithUnknown('claude');
    (body.messages as unknown[]).push({ role: 'user', content: [{ type: 'block_from_the_future', data: 1 }, { type: 'text', text: 'go on' }] });
    (body.messages as unknown[]).push({ role: 'narrator', content: 'an unseen role' });
    const res = await post('/v1/messages?beta=true', body, CC_HEADERS);
    assert.equal(res.status, 200, await res.clone().text());
    await res.text();
    const up = claude.lastMessageRequest();
    assert.equal(up.raw, JSON.stringify({ ...body, model: 'claude-sonnet-4-5' }), 'the body as sent, but for the model');
    for (const [k, v] of Object.entries(CC_HEADERS)) assert.equal(up.headers[k], v, k);
    assert.equal(up.headers['x-api-key'], KEYED_UPSTREAM_KEY);
    const rec = await gw.recordOf(res);
    assert.equal(rec.sessionId, 'sess-cc-14');
    assert.equal(rec.agentId, 'agent-cc-14');
    assert.equal(rec.status, 200);
  });

  it('Bedrock door -> Claude on Bedrock: the same body through InvokeModel, system-role messages and all', async () => {
    const { model: _m, stream: _s, ...rest } = ccBodyWithUnknown('x');
    const body = { anthropic_version: 'bedrock-2023-05-31', anthropic_beta: ['mid-conversation-system-2026-04-07'], ...rest };
    const res = await fetch(`${gw.url}/bedrock/model/${CLAUDE_BEDROCK}/invoke`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.clone().text());
    const up = bedrock.last('invoke');
    assert.deepEqual(up.body, body);
  });

  it('only what the gateway needs is checked up front: a bad max_tokens or messages shape is a 400 even for Anthropic', async () => {
    const noMessages = await post('/v1/messages', { model: 'claude', max_tokens: 5, messages: 'hi' });
    assert.equal(noMessages.status, 400);
    assert.match((await noMessages.json()).error.message, /messages/);
    const badMax = await post('/v1/messages', { model: 'claude', max_tokens: 'lots', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(badMax.status, 400);
    assert.match((await badMax.json()).error.message, /max_tokens/);
    // A value only Anthropic judges (temperature 1.5) goes to Anthropic, which answers for itself.
    const temp = await post('/v1/messages', { model: 'claude', max_tokens: 5, temperature: 1.5, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(temp.status, 200);
    assert.equal(claude.lastMessageRequest().body.temperature, 1.5);
    assert.equal(claude.messageRequests().length, 1, 'the two 400s never reached the upstream');
  });
});

describe('translated routes take what Claude Code sends', () => {
  it('Anthropic door -> OpenAI: system message at its position, tool_reference as text, deferred tools withheld until referenced', async () => {
    openaiUp.script({ type: 'text', pieces: ['ok'] });
    const res = await post('/v1/messages', ccBody('gpt'), CC_HEADERS);
    assert.equal(res.status, 200, await res.clone().text());
    const up = openaiUp.lastChatRequest().body;
    assert.deepEqual(
      up.messages.map((m: any) => m.role),
      ['system', 'user', 'system', 'assistant', 'tool'],
    );
    assert.equal(up.messages[2].content, 'Mid-conversation system note.');
    assert.match(up.messages[4].content, /Grep/);
    assert.deepEqual(
      up.tools.map((t: any) => t.function.name),
      ['ToolSearch', 'Grep'],
      'Grep is referenced (offered), NotebookEdit is still deferred (withheld)',
    );
  });

  it('Anthropic door -> Bedrock Converse (non-Claude): the system-role message is a marked user turn', async () => {
    const res = await post('/v1/messages', ccBody('nova-lite'), CC_HEADERS);
    assert.equal(res.status, 200, await res.clone().text());
    const up = bedrock.last('converse').body;
    assert.match(JSON.stringify(up.messages), /<system-message>\\nMid-conversation system note.\\n<\/system-message>/);
    assert.deepEqual(
      up.toolConfig.tools.map((t: any) => t.toolSpec.name),
      ['ToolSearch', 'Grep'],
    );
  });

  it('an unknown top-level field gets a 400 naming it on a translated route', async () => {
    const res = await post('/v1/messages', ccBodyWithUnknown('gpt'), CC_HEADERS);
    assert.equal(res.status, 400);
    assert.match((await res.json()).error.message, /a_field_from_next_year/);
    assert.equal(openaiUp.chatRequests().length, 0);
  });

  it('block types without a translation get a 400 naming the block and what to use instead', async () => {
    const res = await post('/v1/messages', { model: 'gpt', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' } }] }] });
    assert.equal(res.status, 400);
    const msg = (await res.json()).error.message as string;
    assert.match(msg, /messages\.0\.content\.0\.type/);
    assert.match(msg, /'document'/);
    assert.match(msg, /send the document as text/);
  });

  it('the parser keeps unknown values for the upstream to judge and notes them for translation', () => {
    const req = parseAnthropicRequest({ model: 'm', max_tokens: 1, thinking: { type: 'brand-new' }, messages: [{ role: 'user', content: 'hi' }] });
    assert.deepEqual(req.untranslatable?.map((u) => u.param), ['thinking.type']);
  });
});

describe('mock: tools only on an explicit directive', () => {
  const bash = { name: 'Bash', description: 'Run a command', input_schema: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] } };
  it('names of tools in the prompt do not trigger a call; `call <tool> {json}` does', async () => {
    const plain = await post('/v1/messages', { model: 'mock', max_tokens: 50, tools: [bash], messages: [{ role: 'user', content: [{ type: 'text', text: '<system-reminder>You can use Bash.</system-reminder>' }, { type: 'text', text: 'Use Bash if you like' }] }] });
    const p = await plain.json();
    assert.equal(p.stop_reason, 'end_turn');
    assert.deepEqual(p.content, [{ type: 'text', text: 'Use Bash if you like' }]);
    const call = await post('/v1/messages', { model: 'mock', max_tokens: 50, tools: [bash], messages: [{ role: 'user', content: 'Please\ncall Bash {"command":"ls -la"}' }] });
    const c = await call.json();
    assert.equal(c.stop_reason, 'tool_use');
    assert.deepEqual(c.content[0].input, { command: 'ls -la' });
    const unknown = await post('/v1/messages', { model: 'mock', max_tokens: 50, tools: [bash], messages: [{ role: 'user', content: 'call Nope {}' }] });
    assert.equal((await unknown.json()).content[0].text, 'mock: no tool named Nope is offered.');
  });
});

describe('Bedrock CountTokens: POST /bedrock/model/{id}/count-tokens', () => {
  const invokeBody = { anthropic_version: 'bedrock-2023-05-31', max_tokens: 10, messages: [{ role: 'user', content: 'Count these words please' }, { role: 'system', content: 'a system note' }] };
  const input = { input: { invokeModel: { body: Buffer.from(JSON.stringify(invokeBody)).toString('base64') } } };
  const count = (id: string, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${key}` }) =>
    fetch(`${gw.url}/bedrock/model/${id}/count-tokens`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  it('Claude on Bedrock: exact, from Bedrock CountTokens with the InvokeModel body as sent', async () => {
    const res = await count(CLAUDE_BEDROCK, input);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('x-gateway-token-count'), 'exact');
    const json = await res.json();
    assert.equal(typeof json.inputTokens, 'number');
    const up = bedrock.last('count-tokens');
    assert.equal(Buffer.from(up.body.input.invokeModel.body, 'base64').toString('utf8'), JSON.stringify(invokeBody));
    const rec = await gw.recordOf(res);
    assert.equal(rec.frontDoor, 'bedrock-invoke');
    assert.equal(rec.model, 'claude-on-bedrock');
    assert.equal(rec.status, 200);
  });

  it('an Anthropic target: exact, from count_tokens; other targets: an estimate; a Converse input too', async () => {
    claude.scriptCount(77);
    const a = await count('claude', input, { 'x-api-key': key });
    assert.equal(a.status, 200, await a.clone().text());
    assert.deepEqual(await a.json(), { inputTokens: 77 });
    assert.equal(a.headers.get('x-gateway-token-count'), 'exact');
    const sent = claude.countRequests()[0]!.body;
    assert.equal(sent.max_tokens, undefined);
    assert.equal(sent.model, 'claude-sonnet-4-5');
    const m = await count('mock', input);
    assert.equal(m.headers.get('x-gateway-token-count'), 'estimate');
    assert.ok((await m.json()).inputTokens > 0);
    const conv = await count('gpt', { input: { converse: { messages: [{ role: 'user', content: [{ text: 'hello there' }] }] } } });
    assert.equal(conv.status, 200, await conv.clone().text());
    assert.equal(conv.headers.get('x-gateway-token-count'), 'estimate');
  });

  it('no credentials (SKIP_BEDROCK_AUTH without a header): 401 UnrecognizedClientException; bad input and unknown ids: 400 ValidationException', async () => {
    const none = await count(CLAUDE_BEDROCK, input, {});
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('x-amzn-errortype'), 'UnrecognizedClientException');
    const bad = await count(CLAUDE_BEDROCK, { input: {} });
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get('x-amzn-errortype'), 'ValidationException');
    const unknown = await count('us.anthropic.claude-nope-v1:0', input);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.headers.get('x-amzn-errortype'), 'ValidationException');
  });
});
