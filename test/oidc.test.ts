import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { parseConfig } from '../shared/config/load.ts';

/**
 * OIDC / JWT callers (issue #19 item 1): a loopback issuer serves a JWKS, tokens are signed here
 * with jose, and the official OpenAI and Anthropic clients present them. Every refused token gets a
 * 401 in the caller's format with its reason and never reaches the upstream; a good token is served
 * under its team's limits, and its log record names the subject and issuer, never the token.
 */

type Signer = { kid: string; privateKey: CryptoKey; jwk: JWK };

async function newSigner(kid: string, alg = 'RS256'): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** A loopback OIDC issuer: its JWKS (the keys published now) and how often it was fetched. */
async function startIssuer(): Promise<{ url: string; keys: JWK[]; fetches: number; server: Server }> {
  const state = { url: '', keys: [] as JWK[], fetches: 0, server: undefined as unknown as Server };
  state.server = createServer((req, res) => {
    if (req.url !== '/jwks.json') return void res.writeHead(404).end();
    state.fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((r) => state.server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

const AUDIENCE = 'llm-gateway';
const hello = [{ role: 'user' as const, content: 'Hello from an OIDC caller' }];

describe('OIDC / JWT callers (auth.oidc)', () => {
  let issuer: Awaited<ReturnType<typeof startIssuer>>;
  let upstream: MockOpenAI;
  let g: KeyedGateway;
  let a: Signer;
  let b: Signer;

  async function token(claims: Record<string, unknown>, opts: { signer?: Signer; iss?: string; aud?: string; exp?: number; alg?: string } = {}): Promise<string> {
    const s = opts.signer ?? a;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ team: 'research', ...claims })
      .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: s.kid, typ: 'JWT' })
      .setIssuer(opts.iss ?? issuer.url)
      .setAudience(opts.aud ?? AUDIENCE)
      .setSubject((claims.sub as string) ?? 'user-1')
      .setIssuedAt(now - 10)
      .setExpirationTime(opts.exp ?? now + 600)
      .sign(s.privateKey);
  }

  const openai = (key: string) => new OpenAI({ baseURL: `${g.url}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 });
  // Claude Code with ANTHROPIC_AUTH_TOKEN sends `Authorization: Bearer`; with an API key, `x-api-key`.
  const claude = (key: string, as: 'authToken' | 'apiKey' = 'authToken') => new Anthropic({ baseURL: g.url, [as]: key, ...(as === 'authToken' ? { apiKey: null } : {}), maxRetries: 0, timeout: 20_000 });

  async function refused(p: Promise<unknown>, status = 401): Promise<{ status: number; message: string; code?: string; type?: string }> {
    try {
      await p;
    } catch (err) {
      const e = err as { status: number; message: string; code?: string; error?: any };
      assert.equal(e.status, status, e.message);
      return { status: e.status, message: e.message, code: e.code ?? undefined, type: e.error?.error?.type ?? e.error?.type };
    }
    assert.fail('the request was served');
  }

  before(async () => {
    issuer = await startIssuer();
    upstream = await startMockOpenAI();
    a = await newSigner('key-a');
    b = await newSigner('key-b');
    issuer.keys = [a.jwk];
    g = await startKeyedGateway({
      upstreamBaseUrl: upstream.baseUrl,
      config: {
        auth: {
          required: true,
          cacheTtlSeconds: 5,
          oidc: {
            issuers: [
              { issuer: issuer.url, audience: AUDIENCE, jwksUrl: `${issuer.url}/jwks.json`, jwksCooldownSeconds: 0, modelsClaim: 'models' },
              // An issuer whose keys cannot be fetched (nothing listens on port 9 of loopback).
              { issuer: 'https://down.example', audience: AUDIENCE, jwksUrl: 'http://127.0.0.1:9/jwks.json' },
            ],
          },
        },
      },
    });
    for (const [team, limits] of [['research', {}], ['limited', { rpm: 2 }]] as const) assert.equal((await g.admin('PUT', `/admin/teams/${team}`, { limits })).status, 201);
  });
  after(async () => {
    await g?.close();
    await upstream?.close();
    await new Promise((r) => issuer?.server.close(r));
  });

  test('a good token is served on both doors (Bearer and x-api-key); the record names subject, issuer and team, never the token', async () => {
    const t = await token({ sub: 'alice@example.com' });
    const res = await openai(t).chat.completions.create({ model: 'gpt', messages: hello }).withResponse();
    assert.equal(res.response.status, 200);
    const requestId = res.response.headers.get('x-request-id')!;
    const msg = await claude(t).messages.create({ model: 'gpt', max_tokens: 50, messages: hello });
    assert.equal(msg.type, 'message');
    const viaApiKey = await claude(t, 'apiKey').messages.create({ model: 'gpt', max_tokens: 50, messages: hello });
    assert.equal(viaApiKey.type, 'message');
    assert.equal(upstream.chatRequests().length, 3);
    // The upstream gets the gateway's own credential, never the caller's token.
    for (const r of upstream.chatRequests()) assert.ok(!JSON.stringify(r.headers).includes(t));
    const rec = g.sink.records.find((r) => r.requestId === requestId)!;
    assert.equal(rec.authKind, 'oidc');
    assert.equal(rec.subject, 'alice@example.com');
    assert.equal(rec.issuer, issuer.url);
    assert.equal(rec.team, 'research');
    assert.match(rec.keyId!, /^oidc_[0-9a-f]{24}$/);
    const again = g.sink.records.filter((r) => r.subject === 'alice@example.com');
    assert.equal(again.length, 3);
    assert.ok(again.every((r) => r.keyId === rec.keyId), 'the caller id is stable across requests');
    for (const r of g.sink.records) assert.ok(!JSON.stringify(r).includes(t.split('.')[2]!), 'no token in any record');
  });

  test('every refused token: 401 with the reason in OpenAI shape and in Anthropic shape, upstream never called', async () => {
    const before = upstream.requests.length;
    const now = Math.floor(Date.now() / 1000);
    const good = await token({});
    const [h, p, sig] = good.split('.') as [string, string, string];
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    const stranger = await newSigner('key-a'); // same kid, a key the issuer never published
    const cases: Array<[string, string, string, RegExp]> = [
      ['expired', await token({}, { exp: now - 3600 }), 'token_expired', /expired/],
      ['wrong audience', await token({}, { aud: 'someone-else' }), 'invalid_audience', /audience/],
      ['wrong issuer', await token({}, { iss: 'https://evil.example' }), 'invalid_issuer', /issuer/],
      ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`, 'invalid_token_algorithm', /algorithm/],
      ['tampered signature', `${h}.${p}.${flip(sig, 20)}`, 'invalid_token_signature', /signature/],
      ['tampered claims (team changed)', `${h}.${b64({ ...payload, team: 'limited', models: ['*'] })}.${sig}`, 'invalid_token_signature', /signature/],
      ['signed by an unpublished key', await token({}, { signer: stranger }), 'invalid_token_signature', /signature/],
      ['unknown team', await token({ team: 'nobody' }), 'unknown_team', /nobody.{1,3} named by the token/],
      ['no team claim', await token({ team: undefined }), 'missing_team', /team/],
    ];
    for (const [name, t, code, reason] of cases) {
      const o = await refused(openai(t).chat.completions.create({ model: 'gpt', messages: hello }));
      assert.equal(o.code, code, `${name} (OpenAI): ${o.message}`);
      assert.match(o.message, reason, name);
      const c = await refused(claude(t).messages.create({ model: 'gpt', max_tokens: 50, messages: hello }));
      assert.equal(c.type, 'authentication_error', `${name} (Anthropic)`);
      assert.match(c.message, reason, name);
    }
    assert.equal(upstream.requests.length, before, 'no refused token reached the upstream');
    const recs = g.sink.records.filter((r) => r.status === 401);
    assert.ok(recs.length >= cases.length * 2);
    for (const r of recs) {
      assert.equal(r.authKind, 'oidc');
      for (const [, t] of cases) assert.ok(!JSON.stringify(r).includes(t.split('.')[1]!), 'no token in the record');
    }
  });

  test('an issuer whose JWKS cannot be fetched: 503 (retryable), not a 401 and not an upstream call', async () => {
    const before = upstream.requests.length;
    const t = await token({}, { iss: 'https://down.example' });
    const o = await refused(openai(t).chat.completions.create({ model: 'gpt', messages: hello }), 503);
    assert.equal(o.code, 'identity_provider_unavailable');
    assert.equal(upstream.requests.length, before);
  });

  test('a rotated key is picked up on its unknown kid; the retired key is refused', async () => {
    assert.equal((await openai(await token({ sub: 'rot' })).chat.completions.create({ model: 'gpt', messages: hello })).object, 'chat.completion');
    const fetched = issuer.fetches;
    issuer.keys = [b.jwk];
    const served = await openai(await token({ sub: 'rot' }, { signer: b })).chat.completions.create({ model: 'gpt', messages: hello });
    assert.equal(served.object, 'chat.completion');
    assert.ok(issuer.fetches > fetched, 'the JWKS was fetched again for the new kid');
    const old = await refused(openai(await token({ sub: 'rot' }, { signer: a })).chat.completions.create({ model: 'gpt', messages: hello }));
    assert.equal(old.code, 'invalid_token_signature');
    issuer.keys = [a.jwk, b.jwk];
  });

  test("the team's limits apply to its OIDC callers (429 from the team's rpm) and a models claim narrows what they may call", async () => {
    const t1 = await token({ sub: 'bob', team: 'limited' });
    const t2 = await token({ sub: 'carol', team: 'limited' });
    await openai(t1).chat.completions.create({ model: 'gpt', messages: hello });
    await openai(t2).chat.completions.create({ model: 'gpt', messages: hello });
    const before = upstream.requests.length;
    const limited = await refused(openai(t1).chat.completions.create({ model: 'gpt', messages: hello }), 429);
    assert.equal(limited.code, 'rate_limit_exceeded');
    assert.match(limited.message, /team "limited"/);
    assert.equal(upstream.requests.length, before);
    const narrow = await token({ sub: 'dave', models: ['mock'] });
    assert.equal((await openai(narrow).chat.completions.create({ model: 'mock', messages: hello })).object, 'chat.completion');
    const denied = await refused(openai(narrow).chat.completions.create({ model: 'gpt', messages: hello }), 403);
    assert.equal(denied.code, 'model_not_allowed');
  });

  test('gateway keys keep working next to OIDC', async () => {
    const { key } = await g.createKey({ name: 'classic', team: 'research' });
    const res = await openai(key).chat.completions.create({ model: 'gpt', messages: hello }).withResponse();
    const rec = await g.recordOf(res.response);
    assert.equal(rec.authKind, 'key');
    assert.equal(rec.subject, undefined);
    const bad = await refused(openai('gwk_not_a_real_key').chat.completions.create({ model: 'gpt', messages: hello }));
    assert.equal(bad.code, 'invalid_api_key');
  });
});

describe('auth.oidc configuration', () => {
  const base = { providers: { mock: { type: 'mock' } }, models: { mock: { provider: 'mock', model: 'm' } } };
  test('errors name the field', () => {
    assert.throws(() => parseConfig({ ...base, auth: { oidc: { issuers: [{ issuer: 'https://i', audience: 'a', jwksUrl: 'not a url' }] } } }, 'cfg'), /auth\.oidc\.issuers\.0\.jwksUrl/);
    assert.throws(() => parseConfig({ ...base, auth: { oidc: { issuers: [{ issuer: 'https://i', audience: 'a', jwksUrl: 'https://i/k', algorithms: ['none'] }] } } }, 'cfg'), /auth\.oidc\.issuers\.0\.algorithms/);
    assert.throws(() => parseConfig({ ...base, auth: { oidc: { issuers: [{ issuer: 'https://i', jwksUrl: 'https://i/k' }] } } }, 'cfg'), /auth\.oidc\.issuers\.0\.audience/);
    const ok = parseConfig({ ...base, auth: { oidc: { issuers: [{ issuer: 'https://i', audience: 'a', jwksUrl: 'https://i/k' }] } } }, 'cfg');
    assert.deepEqual(ok.auth!.oidc!.issuers[0]!.algorithms, ['RS256']);
    assert.equal(ok.auth!.oidc!.issuers[0]!.teamClaim, 'team');
  });
});
