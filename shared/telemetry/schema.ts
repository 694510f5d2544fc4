/**
 * The one source of truth for the request log record's layout: the Glue table (infra), the docs
 * (`npm run docs:schema` -> docs/log-schema.md) and the tests are all built from LOG_COLUMNS.
 *
 * Names are exactly the JSON keys of a RequestRecord (camelCase); Athena's OpenX JSON SerDe matches
 * them case-insensitively. Types are Hive/Glue type strings.
 */

/** Version of the log record layout; bump on any change a reader must know about. */
export const LOG_SCHEMA_VERSION = 3;

/** What each version changed (newest first); rendered into docs/log-schema.md. */
export const LOG_SCHEMA_HISTORY: ReadonlyArray<{ version: number; change: string }> = [
  { version: 3, change: 'Added `sessionId`, the tracing columns (`traceId`, `xrayTraceId`) and the MCP columns (`mcp*`, `requestBytes`, `responseBytes`); `provider`/`upstreamModel` also name the last target tried when no target served. Added `cacheStatus`.' },
  { version: 2, change: 'Added `attempts`, `fallbacks`, `attemptLog`, `keyId`, `team`, `costUsd`, `cacheHit`, the rate-limit and guardrail columns, `metadata`/`metadataError` and the body columns.' },
  { version: 1, change: 'First layout (request, route, model, provider, status, error, timings, tokens, user agent).' },
];

export interface LogColumn {
  /** The record's JSON key. */
  name: string;
  /** Hive/Glue type: string | int | bigint | double | boolean | array<...> | struct<...> | map<...>. */
  glueType: string;
  description: string;
}

/** The Glue type of one `attemptLog` entry. */
export const ATTEMPT_LOG_GLUE_TYPE = 'array<struct<provider:string,model:string,status:int,errorCode:string,latencyMs:double>>';

export const LOG_COLUMNS: LogColumn[] = [
  { name: 'schemaVersion', glueType: 'int', description: 'Version of this layout (LOG_SCHEMA_VERSION).' },
  { name: 'requestId', glueType: 'string', description: 'The request id (the caller\'s `x-request-id` when valid, else a UUID); also sent back as `x-request-id`.' },
  { name: 'timestamp', glueType: 'string', description: 'When the request arrived, ISO 8601 UTC (e.g. `2025-01-31T12:34:56.789Z`). The `dt`/`hour` partitions are the delivery time, which can differ by a few seconds.' },
  { name: 'method', glueType: 'string', description: 'HTTP method.' },
  { name: 'path', glueType: 'string', description: 'Request path (the route), without query string.' },
  { name: 'frontDoor', glueType: 'string', description: 'The API format the caller spoke: `openai-chat`, `openai-responses`, `anthropic-messages`, ... Absent for non-model routes.' },
  { name: 'keyId', glueType: 'string', description: 'Id of the gateway key that authenticated the request (never the key itself).' },
  { name: 'team', glueType: 'string', description: 'Team the key belongs to.' },
  { name: 'authKind', glueType: 'string', description: 'How the caller was identified: `key` (gateway key), `oidc` (a JWT from a configured issuer) or `iam` (an AWS principal on /iam routes, SigV4 verified by API Gateway). Absent on routes without caller checks.' },
  { name: 'subject', glueType: 'string', description: 'OIDC and IAM callers: the token\'s subject (`sub`, or the configured claim) or the caller\'s IAM ARN. Never the token.' },
  { name: 'issuer', glueType: 'string', description: 'OIDC callers: the issuer (`iss`) of the verified token.' },
  { name: 'model', glueType: 'string', description: 'The model name (alias) the caller asked for.' },
  { name: 'provider', glueType: 'string', description: 'The provider that served the answer; on a failed request, the last one tried (absent when none was).' },
  { name: 'upstreamModel', glueType: 'string', description: 'The upstream model id that served the answer; on a failed request, the last one tried.' },
  { name: 'stream', glueType: 'boolean', description: 'Whether the caller asked for a streamed answer.' },
  { name: 'attempts', glueType: 'int', description: 'Upstream calls made for this request (retries and fallbacks included).' },
  { name: 'fallbacks', glueType: 'int', description: 'How many targets were given up on before the one that served.' },
  { name: 'attemptLog', glueType: ATTEMPT_LOG_GLUE_TYPE, description: 'One entry per upstream call, in order: provider, upstream model, HTTP status (0 when no response), error code, latency in ms.' },
  { name: 'status', glueType: 'int', description: 'HTTP status of the answer: the status sent to the caller, except 502 for an answer that failed after its start (the caller got a 200, then an error event in its format; `outcome` is `stream_error`) and 499 when the caller hung up (`client_closed`).' },
  { name: 'outcome', glueType: 'string', description: '`ok`, `error` (failed before the response started), `stream_error` (failed after the stream started) or `client_closed` (the caller hung up).' },
  { name: 'errorType', glueType: 'string', description: 'Error class: `invalid_request`, `authentication`, `permission`, `not_found`, `request_too_large`, `rate_limit`, `upstream`, `timeout`, `overloaded` or `internal`.' },
  { name: 'errorCode', glueType: 'string', description: 'Machine-readable error code, e.g. `model_not_found`.' },
  { name: 'errorMessage', glueType: 'string', description: 'Error message sent to the caller, at most 512 characters.' },
  { name: 'latencyMs', glueType: 'double', description: 'Time from the request\'s arrival to the last byte sent, in ms.' },
  { name: 'ttfbMs', glueType: 'double', description: 'Time from the request\'s arrival to the first byte of the response body, in ms.' },
  { name: 'inputTokens', glueType: 'int', description: 'Input (prompt) tokens, as the upstream reported them.' },
  { name: 'outputTokens', glueType: 'int', description: 'Output (completion) tokens.' },
  { name: 'cacheReadTokens', glueType: 'int', description: 'Input tokens read from the provider\'s prompt cache.' },
  { name: 'cacheWriteTokens', glueType: 'int', description: 'Input tokens written to the provider\'s prompt cache.' },
  { name: 'costUsd', glueType: 'double', description: 'Cost of the request in US dollars, from the configured prices.' },
  { name: 'cacheHit', glueType: 'boolean', description: 'Whether the gateway\'s response cache answered the request.' },
  { name: 'cacheStatus', glueType: 'string', description: 'What the response cache did: `hit`, `semantic_hit` (served from a similar prompt\'s answer), `miss` (looked up, not stored), `stored` (answer written), `too_large` (answer over `cache.maxItemBytes`, not stored), `bypass` (header, temperature or `n`), `error` (cache unreachable; served upstream). Absent when the cache does not apply.' },
  { name: 'rateLimit', glueType: 'string', description: 'Rate-limit outcome: `allowed` or `limited` (absent when no limit applies).' },
  { name: 'rateLimitReason', glueType: 'string', description: 'Which limit refused the request (e.g. `requests_per_minute`, `tokens_per_minute`, `budget`).' },
  { name: 'guardrail', glueType: 'string', description: 'Guardrail outcome: `passed`, `blocked` or `redacted` (absent when none applies).' },
  { name: 'guardrailReason', glueType: 'string', description: 'Which guardrail rule decided, when one did.' },
  { name: 'metadata', glueType: 'map<string,string>', description: 'Client tags from the `x-gateway-metadata` header (a JSON object of strings, at most 16 keys and 1 KiB).' },
  { name: 'metadataError', glueType: 'string', description: 'Why the `x-gateway-metadata` header was ignored, when it was (`too_large`, `invalid_json`, `not_an_object`, `too_many_keys`, `invalid_key`, `non_string_value`).' },
  { name: 'userAgent', glueType: 'string', description: 'The caller\'s User-Agent, at most 256 characters.' },
  { name: 'sessionId', glueType: 'string', description: 'Client session id from the `X-Claude-Code-Session-Id` header (Claude Code sends one per session), at most 128 characters.' },
  { name: 'agentId', glueType: 'string', description: 'Client agent id from the `X-Claude-Code-Agent-Id` header (Claude Code sends one per sub-agent), at most 128 characters.' },
  { name: 'requestBody', glueType: 'string', description: 'The request body (redacted, capped at `logging.bodies.maxBytes`), only when `logging.bodies.enabled`.' },
  { name: 'responseBody', glueType: 'string', description: 'The response text (redacted, capped), only when `logging.bodies.enabled`.' },
  { name: 'bodiesTruncated', glueType: 'boolean', description: 'Whether a logged body was cut at the size cap.' },
  { name: 'traceId', glueType: 'string', description: 'W3C trace id (32 hex digits): the caller\'s `traceparent` trace id when valid, else the X-Ray root\'s (in AWS), else new. Sent back in `traceparent` and forwarded to upstreams under child span ids.' },
  { name: 'xrayTraceId', glueType: 'string', description: 'The X-Ray trace id of the Lambda invocation (`1-xxxxxxxx-...`), in AWS with active tracing.' },
  { name: 'mcpServer', glueType: 'string', description: 'MCP routes: the configured server name (`/mcp/<server>`).' },
  { name: 'mcpMethod', glueType: 'string', description: 'MCP routes: the JSON-RPC method (`initialize`, `tools/list`, `tools/call`, ...); absent for GET/DELETE and response-only POSTs.' },
  { name: 'mcpTool', glueType: 'string', description: 'MCP routes: the tool name of a `tools/call`.' },
  { name: 'mcpErrorCode', glueType: 'int', description: 'MCP routes: the JSON-RPC error code answered for this request, when it was an error (from the gateway or the server).' },
  { name: 'requestBytes', glueType: 'bigint', description: 'Size of the request body in bytes (MCP routes).' },
  { name: 'responseBytes', glueType: 'bigint', description: 'Bytes of response body sent to the caller (MCP routes).' },
];

/** Partition keys, in order; values come from the Firehose delivery time (UTC). */
export const LOG_PARTITION_KEYS = [
  { name: 'dt', glueType: 'string' },
  { name: 'hour', glueType: 'string' },
] as const;

/** The S3 key prefix Firehose writes records under (Firehose's `!{timestamp:...}` namespace). */
export function logObjectPrefix(): string {
  return 'logs/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/';
}

/** Where Firehose puts records it could not deliver or transform. */
export function logErrorObjectPrefix(): string {
  return 'errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/';
}

/**
 * The same layout under a local folder: `dt=YYYY-MM-DD/hour=HH/` (UTC), from an ISO timestamp.
 * Used by the local file sink.
 */
export function localPartition(isoTimestamp: string): { dt: string; hour: string } {
  return { dt: isoTimestamp.slice(0, 10), hour: isoTimestamp.slice(11, 13) };
}

/**
 * Athena partition projection settings for the table (so no MSCK/crawler is needed). `dt` is a
 * date range starting at `startDate`, `hour` an integer 00..23.
 */
export function partitionProjection(bucketLocation: string, startDate = '2025-01-01'): Record<string, string> {
  const base = bucketLocation.endsWith('/') ? bucketLocation : `${bucketLocation}/`;
  return {
    'projection.enabled': 'true',
    'projection.dt.type': 'date',
    'projection.dt.format': 'yyyy-MM-dd',
    'projection.dt.range': `${startDate},NOW`,
    'projection.dt.interval': '1',
    'projection.dt.interval.unit': 'DAYS',
    'projection.hour.type': 'integer',
    'projection.hour.range': '0,23',
    'projection.hour.digits': '2',
    // The Firehose prefix with its timestamp placeholders turned into the projected partitions.
    'storage.location.template': `${base}${logObjectPrefix().replace('!{timestamp:yyyy-MM-dd}', '${dt}').replace('!{timestamp:HH}', '${hour}')}`,
  };
}
