import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { CLIENT_KEY, UPSTREAM_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { countTokensOf, startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * `POST /v1/messages/count_tokens` for every provider, through @anthropic-ai/sdk: exact counts
 * from Anthropic's own endpoint and from Bedrock's CountTokens (Claude models, reached through
 * the real AWS SDK client), marked `x-gateway-token-count: exact`; a local tokenizer estimate for
 * everything else, marked `estimate`, without any upstream call.
 */

useDummyAwsCredentials('AKIATESTCOUNTTOKENS1', 'count-tokens-test-secret-7e2a');

const ANTHROPIC_KEY = 'sk-ant-count-UPSTREAM-2d4c';
const CLAUDE_BEDROCK = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';

let ant: MockAnthropic;
let bedrock: MockBedrock;
let oai: MockOpenAI;
let srv: StartedGateway;
let claude: Anthropic;

before(async () => {
  [ant, bedrock, oai] = await Promise.all([startMockAnthropic({ apiKey: ANTHROPIC_KEY }), startMockBedrock(), startMockOpenAI()]);
  srv = await startGateway({
    providers: {
      anthropic: { type: 'anthropic', baseUrl: ant.baseUrl, apiKeyEnv: 'TEST_COUNT_ANTHROPIC_KEY' },
      bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint },
      openai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'TEST_COUNT_OPENAI_KEY' },
      mock: { type: 'mock', wordDelayMs: 0 },
    },
    models: {
      'c-anthropic': { provider: 'anthropic', model: 'claude-sonnet-4-5-20250929' },
      'c-bedrock': { provider: 'bedrock', model: CLAUDE_BEDROCK },
      'c-nova': { provider: 'bedrock', model: 'amazon.nova-pro-v1:0' },
      'c-openai': { provider: 'openai', model: 'gpt-4.1-2025-04-14' },
      'c-mock': { provider: 'mock', model: 'mock-echo-1' },
    },
    env: { TEST_COUNT_ANTHROPIC_KEY: ANTHROPIC_KEY, TEST_COUNT_OPENAI_KEY: UPSTREAM_KEY },
    label: 'count_tokens test configuration',
  });
  claude = new Anthropic({ baseURL: srv.url, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await Promise.all([ant?.close(), bedrock?.close(), oai?.close()]);
});

beforeEach(() => {
  ant.reset();
  bedrock.reset();
  oai.reset();
});

const params = {
  system: 'You are a scientist.',
  messages: [
    { role: 'user' as const, content: 'What is the weather in Paris?' },
    { role: 'assistant' as const, content: [{ type: 'tool_use' as const, id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
    { role: 'user' as const, content: [{ type: 'tool_result' as const, tool_use_id: 'toolu_1', content: '18 degrees and sunny' }] },
  ],
  tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] } }],
};

function upstreamCalls(): number {
  return ant.requests.length + bedrock.requests.length + oai.requests.length;
}

describe('count_tokens per provider', () => {
  it('anthropic: exact, from Anthropic\'s own count_tokens', async () => {
    ant.scriptCount(321);
    const { data, response } = await claude.messages.countTokens({ model: 'c-anthropic', ...params }, { headers: { 'anthropic-beta': 'token-counting-2024-11-01' } }).withResponse();
    assert.deepEqual(data, { input_tokens: 321 });
    assert.equal(response.headers.get('x-gateway-token-count'), 'exact');
    assert.equal(ant.countRequests()[0]?.headers['anthropic-beta'], 'token-counting-2024-11-01');
  });

  it('bedrock, a Claude model: exact, from Bedrock CountTokens over the Converse form of the request', async () => {
    const { data, response } = await claude.messages.countTokens({ model: 'c-bedrock', ...params }).withResponse();
    assert.equal(response.headers.get('x-gateway-token-count'), 'exact');
    const up = bedrock.last('count-tokens');
    assert.equal(up.modelId, CLAUDE_BEDROCK);
    assert.match(String(up.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIATESTCOUNTTOKENS1\//, 'signed by the AWS SDK');
    assert.deepEqual(data, { input_tokens: countTokensOf(up.body) }, 'the count Bedrock gave');
    const converse = up.body.input.converse;
    assert.deepEqual(converse.system, [{ text: 'You are a scientist.' }]);
    assert.deepEqual(converse.messages.map((m: { role: string }) => m.role), ['user', 'assistant', 'user']);
    assert.deepEqual(converse.messages[1].content, [{ toolUse: { toolUseId: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } } }]);
    assert.equal(converse.messages[2].content[0].toolResult.toolUseId, 'toolu_1');
    assert.equal(converse.toolConfig.tools[0].toolSpec.name, 'get_weather');
  });

  it('bedrock, another model (no token counting there): an estimate, without calling Bedrock', async () => {
    const { data, response } = await claude.messages.countTokens({ model: 'c-nova', ...params }).withResponse();
    assert.equal(response.headers.get('x-gateway-token-count'), 'estimate');
    assert.ok(data.input_tokens > 346, `the tools overhead and the text: ${data.input_tokens}`);
    assert.equal(upstreamCalls(), 0);
  });

  it('bedrock, a Claude request with parts Converse cannot carry (a PDF): an estimate, without calling Bedrock', async () => {
    const { response } = await claude.messages
      .countTokens({ model: 'c-bedrock', messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } }, { type: 'text', text: 'Summarize' }] }] })
      .withResponse();
    assert.equal(response.headers.get('x-gateway-token-count'), 'estimate');
    assert.equal(upstreamCalls(), 0);
  });

  for (const model of ['c-openai', 'c-mock']) {
    it(`${model.slice(2)}: an estimate from the local tokenizer, the same for the same request`, async () => {
      const a = await claude.messages.countTokens({ model, ...params }).withResponse();
      assert.equal(a.response.headers.get('x-gateway-token-count'), 'estimate');
      const nova = await claude.messages.countTokens({ model: 'c-nova', ...params });
      assert.equal(a.data.input_tokens, nova.input_tokens, 'the estimate does not depend on the provider');
      const longer = await claude.messages.countTokens({ model, ...params, system: `${params.system} ${'Explain every step. '.repeat(50)}` });
      assert.ok(longer.input_tokens >= a.data.input_tokens + 150, `${longer.input_tokens} vs ${a.data.input_tokens}`);
      assert.equal(upstreamCalls(), 0);
    });
  }
});

describe('count_tokens: bounded work (issue #15)', () => {
  // Before: 12 KB of one character took 26 s of CPU and 3.9 MB minutes, with every other request waiting.
  it('12 KB of one repeated character is counted, and the server keeps answering', { timeout: 15_000 }, async () => {
    const pending = claude.messages.countTokens({ model: 'c-mock', messages: [{ role: 'user', content: 'x'.repeat(12_000) }] });
    const health = await fetch(`${srv.url}/health`);
    assert.equal(health.status, 200);
    const data = await pending;
    assert.ok(data.input_tokens >= 1500 && data.input_tokens < 1600, String(data.input_tokens));
  });

  it('3.9 MB of one repeated character, and of random letters: an estimate within the test timeout', { timeout: 30_000 }, async () => {
    let seed = 11;
    const random = Array.from({ length: 3_900_000 }, () => String.fromCharCode(97 + ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 26))).join('');
    for (const text of ['x'.repeat(3_900_000), random]) {
      const { data, response } = await claude.messages.countTokens({ model: 'c-mock', messages: [{ role: 'user', content: text }] }).withResponse();
      assert.equal(response.headers.get('x-gateway-token-count'), 'estimate');
      assert.ok(data.input_tokens > 400_000, String(data.input_tokens));
    }
  });

  it('a body over server.maxBodyBytes: 413 in Anthropic\'s error shape', async () => {
    const res = await fetch(`${srv.url}/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY },
      body: JSON.stringify({ model: 'c-mock', messages: [{ role: 'user', content: 'x'.repeat(5 * 1024 * 1024) }] }),
    });
    assert.equal(res.status, 413);
    const body = (await res.json()) as { type: string; error: { type: string } };
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'request_too_large');
  });
});
