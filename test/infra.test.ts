import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
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
import { WAF_BODY_RULES } from '../infra/constructs/api.ts';

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

function synth(config = shipped, id = 'TestGateway') {
  const app = new App();
  const stack = new GatewayStack(app, id, { config, env: { account: '123456789012', region: 'eu-west-1' } });
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
    const fns = Object.values(template.findResources('AWS::Lambda::Function', { Properties: { Handler: 'index.handler' } })) as Array<{ Properties: Record<string, any> }>;
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
    assert.deepEqual(bedrockStmt.Action, ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream', 'bedrock:CountTokens']);
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
      if (s.Resource === '*') assert.deepEqual(s.Action, ['xray:PutTraceSegments', 'xray:PutTelemetryRecords']);
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
    assert.equal(queries.length, 5);
    const columns = new Set(LOG_COLUMNS.map((c) => c.name.toLowerCase()));
    for (const q of queries) {
      for (const ident of q.Properties.QueryString.match(/\b(keyid|team|costusd|inputtokens|outputtokens|latencyms|ttfbms|cachehit|fallbacks|outcome|status|model|provider|upstreammodel|useragent|frontdoor)\b/g) ?? []) {
        assert.ok(columns.has(ident), `${q.Properties.Name} uses ${ident}, a column of the log schema`);
      }
    }
  });

  it('has a dashboard over the metrics the code emits, and alarms on 5xx rate, p99 latency, throttling and log delivery', () => {
    const dash = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0] as { Properties: { DashboardBody: unknown } };
    const body = JSON.stringify(dash.Properties.DashboardBody);
    for (const name of [METRICS.requests, METRICS.errors5xx, METRICS.latency, METRICS.ttfb, METRICS.inputTokens, METRICS.outputTokens, METRICS.costUsd, METRICS.cacheHits, METRICS.fallbacks, METRICS.rateLimited, METRICS.guardrailBlocked]) {
      assert.ok(body.includes(`\\"${name}\\"`) || body.includes(`MetricName=\\\\\\"${name}\\\\\\"`), `dashboard shows ${name}`);
    }
    assert.ok(body.includes(METRIC_NAMESPACE));
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as Array<{ Properties: Record<string, any> }>;
    const text = JSON.stringify(alarms);
    for (const needle of [METRICS.errors5xx, METRICS.latency, 'Throttles', 'DeliveryToS3.Success', 'DeliveryToS3.DataFreshness']) assert.ok(text.includes(needle), `an alarm watches ${needle}`);
    for (const a of alarms) assert.ok(a.Properties.AlarmActions?.length, 'every alarm notifies the topic');
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
    for (const config of [shipped, withBedrock]) {
      const app = new App();
      new GatewayStack(app, 'Nag', { config, env: { account: '123456789012', region: 'eu-west-1' } });
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
