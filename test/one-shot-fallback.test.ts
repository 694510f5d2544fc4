import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { startLoopback } from './helpers/loopback.ts';

/**
 * Embeddings and token counts go through the attempt runner (issue #20): a model whose first
 * target answers 503 falls back to its second, as a chat call does, and the record carries the
 * same attempt log. Loopback upstreams speak OpenAI's `/v1/embeddings` and Anthropic's
 * `/v1/messages/count_tokens`; each answers 503 while `failing` is set.
 */
interface Upstream {
  name: string;
  origin: string;
  hits: number;
  failing: boolean;
  close(): Promise<void>;
}

async function startUpstream(name: string): Promise<Upstream> {
  const u = { name, origin: '', hits: 0, failing: false } as Upstream;
  const lb = await startLoopback((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      u.hits++;
      if (u.failing) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'overloaded_error', message: `${name} is down` } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.url?.startsWith('/v1/embeddings')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { model: string };
        res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [name === 'alpha' ? 1 : 2, 0] }], model: body.model, usage: { prompt_tokens: 3, total_tokens: 3 } }));
      } else if (req.url?.startsWith('/v1/messages/count_tokens')) {
        res.end(JSON.stringify({ input_tokens: name === 'alpha' ? 11 : 22 }));
      } else {
        res.writeHead(404);
        res.end();
      }
    });
  });
  u.origin = lb.url;
  u.close = () => lb.close();
  return u;
}

describe('embeddings and count_tokens fall back like chat calls', () => {
  let a: Upstream, b: Upstream;
  let srv: StartedGateway;
  const records: RequestRecord[] = [];

  before(async () => {
    [a, b] = await Promise.all([startUpstream('alpha'), startUpstream('beta')]);
    srv = await startGateway({
      providers: {
        'oa-alpha': { type: 'openai-compatible', baseUrl: `${a.origin}/v1` },
        'oa-beta': { type: 'openai-compatible', baseUrl: `${b.origin}/v1` },
        'an-alpha': { type: 'anthropic', baseUrl: a.origin, apiKeyEnv: 'TEST_ONE_SHOT_KEY' },
        'an-beta': { type: 'anthropic', baseUrl: b.origin, apiKeyEnv: 'TEST_ONE_SHOT_KEY' },
      },
      models: {
        embed: { groups: [{ targets: [{ provider: 'oa-alpha', model: 'e-a' }] }, { targets: [{ provider: 'oa-beta', model: 'e-b' }] }] },
        claude: { groups: [{ targets: [{ provider: 'an-alpha', model: 'c-a' }] }, { targets: [{ provider: 'an-beta', model: 'c-b' }] }] },
      },
      config: {
        routing: { retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 20 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } },
      },
      env: { TEST_ONE_SHOT_KEY: 'sk-test' },
      sinks: [{ write: (r) => void records.push(structuredClone(r)) }],
    });
  });
  after(async () => {
    await srv.close();
    await Promise.all([a.close(), b.close()]);
  });
  beforeEach(() => {
    for (const u of [a, b]) {
      u.hits = 0;
      u.failing = false;
    }
    records.length = 0;
  });

  const post = (path: string, body: unknown) => fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify(body) });

  async function recordOf(res: Response): Promise<RequestRecord> {
    const id = res.headers.get('x-request-id')!;
    for (let i = 0; i < 200; i++) {
      const r = records.find((x) => x.requestId === id);
      if (r) return r;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no record for ${id}`);
  }

  function assertFellBack(rec: RequestRecord, first: string, second: string): void {
    assert.equal(rec.attempts, 3);
    assert.equal(rec.fallbacks, 1);
    assert.deepEqual(
      // (an Anthropic provider reports an upstream 503 as 502, as it does for chat calls)
      rec.attemptLog?.map((x) => [x.provider, x.status >= 500 ? '5xx' : x.status]),
      [
        [first, '5xx'],
        [first, '5xx'],
        [second, 200],
      ],
    );
    assert.equal(a.hits, 2, 'the first target tried twice (one retry)');
    assert.equal(b.hits, 1);
  }

  it('healthy: embeddings and count_tokens are served by the first target, with one attempt logged', async () => {
    const res = await post('/v1/embeddings', { model: 'embed', input: 'hi' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-gateway-provider'), 'oa-alpha');
    assert.deepEqual((await res.json()).data[0].embedding, [1, 0]);
    const rec = await recordOf(res);
    assert.equal(rec.attempts, 1);
    assert.equal(rec.fallbacks, 0);
    assert.equal(b.hits, 0);
  });

  it('embeddings: the first target answers 503, the second serves', async () => {
    a.failing = true;
    const res = await post('/v1/embeddings', { model: 'embed', input: 'hi' });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('x-gateway-provider'), 'oa-beta');
    assert.equal(res.headers.get('x-gateway-model'), 'e-b');
    const json = await res.json();
    assert.deepEqual(json.data[0].embedding, [2, 0]);
    const rec = await recordOf(res);
    assert.equal(rec.status, 200);
    assert.equal(rec.provider, 'oa-beta');
    assert.equal(rec.upstreamModel, 'e-b');
    assertFellBack(rec, 'oa-alpha', 'oa-beta');
  });

  it('count_tokens (/v1/messages/count_tokens): the first target answers 503, the second counts', async () => {
    a.failing = true;
    const res = await post('/v1/messages/count_tokens', { model: 'claude', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { input_tokens: 22 });
    assert.equal(res.headers.get('x-gateway-token-count'), 'exact');
    assert.equal(res.headers.get('x-gateway-provider'), 'an-beta');
    const rec = await recordOf(res);
    assert.equal(rec.status, 200);
    assert.equal(rec.provider, 'an-beta');
    assertFellBack(rec, 'an-alpha', 'an-beta');
  });

  it('count-tokens (/bedrock/model/{id}/count-tokens): the first target answers 503, the second counts', async () => {
    a.failing = true;
    const invokeBody = { anthropic_version: 'bedrock-2023-05-31', max_tokens: 10, messages: [{ role: 'user', content: 'Count these words please' }] };
    const res = await post('/bedrock/model/claude/count-tokens', { input: { invokeModel: { body: Buffer.from(JSON.stringify(invokeBody)).toString('base64') } } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { inputTokens: 22 });
    assert.equal(res.headers.get('x-gateway-token-count'), 'exact');
    const rec = await recordOf(res);
    assert.equal(rec.provider, 'an-beta');
    assertFellBack(rec, 'an-alpha', 'an-beta');
  });

  it('both targets down: the client gets the error in its own format after every attempt', async () => {
    a.failing = true;
    b.failing = true;
    const res = await post('/v1/embeddings', { model: 'embed', input: 'hi' });
    assert.ok(res.status >= 500, String(res.status));
    assert.equal(typeof (await res.json()).error?.message, 'string');
    const rec = await recordOf(res);
    assert.equal(rec.attempts, 4);
    assert.equal(rec.provider, 'oa-beta');
  });
});
