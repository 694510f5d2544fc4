import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { LogSink, RequestRecord } from './record.ts';

/**
 * CloudWatch metrics, one Embedded Metric Format (EMF) blob per request, written to stdout at the
 * request's end through Powertools Metrics. The names below are used by this code AND by the
 * dashboard and alarms in infra/: change them in one place only.
 */
export const METRIC_NAMESPACE = 'LlmGateway';

/** The `service` dimension's value when POWERTOOLS_SERVICE_NAME is not set. */
export const METRIC_DEFAULT_SERVICE = 'llm-gateway';

export const METRICS = {
  /** Count, 1 per request on the model routes (health and admin routes are not counted). */
  requests: 'Requests',
  /** Count, 1 when the caller got a 4xx (0 otherwise: Average = rate). */
  errors4xx: 'Errors4xx',
  /** Count, 1 when the caller got a 5xx (0 otherwise: Average = rate). */
  errors5xx: 'Errors5xx',
  /** Count, 1 when a stream that had started with 200 ended with an error event. */
  streamErrors: 'StreamErrors',
  /** Count, 1 when the caller hung up before the end. */
  clientClosed: 'ClientClosed',
  /** Count of upstream calls that failed (retried, fallen back from, or final). */
  upstreamErrors: 'UpstreamErrors',
  /** Count of upstream calls answered 429 (provider throttling). */
  upstreamThrottled: 'UpstreamThrottled',
  /** Milliseconds, arrival to last byte. */
  latency: 'Latency',
  /** Milliseconds, arrival to first body byte (only when a body started). */
  ttfb: 'TimeToFirstByte',
  /** Count of tokens. */
  inputTokens: 'InputTokens',
  outputTokens: 'OutputTokens',
  cacheReadTokens: 'CacheReadTokens',
  /** US dollars (unit None), only when the request was priced. */
  costUsd: 'CostUsd',
  /** Count, 1 when the gateway's response cache answered. */
  cacheHits: 'CacheHits',
  /** Count of targets given up on before the one that served. */
  fallbacks: 'Fallbacks',
  /** Count, 1 when a rate limit or budget refused the request. */
  rateLimited: 'RateLimited',
  /** Count, 1 when a guardrail blocked the request. */
  guardrailBlocked: 'GuardrailBlocked',
  /** Count of log records the Firehose sink could not deliver (written to the function log instead); dimension set [service] only. */
  logRecordsUndelivered: 'LogRecordsUndelivered',
} as const;

export type MetricName = (typeof METRICS)[keyof typeof METRICS];

/** Unit of each metric, as written in the EMF blob. */
export type MetricUnitValue = (typeof MetricUnit)[keyof typeof MetricUnit];

export const METRIC_UNITS: Record<MetricName, MetricUnitValue> = {
  Requests: MetricUnit.Count,
  Errors4xx: MetricUnit.Count,
  Errors5xx: MetricUnit.Count,
  StreamErrors: MetricUnit.Count,
  ClientClosed: MetricUnit.Count,
  UpstreamErrors: MetricUnit.Count,
  UpstreamThrottled: MetricUnit.Count,
  Latency: MetricUnit.Milliseconds,
  TimeToFirstByte: MetricUnit.Milliseconds,
  InputTokens: MetricUnit.Count,
  OutputTokens: MetricUnit.Count,
  CacheReadTokens: MetricUnit.Count,
  CostUsd: MetricUnit.NoUnit,
  CacheHits: MetricUnit.Count,
  Fallbacks: MetricUnit.Count,
  RateLimited: MetricUnit.Count,
  GuardrailBlocked: MetricUnit.Count,
  LogRecordsUndelivered: MetricUnit.Count,
};

/**
 * Dimension names. Every blob carries these dimension sets (each also has `service`, which
 * Powertools adds to every set):
 * - `[service]`: gateway-wide totals (what the alarms watch)
 * - `[service, Model]`: per configured model alias (`unknown` for names not configured)
 * - `[service, Provider]`: per provider that served (`none` when no upstream was reached)
 * - `[service, Model, Provider]`
 * - `[service, Team]`: only when the request has a team; bounded per instance (see TEAM_DIMENSION_LIMIT)
 */
export const METRIC_DIMENSIONS = {
  service: 'service',
  model: 'Model',
  provider: 'Provider',
  team: 'Team',
} as const;

/** The dimension sets each blob declares, by dimension name (service included). */
export const METRIC_DIMENSION_SETS: ReadonlyArray<readonly string[]> = [
  [METRIC_DIMENSIONS.service],
  [METRIC_DIMENSIONS.service, METRIC_DIMENSIONS.model],
  [METRIC_DIMENSIONS.service, METRIC_DIMENSIONS.provider],
  [METRIC_DIMENSIONS.service, METRIC_DIMENSIONS.model, METRIC_DIMENSIONS.provider],
  [METRIC_DIMENSIONS.service, METRIC_DIMENSIONS.team],
];

/** How many distinct teams one instance gives their own `Team` value; later ones are `other`. */
export const TEAM_DIMENSION_LIMIT = 25;
export const OTHER_TEAM = 'other';
export const UNKNOWN_MODEL = 'unknown';
export const NO_PROVIDER = 'none';

/** The metric values of one request, by metric name (absent: not emitted). */
export function metricValues(r: RequestRecord): Partial<Record<MetricName, number>> {
  const attempts = r.attemptLog ?? [];
  const v: Partial<Record<MetricName, number>> = {
    Requests: 1,
    Errors4xx: r.status >= 400 && r.status < 500 ? 1 : 0,
    Errors5xx: r.status >= 500 ? 1 : 0,
    StreamErrors: r.outcome === 'stream_error' ? 1 : 0,
    ClientClosed: r.outcome === 'client_closed' ? 1 : 0,
    UpstreamErrors: attempts.filter((a) => a.status < 200 || a.status >= 300).length,
    UpstreamThrottled: attempts.filter((a) => a.status === 429).length,
    Latency: r.latencyMs,
    CacheHits: r.cacheHit ? 1 : 0,
    Fallbacks: r.fallbacks ?? 0,
    RateLimited: r.rateLimit === 'limited' ? 1 : 0,
    GuardrailBlocked: r.guardrail === 'blocked' ? 1 : 0,
  };
  if (r.ttfbMs !== undefined) v.TimeToFirstByte = r.ttfbMs;
  if (r.inputTokens !== undefined) v.InputTokens = r.inputTokens;
  if (r.outputTokens !== undefined) v.OutputTokens = r.outputTokens;
  if (r.cacheReadTokens !== undefined) v.CacheReadTokens = r.cacheReadTokens;
  if (r.costUsd !== undefined) v.CostUsd = r.costUsd;
  return v;
}

/** Whether a request counts in the metrics: the model API, not health checks or the admin API. */
export function isMetered(r: RequestRecord): boolean {
  const p = r.path;
  return !(p === '/' || p === '/health' || p === '/favicon.ico' || p.startsWith('/admin'));
}

/**
 * Powertools warns when two dimension sets share a key ("EMF key "Model" is defined as both a
 * dimension set and dimension set"): ours overlap on purpose and always with the same value, so
 * that warning would be noise on every request. Everything else it says goes to the console.
 */
const QUIET_OVERLAP_LOGGER = {
  debug: (...a: unknown[]) => console.debug(...a),
  info: (...a: unknown[]) => console.info(...a),
  warn: (...a: unknown[]) => {
    if (typeof a[0] === 'string' && /defined as both a dimension set and dimension set/.test(a[0])) return;
    console.warn(...a);
  },
  error: (...a: unknown[]) => console.error(...a),
};

export interface EmfMetricsOptions {
  /** `service` dimension; default POWERTOOLS_SERVICE_NAME or METRIC_DEFAULT_SERVICE. */
  serviceName?: string;
  /** Model names allowed as a `Model` value (the configured aliases); others become `unknown`. */
  isKnownModel?: (model: string) => boolean;
  teamLimit?: number;
}

/**
 * A LogSink that turns each request record into one EMF blob on stdout (CloudWatch Logs extracts
 * the metrics asynchronously). For Lambda only: locally the gateway simply does not add it.
 */
export class EmfMetricsSink implements LogSink {
  private readonly metrics: Metrics;
  private readonly teams = new Set<string>();
  private readonly teamLimit: number;

  constructor(private readonly opts: EmfMetricsOptions = {}) {
    this.metrics = new Metrics({
      namespace: METRIC_NAMESPACE,
      serviceName: opts.serviceName ?? process.env.POWERTOOLS_SERVICE_NAME ?? METRIC_DEFAULT_SERVICE,
      logger: QUIET_OVERLAP_LOGGER,
    });
    this.teamLimit = opts.teamLimit ?? TEAM_DIMENSION_LIMIT;
  }

  /** The `Team` value for a team: its own name for the first N teams seen here, else `other`. */
  teamValue(team: string): string {
    if (this.teams.has(team)) return team;
    if (this.teams.size < this.teamLimit) {
      this.teams.add(team);
      return team;
    }
    return OTHER_TEAM;
  }

  write(record: RequestRecord): void {
    if (!isMetered(record)) return;
    const m = this.metrics;
    // Everything from here to publish is synchronous: no other request's metrics can interleave.
    const model = record.model && (this.opts.isKnownModel?.(record.model) ?? false) ? record.model : UNKNOWN_MODEL;
    const provider = record.provider ?? record.attemptLog?.at(-1)?.provider ?? NO_PROVIDER;
    m.addDimensions({});
    m.addDimensions({ [METRIC_DIMENSIONS.model]: model });
    m.addDimensions({ [METRIC_DIMENSIONS.provider]: provider });
    m.addDimensions({ [METRIC_DIMENSIONS.model]: model, [METRIC_DIMENSIONS.provider]: provider });
    if (record.team) m.addDimensions({ [METRIC_DIMENSIONS.team]: this.teamValue(record.team) });
    for (const [name, value] of Object.entries(metricValues(record)) as Array<[MetricName, number]>) {
      m.addMetric(name, METRIC_UNITS[name], value);
    }
    m.addMetadata('requestId', record.requestId);
    m.publishStoredMetrics();
  }

  /** Count log records that could not be delivered (one blob, dimension set [service]). */
  undelivered(count: number): void {
    if (count <= 0) return;
    this.metrics.addMetric(METRICS.logRecordsUndelivered, METRIC_UNITS.LogRecordsUndelivered, count);
    this.metrics.publishStoredMetrics();
  }
}
