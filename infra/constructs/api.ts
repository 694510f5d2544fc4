import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { AccountRootPrincipal, AnyPrincipal, Effect, PolicyDocument, PolicyStatement, Role } from 'aws-cdk-lib/aws-iam';
import {
  AccessLogFormat,
  AuthorizationType,
  BasePathMapping,
  DomainName,
  EndpointType,
  LambdaIntegration,
  LogGroupLogDestination,
  MethodLoggingLevel,
  ResponseTransferMode,
  RestApi,
  SecurityPolicy,
} from 'aws-cdk-lib/aws-apigateway';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { ARecord, HostedZone, RecordTarget } from 'aws-cdk-lib/aws-route53';
import { ApiGatewayDomain } from 'aws-cdk-lib/aws-route53-targets';
import { CfnWebACL, CfnWebACLAssociation } from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import type { DeployConfig } from '../../shared/config/deploy.ts';
import type { IamConfig } from '../../shared/auth/schema.ts';

export interface GatewayApiProps {
  /** The model function (or its `live` alias). */
  handler: IFunction;
  adminHandler: IFunction;
  deploy: DeployConfig;
  /** `auth.iam`: when set, `/iam/{proxy+}` serves the model routes to SigV4 callers of these accounts and organizations. */
  iamCallers?: Pick<IamConfig, 'accounts' | 'organizationIds'>;
}

/** Model-facing path prefixes: Lambda proxy integrations in response-streaming mode. */
export const MODEL_ROUTE_PREFIXES = ['v1', 'bedrock', 'mcp'] as const;

/**
 * The public door: a Regional REST API (streaming REST APIs allow 5 minutes of idle time on
 * Regional endpoints, and the gateway sends SSE pings in long silences). Model routes reach the
 * gateway Lambda through proxy integrations in response-streaming mode with a 15-minute timeout;
 * callers authenticate with gateway keys, checked in the function. `/admin/*` reaches the admin
 * function and is authorized by IAM (SigV4). Stage throttling and JSON access logs are on; a custom
 * domain and a WAF web ACL are optional. Stream mode forbids content encoding, so no compression.
 */
export class GatewayApi extends Construct {
  readonly api: RestApi;
  readonly accessLogs: LogGroup;
  readonly domain?: DomainName;
  /** The role whose sessions may call /admin (with the principals of deploy.admin.principals). */
  readonly adminRole: Role;

  constructor(scope: Construct, id: string, props: GatewayApiProps) {
    super(scope, id);
    const { deploy } = props;
    const stackName = Stack.of(this).stackName;
    this.accessLogs = new LogGroup(this, 'AccessLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });

    // /admin: IAM authorization alone would make every principal of the account whose policies
    // allow execute-api:Invoke on * an admin. The resource policy denies /admin to everyone but
    // this role (assumable by principals of the account that IAM allows to) and the configured ARNs.
    this.adminRole = new Role(this, 'AdminRole', {
      roleName: `${stackName}-admin`.slice(0, 64),
      assumedBy: new AccountRootPrincipal(),
      description: `Gateway admins of ${stackName}: the only principal (with deploy.admin.principals) allowed to call /admin`,
    });
    const adminPrincipals = [this.adminRole.roleArn, ...deploy.admin.principals];
    const policy = new PolicyDocument({
      statements: [
        // Model routes are public at this layer: callers present gateway keys, checked in the function.
        new PolicyStatement({ sid: 'Public', effect: Effect.ALLOW, principals: [new AnyPrincipal()], actions: ['execute-api:Invoke'], resources: ['execute-api:/*'] }),
        new PolicyStatement({
          sid: 'AdminOnlyForAdmins',
          effect: Effect.DENY,
          principals: [new AnyPrincipal()],
          actions: ['execute-api:Invoke'],
          resources: ADMIN_RESOURCE_PATTERNS,
          conditions: { ArnNotEquals: { 'aws:PrincipalArn': adminPrincipals } },
        }),
        ...(props.iamCallers ? [iamCallersOnly(props.iamCallers, Stack.of(this).account)] : []),
      ],
    });

    this.api = new RestApi(this, 'Api', {
      restApiName: `${stackName}-api`,
      policy,
      description: 'LLM gateway: OpenAI, Anthropic and Bedrock APIs behind gateway keys',
      endpointConfiguration: { types: [EndpointType.REGIONAL] },
      // The API Gateway logging role is one per account and region: created here only when asked,
      // and kept when the stack goes (destroying it would stop every other API's logs there).
      cloudWatchRole: deploy.apiGatewayLoggingRole === 'create',
      cloudWatchRoleRemovalPolicy: deploy.apiGatewayLoggingRole === 'create' ? RemovalPolicy.RETAIN : undefined,
      deployOptions: {
        stageName: deploy.stageName,
        throttlingRateLimit: deploy.throttle.rateLimit,
        throttlingBurstLimit: deploy.throttle.burstLimit,
        accessLogDestination: new LogGroupLogDestination(this.accessLogs),
        accessLogFormat: AccessLogFormat.jsonWithStandardFields({
          caller: false,
          httpMethod: true,
          ip: true,
          protocol: true,
          requestTime: true,
          resourcePath: true,
          responseLength: true,
          status: true,
          user: true,
        }),
        loggingLevel: MethodLoggingLevel.ERROR,
        dataTraceEnabled: false, // never log prompts or keys
        metricsEnabled: true,
        tracingEnabled: true,
      },
    });

    // A changed resource policy takes effect only with a new deployment of the stage.
    this.api.latestDeployment?.addToLogicalId({ resourcePolicy: ADMIN_RESOURCE_PATTERNS, adminPrincipals: deploy.admin.principals, iamCallers: props.iamCallers && { ...props.iamCallers }, version: 1 });

    const stream = (fn: IFunction) =>
      new LambdaIntegration(fn, {
        proxy: true,
        responseTransferMode: ResponseTransferMode.STREAM,
        timeout: Duration.minutes(15),
        scopePermissionToMethod: false,
      });
    const model = stream(props.handler);
    this.api.root.addMethod('ANY', model);
    this.api.root.addResource('health').addMethod('ANY', model);
    for (const prefix of MODEL_ROUTE_PREFIXES) this.api.root.addResource(prefix).addProxy({ defaultIntegration: model, anyMethod: true });

    const admin = this.api.root.addResource('admin');
    const adminIntegration = stream(props.adminHandler);
    const iam = { authorizationType: AuthorizationType.IAM };
    // /iam/{proxy+}: the model routes for AWS workloads, SigV4-verified here; the function maps the caller ARN to a team.
    if (props.iamCallers) this.api.root.addResource('iam').addProxy({ defaultIntegration: model, defaultMethodOptions: iam, anyMethod: true });
    admin.addMethod('ANY', adminIntegration, iam);
    this.adminRole.addToPrincipalPolicy(new PolicyStatement({ sid: 'InvokeAdminApi', actions: ['execute-api:Invoke'], resources: [this.api.arnForExecuteApi('*', '/admin'), this.api.arnForExecuteApi('*', '/admin/*')] }));
    admin.addProxy({ defaultIntegration: adminIntegration, anyMethod: false }).addMethod('ANY', adminIntegration, iam);

    if (deploy.customDomain) {
      const cd = deploy.customDomain;
      this.domain = new DomainName(this, 'Domain', {
        domainName: cd.domainName,
        certificate: Certificate.fromCertificateArn(this, 'Certificate', cd.certificateArn),
        endpointType: EndpointType.REGIONAL,
        securityPolicy: SecurityPolicy.TLS_1_2,
      });
      new BasePathMapping(this, 'Mapping', { domainName: this.domain, restApi: this.api, stage: this.api.deploymentStage });
      if (cd.hostedZoneId && cd.zoneName) {
        const zone = HostedZone.fromHostedZoneAttributes(this, 'Zone', { hostedZoneId: cd.hostedZoneId, zoneName: cd.zoneName });
        new ARecord(this, 'Alias', { zone, recordName: cd.domainName, target: RecordTarget.fromAlias(new ApiGatewayDomain(this.domain)) });
      }
    }

    if (deploy.waf.enabled) {
      const acl = new CfnWebACL(this, 'WebAcl', {
        scope: 'REGIONAL',
        defaultAction: { allow: {} },
        visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: `${stackName}-waf`, sampledRequestsEnabled: false },
        rules: [
          {
            name: 'RateLimitPerIp',
            priority: 0,
            action: { block: {} },
            statement: { rateBasedStatement: { limit: deploy.waf.rateLimitPer5Minutes, aggregateKeyType: 'IP' } },
            visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'rate-limit-per-ip', sampledRequestsEnabled: false },
          },
          {
            name: 'AmazonIpReputation',
            priority: 1,
            overrideAction: { none: {} },
            statement: { managedRuleGroupStatement: { vendorName: 'AWS', name: 'AWSManagedRulesAmazonIpReputationList' } },
            visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'ip-reputation', sampledRequestsEnabled: false },
          },
          {
            // Prompts full of source code trip the body rules (XSS, LFI, size) and break clients such
            // as Claude Code: the common rule set runs with its body-inspecting rules in count mode.
            name: 'CommonRulesExceptBodies',
            priority: 2,
            overrideAction: { none: {} },
            statement: {
              managedRuleGroupStatement: {
                vendorName: 'AWS',
                name: 'AWSManagedRulesCommonRuleSet',
                ruleActionOverrides: WAF_BODY_RULES.map((name) => ({ name, actionToUse: { count: {} } })),
              },
            },
            visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'common-rules', sampledRequestsEnabled: false },
          },
        ],
      });
      new CfnWebACLAssociation(this, 'WebAclAssociation', { resourceArn: this.api.deploymentStage.stageArn, webAclArn: acl.attrArn });
    }
  }
}

/** The /iam routes in the API's resource policy (any stage, any method). */
export const IAM_RESOURCE_PATTERNS = ['execute-api:/*/*/iam/*'];

/**
 * IAM authorization lets through any principal whose own policies allow execute-api:Invoke; the
 * resource policy narrows /iam to the configured accounts (default: the stack's) and organizations.
 */
function iamCallersOnly(callers: Pick<IamConfig, 'accounts' | 'organizationIds'>, ownAccount: string): PolicyStatement {
  const notOurs: Record<string, string[]> = { 'aws:PrincipalAccount': callers.accounts.length ? callers.accounts : [ownAccount] };
  if (callers.organizationIds.length) notOurs['aws:PrincipalOrgID'] = callers.organizationIds;
  return new PolicyStatement({ sid: 'IamCallersOfAccountsAndOrganizations', effect: Effect.DENY, principals: [new AnyPrincipal()], actions: ['execute-api:Invoke'], resources: IAM_RESOURCE_PATTERNS, conditions: { StringNotEquals: notOurs } });
}

/** The /admin routes in the API's resource policy (any stage, any method). */
export const ADMIN_RESOURCE_PATTERNS = ['execute-api:/*/*/admin', 'execute-api:/*/*/admin/*'];

/** Rules of AWSManagedRulesCommonRuleSet that inspect request bodies (counted, never blocking). */
export const WAF_BODY_RULES = ['SizeRestrictions_BODY', 'CrossSiteScripting_BODY', 'GenericLFI_BODY', 'GenericRFI_BODY', 'EC2MetaDataSSRF_BODY'];
