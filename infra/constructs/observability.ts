import { Duration, Stack } from 'aws-cdk-lib';
import type { RestApi } from 'aws-cdk-lib/aws-apigateway';
import { Alarm, ComparisonOperator, Dashboard, GraphWidget, MathExpression, Metric, SingleValueWidget, TreatMissingData, type IMetric } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { DeliveryStream } from 'aws-cdk-lib/aws-kinesisfirehose';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Key } from 'aws-cdk-lib/aws-kms';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { DeployConfig } from '../../shared/config/deploy.ts';
import { METRIC_DIMENSIONS, METRIC_NAMESPACE, METRICS } from '../../shared/telemetry/metrics.ts';

export interface ObservabilityProps {
  serviceName: string;
  alarms: DeployConfig['alarms'];
  gatewayFunction: IFunction;
  api: RestApi;
  deliveryStream: DeliveryStream;
  dashboardName: string;
}

/**
 * The gateway's dashboard and alarms, built on the metrics the code emits (names from
 * shared/telemetry/metrics.ts) plus Lambda, API Gateway and Firehose's own metrics. Alarms notify
 * an SNS topic (with an e-mail subscription when configured).
 */
export class Observability extends Construct {
  readonly dashboard: Dashboard;
  readonly topic: Topic;
  readonly topicKey: Key;
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const dims = { [METRIC_DIMENSIONS.service]: props.serviceName };
    const m = (metricName: string, statistic: string, label?: string): Metric =>
      new Metric({ namespace: METRIC_NAMESPACE, metricName, dimensionsMap: dims, statistic, period: Duration.minutes(5), label });
    const perModel = (metricName: string, statistic: string, label: string): IMetric =>
      new MathExpression({
        expression: `SEARCH('{${METRIC_NAMESPACE},${METRIC_DIMENSIONS.service},${METRIC_DIMENSIONS.model}} MetricName="${metricName}" ${METRIC_DIMENSIONS.service}="${props.serviceName}"', '${statistic}', 300)`,
        label,
        period: Duration.minutes(5),
      });

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
    const alarm = (name: string, metric: IMetric, threshold: number, description: string, op = ComparisonOperator.GREATER_THAN_THRESHOLD) => {
      const a = new Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        comparisonOperator: op,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(action);
      a.addOkAction(action);
      this.alarms.push(a);
      return a;
    };

    // Errors5xx is 1 for a failed request and 0 otherwise, so its average is the failure rate.
    alarm('ServerErrorRate', new MathExpression({ expression: 'rate * 100', usingMetrics: { rate: m(METRICS.errors5xx, 'Average') }, period: Duration.minutes(5), label: '5xx %' }), props.alarms.errorRatePercent, `More than ${props.alarms.errorRatePercent}% of requests answered 5xx`);
    alarm('P99Latency', m(METRICS.latency, 'p99'), props.alarms.p99LatencyMs, `p99 latency above ${props.alarms.p99LatencyMs} ms`);
    alarm('LambdaThrottles', props.gatewayFunction.metricThrottles({ period: Duration.minutes(5), statistic: 'Sum' }), 0, 'The gateway function is being throttled (reserved concurrency or account limit)');
    alarm('ApiThrottled', props.api.metricClientError({ period: Duration.minutes(5), statistic: 'Sum' }), 1000, 'Many 4xx at API Gateway (stage throttling or client errors)');
    alarm(
      'LogDeliveryFailures',
      props.deliveryStream.metric('DeliveryToS3.Success', { period: Duration.minutes(5), statistic: 'Minimum' }),
      1,
      'Firehose failed to deliver request logs to S3',
      ComparisonOperator.LESS_THAN_THRESHOLD,
    );
    alarm('LogDeliveryFreshness', props.deliveryStream.metric('DeliveryToS3.DataFreshness', { period: Duration.minutes(5), statistic: 'Maximum' }), 900, 'Request logs are more than 15 minutes behind in S3');

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
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Lambda', left: [props.gatewayFunction.metricInvocations(), props.gatewayFunction.metricErrors(), props.gatewayFunction.metricThrottles()], right: [props.gatewayFunction.metricDuration({ statistic: 'p99' })], width: 12 }),
      new GraphWidget({ title: 'Log delivery', left: [props.deliveryStream.metric('DeliveryToS3.Success', { statistic: 'Average' })], right: [props.deliveryStream.metric('DeliveryToS3.DataFreshness', { statistic: 'Maximum' })], width: 12 }),
    );
  }
}
