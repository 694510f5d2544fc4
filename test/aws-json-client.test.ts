import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SignatureV4 } from '@smithy/signature-v4';
import { AwsJsonClient, AwsServiceError } from '../shared/aws/json-client.ts';
import { signJsonRequest, type AwsCredentials } from '../shared/aws/sigv4.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { DynamoStore, dynamoClient, leanDynamoTarget, type DynamoSettings } from '../shared/store/dynamodb.ts';
import { sdkCaller } from '../shared/store/dynamodb-sdk.ts';
import { GetItemCommand, PutItemCommand } from '../shared/store/commands.ts';
import { startDynamo } from './helpers/keys.ts';
import { startMockFirehose, type MockFirehose } from './helpers/mock-firehose.ts';
import { FirehoseLogSink } from '../shared/telemetry/firehose-sink.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';

const bytes = (d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array => (typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength));

/** The hash the AWS SDK's signer is given (what @smithy/hash-node does, on node:crypto). */
class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret ? createHmac('sha256', bytes(secret)) : createHash('sha256');
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.h.digest()));
  }
}

/** What the AWS SDK's own signer (@smithy/signature-v4) makes of the same request. */
async function sdkSigned(headers: Record<string, string>, body: string, credentials: AwsCredentials, region: string, service: string, at: Date): Promise<Record<string, string>> {
  const signer = new SignatureV4({ service, region, credentials, sha256: Sha256 });
  const host = headers.host!;
  const req = await signer.sign({ method: 'POST', protocol: 'https:', hostname: host, path: '/', query: {}, headers: { ...headers }, body }, { signingDate: at });
  return req.headers as Record<string, string>;
}

describe('SigV4 for AWS JSON APIs', () => {
  const cases: Array<{ name: string; creds: AwsCredentials; region: string; service: string; target: string; body: string; at: string }> = [
    { name: 'DynamoDB, temporary credentials (Lambda)', creds: { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLE//token+with/slashes==' }, region: 'eu-west-1', service: 'dynamodb', target: 'DynamoDB_20120810.UpdateItem', body: '{"TableName":"usage","Key":{"pk":{"S":"use:key:abc:d:2026-12-02"}}}', at: '2026-12-02T03:00:00Z' },
    { name: 'DynamoDB, long-term credentials, empty object', creds: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' }, region: 'us-east-1', service: 'dynamodb', target: 'DynamoDB_20120810.GetItem', body: '{}', at: '2026-01-31T23:59:59Z' },
    { name: 'Firehose (JSON 1.1), non-ASCII body', creds: { accessKeyId: 'AKID', secretAccessKey: 'S3CR3T', sessionToken: 'tok' }, region: 'ap-southeast-2', service: 'firehose', target: 'Firehose_20150804.PutRecordBatch', body: '{"DeliveryStreamName":"logs","Records":[{"Data":"w6nDqOKCrPCfmIA="}],"note":"é€😀"}', at: '2026-06-15T12:00:00Z' },
  ];
  for (const c of cases) {
    test(`${c.name}: the same headers and signature as the AWS SDK's signer`, async () => {
      const host = `${c.service}.${c.region}.amazonaws.com`;
      const headers = { host, 'content-type': c.service === 'firehose' ? 'application/x-amz-json-1.1' : 'application/x-amz-json-1.0', 'x-amz-target': c.target };
      const ours = signJsonRequest(headers, c.body, { credentials: c.creds, region: c.region, service: c.service, at: new Date(c.at) });
      const sdk = await sdkSigned(headers, c.body, c.creds, c.region, c.service, new Date(c.at));
      assert.deepEqual(ours, sdk);
    });
  }

  test('a different body, time, region or secret gives a different signature', () => {
    const base = { credentials: { accessKeyId: 'A', secretAccessKey: 'S' }, region: 'eu-west-1', service: 'dynamodb', at: new Date('2026-12-02T00:00:00Z') };
    const h = { host: 'dynamodb.eu-west-1.amazonaws.com', 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.GetItem' };
    const sig = (o: typeof base, body = '{}') => signJsonRequest(h, body, o).authorization;
    const one = sig(base);
    assert.notEqual(sig(base, '{"a":1}'), one);
    assert.notEqual(sig({ ...base, at: new Date('2026-12-02T00:00:01Z') }), one);
    assert.notEqual(sig({ ...base, region: 'eu-west-2' }), one);
    assert.notEqual(sig({ ...base, credentials: { accessKeyId: 'A', secretAccessKey: 'T' } }), one);
  });
});

/** A loopback stand-in for an AWS JSON API: answers from a script, records each request, checks its signature. */
interface Seen {
  headers: IncomingMessage['headers'];
  body: string;
  signatureOk: boolean;
}

describe('AwsJsonClient on the wire', () => {
  const creds = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret/test+key', sessionToken: 'session' };
  let server: Server;
  let endpoint: string;
  let script: Array<(res: import('node:http').ServerResponse) => void> = [];
  const seen: Seen[] = [];

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        // Re-sign what arrived (its own date) and compare: the signature covers what was sent.
        const h = req.headers as Record<string, string>;
        const resigned = signJsonRequest({ host: h.host!, 'content-type': h['content-type']!, 'x-amz-target': h['x-amz-target']! }, body, {
          credentials: creds,
          region: 'eu-west-1',
          service: 'dynamodb',
          at: new Date(h['x-amz-date']!.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z')),
        });
        seen.push({ headers: req.headers, body, signatureOk: resigned.authorization === h.authorization });
        const next = script.shift();
        if (next) next(res);
        else {
          res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
          res.end('{"Item":{"pk":{"S":"x"},"n":{"N":"42"}}}');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const client = (maxAttempts = 3) => new AwsJsonClient({ service: 'dynamodb', targetPrefix: 'DynamoDB_20120810', jsonVersion: '1.0', target: { region: 'eu-west-1', endpoint, credentials: creds }, maxAttempts });
  const error = (status: number, type: string, message = 'nope') => (res: import('node:http').ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0' });
    res.end(JSON.stringify({ __type: type, message }));
  };

  test('a call is one signed POST / with the operation as x-amz-target and the input as JSON; the answer is parsed', async () => {
    seen.length = 0;
    const out = await client().call<{ Item: unknown }>('GetItem', { TableName: 't', Key: { pk: { S: 'x' } }, ConsistentRead: true });
    assert.deepEqual(out, { Item: { pk: { S: 'x' }, n: { N: '42' } } });
    assert.equal(seen.length, 1);
    const s = seen[0]!;
    assert.equal(s.headers['x-amz-target'], 'DynamoDB_20120810.GetItem');
    assert.equal(s.headers['content-type'], 'application/x-amz-json-1.0');
    assert.equal(s.headers['x-amz-security-token'], 'session');
    assert.match(String(s.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIDTEST\/\d{8}\/eu-west-1\/dynamodb\/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-target, Signature=[0-9a-f]{64}$/);
    assert.ok(s.signatureOk, 'the signature covers the request as it arrived');
    assert.deepEqual(JSON.parse(s.body), { TableName: 't', Key: { pk: { S: 'x' } }, ConsistentRead: true });
  });

  test("an API error is thrown under the API's name, with its message and status; a client error is not retried", async () => {
    seen.length = 0;
    script = [error(400, 'com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException', 'The conditional request failed')];
    const err = await client().call('UpdateItem', {}).catch((e: unknown) => e);
    assert.ok(err instanceof AwsServiceError);
    assert.equal(err.name, 'ConditionalCheckFailedException');
    assert.equal(err.message, 'The conditional request failed');
    assert.equal(err.$metadata.httpStatusCode, 400);
    assert.equal(seen.length, 1);
  });

  test('throttling and 5xx are retried (up to 3 attempts in all), then the last error is thrown', async () => {
    seen.length = 0;
    script = [error(400, 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException'), error(503, 'ServiceUnavailable')];
    const out = await client().call<{ Item: unknown }>('GetItem', {});
    assert.ok(out.Item);
    assert.equal(seen.length, 3);
    seen.length = 0;
    script = [error(500, 'InternalServerError'), error(500, 'InternalServerError'), error(500, 'InternalServerError'), error(500, 'InternalServerError')];
    const err = await client().call('GetItem', {}).catch((e: unknown) => e);
    assert.equal((err as Error).name, 'InternalServerError');
    assert.equal(seen.length, 3);
    script = [];
  });

  test('a connection cut before the answer is retried like a 5xx', async () => {
    seen.length = 0;
    script = [(res) => res.socket!.destroy()];
    const out = await client().call<{ Item: unknown }>('GetItem', {});
    assert.ok(out.Item);
    assert.equal(seen.length, 2);
  });

  test('an answer that is not JSON names the error from the status', async () => {
    script = [
      (res) => {
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html>bad gateway</html>');
      },
    ];
    const err = await client(1).call('GetItem', {}).catch((e: unknown) => e);
    assert.equal((err as Error).name, 'InternalServerError');
    assert.equal((err as AwsServiceError).$metadata.httpStatusCode, 502);
  });

  test('middleware of the SDK shape sees each call with its command name and input', async () => {
    const c = client();
    const calls: string[] = [];
    c.middlewareStack.add((next, context) => async (args) => {
      calls.push(`${context.commandName}:${(args.input as { TableName?: string }).TableName}`);
      return next(args);
    });
    await c.call('GetItem', { TableName: 'keys' });
    assert.deepEqual(calls, ['GetItemCommand:keys']);
  });
});

describe('which DynamoDB client the store uses', () => {
  const s = (over: Partial<DynamoSettings> = {}): DynamoSettings => ({ tables: { keys: 'k', usage: 'u' }, region: 'eu-west-1', ...over });
  const lambdaEnv = { AWS_ACCESS_KEY_ID: 'ASIA', AWS_SECRET_ACCESS_KEY: 'sec', AWS_SESSION_TOKEN: 'tok', AWS_REGION: 'eu-west-1' };

  test('in Lambda (credentials in the environment): the lean client on the regional endpoint, with the session token', () => {
    assert.deepEqual(leanDynamoTarget(s(), lambdaEnv), { region: 'eu-west-1', endpoint: 'https://dynamodb.eu-west-1.amazonaws.com', credentials: { accessKeyId: 'ASIA', secretAccessKey: 'sec', sessionToken: 'tok' } });
    assert.equal(leanDynamoTarget(s({ region: 'cn-north-1' }), lambdaEnv)?.endpoint, 'https://dynamodb.cn-north-1.amazonaws.com.cn');
    assert.equal(leanDynamoTarget(s({ endpoint: 'https://vpce-1.dynamodb.eu-west-1.vpce.amazonaws.com' }), lambdaEnv)?.endpoint, 'https://vpce-1.dynamodb.eu-west-1.vpce.amazonaws.com');
    // The endpoint variables, in the SDK's order (the configured endpoint first).
    assert.equal(leanDynamoTarget(s(), { ...lambdaEnv, AWS_ENDPOINT_URL: 'https://all.example', AWS_ENDPOINT_URL_DYNAMODB: 'https://ddb.example' })?.endpoint, 'https://ddb.example');
    assert.equal(leanDynamoTarget(s(), { ...lambdaEnv, AWS_ENDPOINT_URL: 'https://all.example' })?.endpoint, 'https://all.example');
    assert.equal(leanDynamoTarget(s({ endpoint: 'https://cfg.example' }), { ...lambdaEnv, AWS_ENDPOINT_URL_DYNAMODB: 'https://ddb.example' })?.endpoint, 'https://cfg.example');
    assert.equal(leanDynamoTarget(s(), { ...lambdaEnv, AWS_ENDPOINT_URL_DYNAMODB: 'https://ddb.example', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' })?.endpoint, 'https://dynamodb.eu-west-1.amazonaws.com');
  });

  test('a local endpoint: the lean client with dummy credentials', () => {
    assert.deepEqual(leanDynamoTarget(s({ endpoint: 'http://127.0.0.1:8000', region: undefined }), {}), { region: 'local', endpoint: 'http://127.0.0.1:8000', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  });

  test("whatever only the SDK's chains resolve goes to the SDK: profiles, no credentials, no region, FIPS or dual-stack, isolated regions", () => {
    assert.equal(leanDynamoTarget(s(), { ...lambdaEnv, AWS_PROFILE: 'dev' }), undefined);
    assert.equal(leanDynamoTarget(s(), {}), undefined);
    const { AWS_REGION: _, ...noRegion } = lambdaEnv;
    assert.equal(leanDynamoTarget(s({ region: undefined }), noRegion), undefined);
    assert.equal(leanDynamoTarget(s({ region: undefined }), lambdaEnv)?.region, 'eu-west-1', 'AWS_REGION, as the SDK reads it');
    assert.equal(leanDynamoTarget(s(), { ...lambdaEnv, AWS_USE_FIPS_ENDPOINT: 'true' }), undefined);
    assert.equal(leanDynamoTarget(s(), { ...lambdaEnv, AWS_USE_DUALSTACK_ENDPOINT: 'true' }), undefined);
    assert.equal(leanDynamoTarget(s({ region: 'us-iso-east-1' }), lambdaEnv), undefined);
    assert.ok(!('middlewareStack' in dynamoClient(s(), {})), 'the SDK caller');
    assert.ok('middlewareStack' in dynamoClient(s(), lambdaEnv), 'the lean caller');
  });
});

describe('the store through the AWS SDK (the fallback) against a real DynamoDB API', () => {
  let dynamo: LocalDynamo;
  let settings: DynamoSettings;
  before(async () => ({ dynamo, settings } = await startDynamo()));
  after(() => dynamo.close());

  test('keys, leases, reservations, usage and counters read back alike through either client', async () => {
    const lean = new DynamoStore({ client: dynamoClient(settings), tables: settings.tables });
    const sdk = new DynamoStore({ client: sdkCaller(settings), tables: settings.tables });
    const key = { id: 'k1', hash: 'h', name: 'n', limits: { rpm: 10 }, budget: {}, createdAt: '2026-12-02T00:00:00Z', updatedAt: '2026-12-02T00:00:00Z', metadata: {}, version: 1 };
    assert.equal(await sdk.createKey(key), true);
    assert.equal(await lean.createKey(key), false, 'a key made through the SDK exists for the lean client');
    assert.deepEqual(await lean.getKey('k1'), await sdk.getKey('k1'));
    const exp = Math.floor(Date.now() / 1000) + 3600;
    await lean.addUsage('use:key:k1:d:2026-12-02', { inputTokens: 10, outputTokens: 5, microUsd: 7 }, exp);
    await sdk.addUsage('use:key:k1:d:2026-12-02', { inputTokens: 1, outputTokens: 1, microUsd: 1 }, exp);
    const [a, b] = [await lean.getCounters(['use:key:k1:d:2026-12-02']), await sdk.getCounters(['use:key:k1:d:2026-12-02'])];
    assert.deepEqual(a, b);
    assert.equal(a.get('use:key:k1:d:2026-12-02')?.inputTokens, 11);
    assert.equal(await lean.claim('alert:x', exp), true);
    assert.equal(await sdk.claim('alert:x', exp), false, 'a conditional failure is the same answer through either');
    lean.close();
    sdk.close();
  });

  test('binary attributes (the cache and stored Responses keep gzip bytes) round-trip through the lean client and read back alike through the SDK', async () => {
    const lean = dynamoClient(settings);
    const sdk = sdkCaller(settings);
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const set = [Buffer.from('a'), Buffer.from([0, 255, 1])];
    const input = { TableName: settings.tables.usage, Item: { pk: { S: 'bin:1' }, body: { B: bytes }, set: { BS: set }, nested: { M: { B: { S: 'an attribute named B' } } } } };
    await lean.send(new PutItemCommand(input));
    assert.ok(input.Item.body.B instanceof Uint8Array, 'the input is left as it was');
    for (const caller of [lean, sdk]) {
      const out = await caller.send(new GetItemCommand({ TableName: settings.tables.usage, Key: { pk: { S: 'bin:1' } }, ConsistentRead: true }));
      assert.deepEqual([...(out.Item!.body!.B as Uint8Array)], [...bytes]);
      assert.deepEqual(out.Item!.set!.BS!.map((b) => [...b]), set.map((b) => [...b]));
      assert.deepEqual(out.Item!.nested!.M!.B, { S: 'an attribute named B' });
    }
    lean.destroy();
    sdk.destroy();
  });
});

describe('the Firehose log sink on the lean client (as in Lambda: role and region in the environment)', () => {
  let firehose: MockFirehose;
  const saved: Record<string, string | undefined> = {};
  const env = { AWS_ACCESS_KEY_ID: 'ASIAFIREHOSE', AWS_SECRET_ACCESS_KEY: 'firehose-secret', AWS_SESSION_TOKEN: 'firehose-token', AWS_REGION: 'eu-west-1', AWS_PROFILE: undefined };
  before(async () => {
    firehose = await startMockFirehose();
    for (const [k, v] of Object.entries({ ...env, AWS_ENDPOINT_URL_FIREHOSE: firehose.endpoint })) {
      saved[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  after(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await firehose.close();
  });

  test('records go as one PutRecordBatch in the JSON 1.1 protocol, base64 NDJSON lines; a failed record is sent again', async () => {
    const sink = new FirehoseLogSink({ deliveryStreamName: 'gateway-request-logs', baseDelayMs: 1, maxDelayMs: 2, writeLine: () => assert.fail('nothing is undelivered') });
    firehose.script({ failRecords: [1] });
    const records = ['a', 'b', 'c'].map((id) => ({ requestId: id, status: 200, note: 'é€' }) as unknown as RequestRecord);
    for (const r of records) sink.write(r);
    await sink.flush();
    assert.equal(firehose.calls.length, 2);
    assert.equal(firehose.calls[0]!.target, 'Firehose_20150804.PutRecordBatch');
    assert.equal(firehose.calls[0]!.contentType, 'application/x-amz-json-1.1');
    assert.equal(firehose.calls[0]!.body.DeliveryStreamName, 'gateway-request-logs');
    assert.deepEqual(firehose.calls[0]!.lines.map((l) => (JSON.parse(l) as { requestId: string }).requestId), ['a', 'b', 'c']);
    assert.ok(firehose.calls[0]!.lines.every((l) => l.endsWith('\n') && l.includes('é€')));
    assert.deepEqual(firehose.calls[1]!.lines.map((l) => (JSON.parse(l) as { requestId: string }).requestId), ['b']);
  });
});
