import { CfnOutput, Stack, type CfnElement, type StackProps } from 'aws-cdk-lib';
import { Alias, type IFunction } from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { GatewayConfig } from '../shared/config/schema.ts';
import { BudgetAlertTopic } from './constructs/alerts.ts';
import { GatewayApi } from './constructs/api.ts';
import { BedrockAccess } from './constructs/bedrock-access.ts';
import { GatewayFunction } from './constructs/gateway-function.ts';
import { LogExport } from './constructs/log-export.ts';
import { Observability } from './constructs/observability.ts';
import { ProviderSecrets } from './constructs/secrets.ts';
import { GatewayTables } from './constructs/storage.ts';
import { acknowledgeAdminRole, acknowledgeApi, acknowledgeFunction, acknowledgeLogDelivery, acknowledgeSecret } from './nag.ts';

export interface GatewayStackProps extends StackProps {
  config: GatewayConfig;
}

/**
 * The whole gateway in one stack: API, functions, tables, log export, secrets, dashboard and alarms.
 *
 * A composition, in the manner of AWS Solutions Constructs: each construct builds its resources
 * and owns the permissions on them. A function gets access by being handed to the construct's
 * grant method, which adds exactly the IAM statements that function's code path needs and the
 * environment variables naming the resources (tables: `grantGateway`/`grantAdmin`, log export:
 * `grantWriter`, provider secrets: `grantRead`, Bedrock models and guardrails: `grantInvoke`).
 * This file only decides which function gets what; it assembles no policy and no variable name.
 */
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
    // First, so a Bedrock model id that does not fit the region stops the synth before anything is built.
    const bedrock = new BedrockAccess(this, 'Bedrock', config);
    this.tables = new GatewayTables(this, 'Tables');
    this.logs = new LogExport(this, 'LogExport', { logs: config.deploy.logs });
    const secrets = new ProviderSecrets(this, 'ProviderSecrets', config);

    this.gateway = new GatewayFunction(this, 'Gateway', {
      config,
      entry: 'gateway',
      description: 'LLM gateway: model routes (OpenAI, Anthropic, Bedrock APIs, MCP)',
      reservedConcurrency: config.deploy.functions.reservedConcurrency,
    });
    this.admin = new GatewayFunction(this, 'Admin', {
      config,
      entry: 'admin',
      description: 'LLM gateway: admin API (keys, team limits, usage), IAM-authorized',
      memorySize: 512,
      timeout: undefined,
    });

    // Each grant also names the granted resources in the function's environment.
    this.tables.grantGateway(this.gateway.fn);
    this.logs.grantWriter(this.gateway.fn);
    // Only the model function calls providers, so only it gets (and may read) their secrets.
    secrets.grantRead(this.gateway.fn);
    bedrock.grantInvoke(this.gateway.fn);
    this.tables.grantAdmin(this.admin.fn);
    this.logs.grantWriter(this.admin.fn);

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

    this.api = new GatewayApi(this, 'Api', { handler: modelHandler, adminHandler: this.admin.fn, deploy: config.deploy, iamCallers: config.auth?.iam });
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
    // Budget alerts (budgets need keys): the model function settles usage, so it publishes them.
    const budgetAlerts = config.auth?.required && config.budgetAlerts.thresholds.length ? new BudgetAlertTopic(this, 'BudgetAlerts', { emails: config.budgetAlerts.emails }) : undefined;
    budgetAlerts?.grantPublish(this.gateway.fn);

    const base = this.api.domain ? `https://${this.api.domain.domainName}/` : this.api.api.url;
    new CfnOutput(this, 'GatewayUrl', { value: base, description: 'Base URL: OpenAI clients use <url>v1, Anthropic clients and Claude Code use <url>' });
    new CfnOutput(this, 'AdminUrl', { value: `${base}admin/`, description: 'Admin API (IAM-authorized: sign with SigV4 as the admin role, e.g. npm run keys)' });
    new CfnOutput(this, 'AdminRoleArn', { value: this.api.adminRole.roleArn, description: 'The role to assume to call /admin (the API denies everyone else)' });
    new CfnOutput(this, 'AlarmTopic', { value: this.observability.topic.topicArn });
    if (budgetAlerts) new CfnOutput(this, 'BudgetAlertTopic', { value: budgetAlerts.topic.topicArn, description: 'Budget alerts (subscribe more endpoints here)' });
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
    acknowledgeApi(this.api, config.deploy.waf.enabled);
    acknowledgeLogDelivery(this.logs.deliveryStream, this.getLogicalId(this.logs.bucket.node.defaultChild as CfnElement));
    for (const s of secrets.secrets.values()) acknowledgeSecret(s);
    acknowledgeAdminRole(this.api.adminRole, this.getLogicalId(this.api.api.node.defaultChild as CfnElement));
  }
}
