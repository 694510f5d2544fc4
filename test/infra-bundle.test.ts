import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { GatewayStack } from '../infra/stack.ts';
import { parseConfig } from '../shared/config/load.ts';
import { SECRET_PLACEHOLDER } from '../shared/config/deploy.ts';
import { METRIC_NAMESPACE, METRICS } from '../shared/telemetry/metrics.ts';
import { startLocalDynamo, type LocalDynamo } from '../local/dynamodb.ts';
import { ensureTables } from '../shared/store/dynamodb.ts';
import { installAwsLambdaGlobal, lambdaContext, ResponseStreamStandIn } from './helpers/awslambda.ts';

/**
 * The bundles `cdk synth` ships (cdk.out), run in a simulated Lambda streaming runtime with the
 * environment the stack gives them, against loopback AWS APIs: dynalite for DynamoDB, and
 * stand-ins for Firehose and Secrets Manager (no local implementation) that record each request.
 * Expectations come from the synthesized template and from what the running code did, never from
 * the schema files the stack is built from: every field of a real log record is a Glue column of
 * the right type, every metric and dimension the dashboard and alarms use was emitted, every AWS
 * call the functions made is allowed by their role, and every saved query names real columns.
 */

const CDK_CONTEXT = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')).context;
const ACCOUNT = '123456789012';
const REGION = 'us-east-1';
const config = parseConfig({
  providers: { mock: { type: 'mock', wordDelayMs: 1 }, anthropic: { type: 'anthropic' } },
  models: { mock: { provider: 'mock', model: 'mock-echo-1' }, claude: { provider: 'anthropic', model: 'claude-sonnet-4-5' } },
  auth: { required: true, cacheTtlSeconds: 0 },
  pricing: { 'mock-echo-1': { input: 1, output: 2 } },
});

type Res = Record<string, { Type: string; Properties: Record<string, any>; Metadata?: Record<string, any> }>;
type Invoke = (event: APIGatewayProxyEvent, stream: Writable, context: unknown) => Promise<void>;
interface AwsCall {
  action: string;
  input: Record<string, any>;
}

/** An HTTP server that records each AWS JSON-protocol call (X-Amz-Target) and forwards it or answers it. */
async function recorder(forward: string | ((action: string, input: Record<string, any>) => unknown)) {
  const calls: AwsCall[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const target = String(req.headers['x-amz-target'] ?? '');
      const input = body.length ? JSON.parse(body.toString('utf8')) : {};
      calls.push({ action: target, input });
      if (typeof forward === 'function') {
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(forward(target, input)));
        return;
      }
      const up = httpRequest(`${forward}${req.url}`, { method: req.method, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 500, upRes.headers);
        upRes.pipe(res);
      });
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { calls, endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** X-Amz-Target -> IAM action. */
function iamAction(target: string): string {
  const [prefix, op] = target.split('.');
  const service = prefix!.startsWith('DynamoDB') ? 'dynamodb' : prefix!.startsWith('Firehose') ? 'firehose' : prefix === 'secretsmanager' ? 'secretsmanager' : prefix!;
  return `${service}:${op}`;
}

const actionMatches = (pattern: string, action: string) => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i').test(action);

/** Resolve the template's tokens for running a bundle: a Ref/GetAtt becomes the logical id. */
function concrete(v: unknown): string {
  if (typeof v === 'string') return v;
  const o = v as Record<string, any>;
  if (o.Ref) return o.Ref;
  if (o['Fn::GetAtt']) return o['Fn::GetAtt'][0];
  throw new Error(`cannot resolve ${JSON.stringify(v)}`);
}

/** Glue type of a JSON value, as the JsonSerDe would need it. */
function fitsGlueType(value: unknown, type: string): boolean {
  if (value === null || value === undefined) return true;
  if (type === 'string') return typeof value === 'string';
  if (type === 'boolean') return typeof value === 'boolean';
  if (type === 'int' || type === 'bigint') return Number.isInteger(value);
  if (type === 'double' || type === 'float' || type.startsWith('decimal')) return typeof value === 'number';
  if (type.startsWith('array<')) return Array.isArray(value) && value.every((x) => fitsGlueType(x, type.slice(6, -1)));
  if (type.startsWith('map<')) return typeof value === 'object' && !Array.isArray(value);
  if (type.startsWith('struct<')) {
    if (typeof value !== 'object' || Array.isArray(value)) return false;
    const fields = structFields(type);
    return Object.entries(value as object).every(([k, v]) => fields.has(k.toLowerCase()) && fitsGlueType(v, fields.get(k.toLowerCase())!));
  }
  return false;
}

function structFields(type: string): Map<string, string> {
  const inner = type.slice(7, -1);
  const out = new Map<string, string>();
  let depth = 0;
  let start = 0;
  for (let i = 0; i <= inner.length; i++) {
    const c = inner[i];
    if (c === '<') depth++;
    else if (c === '>') depth--;
    else if ((c === ',' && depth === 0) || i === inner.length) {
      const part = inner.slice(start, i);
      const colon = part.indexOf(':');
      out.set(part.slice(0, colon).trim().toLowerCase(), part.slice(colon + 1).trim());
      start = i + 1;
    }
  }
  return out;
}

/** The CloudWatch metrics (namespace, name, dimension names) that dashboards and alarms read. */
function metricsUsed(res: Res): Array<{ where: string; namespace: string; name: string; dims: string[] }> {
  const out: Array<{ where: string; namespace: string; name: string; dims: string[] }> = [];
  for (const [id, r] of Object.entries(res)) {
    if (r.Type === 'AWS::CloudWatch::Alarm') {
      if (r.Properties.MetricName) out.push({ where: id, namespace: r.Properties.Namespace, name: r.Properties.MetricName, dims: (r.Properties.Dimensions ?? []).map((d: { Name: string }) => d.Name) });
      for (const m of r.Properties.Metrics ?? []) {
        const s = m.MetricStat?.Metric;
        if (s) out.push({ where: id, namespace: s.Namespace, name: s.MetricName, dims: (s.Dimensions ?? []).map((d: { Name: string }) => d.Name) });
      }
    }
    if (r.Type === 'AWS::CloudWatch::Dashboard') {
      const b = r.Properties.DashboardBody;
      const text = typeof b === 'string' ? b : (b['Fn::Join'][1] as unknown[]).map((p) => (typeof p === 'string' ? p : 'TOKEN')).join('');
      for (const w of JSON.parse(text).widgets) {
        for (const m of w.properties.metrics ?? []) {
          const expr = m.find?.((x: unknown) => typeof x === 'object' && x && 'expression' in x)?.expression as string | undefined;
          if (expr) {
            const s = /SEARCH\('\{([^}]*)\} MetricName="([^"]+)"/.exec(expr);
            if (s) {
              const [ns, ...dims] = s[1]!.split(',');
              out.push({ where: `${id} ${w.properties.title}`, namespace: ns!, name: s[2]!, dims });
            }
            continue;
          }
          const parts = m.filter((x: unknown) => typeof x === 'string');
          if (parts[0] === '.' || parts.length < 2) continue;
          const dims: string[] = [];
          for (let i = 2; i + 1 < parts.length; i += 2) dims.push(parts[i]);
          out.push({ where: `${id} ${w.properties.title}`, namespace: parts[0], name: parts[1], dims });
        }
      }
    }
  }
  return out;
}

describe('the shipped bundles (cdk.out) in a simulated Lambda runtime, checked against the synthesized stack', () => {
  let res: Res;
  let outdir: string;
  let dynamo: LocalDynamo;
  let ddb: Awaited<ReturnType<typeof recorder>>;
  let firehose: Awaited<ReturnType<typeof recorder>>;
  let secrets: Awaited<ReturnType<typeof recorder>>;
  const secretValues = new Map<string, string>();
  const stdout: string[] = [];
  const realWrite = process.stdout.write.bind(process.stdout);
  const saved = { ...process.env };
  let gateway: Invoke;
  let admin: Invoke;
  let gatewayAsset: string;
  let gatewayEnv: Record<string, string>;
  let adminEnv: Record<string, string>;

  const fnOf = (prefix: string) => Object.entries(res).find(([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith(prefix))!;
  const statementsOf = (fnId: string) => {
    const roleId = res[fnId]!.Properties.Role['Fn::GetAtt'][0];
    return Object.values(res)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.Roles.some((x: { Ref: string }) => x.Ref === roleId))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Array<Record<string, any>>);
  };
  /** The environment a function gets from the stack, with each resource named by its logical id. */
  const envOf = (fnId: string) => Object.fromEntries(Object.entries(res[fnId]!.Properties.Environment.Variables as Record<string, unknown>).map(([k, v]) => [k, k.endsWith('_SECRET_ARN') ? `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${concrete(v)}-AbCdEf` : concrete(v)]));

  async function load(asset: string, env: Record<string, string>, tag: string): Promise<Invoke> {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved, env, {
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'AKIDBUNDLETEST',
      AWS_SECRET_ACCESS_KEY: 'bundle-test-secret',
      DYNAMODB_ENDPOINT: ddb.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
      AWS_ENDPOINT_URL_FIREHOSE: firehose.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      GATEWAY_SECRETS_MAX_AGE_SECONDS: '0',
    });
    delete process.env.GATEWAY_CONFIG_JSON;
    delete process.env.GATEWAY_CONFIG;
    // The runtime imports the handler module: top-level await = the init phase (cold start).
    const mod = (await import(`${pathToFileURL(join(asset, 'index.mjs')).href}?${tag}`)) as { handler: Invoke };
    return mod.handler;
  }

  async function invoke(handler: Invoke, event: APIGatewayProxyEvent, stream = new ResponseStreamStandIn()) {
    await handler(event, stream, lambdaContext());
    return (stream as ResponseStreamStandIn).parsed();
  }

  before(async () => {
    outdir = mkdtempSync(join(tmpdir(), 'gw-bundle-'));
    const app = new App({ outdir, context: { ...CDK_CONTEXT, 'aws:cdk:enable-asset-metadata': true } });
    const stack = new GatewayStack(app, 'GwBundle', { config, env: { account: ACCOUNT, region: REGION } });
    app.synth();
    res = Template.fromStack(stack).toJSON().Resources as Res;
    const assetOf = (fnId: string) => join(outdir, res[fnId]!.Metadata!['aws:asset:path']);
    const [gwId] = fnOf('GatewayFn');
    const [adminId] = fnOf('AdminFn');
    gatewayAsset = assetOf(gwId);
    gatewayEnv = envOf(gwId);
    adminEnv = envOf(adminId);

    dynamo = await startLocalDynamo();
    await ensureTables({ tables: { keys: gatewayEnv.GATEWAY_KEYS_TABLE!, usage: gatewayEnv.GATEWAY_USAGE_TABLE! }, endpoint: dynamo.endpoint, region: 'local' });
    ddb = await recorder(dynamo.endpoint);
    firehose = await recorder((action, input) => (action.endsWith('PutRecordBatch') ? { FailedPutCount: 0, Encrypted: false, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) } : {}));
    for (const [k, arn] of Object.entries(gatewayEnv)) if (k.endsWith('_SECRET_ARN')) secretValues.set(arn, SECRET_PLACEHOLDER);
    secrets = await recorder((_action, input) => ({ ARN: input.SecretId, Name: 'x', VersionId: 'v1', SecretString: secretValues.get(input.SecretId) }));
    ddb.calls.length = 0;

    installAwsLambdaGlobal();
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (s.startsWith('{')) {
        stdout.push(s);
        return true;
      }
      return (realWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
    admin = await load(assetOf(adminId), adminEnv, 'admin');
    gateway = await load(gatewayAsset, gatewayEnv, 'gateway');
  });

  after(async () => {
    process.stdout.write = realWrite;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await Promise.all([ddb?.close(), firehose?.close(), secrets?.close()]);
    await dynamo?.close();
  });

  const adminEvent: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-admin-event.json', import.meta.url), 'utf8'));
  const chatEvent: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));
  let key = '';
  const chat = (body: unknown): APIGatewayProxyEvent => {
    const ev = structuredClone(chatEvent);
    const headers = { ...ev.headers, Authorization: `Bearer ${key}` };
    ev.headers = headers;
    ev.multiValueHeaders = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v!]]));
    ev.body = JSON.stringify(body);
    return ev;
  };

  it('cold start: the gateway reads its provider secrets (placeholder: provider off); the admin function reads none', async () => {
    assert.deepEqual(secrets.calls.map((c) => c.action), ['secretsmanager.GetSecretValue']);
    assert.equal(secrets.calls[0]!.input.SecretId, gatewayEnv.ANTHROPIC_API_KEY_SECRET_ARN);
    // A key for every model (the recorded event's key is limited to `mock`).
    const created = await invoke(admin, { ...structuredClone(adminEvent), body: JSON.stringify({ name: 'bundle-test', team: 'platform' }) });
    assert.equal(created.metadata.statusCode, 201, created.body);
    key = JSON.parse(created.body).key;
    const models = await invoke(gateway, { ...chat(null), path: '/v1/models', httpMethod: 'GET', body: null });
    assert.deepEqual(JSON.parse(models.body).data.map((m: { id: string }) => m.id), ['mock'], 'claude is off while its secret holds the placeholder');
  });

  it('a key put in the secret reaches the warm instance without a cold start', async () => {
    secretValues.set(gatewayEnv.ANTHROPIC_API_KEY_SECRET_ARN!, 'sk-ant-put-after-deploy');
    const models = await invoke(gateway, { ...chat(null), path: '/v1/models', httpMethod: 'GET', body: null });
    assert.equal(models.metadata.statusCode, 200, models.body);
    assert.deepEqual(JSON.parse(models.body).data.map((m: { id: string }) => m.id).sort(), ['claude', 'mock']);
  });

  let record: Record<string, unknown>;
  it('streams an answer, then sends its record to Firehose; every field of the record is a Glue column of the right type', async () => {
    firehose.calls.length = 0;
    const writes: number[] = [];
    const stream = new ResponseStreamStandIn(() => writes.push(firehose.calls.length));
    const out = await invoke(gateway, chat({ model: 'mock', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'one two three four' }] }), stream);
    assert.equal(out.metadata.statusCode, 200, out.body);
    assert.ok(out.body.trimEnd().endsWith('data: [DONE]'));
    assert.ok(writes.length >= 4 && writes.every((n) => n === 0), 'nothing sent to Firehose while streaming');
    const puts = firehose.calls.filter((c) => c.action === 'Firehose_20150804.PutRecordBatch');
    assert.equal(puts.length, 1);
    assert.equal(puts[0]!.input.DeliveryStreamName, gatewayEnv.LOG_STREAM_NAME);
    record = JSON.parse(Buffer.from(puts[0]!.input.Records[0].Data, 'base64').toString('utf8'));
    const table = Object.values(res).find((r) => r.Type === 'AWS::Glue::Table')!;
    const columns = new Map<string, string>(table.Properties.TableInput.StorageDescriptor.Columns.map((c: { Name: string; Type: string }) => [c.Name, c.Type]));
    for (const [field, value] of Object.entries(record)) {
      const type = columns.get(field.toLowerCase());
      assert.ok(type, `record field ${field} is a column of the Glue table`);
      assert.ok(fitsGlueType(value, type), `${field}=${JSON.stringify(value)} fits ${type}`);
    }
    assert.equal(record.status, 200);
    assert.equal(record.stream, true);
  });

  it('every metric and dimension set the dashboard and alarms read from the code was emitted (EMF)', () => {
    const emitted = new Map<string, Set<string>>();
    for (const line of stdout.flatMap((s) => s.split('\n')).filter((l) => l.includes('"_aws"'))) {
      const blob = JSON.parse(line);
      for (const d of blob._aws.CloudWatchMetrics) {
        for (const m of d.Metrics) for (const dims of d.Dimensions) {
          const k = `${d.Namespace}|${m.Name}`;
          if (!emitted.has(k)) emitted.set(k, new Set());
          emitted.get(k)!.add([...dims].sort().join(','));
        }
      }
    }
    assert.ok(emitted.size > 0, 'EMF blobs were written');
    const used = metricsUsed(res).filter((u) => u.namespace === METRIC_NAMESPACE);
    assert.ok(used.length >= 10);
    // Emitted only when the upstream reports prompt-cache reads, which the mock provider does not:
    // checked against the code's metric names instead (a weaker check, on purpose this narrow).
    const NOT_PRODUCED_BY_MOCK: string[] = [METRICS.cacheReadTokens];
    for (const u of used) {
      if (NOT_PRODUCED_BY_MOCK.includes(u.name)) {
        assert.ok(Object.values(METRICS).includes(u.name as never), u.name);
        continue;
      }
      const sets = emitted.get(`${u.namespace}|${u.name}`);
      assert.ok(sets, `${u.where} reads ${u.name}, which the code emitted`);
      assert.ok(sets.has([...u.dims].sort().join(',')), `${u.where} reads ${u.name} by [${u.dims}], a dimension set the code emitted (${[...sets].join(' | ')})`);
    }
  });

  it('every AWS call the functions made is allowed by their role, on that resource', () => {
    const calls = [...ddb.calls, ...firehose.calls, ...secrets.calls];
    assert.ok(calls.length >= 4);
    // Which function made which call is not recorded; both roles are checked for what each function needs.
    const need = (fnPrefix: string, filter: (c: AwsCall) => boolean) => {
      const [fnId] = fnOf(fnPrefix);
      const statements = statementsOf(fnId).filter((s) => s.Effect === 'Allow');
      for (const c of calls.filter(filter)) {
        const action = iamAction(c.action);
        const resource = c.input.TableName ?? c.input.DeliveryStreamName ?? c.input.SecretId;
        const logicalId = /secret:([A-Za-z0-9]+)-AbCdEf$/.exec(resource)?.[1] ?? resource;
        const ok = statements.some((s) => [s.Action].flat().some((a: string) => actionMatches(a, action)) && [s.Resource].flat().some((r) => JSON.stringify(r).includes(`"${logicalId}"`)));
        assert.ok(ok, `${fnPrefix} may ${action} on ${logicalId}`);
      }
    };
    const adminTables = [adminEnv.GATEWAY_KEYS_TABLE];
    need('GatewayFn', (c) => !(c.action.endsWith('PutItem') && adminTables.includes(c.input.TableName)));
    need('AdminFn', (c) => c.action.startsWith('DynamoDB') && c.input.TableName === adminEnv.GATEWAY_KEYS_TABLE);
  });

  it('a client that goes away mid-stream: the handler fails, yet the record is flushed and the usage settled', async () => {
    firehose.calls.length = 0;
    ddb.calls.length = 0;
    let n = 0;
    const broken = new ResponseStreamStandIn();
    broken._write = (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void) => {
      broken.chunks.push(Buffer.from(chunk));
      cb(++n > 3 ? Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) : null);
    };
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    await assert.rejects(gateway(chat({ model: 'mock', stream: true, messages: [{ role: 'user', content: words }] }), broken, lambdaContext()));
    const puts = firehose.calls.filter((c) => c.action.endsWith('PutRecordBatch'));
    assert.equal(puts.length, 1, 'the record was sent before the invocation ended');
    const rec = JSON.parse(Buffer.from(puts[0]!.input.Records[0].Data, 'base64').toString('utf8'));
    assert.notEqual(rec.outcome, 'ok');
    assert.ok(ddb.calls.some((c) => c.action.endsWith('UpdateItem') && c.input.TableName === gatewayEnv.GATEWAY_USAGE_TABLE), 'usage counters were written');
  });

  it('every column the saved Athena queries name is a column or partition of the Glue table', () => {
    const table = Object.values(res).find((r) => r.Type === 'AWS::Glue::Table')!;
    const known = new Set<string>([
      ...table.Properties.TableInput.StorageDescriptor.Columns.map((c: { Name: string }) => c.Name),
      ...table.Properties.TableInput.PartitionKeys.map((c: { Name: string }) => c.Name),
    ]);
    const SQL = new Set('select from where group by order as and or not null is case when then else end desc asc limit count sum avg round approx_percentile arbitrary date_format current_date interval day in between distinct having on join left inner true false cast'.split(' '));
    const queries = Object.values(res).filter((r) => r.Type === 'AWS::Athena::NamedQuery');
    assert.ok(queries.length >= 5);
    for (const q of queries) {
      const sql = (q.Properties.QueryString as string).replace(/'[^']*'/g, "''").replace(/"[^"]*"\."[^"]*"/g, 'TABLE');
      const aliases = new Set([...sql.matchAll(/\bAS\s+([A-Za-z_][A-Za-z0-9_]*)/gi)].map((m) => m[1]!.toLowerCase()));
      for (const m of sql.matchAll(/\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?/g)) {
        const ident = m[1]!.toLowerCase();
        if (m[2] || SQL.has(ident) || aliases.has(ident) || ident === 'table') continue;
        assert.ok(known.has(ident), `${q.Properties.Name}: ${ident} is a column of the table`);
      }
      // Every column read is also one the code writes (present in a real record, or nullable by design).
    }
    assert.ok(record, 'a real record was captured');
  });

  it('init failure: a bundle that cannot load (a chunk missing from the asset) fails at import (no EMF, no record), which only the init-failure and Lambda Errors alarms see', async () => {
    // The configuration is validated at synth and embedded as validated (infra/bundling.ts), so a
    // broken asset, not a bad config, is what fails a real cold start: here, a chunk the entry imports.
    const broken = mkdtempSync(join(tmpdir(), 'gw-broken-'));
    cpSync(gatewayAsset, broken, { recursive: true });
    const text = readFileSync(join(broken, 'index.mjs'), 'utf8');
    const chunk = /from\s*"\.\/([^"]+\.mjs)"/.exec(text)?.[1];
    assert.ok(chunk, 'the entry imports a chunk statically');
    rmSync(join(broken, chunk));
    const before = stdout.length;
    await assert.rejects(load(broken, gatewayEnv, 'broken'), /Cannot find module|ERR_MODULE_NOT_FOUND/);
    assert.ok(!stdout.slice(before).some((l) => l.includes('"_aws"')), 'no metrics from a function that cannot start');
    const alarms = Object.values(res).filter((r) => r.Type === 'AWS::CloudWatch::Alarm').map((a) => JSON.stringify(a.Properties));
    assert.ok(alarms.some((a) => a.includes('"InitFailures"')) && alarms.some((a) => a.includes('"Errors"') && a.includes('GatewayFn')));
  });
});
