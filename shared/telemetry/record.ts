import type { FrontDoor, Usage } from '../core/types.ts';
import { parseMetadataHeader, METADATA_HEADER } from './metadata.ts';
import { LOG_SCHEMA_VERSION } from './schema.ts';
import type { CacheStatus } from '../cache/index.ts';
import type { TraceContext } from '../tracing/context.ts';

/** Version of the log record layout: defined with the columns in schema.ts. */
export { LOG_SCHEMA_VERSION };

/** Claude Code names its session in this header; the record keeps it to group a session's calls. */
export const SESSION_HEADER = 'x-claude-code-session-id';
/** Claude Code names the sub-agent a call belongs to in this header. */
export const AGENT_HEADER = 'x-claude-code-agent-id';

export type Outcome = 'ok' | 'error' | 'stream_error' | 'client_closed';

/** One record per request, failures included. Never holds a key or a secret. */
export interface RequestRecord {
  schemaVersion: number;
  requestId: string;
  timestamp: string;
  method: string;
  path: string;
  frontDoor?: FrontDoor;
  model?: string;
  provider?: string;
  upstreamModel?: string;
  stream?: boolean;
  /** Upstream calls made for this request (retries and fallbacks included). */
  attempts?: number;
  /** How many targets were given up on before the one that served. */
  fallbacks?: number;
  /** One entry per upstream call, in order. */
  attemptLog?: Array<{ provider: string; model: string; status: number; errorCode?: string; latencyMs: number }>;
  status: number;
  outcome: Outcome;
  errorType?: string;
  errorCode?: string;
  errorMessage?: string;
  latencyMs: number;
  ttfbMs?: number;
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  /** US dollars, set by whoever prices the request. */
  costUsd?: number;
  /** Id of the gateway key that authenticated the request (never the key itself), and its team. */
  keyId?: string;
  team?: string;
  /** How the caller was identified: a gateway key, an OIDC token or an IAM caller (shared/auth); its subject and the token's issuer (never the token). */
  authKind?: 'key' | 'oidc' | 'iam';
  subject?: string;
  issuer?: string;
  /** The gateway's response cache answered. */
  cacheHit?: boolean;
  /** What the response cache did: hit, miss, stored, too_large, bypass or error (absent when it does not apply). */
  cacheStatus?: CacheStatus;
  /** Rate-limit outcome (absent when no limit applies) and which limit refused. */
  rateLimit?: 'allowed' | 'limited';
  rateLimitReason?: string;
  /** Guardrail outcome (absent when none applies) and which rule decided. */
  guardrail?: 'passed' | 'blocked' | 'redacted';
  guardrailReason?: string;
  /** Client tags from the `x-gateway-metadata` header (bounded; see telemetry/metadata.ts). */
  metadata?: Record<string, string>;
  /** Why the metadata header was ignored, when it was. */
  metadataError?: string;
  userAgent?: string;
  /** Client session id (`X-Claude-Code-Session-Id`), bounded. */
  sessionId?: string;
  /** Client agent id (`X-Claude-Code-Agent-Id`: Claude Code's sub-agents), bounded. */
  agentId?: string;
  /** Bodies, only when `logging.bodies.enabled` (redacted, capped). */
  requestBody?: string;
  responseBody?: string;
  bodiesTruncated?: boolean;
  /** W3C trace id of the request, and the Lambda invocation's X-Ray trace id (shared/tracing). */
  traceId?: string;
  xrayTraceId?: string;
  /** MCP routes (shared/mcp): server, JSON-RPC method, tool of a tools/call, JSON-RPC error code. */
  mcpServer?: string;
  mcpMethod?: string;
  mcpTool?: string;
  mcpErrorCode?: number;
  /** Body sizes in bytes (MCP routes). */
  requestBytes?: number;
  responseBytes?: number;
}

export interface LogSink {
  write(record: RequestRecord): void | Promise<void>;
  flush?(): Promise<void>;
}

/**
 * The bookkeeping for one request: timings, what served it, usage, and how it ended. `end()` emits
 * the record exactly once, however many paths try to end the request.
 */
export class RequestTrace {
  readonly record: RequestRecord;
  private readonly t0 = performance.now();
  private ended = false;
  private endHooks: Array<(r: RequestRecord) => void> | undefined;
  /**
   * Body logging hooks, set only when `logging.bodies.enabled` (see telemetry/bodies.ts): the
   * gateway hands the parsed request body, front doors hand the response text as they send it.
   * Call as `trace.captureResponse?.(text)`: free when body logging is off.
   */
  captureRequest?: (body: unknown) => void;
  captureResponse?: (chunk: string | Uint8Array) => void;
  /** The request's W3C trace context (shared/tracing), for upstream calls made on its behalf. */
  context?: TraceContext;

  constructor(
    requestId: string,
    request: Request,
    path: string,
    private readonly emit: (r: RequestRecord) => void,
  ) {
    const headers = request.headers;
    const metadata = headers.get(METADATA_HEADER);
    this.record = {
      schemaVersion: LOG_SCHEMA_VERSION,
      requestId,
      timestamp: isoNow(),
      method: request.method,
      path,
      status: 0,
      outcome: 'ok',
      latencyMs: 0,
      userAgent: headers.get('user-agent')?.slice(0, 256) ?? undefined,
      sessionId: headers.get(SESSION_HEADER)?.trim().slice(0, 128) || undefined,
      agentId: headers.get(AGENT_HEADER)?.trim().slice(0, 128) || undefined,
    };
    if (metadata !== null) Object.assign(this.record, parseMetadataHeader(metadata));
  }

  /** The first byte of the response body is on its way to the client. */
  firstByte(): void {
    if (this.ended) return;
    if (this.record.ttfbMs === undefined) this.record.ttfbMs = round(performance.now() - this.t0);
  }

  usage(u: Usage): void {
    if (this.ended) return;
    this.record.inputTokens = u.inputTokens;
    this.record.outputTokens = u.outputTokens;
    if (u.cacheReadTokens !== undefined) this.record.cacheReadTokens = u.cacheReadTokens;
    if (u.cacheWriteTokens !== undefined) this.record.cacheWriteTokens = u.cacheWriteTokens;
  }

  fail(outcome: Exclude<Outcome, 'ok'>, err: { kind?: string; code?: string | null; message: string; status?: number }): void {
    // The record is final once emitted: a late failure (e.g. the upstream read that a client's
    // hang-up cut short) must not rewrite what the sinks were given.
    if (this.ended) return;
    this.record.outcome = outcome;
    this.record.errorType = err.kind;
    this.record.errorCode = err.code ?? undefined;
    this.record.errorMessage = err.message.slice(0, 512);
  }

  /** Run `fn` when the request ends (after the client has its last byte), before the record is emitted. */
  onEnd(fn: (r: RequestRecord) => void): void {
    (this.endHooks ??= []).push(fn);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  end(status?: number): void {
    if (this.ended) return;
    this.ended = true;
    if (status !== undefined) this.record.status = status;
    // The status of what happened, as docs/log-schema.md defines it: a failure after the response
    // started is the upstream's 502 (the client saw a 200 and then an error event), a client that
    // hung up is 499, whatever status line had gone out.
    if (this.record.outcome === 'stream_error') this.record.status = 502;
    else if (this.record.outcome === 'client_closed') this.record.status = 499;
    this.record.latencyMs = round(performance.now() - this.t0);
    for (const fn of this.endHooks ?? []) {
      try {
        fn(this.record);
      } catch {
        // a hook must never keep the record from being written
      }
    }
    this.emit(this.record);
  }
}

/**
 * The current time as an ISO string (`YYYY-MM-DDTHH:MM:SS.mmmZ`). Requests in the same millisecond
 * share one; in a new millisecond of the same second only the milliseconds are appended to the
 * second's prefix (formatting a Date costs about 1 us).
 */
let isoMs = -1;
let iso = '';
let isoSecond = -1;
let isoPrefix = '';
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z`);
export function isoNow(ms = Date.now()): string {
  if (ms !== isoMs) {
    isoMs = ms;
    const second = Math.floor(ms / 1000);
    if (second !== isoSecond) {
      isoSecond = second;
      isoPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    iso = isoPrefix + MILLIS[ms - second * 1000];
  }
  return iso;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
