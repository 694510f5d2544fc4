import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfigFile, parseConfig } from '../shared/config/load.ts';
import { GatewayStack } from '../infra/stack.ts';
import { LOG_COLUMNS, LOG_PARTITION_KEYS } from '../shared/telemetry/schema.ts';
import { METRIC_NAMESPACE, METRICS } from '../shared/telemetry/metrics.ts';
import { ADMIN_RESOURCE_PATTERNS, WAF_BODY_RULES } from '../infra/constructs/api.ts';
import { LOG_METRICS } from '../infra/constructs/observability.ts';
import { SECRET_PLACEHOLDER } from '../shared/config/deploy.ts';
import { secretValue } from '../functions/lib/secrets.ts';
import { UNDELIVERED_FILTER_PATTERN } from '../shared/telemetry/firehose-sink.ts';
import { CURRENTLY_RECOMMENDED_FLAGS } from 'aws-cdk-lib/cx-api';

const shipped = loadConfigFile('gateway.config.yaml');
// A configuration with Bedrock targets (a foundation model and a cross-region inference profile),
// the WAF and a custom domain on, to check what they add.
const withBedrock = parseConfig({
  ...structuredClone({ providers: { mock: { type: 'mock' } } }),
  providers: {
    mock: { type: 'mock' },
    bedrock: { type: 'bedrock', region: 'eu-west-1' },
    anthropic: { type: 'anthropic' },
  },
  models: {
    mock: { provider: 'mock', model: 'mock-echo-1' },
    claude: { groups: [{ targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] }, { targets: [{ provider: 'bedrock', model: 'eu.anthropic.claude-sonnet-4-5-20250929-v1:0' }] }] },
    titan: { provider: 'bedrock', model: 'amazon.titan-embed-text-v2:0' },
  },
  deploy: {
    stackName: 'GwTest',
    waf: { enabled: true },
    customDomain: { domainName: 'llm.example.com', certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc', hostedZoneId: 'Z123', zoneName: 'example.com' },
    secrets: { ANTHROPIC_API_KEY: { arn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:anthropic-AbCdEf' } },
    functions: { reservedConcurrency: 50, memoryMb: 2048 },
  },
});

/** The app as `cdk synth` builds it: cdk.json's context (feature flags); bundling skipped. */
export const CDK_CONTEXT: Record<string, unknown> = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')).context;
const testApp = () => new App({ context: { ...CDK_CONTEXT, 'aws:cdk:bundling-stacks': [] } });

// The shipped configuration uses `us.` inference profiles: it deploys to a US region.
function synth(config = shipped, id = 'TestGateway', region = config === shipped ? 'us-east-1' : 'eu-west-1') {
  const app = testApp();
  const stack = new GatewayStack(app, id, { config, env: { account: '123456789012', region } });
  return { app, stack, template: Template.fromStack(stack) };
}

describe('CDK stack', () => {
  const { template } = synth();
  const bedrock = synth(withBedrock, 'GwTest');

  it('runs the gateway and admin functions on Node 22, arm64, bundled ESM, with tracing and the tables named in the environment', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Timeout: 900,
      TracingConfig: { Mode: 'Active' },
      Environment: {
        Variables: Match.objectLike({
          POWERTOOLS_SERVICE_NAME: 'llm-gateway',
          GATEWAY_KEYS_TABLE: Match.anyValue(),
          GATEWAY_USAGE_TABLE: Match.anyValue(),
          LOG_STREAM_NAME: Match.anyValue(),
          OPENAI_API_KEY_SECRET_ARN: Match.anyValue(),
        }),
      },
    });
    bedrock.template.hasResourceProperties('AWS::Lambda::Function', { MemorySize: 2048, ReservedConcurrentExecutions: 50 });
  });

  it('X-Ray: active tracing on both functions and on the API Gateway stage', () => {
    const fns = Object.values(template.findResources('AWS::Lambda::Function', { Properties: { Handler: 'index.handler', Description: Match.stringLikeRegexp('^LLM gateway') } })) as Array<{ Properties: Record<string, any> }>;
    assert.equal(fns.length, 2, 'the gateway and admin functions');
    for (const f of fns) assert.deepEqual(f.Properties.TracingConfig, { Mode: 'Active' });
    // Source maps are mapped on demand (functions/lib/source-map-stacks.ts), never parsed at start.
    for (const f of fns) assert.doesNotMatch(JSON.stringify(f.Properties.Environment ?? {}), /enable-source-maps/);
    template.resourceCountIs('AWS::ApiGateway::Stage', 1);
    template.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: true });
  });

  it('puts every model route on a Lambda proxy integration in response-streaming mode; /admin on IAM', () => {
    const methods = Object.entries(template.findResources('AWS::ApiGateway::Method')) as Array<[string, { Properties: Record<string, any> }]>;
    assert.ok(methods.length >= 6);
    for (const [id, m] of methods) {
      const i = m.Properties.Integration;
      assert.equal(i.Type, 'AWS_PROXY', id);
      assert.equal(i.ResponseTransferMode, 'STREAM', id);
      assert.equal(i.TimeoutInMillis, 900_000, id);
      assert.match(JSON.stringify(i.Uri), /2021-11-15\/functions\/.*\/response-streaming-invocations/, id);
      const admin = id.includes('admin');
      assert.equal(m.Properties.AuthorizationType, admin ? 'AWS_IAM' : 'NONE', id);
      assert.match(JSON.stringify(i.Uri), admin ? /AdminFn/ : /GatewayFn/, id);
    }
    for (const part of ['v1', 'bedrock', 'mcp', 'admin', 'health']) template.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: part });
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { EndpointConfiguration: { Types: ['REGIONAL'] } });
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'prod',
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
      MethodSettings: Match.arrayWith([Match.objectLike({ ThrottlingRateLimit: 500, ThrottlingBurstLimit: 1000, DataTraceEnabled: false })]),
    });
  });

  it('creates the tables on demand, encrypted, with TTL on expiresAt for usage and cache, PITR and retention on keys', () => {
    const tables = Object.values(template.findResources('AWS::DynamoDB::GlobalTable')) as Array<{ Properties: Record<string, any>; DeletionPolicy?: string }>;
    assert.equal(tables.length, 3);
    for (const t of tables) {
      assert.deepEqual(t.Properties.KeySchema, [{ AttributeName: 'pk', KeyType: 'HASH' }]);
      assert.equal(t.Properties.BillingMode, 'PAY_PER_REQUEST');
      assert.equal(t.Properties.SSESpecification.SSEEnabled, true);
    }
    const keys = tables.filter((t) => t.Properties.Replicas[0].DeletionProtectionEnabled === true);
    assert.equal(keys.length, 1, 'only the keys table has deletion protection');
    assert.equal(keys[0]!.DeletionPolicy, 'Retain');
    assert.equal(keys[0]!.Properties.Replicas[0].PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
    assert.equal(keys[0]!.Properties.TimeToLiveSpecification, undefined);
    const ttl = tables.filter((t) => t.Properties.TimeToLiveSpecification);
    assert.equal(ttl.length, 2);
    for (const t of ttl) assert.deepEqual(t.Properties.TimeToLiveSpecification, { AttributeName: 'expiresAt', Enabled: true });
  });

  it('scopes IAM to the exact resources: tables per function, the delivery stream, the secrets, the configured Bedrock models only', () => {
    const policies = bedrock.template.findResources('AWS::IAM::Policy') as Record<string, { Properties: { PolicyDocument: { Statement: Array<Record<string, any>> } } }>;
    const statements = (prefix: string) => Object.entries(policies).filter(([k]) => k.startsWith(prefix)).flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
    const gw = statements('GatewayFnServiceRole');
    const admin = statements('AdminFnServiceRole');
    const bedrockStmt = gw.find((s) => s.Sid === 'InvokeConfiguredBedrockModels');
    assert.ok(bedrockStmt);
    assert.deepEqual([...bedrockStmt.Action].sort(), ['bedrock:CountTokens', 'bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream']);
    const resources = JSON.stringify(bedrockStmt.Resource);
    assert.match(resources, /bedrock:eu-west-1::foundation-model\/amazon\.titan-embed-text-v2:0/);
    assert.match(resources, /bedrock:eu-west-1:123456789012:inference-profile\/eu\.anthropic\.claude-sonnet-4-5-20250929-v1:0/);
    assert.match(resources, /bedrock:\*::foundation-model\/anthropic\.claude-sonnet-4-5-20250929-v1:0/);
    assert.equal((bedrockStmt.Resource as unknown[]).length, 3);
    assert.ok(!admin.some((s) => JSON.stringify(s.Action).includes('bedrock')), 'the admin function cannot call models');
    // Only the admin function writes keys.
    const writesKeys = (st: Array<Record<string, any>>) => st.some((s) => JSON.stringify(s.Resource).includes('TablesKeys') && JSON.stringify(s.Action).includes('dynamodb:PutItem'));
    assert.equal(writesKeys(gw), false);
    assert.equal(writesKeys(admin), true);
    for (const s of [...gw, ...admin]) {
      if (s.Resource === '*') assert.deepEqual([...s.Action].sort(), ['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
    }
    // The referenced secret is read by ARN, and nothing else is created for it.
    assert.ok(gw.some((s) => JSON.stringify(s.Resource).includes('secret:anthropic-AbCdEf')));
    assert.equal(Object.keys(bedrock.template.findResources('AWS::SecretsManager::Secret')).length, 0);
  });

  it('exports logs through gzip Firehose to a locked-down bucket, partitioned by date and hour', () => {
    template.hasResourceProperties('AWS::KinesisFirehose::DeliveryStream', {
      DeliveryStreamEncryptionConfigurationInput: { KeyType: 'AWS_OWNED_CMK' },
      ExtendedS3DestinationConfiguration: Match.objectLike({
        CompressionFormat: 'GZIP',
        Prefix: 'logs/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/',
        ErrorOutputPrefix: Match.stringLikeRegexp('^errors/'),
      }),
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: Match.anyValue(),
      LifecycleConfiguration: { Rules: [Match.objectLike({ ExpirationInDays: 365, Transitions: [{ StorageClass: 'STANDARD_IA', TransitionInDays: 30 }] })] },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('builds the Glue table from the log schema, with partition projection, and saved Athena queries', () => {
    const table = Object.values(template.findResources('AWS::Glue::Table'))[0] as { Properties: { TableInput: Record<string, any> } };
    const input = table.Properties.TableInput;
    assert.deepEqual(
      input.StorageDescriptor.Columns.map((c: { Name: string; Type: string }) => [c.Name, c.Type]),
      LOG_COLUMNS.map((c) => [c.name.toLowerCase(), c.glueType]),
    );
    assert.deepEqual(input.PartitionKeys.map((k: { Name: string }) => k.Name), LOG_PARTITION_KEYS.map((k) => k.name));
    assert.equal(input.Parameters['projection.enabled'], 'true');
    // Projection reads the very layout Firehose writes (dt=yyyy-MM-dd/hour=HH under logs/).
    assert.equal(input.Parameters['projection.dt.format'], 'yyyy-MM-dd');
    assert.equal(input.Parameters['projection.hour.digits'], '2');
    assert.ok(JSON.stringify(input.Parameters['storage.location.template']).endsWith('/logs/dt=${dt}/hour=${hour}/"]]}'), JSON.stringify(input.Parameters['storage.location.template']));
    assert.equal(input.StorageDescriptor.SerdeInfo.SerializationLibrary, 'org.openx.data.jsonserde.JsonSerDe');
    template.hasResourceProperties('AWS::Athena::WorkGroup', { WorkGroupConfiguration: Match.objectLike({ EnforceWorkGroupConfiguration: true, ResultConfiguration: Match.objectLike({ OutputLocation: Match.anyValue() }) }) });
    const queries = Object.values(template.findResources('AWS::Athena::NamedQuery')) as Array<{ Properties: { QueryString: string; Name: string } }>;
    assert.equal(queries.length, 6);
    const columns = new Set(LOG_COLUMNS.map((c) => c.name.toLowerCase()));
    for (const q of queries) {
      for (const ident of q.Properties.QueryString.match(/\b(keyid|team|costusd|inputtokens|outputtokens|latencyms|ttfbms|cachehit|fallbacks|outcome|status|model|provider|upstreammodel|useragent|frontdoor)\b/g) ?? []) {
        assert.ok(columns.has(ident), `${q.Properties.Name} uses ${ident}, a column of the log schema`);
      }
    }
  });

  it('has a dashboard over the metrics the code emits, and alarms that mean something: first byte, 5xx (gateway and API), function errors and init failures, 429s, undelivered logs, Firehose, DynamoDB throttles', () => {
    const dash = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0] as { Properties: { DashboardBody: unknown } };
    const body = JSON.stringify(dash.Properties.DashboardBody);
    for (const name of [METRICS.requests, METRICS.errors5xx, METRICS.latency, METRICS.ttfb, METRICS.inputTokens, METRICS.outputTokens, METRICS.costUsd, METRICS.cacheHits, METRICS.fallbacks, METRICS.rateLimited, METRICS.guardrailBlocked]) {
      assert.ok(body.includes(`\\"${name}\\"`) || body.includes(`MetricName=\\\\\\"${name}\\\\\\"`), `dashboard shows ${name}`);
    }
    assert.ok(body.includes(METRIC_NAMESPACE));
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as Array<{ Properties: Record<string, any> }>;
    const watched = alarms.map((a) => JSON.stringify(a.Properties.MetricName ?? a.Properties.Metrics));
    const watches = (needle: string) => watched.some((w) => w.includes(`"${needle}"`) || w === `"${needle}"`);
    for (const needle of [METRICS.errors5xx, METRICS.ttfb, '5XXError', 'Errors', LOG_METRICS.initFailures, 'Throttles', LOG_METRICS.throttled429, LOG_METRICS.undeliveredLines, 'DeliveryToS3.Success', 'DeliveryToS3.DataFreshness', 'ReadThrottleEvents', 'WriteThrottleEvents']) {
      assert.ok(watches(needle), `an alarm watches ${needle}`);
    }
    // Changed with #16: the total latency of a stream is its length (a p99 alarm on it fired on every
    // long answer), and 4XXError counts every 401: neither is alarmed on any more.
    assert.ok(!watches(METRICS.latency), 'no alarm on arrival-to-last-byte latency');
    assert.ok(!watches('4XXError'), 'no alarm on all 4xx');
    assert.ok(!watches('Latency'), 'no alarm on API Gateway Latency');
    // Every alarm notifies THE topic, and the topic's key lets CloudWatch publish to it.
    const topics = template.findResources('AWS::SNS::Topic');
    const [topicId, topic] = Object.entries(topics)[0] as [string, { Properties: { KmsMasterKeyId: unknown } }];
    for (const a of alarms) {
      assert.deepEqual(a.Properties.AlarmActions, [{ Ref: topicId }], 'every alarm notifies the alarm topic');
      assert.deepEqual(a.Properties.OKActions, [{ Ref: topicId }]);
    }
    const keyId = (topic.Properties.KmsMasterKeyId as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const key = template.toJSON().Resources[keyId] as { Type: string; Properties: { KeyPolicy: { Statement: Array<Record<string, any>> } } };
    assert.equal(key.Type, 'AWS::KMS::Key');
    const cw = key.Properties.KeyPolicy.Statement.filter((st) => st.Effect === 'Allow' && st.Principal?.Service === 'cloudwatch.amazonaws.com');
    assert.equal(cw.length, 1, 'the key policy names CloudWatch');
    const actions = [cw[0]!.Action].flat();
    for (const a of ['kms:Decrypt', 'kms:GenerateDataKey*']) assert.ok(actions.includes(a), `CloudWatch may ${a}`);
    // The log-derived metrics come from filters on the right log groups, with the code's own marker.
    const filters = Object.values(template.findResources('AWS::Logs::MetricFilter')) as Array<{ Properties: Record<string, any> }>;
    const filterOf = (name: string) => filters.filter((f) => f.Properties.MetricTransformations[0].MetricName === name);
    assert.equal(filterOf(LOG_METRICS.undeliveredLines).length, 2, 'both functions');
    for (const f of filterOf(LOG_METRICS.undeliveredLines)) assert.equal(f.Properties.FilterPattern, UNDELIVERED_FILTER_PATTERN);
    assert.equal(filterOf(LOG_METRICS.initFailures).length, 2, 'both functions');
    const [throttled] = filterOf(LOG_METRICS.throttled429);
    assert.match(JSON.stringify(throttled!.Properties.LogGroupName), /ApiAccessLogs/);
    // The access log writes status as a string: the filter must compare a string.
    const stage = Object.values(template.findResources('AWS::ApiGateway::Stage'))[0] as { Properties: { AccessLogSetting: { Format: string } } };
    assert.ok(stage.Properties.AccessLogSetting.Format.includes('"status":"$context.status"'));
    assert.equal(throttled!.Properties.FilterPattern, '{ $.status = "429" }');
    const init = 'INIT_REPORT Init Duration: 1201.33 ms\tPhase: init\tStatus: error\tError Type: Runtime.Unknown';
    for (const term of filterOf(LOG_METRICS.initFailures)[0]!.Properties.FilterPattern.match(/"([^"]+)"|\S+/g)) assert.ok(init.includes(term.replace(/"/g, '')), `the INIT_REPORT line contains ${term}`);
  });

  it('secrets hold the placeholder the gateway reads as "off" (not a generated password); only the model function gets and may read them', () => {
    const secrets = Object.entries(template.findResources('AWS::SecretsManager::Secret')) as Array<[string, { Properties: Record<string, any>; DeletionPolicy?: string }]>;
    assert.ok(secrets.length >= 2, 'OpenAI and Anthropic secrets');
    for (const [, sec] of secrets) {
      assert.equal(sec.Properties.GenerateSecretString, undefined, 'no random value');
      assert.equal(sec.Properties.SecretString, SECRET_PLACEHOLDER);
      assert.equal(secretValue(sec.Properties.SecretString), undefined, 'the gateway reads it as not set');
      assert.equal(sec.Properties.Name, undefined, 'a generated name: a retained secret never blocks a redeploy');
      assert.equal(sec.DeletionPolicy, 'Retain');
    }
    const fn = (prefix: string) => Object.entries(template.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith(prefix))![1] as { Properties: { Environment: { Variables: Record<string, unknown> } } };
    const adminEnv = Object.keys(fn('AdminFn').Properties.Environment.Variables);
    assert.deepEqual(adminEnv.filter((k) => k.endsWith('_SECRET_ARN')), [], 'the admin function gets no secret ARN');
    const gwEnv = fn('GatewayFn').Properties.Environment.Variables;
    const policies = template.findResources('AWS::IAM::Policy') as Record<string, { Properties: { PolicyDocument: { Statement: Array<Record<string, any>> } } }>;
    const statements = (prefix: string) => Object.entries(policies).filter(([k]) => k.startsWith(prefix)).flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
    for (const [k, ref] of Object.entries(gwEnv).filter(([k]) => k.endsWith('_SECRET_ARN'))) {
      assert.ok(statements('GatewayFn').some((st) => [st.Action].flat().includes('secretsmanager:GetSecretValue') && [st.Resource].flat().some((r) => JSON.stringify(r) === JSON.stringify(ref))), `the gateway may read ${k}`);
    }
    assert.ok(!JSON.stringify(statements('AdminFn')).includes('secretsmanager'), 'the admin function reads no secret');
  });

  it('/admin: denied by the resource policy to everyone but the admin role the stack creates (and configured principals)', () => {
    const role = Object.entries(template.findResources('AWS::IAM::Role', { Properties: { RoleName: 'TestGateway-admin' } }));
    assert.equal(role.length, 1);
    const [roleId] = role[0]!;
    const api = Object.values(template.findResources('AWS::ApiGateway::RestApi'))[0] as { Properties: { Name: string; Policy: { Statement: Array<Record<string, any>> } } };
    const deny = api.Properties.Policy.Statement.find((st) => st.Effect === 'Deny')!;
    assert.deepEqual(deny.Resource, ADMIN_RESOURCE_PATTERNS);
    assert.deepEqual(deny.Action, 'execute-api:Invoke');
    assert.deepEqual(deny.Condition, { ArnNotEquals: { 'aws:PrincipalArn': [{ 'Fn::GetAtt': [roleId, 'Arn'] }] } });
    const allow = api.Properties.Policy.Statement.find((st) => st.Effect === 'Allow')!;
    assert.deepEqual(allow.Resource, 'execute-api:/*');
    const more = synth(parseConfig({ ...structuredClone(shipped), deploy: { ...shipped.deploy, admin: { principals: ['arn:aws:iam::123456789012:role/Ops'] } } }), 'AdminCfg', 'us-east-1');
    const p = (Object.values(more.template.findResources('AWS::ApiGateway::RestApi'))[0] as typeof api).Properties.Policy.Statement.find((st) => st.Effect === 'Deny')!;
    assert.equal(p.Condition.ArnNotEquals['aws:PrincipalArn'][1], 'arn:aws:iam::123456789012:role/Ops');
  });

  it('two stacks (staging, prod) from one configuration share no physical name; destroy leaves nothing that blocks a redeploy or other APIs', () => {
    const staging = synth(shipped, 'GwStaging').template.toJSON().Resources as Record<string, { Type: string; Properties?: Record<string, any>; DeletionPolicy?: string }>;
    const prod = synth(shipped, 'GwProd').template.toJSON().Resources as typeof staging;
    const NAME_KEYS = ['Name', 'DashboardName', 'RoleName', 'TableName', 'BucketName', 'DeliveryStreamName', 'TopicName', 'AlarmName', 'FunctionName', 'LogGroupName', 'SecretName'];
    const names = (res: typeof staging) => {
      const out = new Set<string>();
      for (const r of Object.values(res)) {
        for (const k of NAME_KEYS) if (typeof r.Properties?.[k] === 'string') out.add(`${r.Type}:${r.Properties[k]}`);
        const db = r.Properties?.DatabaseInput?.Name;
        if (db) out.add(`${r.Type}:${db}`);
      }
      return out;
    };
    const shared = [...names(staging)].filter((n) => names(prod).has(n));
    // Saved queries are named per workgroup, which is per stack.
    assert.deepEqual(shared.filter((n) => !n.startsWith('AWS::Athena::NamedQuery:')), []);
    assert.ok(names(staging).has('AWS::Glue::Database:gwstaging_logs'));
    assert.ok(names(staging).has('AWS::Athena::WorkGroup:GwStaging-logs'));
    assert.ok(names(staging).has('AWS::CloudWatch::Dashboard:GwStaging'));
    // What is kept on destroy has a generated name (a redeploy creates new ones beside it).
    for (const [id, r] of Object.entries(staging)) {
      if (r.DeletionPolicy !== 'Retain') continue;
      for (const k of NAME_KEYS) assert.notEqual(typeof r.Properties?.[k], 'string', `${id} is retained with a fixed ${k}`);
    }
    // The Athena results bucket is emptied on destroy (a bucket with objects cannot be deleted).
    const results = Object.entries(staging).find(([id, r]) => r.Type === 'AWS::S3::Bucket' && id.includes('AthenaResults'))!;
    assert.equal(results[1].DeletionPolicy, 'Delete');
    assert.ok(Object.values(staging).some((r) => r.Type === 'Custom::S3AutoDeleteObjects' && JSON.stringify(r.Properties?.BucketName).includes(results[0])));
    // The account-wide API Gateway logging role and setting outlive the stack.
    for (const [id, r] of Object.entries(staging)) if (r.Type === 'AWS::ApiGateway::Account' || (r.Type === 'AWS::IAM::Role' && id.includes('CloudWatchRole'))) assert.equal(r.DeletionPolicy, 'Retain', id);
    const existing = synth(parseConfig({ ...structuredClone(shipped), deploy: { ...shipped.deploy, apiGatewayLoggingRole: 'existing' } }), 'GwExisting', 'us-east-1');
    existing.template.resourceCountIs('AWS::ApiGateway::Account', 0);
  });

  it('refuses Bedrock inference profiles of another geography than the region they are called from', () => {
    assert.throws(() => synth(shipped, 'GwEu', 'eu-west-1'), /us\.anthropic\.claude-sonnet.*cannot be called from eu-west-1.*eu\.anthropic/s);
    assert.doesNotThrow(() => synth(shipped, 'GwUsWest', 'us-west-2'));
    // A provider with its own region is checked against that region.
    assert.doesNotThrow(() => synth(withBedrock, 'GwEuOk', 'us-east-1'));
    const usProfileInEu = parseConfig({ ...structuredClone(withBedrock), models: { x: { provider: 'bedrock', model: 'us.amazon.nova-lite-v1:0' } } });
    assert.throws(() => synth(usProfileInEu, 'GwBad', 'us-east-1'), /provider's region/);
  });

  it('optional: a published `live` alias with provisioned concurrency behind the model routes; WAF and stage throttling from the configuration', () => {
    const cfg = parseConfig({ ...structuredClone(shipped), deploy: { ...shipped.deploy, functions: { provisionedConcurrency: 2 }, throttle: { rateLimit: 50, burstLimit: 100 }, waf: { enabled: true, rateLimitPer5Minutes: 300 } } });
    const t = synth(cfg, 'GwAlias', 'us-east-1').template;
    t.hasResourceProperties('AWS::Lambda::Alias', { Name: 'live', ProvisionedConcurrencyConfig: { ProvisionedConcurrentExecutions: 2 } });
    const methods = Object.entries(t.findResources('AWS::ApiGateway::Method')) as Array<[string, { Properties: Record<string, any> }]>;
    for (const [id, m] of methods) if (!id.includes('admin')) assert.match(JSON.stringify(m.Properties.Integration.Uri), /GatewayLive/, `${id} calls the alias`);
    t.hasResourceProperties('AWS::ApiGateway::Stage', { MethodSettings: Match.arrayWith([Match.objectLike({ ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 })]) });
    const acl = Object.values(t.findResources('AWS::WAFv2::WebACL'))[0] as { Properties: { Rules: Array<Record<string, any>> } };
    assert.equal(acl.Properties.Rules.find((r) => r.Name === 'RateLimitPerIp')!.Statement.RateBasedStatement.Limit, 300);
    template.resourceCountIs('AWS::Lambda::Alias', 0);
  });

  it('cdk.json sets the feature flags a new `cdk init` app gets', () => {
    for (const [flag, value] of Object.entries(CURRENTLY_RECOMMENDED_FLAGS)) assert.deepEqual(CDK_CONTEXT[flag], value, flag);
  });

  it('adds a WAF that never blocks on request bodies, and the custom domain, when configured', () => {
    const acl = Object.values(bedrock.template.findResources('AWS::WAFv2::WebACL'))[0] as { Properties: { Rules: Array<Record<string, any>> } };
    const common = acl.Properties.Rules.find((r) => r.Name === 'CommonRulesExceptBodies')!;
    assert.deepEqual(common.Statement.ManagedRuleGroupStatement.RuleActionOverrides.map((o: { Name: string; ActionToUse: object }) => [o.Name, o.ActionToUse]), WAF_BODY_RULES.map((n) => [n, { Count: {} }]));
    bedrock.template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
    bedrock.template.hasResourceProperties('AWS::ApiGateway::DomainName', { DomainName: 'llm.example.com', SecurityPolicy: 'TLS_1_2' });
    bedrock.template.resourceCountIs('AWS::Route53::RecordSet', 1);
    template.resourceCountIs('AWS::WAFv2::WebACL', 0);
  });

  it('passes the cdk-nag AwsSolutions checks (every acknowledgement justified in infra/nag.ts)', () => {
    for (const [config, region] of [[shipped, 'us-east-1'], [withBedrock, 'eu-west-1']] as const) {
      const app = testApp();
      new GatewayStack(app, 'Nag', { config, env: { account: '123456789012', region } });
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
      assert.doesNotThrow(() => app.synth(), 'no unacknowledged cdk-nag finding');
    }
  });

  it('fails the synth of a bad configuration with the bad field named, and synthesizes the shipped one offline with `cdk synth`', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-synth-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'providers:\n  mock: { type: mock }\nmodels:\n  m: { provider: mock, model: x }\ndeploy:\n  functions: { memoryMb: 64 }\n');
    const res = spawnSync('npx', ['tsx', 'infra/app.ts'], { env: { ...process.env, GATEWAY_CONFIG: bad, CDK_OUTDIR: join(dir, 'out') }, encoding: 'utf8' });
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /deploy\.functions\.memoryMb/);
    const out = execFileSync('npx', ['cdk', 'synth', '--quiet', '--output', join(dir, 'cdk.out')], { encoding: 'utf8', env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' } });
    assert.doesNotMatch(out, /Error/);
  });
});
