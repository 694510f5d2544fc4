import { Duration, Stack } from 'aws-cdk-lib';
import type { RestApi } from 'aws-cdk-lib/aws-apigateway';
import { Alarm, ComparisonOperator, Dashboard, GraphWidget, MathExpression, Metric, SingleValueWidget, TreatMissingData, type IMetric } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { DeliveryStream } from 'aws-cdk-lib/aws-kinesisfirehose';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Key } from 'aws-cdk-lib/aws-kms';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { ITableV2 } from 'aws-cdk-lib/aws-dynamodb';
import { FilterPattern, MetricFilter, type IFilterPattern, type ILogGroup } from 'aws-cdk-lib/aws-logs';
import { UNDELIVERED_FILTER_PATTERN } from '../../shared/telemetry/firehose-sink.ts';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { DeployConfig } from '../../shared/config/deploy.ts';
import { METRIC_DIMENSIONS, METRIC_NAMESPACE, METRICS } from '../../shared/telemetry/metrics.ts';

export interface ObservabilityProps {
  serviceName: string;
  alarms: DeployConfig['alarms'];
  gatewayFunction: IFunction;
  adminFunction: IFunction;
  /** The functions' log groups (undelivered log records, init failures). */
  functionLogGroups: ILogGroup[];
  api: RestApi;
  /** The API's JSON access log group (one line per request, `status` included). */
  accessLogs: ILogGroup;
  deliveryStream: DeliveryStream;
  tables: ITableV2[];
  dashboardName: string;
}

/** Namespace of the metrics made from log lines by metric filters (not by the code's EMF). */
export const LOG_METRIC_NAMESPACE = 'LlmGateway/Logs';
export const LOG_METRICS = {
  /** 429 answers seen in the API access log: stage throttling and the gateway's own limits. */
  throttled429: 'Api429',
  /** Request records the Firehose sink could not deliver (written to the function log instead). */
  undeliveredLines: 'LogRecordsUndeliveredLines',
  /** Lambda INIT_REPORT lines with `Status: error`: a function that cannot start. */
  initFailures: 'InitFailures',
} as const;

/** The access-log pattern of a 429 (the access log writes `status` as a string). */
export const THROTTLED_ACCESS_LOG_PATTERN = FilterPattern.stringValue('$.status', '=', '429');
/** The platform line the Lambda runtime writes when a function's init phase fails. */
export const INIT_FAILURE_PATTERN = FilterPattern.allTerms('INIT_REPORT', 'Status: error');

/**
 * The gateway's dashboard and alarms, built on the metrics the code emits (names from
 * shared/telemetry/metrics.ts), on metrics made from log lines, and on Lambda, API Gateway,
 * Firehose and DynamoDB's own metrics. Every alarm notifies an SNS topic that CloudWatch can
 * publish to (its KMS key allows cloudwatch.amazonaws.com), with an e-mail subscription when
 * configured.
 */
export class Observability extends Construct {
  readonly dashboard: Dashboard;
  readonly topic: Topic;
  readonly topicKey: Key;
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const dims = { [METRIC_DIMENSIONS.service]: props.serviceName };
    const period = Duration.minutes(5);
    const m = (metricName: string, statistic: string, label?: string): Metric =>
      new Metric({ namespace: METRIC_NAMESPACE, metricName, dimensionsMap: dims, statistic, period, label });
    // One line per value of a dimension (`Model`, or `Team`: the first TEAM_DIMENSION_LIMIT teams an instance sees, then `other`).
    const perDimension = (dimension: string, metricName: string, statistic: string, label: string, seconds = 300): IMetric =>
      new MathExpression({
        expression: `SEARCH('{${METRIC_NAMESPACE},${METRIC_DIMENSIONS.service},${dimension}} MetricName="${metricName}" ${METRIC_DIMENSIONS.service}="${props.serviceName}"', '${statistic}', ${seconds})`,
        label,
        period: Duration.seconds(seconds),
      });
    const perModel = (metricName: string, statistic: string, label: string) => perDimension(METRIC_DIMENSIONS.model, metricName, statistic, label);
    const perTeam = (metricName: string, label: string) => perDimension(METRIC_DIMENSIONS.team, metricName, 'Sum', label, 86_400);

    // CloudWatch publishes alarm notifications to an encrypted topic only if the key lets it
    // (a key whose policy names only the account root silently drops every notification).
    this.topicKey = new Key(this, 'AlarmTopicKey', { enableKeyRotation: true, description: 'LLM gateway alarm topic' });
    this.topicKey.addToResourcePolicy(
      new PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
    );
    this.topic = new Topic(this, 'AlarmTopic', { displayName: 'LLM gateway alarms', masterKey: this.topicKey });
    if (props.alarms.email) this.topic.addSubscription(new EmailSubscription(props.alarms.email));
    const action = new SnsAction(this.topic);
    const alarm = (name: string, metric: IMetric, threshold: number, description: string, opts: { op?: ComparisonOperator; periods?: [evaluation: number, toAlarm: number] } = {}) => {
      const [evaluationPeriods, datapointsToAlarm] = opts.periods ?? [3, 2];
      const a = new Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods,
        datapointsToAlarm,
        comparisonOperator: opts.op ?? ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(action);
      a.addOkAction(action);
      this.alarms.push(a);
      return a;
    };
    const logMetric = (group: ILogGroup, id: string, metricName: string, pattern: IFilterPattern) => {
      new MetricFilter(this, id, { logGroup: group, metricNamespace: LOG_METRIC_NAMESPACE, metricName, filterPattern: pattern, metricValue: '1', defaultValue: 0 });
      return new Metric({ namespace: LOG_METRIC_NAMESPACE, metricName, statistic: 'Sum', period });
    };
    const once: { periods: [number, number] } = { periods: [1, 1] };

    // Errors5xx is 1 for a failed request and 0 otherwise, so its average is the failure rate.
    const pct = props.alarms.errorRatePercent;
    alarm('ServerErrorRate', new MathExpression({ expression: 'rate * 100', usingMetrics: { rate: m(METRICS.errors5xx, 'Average') }, period, label: '5xx %' }), pct, `More than ${pct}% of requests answered 5xx by the gateway`);
    // API Gateway's own 5xx: also counts what the code never sees (a function that cannot start, times out or is throttled).
    alarm('Api5xxRate', new MathExpression({ expression: 'rate * 100', usingMetrics: { rate: props.api.metricServerError({ period, statistic: 'Average' }) }, period, label: 'API 5xx %' }), pct, `More than ${pct}% of API Gateway answers were 5xx`);
    alarm('FirstByteLatency', m(METRICS.ttfb, 'p99'), props.alarms.firstByteP99Ms, `p99 time to the first byte above ${props.alarms.firstByteP99Ms} ms`);
    alarm('GatewayFunctionErrors', props.gatewayFunction.metricErrors({ period, statistic: 'Sum' }), 0, 'The gateway function failed invocations (crash, timeout, init failure)', once);
    alarm('AdminFunctionErrors', props.adminFunction.metricErrors({ period, statistic: 'Sum' }), 0, 'The admin function failed invocations (crash, timeout, init failure)', once);
    const inits = props.functionLogGroups.map((g, i) => logMetric(g, `InitFailureFilter${i}`, LOG_METRICS.initFailures, INIT_FAILURE_PATTERN));
    alarm('InitFailures', inits[0]!, 0, 'A function failed to start (INIT_REPORT Status: error): it emits no metrics of its own', once);
    alarm('LambdaThrottles', props.gatewayFunction.metricThrottles({ period, statistic: 'Sum' }), 0, 'The gateway function is being throttled (reserved concurrency or account limit)');
    alarm('Throttled429', logMetric(props.accessLogs, 'ThrottledFilter', LOG_METRICS.throttled429, THROTTLED_ACCESS_LOG_PATTERN), props.alarms.throttled429Per5Minutes, `More than ${props.alarms.throttled429Per5Minutes} requests per 5 minutes answered 429 (stage throttling or gateway limits)`);
    const undelivered = props.functionLogGroups.map((g, i) => logMetric(g, `UndeliveredFilter${i}`, LOG_METRICS.undeliveredLines, FilterPattern.literal(UNDELIVERED_FILTER_PATTERN)));
    alarm('LogRecordsUndelivered', undelivered[0]!, 0, 'Request records could not be sent to Firehose (they are in the function log, marker GATEWAY_LOG_UNDELIVERED)', once);
    alarm('LogDeliveryFailures', props.deliveryStream.metric('DeliveryToS3.Success', { period, statistic: 'Minimum' }), 1, 'Firehose failed to deliver request logs to S3', { op: ComparisonOperator.LESS_THAN_THRESHOLD });
    alarm('LogDeliveryFreshness', props.deliveryStream.metric('DeliveryToS3.DataFreshness', { period, statistic: 'Maximum' }), 900, 'Request logs are more than 15 minutes behind in S3');
    props.tables.forEach((t, i) => {
      const throttles = new MathExpression({
        expression: 'r + w',
        usingMetrics: { r: t.metric('ReadThrottleEvents', { period, statistic: 'Sum' }), w: t.metric('WriteThrottleEvents', { period, statistic: 'Sum' }) },
        period,
        label: 'throttle events',
      });
      alarm(`DynamoThrottles${i}`, throttles, 0, `DynamoDB throttled requests on ${t.node.id}`);
    });

    this.dashboard = new Dashboard(this, 'Dashboard', { dashboardName: props.dashboardName, defaultInterval: Duration.hours(6) });
    this.dashboard.addWidgets(
      new SingleValueWidget({ title: 'Requests (5 min)', metrics: [m(METRICS.requests, 'Sum')], width: 6 }),
      new SingleValueWidget({ title: 'Cost USD (5 min)', metrics: [m(METRICS.costUsd, 'Sum')], width: 6 }),
      new SingleValueWidget({ title: '5xx rate', metrics: [m(METRICS.errors5xx, 'Average')], width: 6 }),
      new SingleValueWidget({ title: 'Cache hits (5 min)', metrics: [m(METRICS.cacheHits, 'Sum')], width: 6 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Requests by model', left: [perModel(METRICS.requests, 'Sum', 'requests')], width: 12 }),
      new GraphWidget({ title: 'Errors', left: [m(METRICS.errors4xx, 'Sum', '4xx'), m(METRICS.errors5xx, 'Sum', '5xx'), m(METRICS.streamErrors, 'Sum', 'stream errors'), m(METRICS.upstreamErrors, 'Sum', 'upstream errors'), m(METRICS.upstreamThrottled, 'Sum', 'upstream 429')], width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Latency (ms)', left: [m(METRICS.latency, 'p50', 'p50'), m(METRICS.latency, 'p99', 'p99'), m(METRICS.ttfb, 'p50', 'first byte p50'), m(METRICS.ttfb, 'p99', 'first byte p99')], width: 12 }),
      new GraphWidget({ title: 'Tokens', left: [m(METRICS.inputTokens, 'Sum', 'input'), m(METRICS.outputTokens, 'Sum', 'output'), m(METRICS.cacheReadTokens, 'Sum', 'cache read')], width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Cost (USD) by model', left: [perModel(METRICS.costUsd, 'Sum', 'cost')], width: 12 }),
      new GraphWidget({ title: 'Fallbacks, limits, guardrails, cache', left: [m(METRICS.fallbacks, 'Sum', 'fallbacks'), m(METRICS.rateLimited, 'Sum', 'rate limited'), m(METRICS.guardrailBlocked, 'Sum', 'guardrail blocked'), m(METRICS.cacheHits, 'Sum', 'cache hits'), m(METRICS.clientClosed, 'Sum', 'client closed')], width: 12 }),
    );
    // Showback (docs/limits.md): spend, tokens and requests per team per UTC day, from the `Team` metric dimension.
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Cost (USD) by team, per day', left: [perTeam(METRICS.costUsd, 'cost')], width: 8, period: Duration.days(1) }),
      new GraphWidget({ title: 'Tokens by team, per day', left: [perTeam(METRICS.inputTokens, 'input'), perTeam(METRICS.outputTokens, 'output')], width: 8, period: Duration.days(1) }),
      new GraphWidget({ title: 'Requests by team, per day', left: [perTeam(METRICS.requests, 'requests')], width: 8, period: Duration.days(1) }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Lambda', left: [props.gatewayFunction.metricInvocations(), props.gatewayFunction.metricErrors(), props.gatewayFunction.metricThrottles()], right: [props.gatewayFunction.metricDuration({ statistic: 'p99' })], width: 12 }),
      new GraphWidget({ title: 'Log delivery', left: [props.deliveryStream.metric('DeliveryToS3.Success', { statistic: 'Average' }), new Metric({ namespace: LOG_METRIC_NAMESPACE, metricName: LOG_METRICS.undeliveredLines, statistic: 'Sum', label: 'undelivered records' })], right: [props.deliveryStream.metric('DeliveryToS3.DataFreshness', { statistic: 'Maximum' })], width: 12 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'API Gateway', left: [props.api.metricCount({ statistic: 'Sum' }), props.api.metricServerError({ statistic: 'Sum' }), new Metric({ namespace: LOG_METRIC_NAMESPACE, metricName: LOG_METRICS.throttled429, statistic: 'Sum', label: '429' })], right: [props.api.metricLatency({ statistic: 'p99' })], width: 12 }),
      new GraphWidget({ title: 'Admin function', left: [props.adminFunction.metricInvocations(), props.adminFunction.metricErrors(), new Metric({ namespace: LOG_METRIC_NAMESPACE, metricName: LOG_METRICS.initFailures, statistic: 'Sum', label: 'init failures (both)' })], width: 12 }),
    );
  }
}
