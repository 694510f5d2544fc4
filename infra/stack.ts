import { CfnOutput, Stack, type CfnElement, type StackProps } from 'aws-cdk-lib';
import { Alias, type IFunction } from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { GatewayConfig } from '../shared/config/schema.ts';
import { GatewayApi } from './constructs/api.ts';
import { bedrockRegionProblems, concreteRegion, grantBedrock } from './constructs/bedrock-access.ts';
import { grantGuardrails } from './constructs/guardrail-access.ts';
import { GatewayFunction } from './constructs/gateway-function.ts';
import { LogExport } from './constructs/log-export.ts';
import { Observability } from './constructs/observability.ts';
import { ProviderSecrets } from './constructs/secrets.ts';
import { GatewayTables } from './constructs/storage.ts';
import { acknowledgeAdminRole, acknowledgeApi, acknowledgeBedrockProfiles, acknowledgeFunction, acknowledgeLogDelivery, acknowledgeSecret } from './nag.ts';

export interface GatewayStackProps extends StackProps {
  config: GatewayConfig;
}

/** The whole gateway in one stack: API, functions, tables, log export, secrets, dashboard and alarms. */
export class GatewayStack extends Stack {
  readonly api: GatewayApi;
  readonly gateway: GatewayFunction;
  readonly admin: GatewayFunction;
  readonly tables: GatewayTables;
  readonly logs: LogExport;
  readonly observability: Observability;
  gatewayAlias?: Alias;

  constructor(scope: Construct, id: string, props: GatewayStackProps) {
    super(scope, id, props);
    const { config } = props;
    // A cross-region inference profile of another geography fails at the first request: refuse now.
    const regionProblems = bedrockRegionProblems(config, concreteRegion(this));
    if (regionProblems.length) throw new Error(`Bedrock model ids do not fit the region:\n- ${regionProblems.join('\n- ')}`);
    this.tables = new GatewayTables(this, 'Tables');
    this.logs = new LogExport(this, 'LogExport', { logs: config.deploy.logs });
    const secrets = new ProviderSecrets(this, 'ProviderSecrets', config);
    const common = { ...this.tables.environment, LOG_STREAM_NAME: this.logs.deliveryStream.deliveryStreamName };

    this.gateway = new GatewayFunction(this, 'Gateway', {
      config,
      entry: 'gateway',
      description: 'LLM gateway: model routes (OpenAI, Anthropic, Bedrock APIs, MCP)',
      reservedConcurrency: config.deploy.functions.reservedConcurrency,
      // Only the model function calls providers, so only it gets (and may read) their secrets.
      environment: { ...common, ...secrets.environment },
    });
    this.admin = new GatewayFunction(this, 'Admin', {
      config,
      entry: 'admin',
      description: 'LLM gateway: admin API (keys, team limits, usage), IAM-authorized',
      memorySize: 512,
      timeout: undefined,
      environment: common,
    });

    // Least privilege: the model function reads keys and counts usage; only the admin function writes keys.
    this.tables.keys.grantReadData(this.gateway.fn);
    this.tables.usage.grantReadWriteData(this.gateway.fn);
    this.tables.cache.grantReadWriteData(this.gateway.fn);
    this.tables.keys.grantReadWriteData(this.admin.fn);
    this.tables.usage.grantReadData(this.admin.fn);
    for (const f of [this.gateway.fn, this.admin.fn]) this.logs.deliveryStream.grantPutRecords(f);
    secrets.grantRead(this.gateway.fn);
    const anyRegionModels = grantBedrock(this, this.gateway.fn, config);
    grantGuardrails(this, this.gateway.fn, config);

    // Optional: a published version behind the alias `live`, with provisioned concurrency.
    const fnConfig = config.deploy.functions;
    let modelHandler: IFunction = this.gateway.fn;
    if (fnConfig.publishAlias || fnConfig.provisionedConcurrency) {
      this.gatewayAlias = new Alias(this, 'GatewayLive', {
        aliasName: 'live',
        version: this.gateway.fn.currentVersion,
        provisionedConcurrentExecutions: fnConfig.provisionedConcurrency,
      });
      modelHandler = this.gatewayAlias;
    }

    this.api = new GatewayApi(this, 'Api', { handler: modelHandler, adminHandler: this.admin.fn, deploy: config.deploy });
    this.observability = new Observability(this, 'Observability', {
      serviceName: 'llm-gateway',
      alarms: config.deploy.alarms,
      gatewayFunction: this.gateway.fn,
      adminFunction: this.admin.fn,
      functionLogGroups: [this.gateway.logGroup, this.admin.logGroup],
      api: this.api.api,
      accessLogs: this.api.accessLogs,
      deliveryStream: this.logs.deliveryStream,
      tables: [this.tables.keys, this.tables.usage, this.tables.cache],
      dashboardName: this.stackName,
    });

    const base = this.api.domain ? `https://${this.api.domain.domainName}/` : this.api.api.url;
    new CfnOutput(this, 'GatewayUrl', { value: base, description: 'Base URL: OpenAI clients use <url>v1, Anthropic clients and Claude Code use <url>' });
    new CfnOutput(this, 'AdminUrl', { value: `${base}admin/`, description: 'Admin API (IAM-authorized: sign with SigV4 as the admin role, e.g. npm run keys)' });
    new CfnOutput(this, 'AdminRoleArn', { value: this.api.adminRole.roleArn, description: 'The role to assume to call /admin (the API denies everyone else)' });
    new CfnOutput(this, 'AlarmTopic', { value: this.observability.topic.topicArn });
    new CfnOutput(this, 'KeysTable', { value: this.tables.keys.tableName });
    new CfnOutput(this, 'UsageTable', { value: this.tables.usage.tableName });
    new CfnOutput(this, 'CacheTable', { value: this.tables.cache.tableName });
    new CfnOutput(this, 'LogBucket', { value: this.logs.bucket.bucketName });
    new CfnOutput(this, 'AthenaWorkGroup', { value: this.logs.workGroup.name });
    new CfnOutput(this, 'AthenaTable', { value: `${this.logs.databaseName}.${this.logs.tableName}` });
    new CfnOutput(this, 'Dashboard', { value: this.observability.dashboard.dashboardName });
    // Where to put each provider key after the deploy (aws secretsmanager put-secret-value --secret-id <arn>).
    for (const [env, secret] of secrets.secrets) {
      new CfnOutput(this, `Secret${env.replace(/[^A-Za-z0-9]/g, '')}`, { value: secret.secretArn, description: `Secrets Manager secret the functions read ${env} from` });
    }

    for (const f of [this.gateway, this.admin]) acknowledgeFunction(f);
    acknowledgeBedrockProfiles(this.gateway, anyRegionModels);
    acknowledgeApi(this.api, config.deploy.waf.enabled);
    acknowledgeLogDelivery(this.logs.deliveryStream, this.getLogicalId(this.logs.bucket.node.defaultChild as CfnElement));
    for (const s of secrets.secrets.values()) acknowledgeSecret(s);
    acknowledgeAdminRole(this.api.adminRole, this.getLogicalId(this.api.api.node.defaultChild as CfnElement));
  }
}
