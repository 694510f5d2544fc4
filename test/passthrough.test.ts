import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { CLIENT_KEY, MemorySink, UPSTREAM_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';

/**
 * Same-format routes (OpenAI Chat Completions client -> OpenAI upstream, Anthropic Messages
 * client -> Anthropic upstream) pass the upstream's answer to the client byte for byte, JSON and
 * SSE alike, whatever its formatting; the request goes up as the client's JSON with only `model`
 * replaced, with the gateway's credential instead of the client's, and (Anthropic) with the
 * client's `anthropic-version` and `anthropic-beta`. The one documented change: an OpenAI stream
 * always asks the upstream for usage, and a client that did not ask for it does not get it.
 */

const ANTHROPIC_KEY = 'sk-ant-pass-UPSTREAM-0c3e';
let oai: MockOpenAI;
let ant: MockAnthropic;
let srv: StartedGateway;
let sink: MemorySink;

before(async () => {
  [oai, ant] = await Promise.all([startMockOpenAI(), startMockAnthropic({ apiKey: ANTHROPIC_KEY })]);
  srv = await startGateway({
    providers: {
      openai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'TEST_PASS_OPENAI_KEY' },
      anthropic: { type: 'anthropic', baseUrl: ant.baseUrl, apiKeyEnv: 'TEST_PASS_ANTHROPIC_KEY' },
    },
    models: {
      gpt: { provider: 'openai', model: 'gpt-4.1-2025-04-14' },
      claude: { provider: 'anthropic', model: 'claude-opus-4-1-20250805' },
    },
    config: {
      routing: { retry: { retries: 0 }, fallbackOn: [] },
    },
    env: { TEST_PASS_OPENAI_KEY: UPSTREAM_KEY, TEST_PASS_ANTHROPIC_KEY: ANTHROPIC_KEY },
    label: 'pass-through test configuration',
  });
  sink = srv.sink;
});

after(async () => {
  await srv?.close();
  await Promise.all([oai?.close(), ant?.close()]);
});

beforeEach(() => {
  oai.reset();
  ant.reset();
});

async function post(path: string, body: unknown, headers: Record<string, string>): Promise<{ res: Response; text: string }> {
  const res = await fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { res, text: await res.text() };
}

/** An answer written with unusual but valid formatting (spacing, escapes, key order, a field we do not know), which any re-encoding would change. */
const ODD_JSON =
  '{\n  "id" : "chatcmpl-odd1",\n  "object":"chat.completion", "created":1764000000,"model":"gpt-4.1-2025-04-14",\n' +
  '  "choices":[{"index":0,"message":{"role":"assistant","content":"caf\\u00e9 \\ud83c\\udf0d 1.0e2","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],\n' +
  '  "usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0}},\n' +
  '  "x_vendor_extension":{"score":1.50}, "system_fingerprint":"fp_odd"\n}';

function oddStream(withUsage: boolean): string {
  const head = { id: 'chatcmpl-odd2', object: 'chat.completion.chunk', created: 1764000000, model: 'gpt-4.1-2025-04-14', system_fingerprint: 'fp_odd' };
  const u = withUsage ? ',"usage":null' : '';
  const chunk = (delta: string, finish = 'null') => `data: ${JSON.stringify(head).slice(0, -1)},"choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}]${u}}\n\n`;
  return (
    ': keep-alive comment\n\n' +
    chunk('{"role":"assistant","content":"","refusal":null}') +
    chunk('{"content":"caf\\u00e9 "}') +
    chunk('{"content":"🌍"}') +
    chunk('{}', '"stop"') +
    `data: ${JSON.stringify(head).slice(0, -1)},"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n` +
    'data: [DONE]\n\n'
  );
}

describe('OpenAI Chat Completions -> OpenAI upstream', () => {
  it('passes a JSON answer through byte for byte; the request keeps every field but model; only the gateway credential goes up', async () => {
    oai.script({
      type: 'handler',
      handle(_req, res) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(ODD_JSON);
      },
    });
    const body = { model: 'gpt', messages: [{ role: 'user', content: 'café 🌍' }], temperature: 0.25, seed: 7, logit_bias: { '50256': -100 }, metadata: { k: 'v' }, x_custom: [1, 2] };
    const { res, text } = await post('/v1/chat/completions', body, { authorization: `Bearer ${CLIENT_KEY}`, 'openai-organization': 'org-client' });
    assert.equal(res.status, 200);
    assert.equal(text, ODD_JSON, 'the client gets exactly the bytes the upstream sent');

    const up = oai.lastChatRequest();
    assert.deepEqual(up.body, { ...body, model: 'gpt-4.1-2025-04-14' });
    assert.deepEqual(Object.keys(up.body), Object.keys(body), 'field order kept');
    assert.equal(up.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.ok(!JSON.stringify(up.headers).includes(CLIENT_KEY), 'the client credential never goes up');
    const rec = sink.records.find((r) => r.requestId === res.headers.get('x-request-id'));
    assert.equal(rec?.inputTokens, 9);
    assert.equal(rec?.outputTokens, 4);
  });

  it('passes an SSE stream through byte for byte when the client asked for usage', async () => {
    const sse = oddStream(true);
    oai.script({
      type: 'handler',
      handle(_req, res) {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        // In uneven pieces, splitting events and a UTF-8 character.
        const bytes = Buffer.from(sse);
        for (let i = 0; i < bytes.length; i += 37) res.write(bytes.subarray(i, i + 37));
        res.end();
      },
    });
    const { res, text } = await post('/v1/chat/completions', { model: 'gpt', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }, { authorization: `Bearer ${CLIENT_KEY}` });
    assert.equal(res.status, 200);
    assert.equal(text, sse);
    assert.deepEqual(oai.lastChatRequest().body.stream_options, { include_usage: true });
  });

  it('without include_usage: asks the upstream for usage and hides only that (the usage chunk and the usage: null fields)', async () => {
    const sse = oddStream(true);
    oai.script({
      type: 'handler',
      handle(_req, res) {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        res.end(sse);
      },
    });
    const { res, text } = await post('/v1/chat/completions', { model: 'gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }, { authorization: `Bearer ${CLIENT_KEY}` });
    assert.equal(res.status, 200);
    const expectedText = sse
      .split('\n\n')
      .filter((e) => !e.includes('"choices":[],"usage"'))
      .join('\n\n')
      .replaceAll(',"usage":null', '');
    assert.equal(text, expectedText);
    assert.deepEqual(oai.lastChatRequest().body.stream_options, { include_usage: true }, 'the gateway asked for usage on its own account');
    const rec = sink.records.find((r) => r.requestId === res.headers.get('x-request-id'));
    assert.equal(rec?.outputTokens, 2, 'and logged it');
  });
});

describe('Anthropic Messages -> Anthropic upstream', () => {
  it('passes a JSON answer through byte for byte, with its request-id, and forwards anthropic-version and anthropic-beta', async () => {
    const odd = '{"id":"msg_odd","type":"message","role":"assistant","model":"claude-opus-4-1-20250805",\n "content":[{"type":"text","text":"caf\\u00e9"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1},"container":null}';
    ant.script({
      type: 'handler',
      handle(_req, res) {
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_odd_1' });
        res.end(odd);
      },
    });
    const body = { model: 'claude', max_tokens: 32, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', cache_control: { type: 'ephemeral' } }] }], context_management: { edits: [] } };
    const { res, text } = await post('/v1/messages', body, { 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01', 'anthropic-beta': 'context-management-2025-06-27,token-efficient-tools-2025-02-19' });
    assert.equal(res.status, 200);
    assert.equal(text, odd);
    assert.equal(res.headers.get('request-id'), 'req_odd_1');
    const up = ant.lastMessageRequest();
    assert.deepEqual(up.body, { ...body, model: 'claude-opus-4-1-20250805' });
    assert.equal(up.headers['anthropic-version'], '2023-06-01');
    assert.equal(up.headers['anthropic-beta'], 'context-management-2025-06-27,token-efficient-tools-2025-02-19');
    assert.equal(up.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(up.headers.authorization, undefined);
  });

  it('passes an upstream error through unmodified (status and bytes), as Claude Code matches on its wording', async () => {
    const errText = '{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"},"request_id":"req_011"}';
    ant.script({ type: 'handler', handle: (_req, res) => void res.writeHead(400, { 'content-type': 'application/json' }).end(errText) });
    const { res, text } = await post('/v1/messages', { model: 'claude', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }, { authorization: `Bearer ${CLIENT_KEY}` });
    assert.equal(res.status, 400);
    assert.equal(text, errText);
    assert.ok(!JSON.stringify(ant.lastMessageRequest().headers).includes(CLIENT_KEY));
  });
});
