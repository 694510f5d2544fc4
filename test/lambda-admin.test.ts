import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import type { LocalDynamo } from '../local/dynamodb.ts';
import type { DynamoSettings } from '../shared/store/dynamodb.ts';
import { sdkDynamoClient } from '../shared/store/dynamodb-sdk.ts';
import { installAwsLambdaGlobal, lambdaContext, ResponseStreamStandIn } from './helpers/awslambda.ts';
import { startDynamo } from './helpers/keys.ts';

/**
 * The two Lambda entries with keys on, against a real DynamoDB API (dynalite): the admin function
 * (behind the IAM-authorized /admin routes; API Gateway puts the verified caller in
 * `requestContext.identity.userArn`) creates and revokes keys, and the model-route function accepts
 * and refuses them. Events have the shape API Gateway REST sends (recorded fixtures).
 */

const adminEvent: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-admin-event.json', import.meta.url), 'utf8'));
const chatEvent: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));

type Invoke = (event: APIGatewayProxyEvent, stream: ResponseStreamStandIn, context: unknown) => Promise<void>;

async function invoke(handler: Invoke, ev: APIGatewayProxyEvent) {
  const stream = new ResponseStreamStandIn();
  await handler(ev, stream, lambdaContext());
  const { metadata, body } = stream.parsed();
  return { status: metadata.statusCode, headers: metadata.headers, body, json: body ? JSON.parse(body) : undefined };
}

/** The recorded admin event, re-aimed at another route (still IAM-signed, same caller). */
function adminCall(method: string, path: string, body?: unknown, identity: Partial<APIGatewayProxyEvent['requestContext']['identity']> = {}): APIGatewayProxyEvent {
  const ev = structuredClone(adminEvent);
  ev.httpMethod = method;
  ev.path = path;
  ev.pathParameters = { proxy: path.replace(/^\/admin\//, '') };
  ev.requestContext.httpMethod = method;
  ev.requestContext.path = `/prod${path}`;
  ev.requestContext.identity = { ...ev.requestContext.identity, ...identity };
  ev.body = body === undefined ? null : JSON.stringify(body);
  return ev;
}

/** The recorded chat event with another key and body. */
function chatCall(key: string | undefined, body: unknown): APIGatewayProxyEvent {
  const ev = structuredClone(chatEvent);
  const headers = { ...ev.headers };
  delete headers.Authorization;
  if (key) headers.Authorization = `Bearer ${key}`;
  ev.headers = headers;
  ev.multiValueHeaders = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v!]]));
  ev.body = JSON.stringify(body);
  return ev;
}

const hello = { model: 'mock', messages: [{ role: 'user', content: 'Hello from API Gateway' }] };

describe('Lambda entries with keys on (functions/admin.ts, functions/gateway.ts) against dynalite', () => {
  let dynamo: LocalDynamo;
  let settings: DynamoSettings;
  let admin: Invoke;
  let gateway: Invoke;
  const realWrite = process.stdout.write.bind(process.stdout);
  const logLines: string[] = [];
  const saved = { ...process.env };

  before(async () => {
    ({ dynamo, settings } = await startDynamo());
    installAwsLambdaGlobal();
    Object.assign(process.env, {
      GATEWAY_KEYS_TABLE: settings.tables.keys,
      GATEWAY_USAGE_TABLE: settings.tables.usage,
      DYNAMODB_ENDPOINT: settings.endpoint,
      POWERTOOLS_SERVICE_NAME: 'llm-gateway-admin-test',
      GATEWAY_CONFIG_JSON: JSON.stringify({
        providers: { mock: { type: 'mock', wordDelayMs: 0 } },
        models: { mock: { provider: 'mock', model: 'mock-echo-1' }, 'mock-2': { provider: 'mock', model: 'mock-echo-2' } },
        // No key cache: a revocation through the admin function bites at once in the other function.
        auth: { required: true, cacheTtlSeconds: 0 },
      }),
    });
    delete process.env.GATEWAY_ADMIN_TOKEN;
    // Keep the per-request log lines (stdout, CloudWatch in AWS) out of the test output.
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (s.includes('"message":"request"') || s.includes('"_aws"')) {
        logLines.push(s);
        return true;
      }
      return (realWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
    // Two functions, as in AWS: each with its own Gateway, store client and caches.
    ({ handler: admin } = (await import('../functions/admin.ts')) as unknown as { handler: Invoke });
    ({ handler: gateway } = (await import('../functions/gateway.ts')) as unknown as { handler: Invoke });
  });

  after(async () => {
    process.stdout.write = realWrite;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await dynamo.close();
  });

  it('the admin function creates a key for the IAM caller; the gateway function accepts it, enforces its allow list, and refuses it once revoked', async () => {
    const created = await invoke(admin, adminEvent);
    assert.equal(created.status, 201, created.body);
    assert.match(created.json.key, /^gwk_[a-z2-7]{20}_[A-Za-z0-9_-]{43}$/);
    assert.equal(created.json.name, 'from-lambda');
    assert.equal(created.json.team, 'platform');
    assert.deepEqual(created.json.limits, { rpm: 60 });
    const { id, key } = created.json as { id: string; key: string };

    // The table holds the hash, never the key (read with the AWS SDK's own client).
    const client = sdkDynamoClient(settings);
    try {
      const items = JSON.stringify((await client.send(new ScanCommand({ TableName: settings.tables.keys }))).Items);
      assert.ok(items.includes(id));
      assert.ok(!items.includes(key), 'no plaintext key in the table');
    } finally {
      client.destroy();
    }

    const ok = await invoke(gateway, chatCall(key, hello));
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json.choices[0].message.content, 'Hello from API Gateway');
    assert.equal(ok.headers['x-ratelimit-limit-requests'], '60');
    assert.equal(ok.headers['x-ratelimit-remaining-requests'], '59');

    const notAllowed = await invoke(gateway, chatCall(key, { ...hello, model: 'mock-2' }));
    assert.equal(notAllowed.status, 403);
    assert.equal(notAllowed.json.error.code, 'model_not_allowed');

    const listed = await invoke(admin, adminCall('GET', '/admin/keys'));
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.json.data.map((k: { id: string }) => k.id),
      [id],
    );

    const revoked = await invoke(admin, adminCall('POST', `/admin/keys/${id}/revoke`));
    assert.equal(revoked.status, 200, revoked.body);
    assert.equal(revoked.json.status, 'revoked');
    const refused = await invoke(gateway, chatCall(key, hello));
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error.code, 'revoked_api_key');
    assert.ok(!refused.body.includes(key));

    const noKey = await invoke(gateway, chatCall(undefined, hello));
    assert.equal(noKey.status, 401);
    assert.equal(noKey.json.error.type, 'authentication_error');
  });

  it('the gateway function refuses /admin without the admin token, even with an IAM identity in the event', async () => {
    const res = await invoke(gateway, adminCall('POST', '/admin/keys', { name: 'sneaky' }));
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'admin_unauthorized');
    const asList = await invoke(gateway, adminCall('GET', '/admin/keys'));
    assert.equal(asList.status, 401);
  });

  it('the admin function refuses a call that API Gateway did not authorize with IAM (no userArn)', async () => {
    const res = await invoke(admin, adminCall('GET', '/admin/keys', undefined, { userArn: null, caller: null, accessKey: null, user: null, accountId: null }));
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'admin_unauthorized');
  });
});
