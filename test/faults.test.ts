import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { BedrockRuntimeClient, InvokeModelCommand, InvokeModelWithResponseStreamCommand } from '@aws-sdk/client-bedrock-runtime';
import { gatewayBedrockClient } from './helpers/bedrock-client.ts';
import OpenAI from 'openai';
import { parseConfig } from '../shared/config/load.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';
import { startFaultUpstream, type Fault, type FaultUpstream } from './helpers/fault-upstream.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { readMessagesStream, readResponsesStream } from './helpers/sdk-streams.ts';

useDummyAwsCredentials('AKIDFAULTTEST0000000', 'fault-test-secret-not-used');

/**
 * Fault injection, table-driven: every client API (OpenAI Chat, OpenAI Responses, Anthropic
 * Messages, Bedrock InvokeModel) on a same-format route and a translated one, streamed and not,
 * against an upstream that fails in each way an upstream can (./helpers/fault-upstream.ts), with a
 * healthy fallback target behind it. The official SDKs are the clients.
 * - A fault before the first byte reaches the client must be served by the fallback: the client
 *   gets the fallback's whole answer, the log record says 200 / ok / the fallback's provider.
 * - A fault after it must reach the client as an explicit error (the SDK throws, never a clean
 *   end) and the log record says 502 / stream_error.
 * Timeouts are short (provider-level firstByteTimeoutMs and idleTimeoutMs: the provider's values
 * must count) and cases run one after another. The suite reports how many cases were served.
 */

const TIMEOUT_MS = 250;
const CLAUDE_ON_BEDROCK = 'us.anthropic.claude-3-5-haiku-20241022-v1:0';
/** Bedrock model ids the InvokeModel clients send, mapped to aliases. */
const INVOKE_SAME_ID = 'us.anthropic.claude-fault-same-v1:0';
const INVOKE_XL_ID = 'us.anthropic.claude-fault-xl-v1:0';

type Door = 'chat' | 'responses' | 'messages' | 'invoke';
interface Route {
  door: Door;
  alias: string;
  /** Provider family of the targets (each has a -bad and a -good provider). */
  family: 'oa' | 'oai' | 'an' | 'br';
  model: string;
  translated: boolean;
  upstream: string;
}

const ROUTES: Route[] = [
  { door: 'chat', alias: 'chat-same', family: 'oa', model: 'gpt-x', translated: false, upstream: 'OpenAI Chat SSE' },
  { door: 'chat', alias: 'chat-xl', family: 'an', model: 'claude-x', translated: true, upstream: 'Anthropic SSE' },
  { door: 'responses', alias: 'resp-same', family: 'oai', model: 'gpt-x', translated: false, upstream: 'OpenAI Responses SSE' },
  { door: 'responses', alias: 'resp-xl', family: 'br', model: 'meta.llama3-fault-v1:0', translated: true, upstream: 'Bedrock Converse event-stream' },
  { door: 'messages', alias: 'msg-same', family: 'an', model: 'claude-x', translated: false, upstream: 'Anthropic SSE' },
  { door: 'messages', alias: 'msg-xl', family: 'oa', model: 'gpt-x', translated: true, upstream: 'OpenAI Chat SSE' },
  { door: 'messages', alias: 'msg-xl-bedrock', family: 'br', model: CLAUDE_ON_BEDROCK, translated: true, upstream: 'Bedrock Converse event-stream' },
  { door: 'invoke', alias: 'inv-same', family: 'br', model: CLAUDE_ON_BEDROCK, translated: false, upstream: 'Bedrock InvokeModel event-stream' },
  { door: 'invoke', alias: 'inv-xl', family: 'oa', model: 'gpt-x', translated: true, upstream: 'OpenAI Chat SSE' },
];

/** Faults that strike before the first byte can reach the client: the fallback must serve. */
const BEFORE: Record<'json' | 'stream', Fault[]> = {
  json: ['500', '429', 'hang', 'silence', 'reset', 'invalid-json', 'wrong-shape', 'cut-mid-body'],
  stream: ['500', '429', 'hang', 'silence', 'reset', 'cut-before-first-chunk', 'garbage-sse', 'invalid-json'],
};
/** Faults that strike after it: an explicit error in the caller's format, and a 502 record. */
const AFTER: Fault[] = ['cut-mid-stream', 'garbage-mid-stream', 'stall-mid-stream', 'no-terminal'];

interface Outcome {
  text: string;
  error?: string;
  requestId: string;
}

describe('fault injection: every API, route and fault, with a fallback target', () => {
  let bad: FaultUpstream, good: FaultUpstream;
  let srv: StartedGateway;
  const records: RequestRecord[] = [];
  let openai: OpenAI;
  let anthropic: Anthropic;
  let bedrock: BedrockRuntimeClient;
  let seq = 0;

  before(async () => {
    [bad, good] = await Promise.all([startFaultUpstream('bad'), startFaultUpstream('good')]);
    const limits = { firstByteTimeoutMs: TIMEOUT_MS, idleTimeoutMs: TIMEOUT_MS, totalTimeoutMs: 10_000 };
    const providers: Record<string, unknown> = {};
    for (const [suffix, up] of [['bad', bad], ['good', good]] as const) {
      providers[`oa-${suffix}`] = { type: 'openai-compatible', baseUrl: up.baseUrl, ...limits };
      providers[`oai-${suffix}`] = { type: 'openai', baseUrl: up.baseUrl, apiKeyEnv: 'FAULT_OPENAI_KEY', ...limits };
      providers[`an-${suffix}`] = { type: 'anthropic', baseUrl: up.origin, apiKeyEnv: 'FAULT_ANTHROPIC_KEY', ...limits };
      providers[`br-${suffix}`] = { type: 'bedrock', region: 'us-east-1', endpoint: up.origin, ...limits };
    }
    const models: Record<string, unknown> = {};
    for (const r of ROUTES) {
      models[r.alias] = { groups: [{ targets: [{ provider: `${r.family}-bad`, model: r.model }] }, { targets: [{ provider: `${r.family}-good`, model: r.model }] }] };
    }
    srv = await startGateway({
      providers,
      models,
      config: {
        bedrockApi: { models: { [INVOKE_SAME_ID]: 'inv-same', [INVOKE_XL_ID]: 'inv-xl' } },
        // One retry (a 429's Retry-After: 0 is honoured), no cooldown: every case meets the faulty target first.
        routing: { retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 50 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } },
        server: { sseKeepAliveMs: 0 },
      },
      env: { FAULT_OPENAI_KEY: 'sk-fault-openai', FAULT_ANTHROPIC_KEY: 'sk-ant-fault' },
      sinks: [{ write: (r) => void records.push(structuredClone(r)) }],
    });
    openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
    bedrock = gatewayBedrockClient(srv.url, { accessKeyId: 'AKIDFAULTCLIENT00000', beforeSend: (r) => void (r.headers['x-request-id'] = currentId) });
  });
  after(async () => {
    bedrock?.destroy();
    await srv?.close();
    await Promise.all([bad?.close(), good?.close()]);
  });

  let currentId = '';

  /** One request through the official SDK of the route's door; errors are caught and named, never thrown. */
  async function call(route: Route, stream: boolean): Promise<Outcome> {
    const requestId = (currentId = `fault-${++seq}`);
    const headers = { 'x-request-id': requestId };
    const out: Outcome = { text: '', requestId };
    try {
      switch (route.door) {
        case 'chat':
          if (!stream) {
            const res = await openai.chat.completions.create({ model: route.alias, messages: [{ role: 'user', content: 'hi' }] }, { headers });
            out.text = res.choices[0]?.message.content ?? '';
          } else {
            const s = await openai.chat.completions.create({ model: route.alias, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers });
            for await (const c of s) out.text += c.choices[0]?.delta?.content ?? '';
          }
          break;
        case 'responses':
          if (!stream) {
            const res = await openai.responses.create({ model: route.alias, input: 'hi' }, { headers });
            out.text = res.output_text;
            if (res.status !== 'completed') out.error = `status ${res.status}`;
          } else {
            Object.assign(out, await readResponsesStream(await openai.responses.create({ model: route.alias, input: 'hi', stream: true }, { headers })));
          }
          break;
        case 'messages':
          if (!stream) {
            const msg = await anthropic.messages.create({ model: route.alias, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }, { headers });
            out.text = msg.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
          } else {
            // Anthropic's SDK ends quietly on a cut stream: a stream without message_stop is an error to the caller.
            Object.assign(out, await readMessagesStream(await anthropic.messages.create({ model: route.alias, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers })));
          }
          break;
        case 'invoke': {
          const modelId = route.alias === 'inv-same' ? INVOKE_SAME_ID : INVOKE_XL_ID;
          const body = new TextEncoder().encode(JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }));
          if (!stream) {
            const res = await bedrock.send(new InvokeModelCommand({ modelId, contentType: 'application/json', body }));
            const msg = JSON.parse(Buffer.from(res.body).toString('utf8'));
            out.text = (msg.content ?? []).map((b: { type: string; text?: string }) => (b.type === 'text' ? b.text : '')).join('');
          } else {
            const res = await bedrock.send(new InvokeModelWithResponseStreamCommand({ modelId, contentType: 'application/json', body }));
            let stopped = false;
            for await (const ev of res.body!) {
              if (!ev.chunk?.bytes) continue;
              const e = JSON.parse(Buffer.from(ev.chunk.bytes).toString('utf8'));
              if (e.type === 'content_block_delta' && e.delta?.type === 'text_delta') out.text += e.delta.text;
              if (e.type === 'message_stop') stopped = true;
            }
            if (!stopped) out.error ??= 'the stream ended without message_stop';
          }
          break;
        }
      }
    } catch (err) {
      out.error = `${(err as Error).name}: ${(err as Error).message}`;
    }
    return out;
  }

  async function recordOf(id: string): Promise<RequestRecord | undefined> {
    for (let i = 0; i < 400; i++) {
      const r = records.find((x) => x.requestId === id);
      if (r) return r;
      await new Promise((r) => setTimeout(r, 5));
    }
    return undefined;
  }

  it('serves every fault before the first byte from the fallback, and ends every fault after it with an explicit error and a 502 record', async () => {
    const failures: string[] = [];
    let servedBefore = 0;
    let casesBefore = 0;
    let erroredAfter = 0;
    let casesAfter = 0;
    for (const route of ROUTES) {
      for (const stream of [false, true]) {
        const faults = [...BEFORE[stream ? 'stream' : 'json'], ...(stream ? AFTER : [])];
        for (const fault of faults) {
          const before = !AFTER.includes(fault);
          bad.fault = fault;
          const o = await call(route, stream);
          const rec = await recordOf(o.requestId);
          const label = `${route.door} -> ${route.upstream} (${route.translated ? 'translated' : 'same format'}, ${stream ? 'streamed' : 'not streamed'}), fault ${fault}`;
          if (before) {
            casesBefore++;
            const ok = !o.error && o.text === 'served by good' && rec?.status === 200 && rec.outcome === 'ok' && rec.provider === `${route.family}-good`;
            if (ok) servedBefore++;
            else failures.push(`${label}: text ${JSON.stringify(o.text)}, error ${o.error ?? 'none'}, record ${rec ? `${rec.status}/${rec.outcome}/${rec.provider}/${rec.errorCode ?? ''}` : 'missing'}`);
          } else {
            casesAfter++;
            const ok = !!o.error && !o.text.includes('served by good') && rec?.status === 502 && rec.outcome === 'stream_error' && rec.provider === `${route.family}-bad`;
            if (ok) erroredAfter++;
            else failures.push(`${label}: text ${JSON.stringify(o.text)}, error ${o.error ?? 'none (a clean end)'}, record ${rec ? `${rec.status}/${rec.outcome}/${rec.provider}/${rec.errorCode ?? ''}` : 'missing'}`);
          }
        }
      }
    }
    const report = `faults before the first byte: ${servedBefore} of ${casesBefore} served by the fallback; faults after it: ${erroredAfter} of ${casesAfter} ended with an explicit error and a 502 record`;
    console.log(`# ${report}`);
    assert.deepEqual(failures, [], report);
  });
});

describe('a request the gateway cannot handle is not the upstream\'s failure', () => {
  it('deep nesting in an unused field: the client\'s 400, no attempt, no retry, no fallback, no cooldown strike', async () => {
    const [primary, fallback] = await Promise.all([startFaultUpstream('primary'), startFaultUpstream('fallback')]);
    const records: RequestRecord[] = [];
    const srv = await startGateway({
      providers: { p: { type: 'openai-compatible', baseUrl: primary.baseUrl }, f: { type: 'openai-compatible', baseUrl: fallback.baseUrl } },
      models: { m: { groups: [{ targets: [{ provider: 'p', model: 'x' }] }, { targets: [{ provider: 'f', model: 'y' }] }] } },
      config: {
        // A single strike would cool the primary down: any strike from these requests would show.
        routing: { retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 5 }, cooldown: { failures: 1, windowMs: 60_000, cooldownMs: 60_000 } },
        server: { maxBodyBytes: 1024 * 1024 },
      },
      sinks: [{ write: (r) => void records.push(structuredClone(r)) }],
    });
    try {
      let nested = '0';
      for (let i = 0; i < 5_000; i++) nested = `[${nested}]`;
      const body = `{"model":"m","messages":[{"role":"user","content":"hi"}],"unused":${nested}}`;
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': `deep-${i}` }, body });
        const text = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `a client error, got ${res.status}: ${text}`);
        assert.doesNotMatch(text, /\n\s+at |RangeError|call stack/i, 'no internals in the answer');
        const rec = (await waitFor(() => records.find((r) => r.requestId === `deep-${i}`)))!;
        assert.equal(rec.attempts ?? 0, 0, 'no upstream attempt was counted');
        assert.equal((rec.attemptLog ?? []).length, 0);
      }
      assert.equal(primary.hits, 0);
      assert.equal(fallback.hits, 0);
      // The primary is still healthy: the next ordinary request goes to it.
      const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).choices[0].message.content, 'served by primary');
      assert.equal(res.headers.get('x-gateway-provider'), 'p');
    } finally {
      await srv.close();
      await Promise.all([primary.close(), fallback.close()]);
    }
  });
});

describe('attempt timeouts resolve per target: the target\'s value, else its provider\'s, else the defaults', () => {
  it('resolves first-byte, idle and total limits once per target', async () => {
    const { Router, DEFAULT_TIMEOUTS } = await import('../shared/routing/router.ts');
    const config = parseConfig({
      providers: {
        slow: { type: 'mock', firstByteTimeoutMs: 1_500, idleTimeoutMs: 900 },
        plain: { type: 'mock' },
      },
      models: {
        a: { provider: 'slow', model: 'x' },
        b: { provider: 'slow', model: 'x', firstByteTimeoutMs: 700, totalTimeoutMs: 5_000 },
        c: { provider: 'plain', model: 'x' },
      },
    });
    const router = new Router(config, new Map([['slow', { name: 'slow', type: 'mock', live: true } as never], ['plain', { name: 'plain', type: 'mock', live: true } as never]]));
    const t = (name: string) => router.resolve(name).groups[0]![0]!.timeouts;
    assert.deepEqual(t('a'), { firstByteTimeoutMs: 1_500, totalTimeoutMs: 600_000, idleTimeoutMs: 900 }, 'the provider\'s values count');
    assert.deepEqual(t('b'), { firstByteTimeoutMs: 700, totalTimeoutMs: 5_000, idleTimeoutMs: 900 }, 'a target\'s own values win');
    assert.deepEqual(t('c'), DEFAULT_TIMEOUTS);
  });
});

async function waitFor<T>(get: () => T | undefined): Promise<T | undefined> {
  for (let i = 0; i < 400; i++) {
    const v = get();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  return undefined;
}
