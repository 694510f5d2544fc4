import type { FrontDoor, Usage } from '../core/types.ts';

/** Version of the log record layout; bump on any change a reader must know about. */
export const LOG_SCHEMA_VERSION = 1;

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
  userAgent?: string;
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
  private readonly endHooks: Array<(r: RequestRecord) => void> = [];

  constructor(
    requestId: string,
    request: Request,
    path: string,
    private readonly emit: (r: RequestRecord) => void,
  ) {
    this.record = {
      schemaVersion: LOG_SCHEMA_VERSION,
      requestId,
      timestamp: new Date().toISOString(),
      method: request.method,
      path,
      status: 0,
      outcome: 'ok',
      latencyMs: 0,
      userAgent: request.headers.get('user-agent')?.slice(0, 256) ?? undefined,
    };
  }

  /** The first byte of the response body is on its way to the client. */
  firstByte(): void {
    if (this.record.ttfbMs === undefined) this.record.ttfbMs = round(performance.now() - this.t0);
  }

  usage(u: Usage): void {
    this.record.inputTokens = u.inputTokens;
    this.record.outputTokens = u.outputTokens;
    if (u.cacheReadTokens !== undefined) this.record.cacheReadTokens = u.cacheReadTokens;
    if (u.cacheWriteTokens !== undefined) this.record.cacheWriteTokens = u.cacheWriteTokens;
  }

  fail(outcome: Exclude<Outcome, 'ok'>, err: { kind?: string; code?: string | null; message: string; status?: number }): void {
    this.record.outcome = outcome;
    this.record.errorType = err.kind;
    this.record.errorCode = err.code ?? undefined;
    this.record.errorMessage = err.message.slice(0, 512);
  }

  /** Run `fn` when the request ends (after the client has its last byte), before the record is emitted. */
  onEnd(fn: (r: RequestRecord) => void): void {
    this.endHooks.push(fn);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  end(status?: number): void {
    if (this.ended) return;
    this.ended = true;
    if (status !== undefined) this.record.status = status;
    this.record.latencyMs = round(performance.now() - this.t0);
    for (const fn of this.endHooks) {
      try {
        fn(this.record);
      } catch {
        // a hook must never keep the record from being written
      }
    }
    this.emit(this.record);
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
