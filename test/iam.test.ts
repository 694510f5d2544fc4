import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { loadConfigFile, parseConfig } from '../shared/config/load.ts';
import { GatewayStack } from '../infra/stack.ts';
import { IAM_RESOURCE_PATTERNS } from '../infra/constructs/api.ts';
import { roleOfSession } from '../shared/auth/iam.ts';
import { installAwsLambdaGlobal, lambdaContext, ResponseStreamStandIn } from './helpers/awslambda.ts';
import { startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

/**
 * IAM callers (issue #19 item 2): on /iam/<route>, API Gateway has verified the caller's SigV4
 * signature and the shell passes its ARN (`requestContext.identity.userArn`) as
 * `RequestExtras.iamPrincipal`; the core maps it to a team by `auth.iam.principals` and serves
 * <route> under that team's limits. A header can never name the caller.
 */

const ACCOUNT = '123456789012';
const iamConfig = {
  principals: [
    { arnPattern: `arn:aws:iam::${ACCOUNT}:role/chat-lambda-*`, team: 'apps' },
    { arnPattern: `arn:aws:iam::${ACCOUNT}:role/narrow`, team: 'apps', models: ['mock'] },
    { arnPattern: `arn:aws:iam::${ACCOUNT}:user/ci`, team: 'limited' },
    { arnPattern: `arn:aws:iam::${ACCOUNT}:role/ghost`, team: 'ghost' },
  ],
};
const SESSION = `arn:aws:sts::${ACCOUNT}:assumed-role/chat-lambda-summarize/chat-lambda-summarize`;
const chat = { model: 'mock', messages: [{ role: 'user', content: 'Hello from a Lambda' }] };
const SPOOF = { 'x-amzn-iam-principal': SESSION, 'x-iam-principal': SESSION, 'x-amzn-principal-arn': SESSION };

describe('IAM callers in the core (auth.iam)', () => {
  let g: KeyedGateway;
  const pending: Promise<unknown>[] = [];

  /** What the Lambda shell does for an /iam route: the verified caller ARN in the extras. */
  async function call(path: string, principal: string | undefined, body: unknown = chat, headers: Record<string, string> = {}) {
    const req = new Request(`http://gateway.local${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    const res = await g.servers[0]!.gateway.handle(req, { waitUntil: (p) => void pending.push(p), iamPrincipal: principal });
    const text = await res.text();
    return { status: res.status, json: JSON.parse(text), requestId: res.headers.get('x-request-id')! };
  }

  before(async () => {
    g = await startKeyedGateway({ config: { auth: { required: true, cacheTtlSeconds: 5, iam: iamConfig } } });
    assert.equal((await g.admin('PUT', '/admin/teams/apps', { limits: {} })).status, 201);
    assert.equal((await g.admin('PUT', '/admin/teams/limited', { limits: { rpm: 1 } })).status, 201);
  });
  after(async () => {
    await Promise.allSettled(pending);
    await g?.close();
  });

  test('an assumed-role session maps by its role: served on the OpenAI and Anthropic routes, logged with the caller ARN and team', async () => {
    assert.equal(roleOfSession(SESSION), `arn:aws:iam::${ACCOUNT}:role/chat-lambda-summarize`);
    const openai = await call('/iam/v1/chat/completions', SESSION);
    assert.equal(openai.status, 200, JSON.stringify(openai.json));
    assert.equal(openai.json.choices[0].message.content, 'Hello from a Lambda');
    const anthropic = await call('/iam/v1/messages', SESSION, { ...chat, max_tokens: 50 });
    assert.equal(anthropic.status, 200);
    assert.equal(anthropic.json.type, 'message');
    const rec = await g.recordOf(openai.requestId);
    assert.equal(rec.authKind, 'iam');
    assert.equal(rec.subject, SESSION);
    assert.equal(rec.team, 'apps');
    assert.equal(rec.path, '/v1/chat/completions');
    assert.match(rec.keyId!, /^iam_[0-9a-f]{24}$/);
    assert.equal((await g.recordOf(anthropic.requestId)).keyId, rec.keyId);
  });

  test("a caller's models and its team's limits apply", async () => {
    const narrow = `arn:aws:iam::${ACCOUNT}:role/narrow`;
    assert.equal((await call('/iam/v1/chat/completions', narrow)).status, 200);
    const denied = await call('/iam/v1/chat/completions', narrow, { ...chat, model: 'mock-2' });
    assert.equal(denied.status, 403);
    assert.equal(denied.json.error.code, 'model_not_allowed');
    const ci = `arn:aws:iam::${ACCOUNT}:user/ci`;
    assert.equal((await call('/iam/v1/chat/completions', ci)).status, 200);
    const limited = await call('/iam/v1/chat/completions', ci);
    assert.equal(limited.status, 429);
    assert.match(limited.json.error.message, /team "limited"/);
  });

  test('an unmapped caller gets 403, a team missing from the store 401, in the route format', async () => {
    const stranger = `arn:aws:sts::${ACCOUNT}:assumed-role/other-role/s1`;
    const o = await call('/iam/v1/chat/completions', stranger);
    assert.equal(o.status, 403);
    assert.equal(o.json.error.code, 'iam_principal_not_mapped');
    assert.match(o.json.error.message, /other-role/);
    const a = await call('/iam/v1/messages', stranger, { ...chat, max_tokens: 50 });
    assert.equal(a.status, 403);
    assert.equal(a.json.type, 'error');
    assert.equal(a.json.error.type, 'permission_error');
    const ghost = await call('/iam/v1/chat/completions', `arn:aws:iam::${ACCOUNT}:role/ghost`);
    assert.equal(ghost.status, 401);
    assert.equal(ghost.json.error.code, 'unknown_team');
  });

  test('headers never name the caller: /iam without a verified principal is 401 over HTTP, a spoofed header adds nothing to a key', async () => {
    const { key } = await g.createKey({ name: 'plain', team: 'apps' });
    // The local server passes no principal: an /iam call, a valid key and spoofed headers included, is refused.
    const res = await fetch(`${g.url}/iam/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...SPOOF }, body: JSON.stringify(chat) });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as any).error.code, 'missing_iam_principal');
    // The same spoofed headers on a key route: served as the key, no IAM identity in the record.
    const keyed = await fetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...SPOOF }, body: JSON.stringify(chat) });
    assert.equal(keyed.status, 200);
    const rec = await g.recordOf(keyed);
    assert.equal(rec.authKind, 'key');
    assert.equal(rec.subject, undefined);
    // A principal passed for a route outside /iam is not an identity there.
    const outside = await call('/v1/chat/completions', SESSION);
    assert.equal(outside.status, 401);
    assert.equal(outside.json.error.code, 'missing_api_key');
    // The admin API is not served under /iam: the path stays unknown, behind the key check.
    const admin = await call('/iam/admin/keys', SESSION);
    assert.equal(admin.status, 401);
    assert.equal(admin.json.error.code, 'missing_api_key');
  });
});

describe('auth.iam configuration', () => {
  const base = { providers: { mock: { type: 'mock' } }, models: { mock: { provider: 'mock', model: 'm' } } };
  test('errors name the field', () => {
    assert.throws(() => parseConfig({ ...base, auth: { iam: { principals: [{ arnPattern: 'role/x', team: 't' }] } } }, 'cfg'), /auth\.iam\.principals\.0\.arnPattern/);
    assert.throws(() => parseConfig({ ...base, auth: { iam: { accounts: ['12'], principals: [{ arnPattern: 'arn:aws:iam::1:role/x', team: 't' }] } } }, 'cfg'), /auth\.iam\.accounts\.0/);
    assert.throws(() => parseConfig({ ...base, auth: { iam: { principals: [] } } }, 'cfg'), /auth\.iam\.principals/);
  });
});

describe('the Lambda shell passes the verified userArn of an /iam event', () => {
  type Invoke = (event: APIGatewayProxyEvent, stream: ResponseStreamStandIn, context: unknown) => Promise<void>;
  let g: KeyedGateway;
  let handler: Invoke;
  const saved = { ...process.env };
  const chatEvent: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));
  const realWrite = process.stdout.write.bind(process.stdout);

  /** The recorded chat event as API Gateway sends it on /iam/{proxy+} after SigV4 verification. */
  function iamEvent(userArn: string | null, headers: Record<string, string> = {}): APIGatewayProxyEvent {
    const ev = structuredClone(chatEvent);
    ev.resource = '/iam/{proxy+}';
    ev.path = '/iam/v1/chat/completions';
    ev.pathParameters = { proxy: 'v1/chat/completions' };
    ev.requestContext.resourcePath = '/iam/{proxy+}';
    ev.requestContext.path = '/prod/iam/v1/chat/completions';
    ev.requestContext.identity = { ...ev.requestContext.identity, userArn, accountId: userArn ? ACCOUNT : null };
    const h = { ...ev.headers, ...headers };
    delete h.Authorization;
    ev.headers = h;
    ev.multiValueHeaders = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, [v!]]));
    ev.body = JSON.stringify({ ...chat, messages: [{ role: 'user', content: 'Hello from API Gateway' }] });
    return ev;
  }
  async function invoke(ev: APIGatewayProxyEvent) {
    const stream = new ResponseStreamStandIn();
    await handler(ev, stream, lambdaContext());
    const { metadata, body } = stream.parsed();
    return { status: metadata.statusCode, json: JSON.parse(body) };
  }

  before(async () => {
    g = await startKeyedGateway({ config: { auth: { required: true, iam: iamConfig } } });
    assert.equal((await g.admin('PUT', '/admin/teams/apps', { limits: {} })).status, 201);
    installAwsLambdaGlobal();
    Object.assign(process.env, {
      GATEWAY_KEYS_TABLE: g.settings.tables.keys,
      GATEWAY_USAGE_TABLE: g.settings.tables.usage,
      DYNAMODB_ENDPOINT: g.settings.endpoint,
      POWERTOOLS_SERVICE_NAME: 'llm-gateway-iam-test',
      GATEWAY_CONFIG_JSON: JSON.stringify({ providers: { mock: { type: 'mock', wordDelayMs: 0 } }, models: { mock: { provider: 'mock', model: 'mock-echo-1' } }, auth: { required: true, cacheTtlSeconds: 0, iam: iamConfig } }),
    });
    // The per-request log lines (CloudWatch in AWS) stay out of the test output.
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (s.includes('"message":"request"') || s.includes('"_aws"')) return true;
      return (realWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
    ({ handler } = (await import('../functions/gateway.ts')) as unknown as { handler: Invoke });
  });
  after(async () => {
    process.stdout.write = realWrite;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await g?.close();
  });

  test('a mapped userArn is served; no userArn (and any spoofed header) is 401; an unmapped one 403', async () => {
    const ok = await invoke(iamEvent(SESSION));
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.json.choices[0].message.content, 'Hello from API Gateway');
    const none = await invoke(iamEvent(null, SPOOF));
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'missing_iam_principal');
    const other = await invoke(iamEvent(`arn:aws:iam::${ACCOUNT}:role/unmapped`));
    assert.equal(other.status, 403);
    assert.equal(other.json.error.code, 'iam_principal_not_mapped');
  });
});

describe('infra: /iam/{proxy+} with AWS_IAM authorization', () => {
  const context = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')).context;
  const shipped = loadConfigFile('gateway.config.yaml');
  const synth = (auth: unknown, nag = false) => {
    const app = new App({ context: { ...context, 'aws:cdk:bundling-stacks': [] } });
    const config = parseConfig({ ...structuredClone(shipped), auth: { ...shipped.auth, ...(auth as object) } });
    const stack = new GatewayStack(app, 'IamGw', { config, env: { account: ACCOUNT, region: 'us-east-1' } });
    if (nag) {
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
      assert.doesNotThrow(() => app.synth(), 'no unacknowledged cdk-nag finding');
    }
    return Template.fromStack(stack);
  };
  type Stmt = { Effect: string; Sid?: string; Resource: unknown; Condition?: any };
  const iamDeny = (t: Template) => ((Object.values(t.findResources('AWS::ApiGateway::RestApi'))[0] as any).Properties.Policy.Statement as Stmt[]).find((s) => s.Sid === 'IamCallersOfAccountsAndOrganizations');

  test('with auth.iam: the /iam proxy on the model function under IAM auth, the resource policy narrowed to the accounts and organizations', () => {
    const t = synth({ iam: { ...iamConfig, organizationIds: ['o-abcdefghij'] } }, true);
    t.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: 'iam' });
    const methods = Object.entries(t.findResources('AWS::ApiGateway::Method')) as Array<[string, { Properties: Record<string, any> }]>;
    const iamMethods = methods.filter(([id]) => /Apiiam/i.test(id));
    assert.ok(iamMethods.length >= 1, 'an /iam method');
    for (const [id, m] of iamMethods) {
      assert.equal(m.Properties.AuthorizationType, 'AWS_IAM', id);
      assert.equal(m.Properties.Integration.ResponseTransferMode, 'STREAM', id);
      assert.match(JSON.stringify(m.Properties.Integration.Uri), /GatewayFn/, id);
    }
    const deny = iamDeny(t)!;
    assert.equal(deny.Effect, 'Deny');
    assert.deepEqual([deny.Resource].flat(), IAM_RESOURCE_PATTERNS);
    assert.deepEqual(deny.Condition, { StringNotEquals: { 'aws:PrincipalAccount': [ACCOUNT], 'aws:PrincipalOrgID': ['o-abcdefghij'] } });
    t.hasResourceProperties('AWS::ApiGateway::Method', { AuthorizationType: 'AWS_IAM', HttpMethod: 'ANY', ResourceId: Match.anyValue() });
  });

  test('without auth.iam: no /iam route and no /iam statement', () => {
    const t = synth({});
    assert.equal(Object.values(t.findResources('AWS::ApiGateway::Resource', { Properties: { PathPart: 'iam' } })).length, 0);
    assert.equal(iamDeny(t), undefined);
  });
});
