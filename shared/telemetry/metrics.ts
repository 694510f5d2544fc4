import type { LogSink, RequestRecord } from './record.ts';

/**
 * CloudWatch metrics, one Embedded Metric Format (EMF) blob per request, written to stdout at the
 * request's end (the blob Powertools Metrics wrote, built here directly: the library and its
 * commons were about 15 KiB of a cold start for one JSON line). The names below are used by this code AND by the
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

/** Unit of each metric, as written in the EMF blob (CloudWatch unit names). */
export type MetricUnitValue = 'Count' | 'Milliseconds' | 'None';
const Count = 'Count';

export const METRIC_UNITS: Record<MetricName, MetricUnitValue> = {
  Requests: Count,
  Errors4xx: Count,
  Errors5xx: Count,
  StreamErrors: Count,
  ClientClosed: Count,
  UpstreamErrors: Count,
  UpstreamThrottled: Count,
  Latency: 'Milliseconds',
  TimeToFirstByte: 'Milliseconds',
  InputTokens: Count,
  OutputTokens: Count,
  CacheReadTokens: Count,
  CostUsd: 'None',
  CacheHits: Count,
  Fallbacks: Count,
  RateLimited: Count,
  GuardrailBlocked: Count,
  LogRecordsUndelivered: Count,
};

/**
 * Dimension names. Every blob carries these dimension sets (each also has `service`):
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

const TRUTHY = new Set(['1', 'true', 'yes', 'on', 'y']);

/**
 * Off when POWERTOOLS_METRICS_DISABLED is true, or (when that is not set) in Powertools' dev mode
 * (POWERTOOLS_DEV), as Powertools Metrics decided.
 */
export function metricsDisabled(env: Record<string, string | undefined> = process.env): boolean {
  const v = env.POWERTOOLS_METRICS_DISABLED ?? env.POWERTOOLS_DEV ?? '';
  return TRUTHY.has(v.trim().toLowerCase());
}

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
  private readonly teams = new Set<string>();
  private readonly teamLimit: number;
  private readonly service: string;
  private readonly disabled: boolean;

  constructor(private readonly opts: EmfMetricsOptions = {}) {
    this.service = opts.serviceName ?? process.env.POWERTOOLS_SERVICE_NAME ?? METRIC_DEFAULT_SERVICE;
    this.teamLimit = opts.teamLimit ?? TEAM_DIMENSION_LIMIT;
    this.disabled = metricsDisabled();
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
    const model = record.model && (this.opts.isKnownModel?.(record.model) ?? false) ? record.model : UNKNOWN_MODEL;
    const provider = record.provider ?? record.attemptLog?.at(-1)?.provider ?? NO_PROVIDER;
    const team = record.team ? this.teamValue(record.team) : undefined;
    const sets = team ? METRIC_DIMENSION_SETS : METRIC_DIMENSION_SETS.filter((d) => !d.includes(METRIC_DIMENSIONS.team));
    this.publish(sets, { [METRIC_DIMENSIONS.model]: model, [METRIC_DIMENSIONS.provider]: provider, ...(team && { [METRIC_DIMENSIONS.team]: team }) }, metricValues(record), { requestId: record.requestId });
  }

  /** Count log records that could not be delivered (one blob, dimension set [service]). */
  undelivered(count: number): void {
    if (count <= 0) return;
    this.publish([[METRIC_DIMENSIONS.service]], {}, { [METRICS.logRecordsUndelivered]: count });
  }

  /** One EMF blob: the metrics' declaration under `_aws`, then dimension values, metric values and metadata as members. */
  private publish(dimensions: ReadonlyArray<readonly string[]>, values: Record<string, string>, metrics: Partial<Record<MetricName, number>>, metadata: Record<string, string> = {}): void {
    if (this.disabled) return;
    const names = Object.keys(metrics) as MetricName[];
    const blob = {
      _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: METRIC_NAMESPACE, Dimensions: dimensions, Metrics: names.map((Name) => ({ Name, Unit: METRIC_UNITS[Name] })) }] },
      [METRIC_DIMENSIONS.service]: this.service,
      ...values,
      ...metrics,
      ...metadata,
    };
    process.stdout.write(`${JSON.stringify(blob)}\n`);
  }
}
