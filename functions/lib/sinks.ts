import type { ShellLogger } from './lazy-logger.ts';
import type { GatewayConfig } from '../../shared/config/schema.ts';
import { FirehoseLogSink, type FirehoseSender } from '../../shared/telemetry/firehose-sink.ts';
import { EmfMetricsSink } from '../../shared/telemetry/metrics.ts';
import type { LogSink } from '../../shared/telemetry/record.ts';
import { LoggerSink } from './logger-sink.ts';

export interface LambdaSinkOptions {
  logger: Pick<ShellLogger, 'info'>;
  config: GatewayConfig;
  env: Record<string, string | undefined>;
  /** Tests hand a stubbed Firehose client; in AWS the sink makes its own. */
  firehoseClient?: FirehoseSender;
}

/**
 * The Lambda's log sinks: request records to the Firehose stream named by `LOG_STREAM_NAME` (set
 * by the stack), or as one structured log line each when it is not set; plus one EMF metrics blob
 * per request (Powertools Metrics: POWERTOOLS_METRICS_DISABLED=true turns it off).
 */
export function lambdaSinks(opts: LambdaSinkOptions): LogSink[] {
  const metrics = new EmfMetricsSink({
    serviceName: opts.env.POWERTOOLS_SERVICE_NAME,
    isKnownModel: (m) => Object.hasOwn(opts.config.models, m),
  });
  const stream = opts.env.LOG_STREAM_NAME;
  const records: LogSink = stream
    ? new FirehoseLogSink({ deliveryStreamName: stream, client: opts.firehoseClient, onUndelivered: (n) => metrics.undelivered(n) })
    : new LoggerSink(opts.logger);
  return [records, metrics];
}
