import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertCleanErrorText, CLIENT_KEY, UPSTREAM_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { startMockResponsesUpstream, type MockResponsesUpstream } from './helpers/mock-openai-responses.ts';
import { startPathProxy, type PathProxy } from './helpers/path-proxy.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * Translation edge cases from the providers' documentation, end to end (test/fixtures/
 * translation-edge-cases.json): each case is one client body for one front door, and says per
 * provider either what the upstream must receive (a subset of its body, and paths it must not
 * have: what is dropped) or the 400 the client gets instead, naming the parameter (what is
 * rejected), in which case no upstream is called. docs/translation.md states the same rules.
 */

useDummyAwsCredentials('AKIATESTEDGECASES001', 'edge-cases-test-secret-91ab');

type Door = 'chat' | 'messages' | 'responses';
type ProviderKey = 'openai' | 'anthropic' | 'bedrock' | 'bedrock-nova' | 'mock';

interface Outcome {
  upstream?: Record<string, unknown>;
  absent?: string[];
  status?: number;
  param?: string;
  mentions?: string;
}

interface EdgeCase {
  name: string;
  source: string;
  door: Door;
  body: Record<string, unknown>;
  providers: Partial<Record<ProviderKey, Outcome>>;
}

const file = JSON.parse(readFileSync(new URL('./fixtures/translation-edge-cases.json', import.meta.url), 'utf8')) as { png: string; cases: EdgeCase[] };
/** `$PNG` in the table stands for a 1x1 PNG's base64. */
function fill<T>(v: T): T {
  return JSON.parse(JSON.stringify(v).replaceAll('$PNG', file.png)) as T;
}

const MODEL: Record<ProviderKey, string> = { openai: 'e-openai', anthropic: 'e-anthropic', bedrock: 'e-bedrock', 'bedrock-nova': 'e-nova', mock: 'e-mock' };
const PATH: Record<Door, string> = { chat: '/v1/chat/completions', messages: '/v1/messages', responses: '/v1/responses' };
const ANTHROPIC_KEY = 'sk-ant-edge-UPSTREAM-5b1f';

let chatUp: MockOpenAI;
let responsesUp: MockResponsesUpstream;
let proxy: PathProxy;
let anthropicUp: MockAnthropic;
let bedrock: MockBedrock;
let srv: StartedGateway;

before(async () => {
  [chatUp, responsesUp, anthropicUp, bedrock] = await Promise.all([startMockOpenAI(), startMockResponsesUpstream(), startMockAnthropic({ apiKey: ANTHROPIC_KEY }), startMockBedrock()]);
  proxy = await startPathProxy([
    { prefix: '/v1/responses', origin: new URL(responsesUp.baseUrl).origin },
    { prefix: '/v1/', origin: new URL(chatUp.baseUrl).origin },
  ]);
  srv = await startGateway({
    providers: {
      openai: { type: 'openai', baseUrl: proxy.baseUrl, apiKeyEnv: 'TEST_EDGE_OPENAI_KEY' },
      anthropic: { type: 'anthropic', baseUrl: anthropicUp.baseUrl, apiKeyEnv: 'TEST_EDGE_ANTHROPIC_KEY' },
      bedrock: { type: 'bedrock', region: 'us-west-2', endpoint: bedrock.endpoint },
      mock: { type: 'mock', wordDelayMs: 0 },
    },
    models: {
      'e-openai': { provider: 'openai', model: 'gpt-4.1-2025-04-14' },
      'e-anthropic': { provider: 'anthropic', model: 'claude-sonnet-4-5-20250929' },
      'e-bedrock': { provider: 'bedrock', model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' },
      'e-nova': { provider: 'bedrock', model: 'amazon.nova-lite-v1:0' },
      'e-mock': { provider: 'mock', model: 'mock-echo-1' },
    },
    config: {
      routing: { retry: { retries: 0 }, fallbackOn: [] },
    },
    env: { TEST_EDGE_OPENAI_KEY: UPSTREAM_KEY, TEST_EDGE_ANTHROPIC_KEY: ANTHROPIC_KEY },
    label: 'edge case test configuration',
  });
});

after(async () => {
  await srv?.close();
  await proxy?.close();
  await Promise.all([chatUp?.close(), responsesUp?.close(), anthropicUp?.close(), bedrock?.close()]);
});

beforeEach(() => {
  chatUp.reset();
  responsesUp.reset();
  anthropicUp.reset();
  bedrock.reset();
});

/** `actual` holds `expected`: objects key by key (other keys allowed), arrays element by element (same length), values equal. */
function assertSubset(actual: unknown, expected: unknown, path = '$'): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: expected an array, got ${JSON.stringify(actual)}`);
    assert.equal(actual.length, expected.length, `${path}: length (got ${JSON.stringify(actual)})`);
    expected.forEach((e, i) => assertSubset(actual[i], e, `${path}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    assert.ok(actual !== null && typeof actual === 'object' && !Array.isArray(actual), `${path}: expected an object, got ${JSON.stringify(actual)}`);
    for (const [k, v] of Object.entries(expected)) assertSubset((actual as Record<string, unknown>)[k], v, `${path}.${k}`);
  } else assert.deepEqual(actual, expected, path);
}

function at(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

/** The body the provider's upstream received for this call, or undefined when none was called. */
function upstreamBody(door: Door, provider: ProviderKey): unknown {
  switch (provider) {
    case 'openai':
      return door === 'responses' ? responsesUp.requests.at(-1)?.body : chatUp.chatRequests().at(-1)?.body;
    case 'anthropic':
      return anthropicUp.messageRequests().at(-1)?.body;
    case 'bedrock':
    case 'bedrock-nova':
      return bedrock.requests.at(-1)?.body;
    case 'mock':
      return undefined;
  }
}

function upstreamCalls(): number {
  return chatUp.requests.length + responsesUp.requests.length + anthropicUp.requests.length + bedrock.requests.length;
}

describe('translation edge cases (fixtures from the providers docs)', () => {
  for (const c of file.cases) {
    for (const [provider, want] of Object.entries(c.providers) as [ProviderKey, Outcome][]) {
      it(`${c.name} [${provider}]`, async () => {
        const body = { ...fill(c.body), model: MODEL[provider] };
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (c.door === 'messages') Object.assign(headers, { 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' });
        else headers.authorization = `Bearer ${CLIENT_KEY}`;
        const res = await fetch(`${srv.url}${PATH[c.door]}`, { method: 'POST', headers, body: JSON.stringify(body) });
        const text = await res.text();
        const status = want.status ?? 200;
        assert.equal(res.status, status, text);

        if (status !== 200) {
          assertCleanErrorText(text);
          const err = JSON.parse(text);
          if (c.door === 'messages') {
            assert.equal(err.type, 'error');
            assert.equal(err.error.type, 'invalid_request_error');
            if (want.mentions) assert.ok(err.error.message.includes(want.mentions), err.error.message);
          } else {
            assert.equal(err.error.param, want.param, text);
            if (want.mentions) assert.ok(err.error.message.includes(want.mentions), err.error.message);
          }
          assert.equal(upstreamCalls(), 0, 'a rejected request reaches no upstream');
          return;
        }
        if (provider === 'mock') return;
        const sent = upstreamBody(c.door, provider);
        assert.ok(sent, 'the upstream was called');
        if (want.upstream) assertSubset(sent, fill(want.upstream));
        for (const p of want.absent ?? []) assert.equal(at(sent, p), undefined, `${p} is dropped`);
      });
    }
  }
});
