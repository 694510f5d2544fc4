import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { DynamoDBClient, GetItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import OpenAI from 'openai';
import { hashKey } from '../shared/policy/keys.ts';
import { windowOf } from '../shared/policy/rate-limits.ts';
import { ADMIN_TOKEN, eventually, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';
import { parseConfig } from '../shared/config/load.ts';
import { createDynamoStore } from '../shared/store/dynamodb.ts';
import { startLocalServer } from '../local/server.ts';

/**
 * Keys, allow lists, rate limits and budgets end to end: real HTTP through the local server, the
 * official SDKs as clients, and a real DynamoDB API (dynalite) behind the store.
 */

const hello = [{ role: 'user' as const, content: 'Hello gateway' }];

function openai(url: string, key: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 });
}

function anthropic(url: string, key: string): Anthropic {
  return new Anthropic({ baseURL: url, apiKey: key, maxRetries: 0, timeout: 20_000 });
}

async function expectStatus(p: Promise<unknown>, status: number): Promise<InstanceType<typeof OpenAI.APIError> & InstanceType<typeof Anthropic.APIError>> {
  try {
    await p;
  } catch (err) {
    assert.equal((err as { status?: number }).status, status, `expected ${status}, got ${(err as Error).message}`);
    return err as never;
  }
  assert.fail(`expected a ${status} error, but the call succeeded`);
}

describe('gateway keys', () => {
  let g: KeyedGateway;
  before(async () => {
    g = await startKeyedGateway();
  });
  after(() => g.close());

  test('the admin API refuses callers without the admin token', async () => {
    const none = await g.admin('POST', '/admin/keys', { name: 'x' }, null);
    assert.equal(none.status, 401);
    assert.equal(none.json.error.type, 'authentication_error');
    const wrong = await g.admin('GET', '/admin/keys', undefined, 'not-the-token');
    assert.equal(wrong.status, 401);
    // A gateway key is not an admin credential either.
    const { key } = await g.createKey({ name: 'not-admin' });
    const asKey = await g.admin('GET', '/admin/keys', undefined, key);
    assert.equal(asKey.status, 401);
    const ok = await g.admin('GET', '/admin/keys');
    assert.equal(ok.status, 200);
    assert.ok(Array.isArray(ok.json.data));
  });

  test('POST /admin/keys returns the key once; the table holds its SHA-256, never the key', async () => {
    const created = await g.admin('POST', '/admin/keys', { name: 'svc-a', team: 'search', models: ['mock'], limits: { rpm: 100 }, metadata: { owner: 'alice' } });
    assert.equal(created.status, 201);
    const { id, key } = created.json;
    assert.match(key, /^gwk_[a-z2-7]{20}_[A-Za-z0-9_-]{43}$/);
    assert.ok(key.includes(id));
    assert.equal(Buffer.from(key.split('_').slice(2).join('_'), 'base64url').length, 32, '256 bits of randomness');

    const client = new DynamoDBClient({ endpoint: g.settings.endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    try {
      const item = (await client.send(new GetItemCommand({ TableName: g.settings.tables.keys, Key: { pk: { S: `key#${id}` } } }))).Item!;
      assert.equal(item.hash!.S, hashKey(key));
      const everything = JSON.stringify((await client.send(new ScanCommand({ TableName: g.settings.tables.keys }))).Items);
      assert.ok(!everything.includes(key), 'the plaintext key is nowhere in the keys table');
      assert.ok(!everything.includes(key.slice(-43)), 'nor its secret part');
    } finally {
      client.destroy();
    }

    // The admin API shows the key's record, never the key or its hash.
    const got = await g.admin('GET', `/admin/keys/${id}`);
    assert.equal(got.status, 200);
    assert.equal(got.json.name, 'svc-a');
    assert.equal(got.json.team, 'search');
    assert.deepEqual(got.json.metadata, { owner: 'alice' });
    assert.equal(got.json.status, 'active');
    assert.ok(!JSON.stringify(got.json).includes(hashKey(key)));
    assert.equal(got.json.key, undefined);
    const listed = await g.admin('GET', '/admin/keys?team=search');
    assert.deepEqual(listed.json.data.map((k: { id: string }) => k.id), [id]);
  });

  test('a valid key works as Bearer (OpenAI SDK) and as x-api-key (Anthropic SDK)', async () => {
    const { id, key } = await g.createKey({ name: 'works' });
    const reply = await openai(g.url, key).chat.completions.create({ model: 'mock', messages: hello });
    assert.equal(reply.choices[0]!.message.content, 'Hello gateway');
    const msg = await anthropic(g.url, key).messages.create({ model: 'mock', max_tokens: 50, messages: hello });
    assert.equal(msg.content[0]!.type === 'text' && msg.content[0]!.text, 'Hello gateway');
    const rec = await eventually(async () => g.sink.records.find((r) => r.keyId === id && r.frontDoor === 'anthropic-messages'), 'log record');
    assert.equal(rec.status, 200);
    assert.ok(!JSON.stringify(g.sink.records).includes(key), 'no log record holds a key');
  });

  test('missing, unknown, malformed, revoked and expired keys get 401 in the OpenAI shape', async () => {
    const noKey = await fetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mock', messages: hello }) });
    assert.equal(noKey.status, 401);
    const body = (await noKey.json()) as { error: { type: string; code: string } };
    assert.equal(body.error.type, 'authentication_error');
    assert.equal(body.error.code, 'missing_api_key');

    const unknown = `gwk_${'a'.repeat(20)}_${Buffer.alloc(32, 7).toString('base64url')}`;
    const e1 = await expectStatus(openai(g.url, unknown).chat.completions.create({ model: 'mock', messages: hello }), 401);
    assert.equal(e1.code, 'invalid_api_key');
    await expectStatus(openai(g.url, 'sk-not-a-gateway-key').chat.completions.create({ model: 'mock', messages: hello }), 401);

    // Right id, wrong secret.
    const real = await g.createKey({ name: 'victim' });
    const forged = `${real.key.slice(0, -43)}${Buffer.alloc(32, 1).toString('base64url')}`;
    await expectStatus(openai(g.url, forged).chat.completions.create({ model: 'mock', messages: hello }), 401);

    const revoked = await g.createKey({ name: 'to-revoke' });
    await openai(g.url, revoked.key).chat.completions.create({ model: 'mock', messages: hello });
    const r = await g.admin('POST', `/admin/keys/${revoked.id}/revoke`);
    assert.equal(r.json.status, 'revoked');
    const e2 = await expectStatus(openai(g.url, revoked.key).chat.completions.create({ model: 'mock', messages: hello }), 401);
    assert.equal(e2.code, 'revoked_api_key');

    const expired = await g.createKey({ name: 'old', expiresAt: new Date(g.clock.now() - 1000).toISOString() });
    const e3 = await expectStatus(openai(g.url, expired.key).chat.completions.create({ model: 'mock', messages: hello }), 401);
    assert.equal(e3.code, 'expired_api_key');
    assert.match(e3.message, /expired/);

    // Every model route needs a key, the model list too; liveness does not.
    assert.equal((await fetch(`${g.url}/v1/models`)).status, 401);
    assert.equal((await fetch(`${g.url}/health`)).status, 200);
  });

  test('revoked and unknown keys get 401 in the Anthropic shape on /v1/messages', async () => {
    const unknown = `gwk_${'b'.repeat(20)}_${Buffer.alloc(32, 9).toString('base64url')}`;
    const e1 = await expectStatus(anthropic(g.url, unknown).messages.create({ model: 'mock', max_tokens: 20, messages: hello }), 401);
    assert.equal((e1.error as { type: string; error: { type: string } }).type, 'error');
    assert.equal((e1.error as { error: { type: string } }).error.type, 'authentication_error');

    const k = await g.createKey({ name: 'anthropic-revoked' });
    await g.admin('DELETE', `/admin/keys/${k.id}`);
    const e2 = await expectStatus(anthropic(g.url, k.key).messages.create({ model: 'mock', max_tokens: 20, messages: hello }), 401);
    assert.equal((e2.error as { error: { type: string; message: string } }).error.type, 'authentication_error');
    assert.match((e2.error as { error: { message: string } }).error.message, /revoked/);

    const expired = await g.createKey({ name: 'anthropic-expired', expiresAt: new Date(g.clock.now() - 1000).toISOString() });
    const e3 = await expectStatus(anthropic(g.url, expired.key).messages.create({ model: 'mock', max_tokens: 20, messages: hello }), 401);
    assert.equal((e3.error as { type: string }).type, 'error');
    assert.equal((e3.error as { error: { type: string } }).error.type, 'authentication_error');
    assert.match((e3.error as { error: { message: string } }).error.message, /expired/);
    // Missing key, sent the Anthropic way (no x-api-key): also 401 in the Anthropic shape.
    const none = await fetch(`${g.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify({ model: 'mock', max_tokens: 20, messages: hello }) });
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { error: { type: string } }).error.type, 'authentication_error');
  });

  test('a model outside the key allow list gets 403, and /v1/models lists only allowed models', async () => {
    const { key } = await g.createKey({ name: 'only-mock', models: ['mock'] });
    const err = await expectStatus(openai(g.url, key).chat.completions.create({ model: 'mock-2', messages: hello }), 403);
    assert.equal(err.code, 'model_not_allowed');
    const aerr = await expectStatus(anthropic(g.url, key).messages.create({ model: 'mock-2', max_tokens: 20, messages: hello }), 403);
    assert.equal((aerr.error as { error: { type: string } }).error.type, 'permission_error');
    const models = await openai(g.url, key).models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['mock'],
    );
    await expectStatus(openai(g.url, key).models.retrieve('mock-2'), 404);
    // Wildcards.
    const { key: wild } = await g.createKey({ name: 'mock-star', models: ['mock*'] });
    const ok = await openai(g.url, wild).chat.completions.create({ model: 'mock-2', messages: hello });
    assert.equal(ok.choices[0]!.message.content, 'Hello gateway');
  });

  test('over the RPM limit: 429 with Retry-After and OpenAI / Anthropic rate-limit headers', async () => {
    const { id, key } = await g.createKey({ name: 'rpm-2', limits: { rpm: 2, tpm: 1_000_000 } });
    const first = await openai(g.url, key).chat.completions.create({ model: 'mock', messages: hello }).withResponse();
    assert.equal(first.response.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(first.response.headers.get('x-ratelimit-remaining-requests'), '1');
    assert.equal(first.response.headers.get('x-ratelimit-limit-tokens'), '1000000');
    assert.match(first.response.headers.get('x-ratelimit-reset-requests')!, /^\d+(ms|s|m\d+s)$/);

    const second = await anthropic(g.url, key).messages.create({ model: 'mock', max_tokens: 20, messages: hello }).withResponse();
    assert.equal(second.response.headers.get('anthropic-ratelimit-requests-limit'), '2');
    assert.equal(second.response.headers.get('anthropic-ratelimit-requests-remaining'), '0');
    assert.ok(!Number.isNaN(Date.parse(second.response.headers.get('anthropic-ratelimit-requests-reset')!)));
    assert.equal(second.response.headers.get('x-ratelimit-limit-requests'), null);

    const err = await expectStatus(openai(g.url, key).chat.completions.create({ model: 'mock', messages: hello }), 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.headers!.get('x-ratelimit-remaining-requests'), '0');
    const retryAfter = Number(err.headers!.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);

    const aerr = await expectStatus(anthropic(g.url, key).messages.create({ model: 'mock', max_tokens: 20, messages: hello }), 429);
    assert.equal((aerr.error as { error: { type: string } }).error.type, 'rate_limit_error');
    assert.equal(aerr.headers!.get('anthropic-ratelimit-requests-remaining'), '0');
    assert.ok(aerr.headers!.get('retry-after'));

    // Routes that spend no capacity still say where the key stands (this instance's view, no round trip).
    const models = await fetch(`${g.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(models.status, 200);
    assert.equal(models.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(models.headers.get('x-ratelimit-remaining-requests'), '0');

    const limited = await eventually(async () => g.sink.records.find((r) => r.keyId === id && r.status === 429), 'a 429 record');
    assert.equal(limited.rateLimit, 'limited');
    assert.equal(limited.rateLimitReason, 'requests_per_minute');

    // The next minute opens a new window.
    g.clock.advance(60_000);
    const again = await openai(g.url, key).chat.completions.create({ model: 'mock', messages: hello });
    assert.equal(again.choices[0]!.message.content, 'Hello gateway');
  });

  test('embeddings are admitted like chat: rate-limit headers, and 429 over the limit', async () => {
    const { key } = await g.createKey({ name: 'embed-2', limits: { rpm: 2, tpm: 10_000 } });
    const client = openai(g.url, key);
    const first = await client.embeddings.create({ model: 'mock', input: ['one two three', 'four'] }).withResponse();
    assert.equal(first.data.data.length, 2);
    assert.equal(first.response.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(first.response.headers.get('x-ratelimit-remaining-requests'), '1');
    assert.equal(first.response.headers.get('x-ratelimit-limit-tokens'), '10000');
    await client.embeddings.create({ model: 'mock', input: 'five' });
    const err = await expectStatus(client.embeddings.create({ model: 'mock', input: 'six' }), 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.ok(Number(err.headers!.get('retry-after')) >= 1);
  });

  test('team limits apply across the team keys', async () => {
    const put = await g.admin('PUT', '/admin/teams/ml', { limits: { rpm: 3 } });
    assert.equal(put.status, 201);
    const a = await g.createKey({ name: 'ml-a', team: 'ml' });
    const b = await g.createKey({ name: 'ml-b', team: 'ml' });
    await openai(g.url, a.key).chat.completions.create({ model: 'mock', messages: hello });
    await openai(g.url, b.key).chat.completions.create({ model: 'mock', messages: hello });
    await openai(g.url, a.key).chat.completions.create({ model: 'mock', messages: hello });
    const err = await expectStatus(openai(g.url, b.key).chat.completions.create({ model: 'mock', messages: hello }), 429);
    assert.match(err.message, /team "ml"/);
    const usage = await eventually(async () => {
      const u = await g.admin('GET', '/admin/teams/ml/usage');
      return u.json.day.requests === 3 && u.json;
    }, 'team usage');
    assert.equal(usage.minute.limits.rpm, 3);
    assert.equal(usage.minute.requestsLeased, 3);
  });
});

describe('token budgets settle to recorded usage', () => {
  let g: KeyedGateway;
  before(async () => {
    g = await startKeyedGateway({ config: { limits: { budgetRefreshSeconds: 0 } } });
  });
  after(() => g.close());

  test('a team USD budget from the price table: spent, it refuses every team key with 429 naming the team budget and its reset', async () => {
    // mock-echo-1 costs $2 / $8 per million input / output tokens: a short echo costs a few 1e-5 USD.
    await g.admin('PUT', '/admin/teams/frugal', { budget: { usdPerDay: 0.0001 } });
    const a = await g.createKey({ name: 'frugal-a', team: 'frugal' });
    const b = await g.createKey({ name: 'frugal-b', team: 'frugal' });
    let spent = 0;
    let err: InstanceType<typeof Anthropic.APIError> | undefined;
    for (let i = 0; i < 20 && !err; i++) {
      try {
        await anthropic(g.url, a.key).messages.create({ model: 'mock', max_tokens: 20, messages: [{ role: 'user', content: 'spend some dollars here' }] });
        spent++;
        await eventually(async () => (await g.admin('GET', '/admin/teams/frugal/usage')).json.day.requests === spent, 'settlement');
      } catch (e) {
        err = e as InstanceType<typeof Anthropic.APIError>;
      }
    }
    assert.ok(err && spent >= 1, `refused after ${spent} requests`);
    assert.equal(err.status, 429);
    assert.equal((err.error as { error: { type: string } }).error.type, 'rate_limit_error');
    assert.match((err.error as { error: { message: string } }).error.message, /daily USD budget of \$0\.0001 of team "frugal" is spent; it resets at \d{4}-\d\d-\d\dT00:00:00\.000Z/);
    const usage = (await g.admin('GET', '/admin/teams/frugal/usage')).json;
    assert.ok(usage.day.costUsd >= 0.0001, `team spent ${usage.day.costUsd}`);
    // The team budget binds the team's other key too, on the OpenAI route.
    const other = await expectStatus(openai(g.url, b.key).chat.completions.create({ model: 'mock', messages: hello }), 429);
    assert.equal(other.code, 'budget_exceeded');
    assert.match(other.message, /team "frugal"/);
    assert.equal(other.headers!.get('x-gateway-budget-remaining-usd'), '0');
  });

  test('usage counters equal the sum of the logged usage; the spent budget then refuses with 429', async () => {
    await g.admin('PUT', '/admin/teams/budgeted', { budget: { usdPerMonth: 100 } });
    const { id, key } = await g.createKey({ name: 'budgeted', team: 'budgeted', limits: { tpm: 50_000 }, budget: { tokensPerDay: 60 } });
    const client = openai(g.url, key);
    const prompts = ['one two three four five', 'alpha beta', 'the quick brown fox jumps over the lazy dog', 'streaming now please'];
    for (const [i, p] of prompts.entries()) {
      if (i % 2 === 0) {
        await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: p }] });
      } else {
        const stream = await client.chat.completions.create({ model: 'mock', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: p }] });
        for await (const _ of stream) void _;
      }
    }
    const records = await eventually(async () => {
      const rs = g.sink.records.filter((r) => r.keyId === id && r.status === 200);
      return rs.length === prompts.length && rs;
    }, 'records');
    const tokens = records.reduce((n, r) => n + (r.inputTokens ?? 0) + (r.outputTokens ?? 0), 0);
    const input = records.reduce((n, r) => n + (r.inputTokens ?? 0), 0);
    const output = records.reduce((n, r) => n + (r.outputTokens ?? 0), 0);
    assert.ok(tokens > 0);
    // mock-echo-1 costs $2 / $8 per million input / output tokens.
    const cost = (input * 2 + output * 8) / 1e6;
    assert.ok(Math.abs(records.reduce((n, r) => n + (r.costUsd ?? 0), 0) - cost) < 1e-9, 'each record carries its cost');

    const usage = await eventually(async () => {
      const u = await g.admin('GET', `/admin/keys/${id}/usage`);
      return u.json.day.requests === prompts.length && u.json;
    }, 'settled usage');
    assert.equal(usage.day.tokens, tokens);
    assert.equal(usage.day.inputTokens, input);
    assert.equal(usage.day.outputTokens, output);
    assert.ok(Math.abs(usage.day.costUsd - cost) < 1e-9);
    assert.equal(usage.month.tokens, tokens);
    const team = (await g.admin('GET', '/admin/teams/budgeted/usage')).json;
    assert.equal(team.day.tokens, tokens);
    assert.ok(Math.abs(team.month.costUsd - cost) < 1e-9);

    // The tokens reserved per request (prompt estimate + 4096) were settled back to real usage:
    // the window leased one block, and at most one more ahead of need (renewed once half spent).
    assert.ok(usage.minute.tokensLeased <= 2 * 5_000 + 4_200, `leased ${usage.minute.tokensLeased}`);

    // Spend more until the daily token budget (60) is used up; then 429 naming the budget.
    let status = 200;
    let err: InstanceType<typeof OpenAI.APIError> | undefined;
    for (let i = 0; i < 20 && status === 200; i++) {
      try {
        await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'one two three four five six seven eight' }] });
        // Settlement is off the hot path: wait for it before the next request is judged.
        const n = prompts.length + i + 1;
        await eventually(async () => (await g.admin('GET', `/admin/keys/${id}/usage`)).json.day.requests === n, 'settlement');
      } catch (e) {
        err = e as InstanceType<typeof OpenAI.APIError>;
        status = err.status ?? 0;
      }
    }
    assert.equal(status, 429);
    assert.equal(err!.code, 'budget_exceeded');
    assert.match(err!.message, /daily token budget of 60 tokens of key "budgeted".*resets at \d{4}-\d\d-\d\dT00:00:00\.000Z/);
    assert.equal(err!.headers!.get('x-should-retry'), 'false');
    assert.equal(err!.headers!.get('x-gateway-budget-remaining-tokens'), '0');
    const rec = await eventually(async () => g.sink.records.find((r) => r.keyId === id && r.status === 429), 'budget record');
    assert.equal(rec.rateLimitReason, 'budget');
  });
});

describe('200 concurrent requests against a limit of 50', () => {
  for (const [label, leaseRequests, instances] of [
    ['leased blocks', 10, 4],
    ['one conditional update per request', 1, 2],
  ] as const) {
    test(`admit exactly 50 across ${instances} gateway instances sharing one DynamoDB (${label})`, async () => {
      // Each instance has its own store client, key cache and leases, like concurrent Lambdas.
      const g = await startKeyedGateway({ instances, config: { limits: { leaseRequests } } });
      try {
        const { id, key } = await g.createKey({ name: 'burst', limits: { rpm: 50 } });
        const clients = g.urls.map((u) => openai(u, key));
        const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => clients[i % instances]!.chat.completions.create({ model: 'mock', messages: hello })));
        const ok = results.filter((r) => r.status === 'fulfilled').length;
        const statuses = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as { status?: number }).status] : []));
        assert.equal(ok, 50);
        assert.equal(statuses.length, 150);
        assert.ok(statuses.every((s) => s === 429), `all refusals are 429: ${[...new Set(statuses)].join(',')}`);
        // The shared counter agrees: exactly the limit was handed out in this window.
        const client = new DynamoDBClient({ endpoint: g.settings.endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
        try {
          const item = (await client.send(new GetItemCommand({ TableName: g.settings.tables.usage, Key: { pk: { S: `rl:key:${id}:${windowOf(g.clock.now())}` } }, ConsistentRead: true }))).Item!;
          assert.equal(Number(item.req!.N), 50);
          assert.ok(Number(item.expiresAt!.N) > g.clock.now() / 1000, 'the counter carries its TTL');
        } finally {
          client.destroy();
        }
      } finally {
        await g.close();
      }
    });
  }
});

describe('key cache and revocation delay', () => {
  test('another instance refuses a revoked key once its cache entry expires (auth.cacheTtlSeconds)', async () => {
    const g = await startKeyedGateway({ instances: 2 });
    try {
      const { id, key } = await g.createKey({ name: 'cached' });
      const other = openai(g.urls[1]!, key);
      await other.chat.completions.create({ model: 'mock', messages: hello });
      await g.admin('POST', `/admin/keys/${id}/revoke`); // through instance 0
      // Instance 1 still has the key cached: the documented revocation delay.
      await other.chat.completions.create({ model: 'mock', messages: hello });
      g.clock.advance(5_001);
      await expectStatus(other.chat.completions.create({ model: 'mock', messages: hello }), 401);
    } finally {
      await g.close();
    }
  });
});

describe('admin API', () => {
  test('update, list with paging, validation errors', async () => {
    const g = await startKeyedGateway();
    try {
      const { id, key } = await g.createKey({ name: 'before', models: ['mock'] });
      const up = await g.admin('PATCH', `/admin/keys/${id}`, { name: 'after', models: null, limits: { rpm: 7 }, budget: { usdPerDay: 1.5 } });
      assert.equal(up.status, 200);
      assert.equal(up.json.name, 'after');
      assert.equal(up.json.models, null);
      assert.deepEqual(up.json.limits, { rpm: 7 });
      // The change applies at once on this instance (its cache entry is dropped).
      const r = await openai(g.url, key).chat.completions.create({ model: 'mock-2', messages: hello }).withResponse();
      assert.equal(r.response.headers.get('x-ratelimit-limit-requests'), '7');
      assert.equal(r.response.headers.get('x-gateway-budget-remaining-usd'), '1.5');

      for (let i = 0; i < 4; i++) await g.createKey({ name: `k${i}` });
      const seen = new Set<string>();
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: { json: { data: { id: string }[]; next_cursor: string | null } } = await g.admin('GET', `/admin/keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        for (const k of page.json.data) seen.add(k.id);
        cursor = page.json.next_cursor;
        pages++;
      } while (cursor && pages < 10);
      assert.equal(seen.size, 5);
      assert.equal(pages, 3);

      const bad = await g.admin('POST', '/admin/keys', { name: 'x', limits: { rpm: -1 } });
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error.param, 'limits.rpm');
      assert.equal((await g.admin('GET', '/admin/keys/aaaaaaaaaaaaaaaaaaaa')).status, 404);
      assert.equal((await g.admin('GET', '/admin/nothing')).status, 404);
      assert.equal(ADMIN_TOKEN.length > 0, true);
    } finally {
      await g.close();
    }
  });
});

describe('DynamoDB unreachable', () => {
  test('model routes fail closed with a 503 in the caller shape, never a stack trace', async () => {
    const config = parseConfig({ providers: { mock: { type: 'mock' } }, models: { mock: { provider: 'mock', model: 'mock-echo-1' } }, auth: { required: true } }, 'test configuration');
    const store = createDynamoStore({ tables: { keys: 'k', usage: 'u' }, endpoint: 'http://127.0.0.1:9', region: 'local' });
    const srv = await startLocalServer({ config, env: {}, port: 0, host: '127.0.0.1', sinks: [], store });
    try {
      const key = `gwk_${'c'.repeat(20)}_${Buffer.alloc(32, 3).toString('base64url')}`;
      const err = await expectStatus(openai(srv.url, key).chat.completions.create({ model: 'mock', messages: hello }), 503);
      assert.equal(err.code, 'policy_store_unavailable');
      const aerr = await expectStatus(anthropic(srv.url, key).messages.create({ model: 'mock', max_tokens: 10, messages: hello }), 503);
      assert.equal((aerr.error as { error: { type: string } }).error.type, 'overloaded_error');
      assert.ok(!JSON.stringify(aerr.error).includes('ECONNREFUSED'));
    } finally {
      await srv.close();
      store.close();
    }
  });
});
