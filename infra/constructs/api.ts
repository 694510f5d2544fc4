import { Duration, RemovalPolicy } from 'aws-cdk-lib';
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

export interface GatewayApiProps {
  handler: IFunction;
  adminHandler: IFunction;
  deploy: DeployConfig;
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

  constructor(scope: Construct, id: string, props: GatewayApiProps) {
    super(scope, id);
    const { deploy } = props;
    this.accessLogs = new LogGroup(this, 'AccessLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
    this.api = new RestApi(this, 'Api', {
      restApiName: `${deploy.stackName}-api`,
      description: 'LLM gateway: OpenAI, Anthropic and Bedrock APIs behind gateway keys',
      endpointConfiguration: { types: [EndpointType.REGIONAL] },
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.DESTROY,
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
    admin.addMethod('ANY', adminIntegration, iam);
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
        visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: `${deploy.stackName}-waf`, sampledRequestsEnabled: false },
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

/** Rules of AWSManagedRulesCommonRuleSet that inspect request bodies (counted, never blocking). */
export const WAF_BODY_RULES = ['SizeRestrictions_BODY', 'CrossSiteScripting_BODY', 'GenericLFI_BODY', 'GenericRFI_BODY', 'EC2MetaDataSSRF_BODY'];
