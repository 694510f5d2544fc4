import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { parseConfig } from '../shared/config/load.ts';
import type { StreamEvent } from '../shared/core/types.ts';
import { DETECTOR_TABLE, findAll, ibanValid, luhnValid } from '../shared/guardrails/detectors.ts';
import { CompiledProfile } from '../shared/guardrails/engine.ts';
import { guardrailProfileSchema, type DetectorName } from '../shared/guardrails/schema.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { CLIENT_KEY, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { eventually } from './helpers/keys.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

/**
 * Guardrails: the detectors against a fixture table (true and false positives, checksums), the
 * streaming filter's hold-back, and the gateway end to end with the official SDKs, a loopback
 * OpenAI upstream and a loopback Amazon Bedrock Guardrails endpoint reached by the real
 * @aws-sdk/client-bedrock-runtime client.
 */

// Static dummy credentials for the SDK's default provider chain (the environment comes first).
useDummyAwsCredentials('AKIDGUARDRAILTEST', 'guardrail-test-secret');

// ---- detectors -------------------------------------------------------------------------------

const FIXTURES: { detector: DetectorName; text: string; match: string | null }[] = [
  // card numbers: Luhn-valid ones match, one digit off does not
  { detector: 'card', text: 'pay with 4111 1111 1111 1111 today', match: '4111 1111 1111 1111' },
  { detector: 'card', text: 'pay with 4111 1111 1111 1112 today', match: null },
  { detector: 'card', text: 'mc 5500-0000-0000-0004.', match: '5500-0000-0000-0004' },
  { detector: 'card', text: 'amex 378282246310005', match: '378282246310005' },
  { detector: 'card', text: 'amex 378282246310006', match: null },
  { detector: 'card', text: 'order id 1234567890123', match: null },
  // IBANs: mod-97 valid ones match
  { detector: 'iban', text: 'IBAN GB82 WEST 1234 5698 7654 32 please', match: 'GB82 WEST 1234 5698 7654 32' },
  { detector: 'iban', text: 'IBAN GB82 WEST 1234 5698 7654 33 please', match: null },
  { detector: 'iban', text: 'send to DE89370400440532013000', match: 'DE89370400440532013000' },
  { detector: 'iban', text: 'send to DE89370400440532013001', match: null },
  { detector: 'iban', text: 'the code AB12 is short', match: null },
  // emails
  { detector: 'email', text: 'write to jane.doe+news@example.co.uk now', match: 'jane.doe+news@example.co.uk' },
  { detector: 'email', text: 'root@localhost is local', match: null },
  { detector: 'email', text: 'a decorator @property here', match: null },
  // phones
  { detector: 'phone', text: 'call +1 415 555 2671 now', match: '+1 415 555 2671' },
  { detector: 'phone', text: 'call (415) 555-2671', match: '(415) 555-2671' },
  { detector: 'phone', text: 'call 415-555-2671.', match: '415-555-2671' },
  { detector: 'phone', text: 'london +44 20 7946 0958', match: '+44 20 7946 0958' },
  { detector: 'phone', text: 'berlin 030 1234 5678', match: '030 1234 5678' },
  { detector: 'phone', text: 'on 2024-01-15 at 10:30', match: null },
  { detector: 'phone', text: 'version 1.2.3 build 4567', match: null },
  { detector: 'phone', text: 'the answer is 42', match: null },
  // AWS access key ids
  { detector: 'aws_access_key', text: 'key=AKIAIOSFODNN7EXAMPLE;', match: 'AKIAIOSFODNN7EXAMPLE' },
  { detector: 'aws_access_key', text: 'temp ASIAY34FZKBOKMUTVV7A', match: 'ASIAY34FZKBOKMUTVV7A' },
  { detector: 'aws_access_key', text: 'short AKIAIOSFODNN7EXAMPL', match: null },
  { detector: 'aws_access_key', text: 'XKIAIOSFODNN7EXAMPLE', match: null },
];

describe('detectors', () => {
  for (const f of FIXTURES) {
    it(`${f.detector}: ${f.match ? 'finds' : 'ignores'} "${f.text}"`, () => {
      const found = findAll(DETECTOR_TABLE[f.detector], f.text, 'r', f.detector).map((m) => f.text.slice(m.start, m.end));
      assert.deepEqual(found, f.match ? [f.match] : []);
    });
  }

  it('checksums', () => {
    assert.equal(luhnValid('4012888888881881'), true);
    assert.equal(luhnValid('4012888888881882'), false);
    assert.equal(ibanValid('FR1420041010050500013M02606'), true);
    assert.equal(ibanValid('FR1420041010050500013M02607'), false);
  });
});

// ---- the streaming filter ----------------------------------------------------------------------

function profile(raw: unknown): CompiledProfile {
  return new CompiledProfile('t', guardrailProfileSchema.parse(raw));
}

function source(deltas: string[]): { it: AsyncIterator<StreamEvent>; pulled: () => number } {
  const evs: StreamEvent[] = [{ type: 'start', id: 'x', model: 'm' }, ...deltas.map((d): StreamEvent => ({ type: 'text', delta: d })), { type: 'finish', reason: 'stop' }];
  let i = 0;
  return {
    it: { next: async () => (i < evs.length ? { done: false, value: evs[i++]! } : { done: true, value: undefined }) },
    pulled: () => i,
  };
}

async function drain(it: AsyncIterator<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) out.push(r.value);
  return out;
}

const text = (evs: StreamEvent[]) => evs.map((e) => (e.type === 'text' ? e.delta : '')).join('');

describe('streaming output filter', () => {
  const redacting = { rules: [{ name: 'pii', detect: ['card', 'email', 'aws_access_key'], action: 'redact', on: ['output'] }], holdBackChars: 32 };

  it('catches secrets split across chunks, at any split point', async () => {
    const answer = 'Card 4111 1111 1111 1111, mail jane.doe@example.com, key AKIAIOSFODNN7EXAMPLE. Done.';
    for (let size = 1; size <= 12; size++) {
      const pieces: string[] = [];
      for (let i = 0; i < answer.length; i += size) pieces.push(answer.slice(i, i + size));
      const used = new Set<string>();
      const out = text(await drain(profile(redacting).filterOutput(source(pieces).it, used)));
      assert.equal(out, 'Card [REDACTED:card], mail [REDACTED:email], key [REDACTED:aws_access_key]. Done.', `chunk size ${size}`);
      assert.deepEqual([...used], ['pii']);
    }
  });

  it('holds back only a bounded window: text flows before the stream ends', async () => {
    const pieces = Array.from({ length: 100 }, (_, i) => `word${i} `);
    const src = source(pieces);
    const filtered = profile(redacting).filterOutput(src.it, new Set());
    let r = await filtered.next();
    assert.equal(r.value?.type, 'start');
    r = await filtered.next();
    assert.equal(r.value?.type, 'text');
    assert.ok(src.pulled() < 15, `first text after ${src.pulled()} source events`);
    const rest = await drain(filtered);
    assert.equal((r.value as { delta: string }).delta + text(rest), pieces.join(''));
    assert.equal(rest[rest.length - 1]?.type, 'finish');
  });

  it('a block rule on the output throws guardrail_blocked', async () => {
    const p = profile({ rules: [{ name: 'no-keys', detect: ['aws_access_key'], action: 'block', on: ['output'] }] });
    await assert.rejects(drain(p.filterOutput(source(['here: AKIAIOSFOD', 'NN7EXAMPLE']).it, new Set())), (e: { code?: string; status?: number }) => e.code === 'guardrail_blocked' && e.status === 400);
  });

  it('custom patterns are matched case-insensitively unless asked', async () => {
    const p = profile({ rules: [{ name: 'codename', patterns: ['project\\s+falcon'], action: 'redact', on: ['output'] }] });
    assert.equal(text(await drain(p.filterOutput(source(['About PROJECT ', ' Falcon: no.']).it, new Set()))), 'About [REDACTED:codename]: no.');
  });
});

// ---- end to end --------------------------------------------------------------------------------

const UPSTREAM_KEY_ENV = 'TEST_GUARD_UPSTREAM_KEY';
let upstream: MockOpenAI;
let srv: StartedGateway;
let openai: OpenAI;
let claude: Anthropic;
let bedrockMock: Server;
const guardrailCalls: { path: string; body: any; authorization: string }[] = [];

before(async () => {
  upstream = await startMockOpenAI();
  // Amazon Bedrock Guardrails' ApplyGuardrail on loopback, in its REST/JSON shape.
  bedrockMock = createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      const body = JSON.parse(data || '{}');
      guardrailCalls.push({ path: req.url ?? '', body, authorization: String(req.headers.authorization ?? '') });
      const text: string = body.content?.map((c: any) => c.text?.text ?? '').join(' ') ?? '';
      const intervene = /forbidden topic/i.test(text);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          usage: { topicPolicyUnits: 1, contentPolicyUnits: 1, wordPolicyUnits: 0, sensitiveInformationPolicyUnits: 0, sensitiveInformationPolicyFreeUnits: 0, contextualGroundingPolicyUnits: 0 },
          action: intervene ? 'GUARDRAIL_INTERVENED' : 'NONE',
          actionReason: intervene ? 'Guardrail blocked.' : undefined,
          outputs: intervene ? [{ text: 'Sorry, the model cannot answer this question.' }] : [],
          assessments: intervene ? [{ topicPolicy: { topics: [{ name: 'forbidden', type: 'DENY', action: 'BLOCKED', detected: true }] } }] : [],
        }),
      );
    });
  });
  await new Promise<void>((r) => bedrockMock.listen(0, '127.0.0.1', () => r()));
  const bedrockPort = (bedrockMock.address() as AddressInfo).port;

  srv = await startGateway({
    providers: { openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: UPSTREAM_KEY_ENV } },
    models: {
      gpt: { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
      'gpt-strict': { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
      'gpt-bedrock': { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
      'gpt-open': { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
    },
    config: {
      routing: { retry: { retries: 0 }, fallbackOn: [] },
      guardrails: {
        profiles: {
          default: {
            rules: [
              { name: 'secrets', detect: ['aws_access_key'], action: 'block' },
              { name: 'pii', detect: ['email', 'card', 'iban', 'phone'], action: 'redact' },
              { name: 'deny-codename', patterns: ['project\\s+falcon'], action: 'block', on: ['input'] },
            ],
            holdBackChars: 48,
          },
          strict: { maxPromptChars: 200, maxTokens: 100, allowedTools: ['get_weather'] },
          bedrock: { bedrock: { guardrailIdentifier: 'gr-test123', guardrailVersion: '3', region: 'us-east-1', endpoint: `http://127.0.0.1:${bedrockPort}`, on: ['input', 'output'] } },
        },
        apply: { models: { '*': 'default', 'gpt-strict': 'strict', 'gpt-bedrock': 'bedrock' } },
      },
    },
    env: { [UPSTREAM_KEY_ENV]: 'sk-upstream-GUARDTEST-1234' },
    label: 'guardrails test configuration',
  });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
  claude = new Anthropic({ baseURL: srv.url, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await upstream?.close();
  bedrockMock?.closeAllConnections();
  await new Promise<void>((r) => (bedrockMock ? bedrockMock.close(() => r()) : r()));
});

beforeEach(() => {
  upstream.reset();
  guardrailCalls.length = 0;
});

async function expectBlocked(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, String(err));
    return err;
  }
  assert.fail('the request was not blocked');
}

describe('guardrails on the prompt', () => {
  it('a block rule answers 400 guardrail_blocked in OpenAI format, without calling the upstream', async () => {
    const err = await expectBlocked(openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'my key is AKIAIOSFODNN7EXAMPLE, debug this' }] }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'guardrail_blocked');
    assert.doesNotMatch(err.message, /AKIAIOSFODNN7EXAMPLE/, 'the error does not echo the secret');
    assert.equal(upstream.chatRequests().length, 0);
    const rec = await srv.recordOf(err.headers?.get('x-request-id'));
    assert.equal(rec.guardrail, 'blocked');
    assert.equal(rec.guardrailReason, 'secrets');
    assert.equal(rec.status, 400);
    assert.equal(rec.errorCode, 'guardrail_blocked');
  });

  it('in Anthropic format for Anthropic clients; deny patterns block too', async () => {
    await assert.rejects(claude.messages.create({ model: 'gpt', max_tokens: 20, messages: [{ role: 'user', content: 'status of Project  Falcon?' }] }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.BadRequestError);
      assert.equal(err.status, 400);
      assert.equal((err.error as any)?.type, 'error');
      assert.equal((err.error as any)?.error?.type, 'invalid_request_error');
      assert.match((err.error as any)?.error?.message, /guardrail_blocked/);
      return true;
    });
    assert.equal(upstream.chatRequests().length, 0);
  });

  it('redact rules rewrite the prompt before it leaves the gateway (pass-through body included)', async () => {
    const res = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'system', content: 'Support bot' }, { role: 'user', content: 'I am jane@example.com, card 4111-1111-1111-1111, IBAN DE89370400440532013000' }] }).withResponse();
    const sent = upstream.lastChatRequest().body;
    assert.equal(sent.messages[1].content, 'I am [REDACTED:email], card [REDACTED:card], IBAN [REDACTED:iban]');
    assert.equal(sent.messages[0].content, 'Support bot');
    assert.equal(sent.model, 'gpt-4o-mini-2024-07-18');
    const rec = await srv.recordOf(res.response.headers.get('x-request-id'));
    assert.equal(rec.guardrail, 'redacted');
    assert.equal(rec.guardrailReason, 'pii');
  });

  it('prompt size, max_tokens cap (clamped) and allowed tools', async () => {
    const long = await expectBlocked(openai.chat.completions.create({ model: 'gpt-strict', messages: [{ role: 'user', content: 'x'.repeat(201) }] }));
    assert.equal(long.code, 'guardrail_blocked');
    assert.match(long.message, /201 characters/);

    await openai.chat.completions.create({ model: 'gpt-strict', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 5000 });
    assert.equal(upstream.lastChatRequest().body.max_tokens, 100);
    await openai.chat.completions.create({ model: 'gpt-strict', messages: [{ role: 'user', content: 'hello there' }] });
    assert.equal(upstream.lastChatRequest().body.max_tokens, 100, 'a request without max_tokens gets the cap');

    const tool = (name: string): OpenAI.ChatCompletionTool => ({ type: 'function', function: { name, parameters: { type: 'object', properties: {} } } });
    await openai.chat.completions.create({ model: 'gpt-strict', messages: [{ role: 'user', content: 'weather?' }], tools: [tool('get_weather')] });
    const bad = await expectBlocked(openai.chat.completions.create({ model: 'gpt-strict', messages: [{ role: 'user', content: 'weather?' }], tools: [tool('get_weather'), tool('delete_everything')] }));
    assert.equal(bad.code, 'guardrail_blocked');
    assert.match(bad.message, /delete_everything/);
    assert.equal(upstream.chatRequests().length, 3);
  });
});

describe('guardrails on the answer', () => {
  it('a streamed answer is redacted even when a secret is split across chunks', async () => {
    upstream.script({ type: 'text', pieces: ['Reach me at jo', 'hn.smith@exam', 'ple.org or 4111 11', '11 1111 1111', ' anytime.'] });
    const stream = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'contact?' }], stream: true }).withResponse();
    let out = '';
    for await (const c of stream.data) out += c.choices[0]?.delta.content ?? '';
    assert.equal(out, 'Reach me at [REDACTED:email] or [REDACTED:card] anytime.');
    const rec = await srv.recordOf(stream.response.headers.get('x-request-id'));
    assert.equal(rec.guardrail, 'redacted');
    assert.equal(rec.outcome, 'ok');
  });

  it('a non-streamed answer is redacted too (Anthropic client, translated route)', async () => {
    upstream.script({ type: 'text', pieces: ['Call ', '+1 415 555 2671', '.'] });
    const msg = await claude.messages.create({ model: 'gpt', max_tokens: 50, messages: [{ role: 'user', content: 'number?' }] });
    assert.equal(msg.content[0]?.type === 'text' ? msg.content[0].text : '', 'Call [REDACTED:phone].');
  });

  it('a block rule on the answer: 400 before the answer starts, an error event once it streams', async () => {
    upstream.script({ type: 'text', pieces: ['the key is ', 'AKIAIOSFODNN7EXAMPLE'] });
    const err = await expectBlocked(openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'key?' }] }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'guardrail_blocked');

    upstream.script({ type: 'text', pieces: ['Some words first, then a long enough preamble to be released early. ', 'the key is ', 'AKIAIOSFODNN7EXAMPLE', ' bye'] });
    const stream = await openai.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'key?' }], stream: true }).withResponse();
    let got = '';
    await assert.rejects(
      (async () => {
        for await (const c of stream.data) got += c.choices[0]?.delta.content ?? '';
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && /guardrail_blocked/.test((e as Error).message),
    );
    assert.doesNotMatch(got, /AKIA/);
    const rec = await srv.recordOf(stream.response.headers.get('x-request-id'));
    assert.equal(rec.guardrail, 'blocked');
    assert.equal(rec.outcome, 'stream_error');
  });
});

describe('Amazon Bedrock Guardrails (ApplyGuardrail through the AWS SDK)', () => {
  it('checks the prompt and the answer; an intervention blocks', async () => {
    const ok = await openai.chat.completions.create({ model: 'gpt-bedrock', messages: [{ role: 'user', content: 'tell me a joke' }] });
    assert.ok(ok.choices[0]!.message.content);
    assert.equal(guardrailCalls.length, 2);
    assert.equal(guardrailCalls[0]!.path, '/guardrail/gr-test123/version/3/apply');
    assert.equal(guardrailCalls[0]!.body.source, 'INPUT');
    assert.match(guardrailCalls[0]!.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDGUARDRAILTEST\/\d{8}\/us-east-1\/bedrock\/aws4_request/);
    assert.deepEqual(guardrailCalls[0]!.body.content, [{ text: { text: 'tell me a joke' } }]);
    assert.equal(guardrailCalls[1]!.body.source, 'OUTPUT');

    guardrailCalls.length = 0;
    const err = await expectBlocked(openai.chat.completions.create({ model: 'gpt-bedrock', messages: [{ role: 'user', content: 'about the forbidden topic' }] }));
    assert.equal(err.code, 'guardrail_blocked');
    assert.equal(upstream.chatRequests().length, 1, 'the blocked prompt never reached the upstream');
    const rec = await srv.recordOf(err.headers?.get('x-request-id'));
    assert.equal(rec.guardrailReason, 'bedrock');

    upstream.script({ type: 'text', pieces: ['Here is the ', 'forbidden topic', ' explained'] });
    const out = await expectBlocked(openai.chat.completions.create({ model: 'gpt-bedrock', messages: [{ role: 'user', content: 'go on' }] }));
    assert.equal(out.code, 'guardrail_blocked');
  });
});

describe('guardrails configuration', () => {
  it('rejects a profile name that is not defined, a bad regex and a rule with nothing to match', () => {
    const base = { providers: { mock: { type: 'mock' } }, models: { m: { provider: 'mock', model: 'x' } } };
    assert.throws(() => parseConfig({ ...base, guardrails: { profiles: {}, apply: { models: { m: 'nope' } } } }, 't'), /names profile "nope"/);
    assert.throws(() => parseConfig({ ...base, guardrails: { profiles: { p: { rules: [{ name: 'r', patterns: ['(unclosed'] }] } } } }, 't'), /valid regular expression/);
    assert.throws(() => parseConfig({ ...base, guardrails: { profiles: { p: { rules: [{ name: 'r' }] } } } }, 't'), /needs `detect` or `patterns`/);
    assert.throws(() => parseConfig({ ...base, cache: { maxItemBytes: 500 * 1024 } }, 't'), /maxItemBytes/);
  });
});

describe('guardrails infrastructure', () => {
  it('grants bedrock:ApplyGuardrail on exactly the configured guardrails', async () => {
    const { App, Stack } = await import('aws-cdk-lib');
    const { Template } = await import('aws-cdk-lib/assertions');
    const { Role, ServicePrincipal } = await import('aws-cdk-lib/aws-iam');
    const { grantGuardrails } = await import('../infra/constructs/guardrail-access.ts');
    const config = parseConfig(
      {
        providers: { mock: { type: 'mock' } },
        models: { m: { provider: 'mock', model: 'x' } },
        guardrails: {
          profiles: {
            a: { bedrock: { guardrailIdentifier: 'gr-abc123', guardrailVersion: '2' } },
            b: { bedrock: { guardrailIdentifier: 'arn:aws:bedrock:us-west-2:123456789012:guardrail/gr-other' } },
            c: { maxTokens: 10 },
          },
        },
      },
      't',
    );
    const stack = new Stack(new App(), 'G', { env: { account: '123456789012', region: 'eu-west-1' } });
    const role = new Role(stack, 'R', { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
    const arns = grantGuardrails(stack, role, config);
    assert.equal(arns.length, 2);
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          {
            Sid: 'ApplyConfiguredGuardrails',
            Action: 'bedrock:ApplyGuardrail',
            Effect: 'Allow',
            Resource: [
              { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':bedrock:eu-west-1:123456789012:guardrail/gr-abc123']] },
              'arn:aws:bedrock:us-west-2:123456789012:guardrail/gr-other',
            ],
          },
        ],
      },
    });
  });
});
