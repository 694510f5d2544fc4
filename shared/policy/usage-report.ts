import type { ReportRow, Store } from '../store/types.ts';
import { periodId } from './budgets.ts';
import { joiner } from '../core/joiner.ts';

/**
 * The usage report's counters (issue #19, FinOps view): requests, tokens and spend per team (or per
 * key without a team) and model, per UTC day; a month is the sum of its days.
 *
 * Settled requests are summed in memory and written at most every REPORT_FLUSH_MS (or by `flush()`:
 * shutdown, the end of a Lambda invocation, before an admin report), as ONE update per day however
 * many teams and models were served: the day's item holds a number per subject, model and field
 * (shared/store/dynamodb.ts). So a busy instance adds one store call per few seconds, never one per
 * request. The item grows with the distinct team x model pairs served that day (about 1,000 fit in
 * DynamoDB's 400 KB item).
 */

/** Shortest interval between report writes when batching (the report is not read on the hot path). */
const REPORT_FLUSH_MS = 5000;

/** What a settled request adds, from its log record. */
export interface ReportedRequest {
  keyId?: string;
  team?: string;
  model?: string;
}

export type ReportUsage = Pick<ReportRow, 'inputTokens' | 'outputTokens' | 'cacheReadTokens' | 'cacheWriteTokens'>;

/** Days of usage kept in the store (a little over a year, for year-on-year chargeback). */
const KEEP_DAYS = 400;

const subjectName = joiner(':');
const rowId = joiner('|');

/** The subject a request's spend is reported under: its team, else its key. */
function reportSubject(r: ReportedRequest): string | undefined {
  return r.team ? subjectName('team', r.team) : r.keyId ? subjectName('key', r.keyId) : undefined;
}

export class UsageReport {
  /** Per day, per `subject|model`: usage waiting for the next write. */
  private pending = new Map<string, Map<string, ReportRow>>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly flushMs: number;

  /** `flushMs` 0 writes at the next turn of the event loop (tests); otherwise at least REPORT_FLUSH_MS. */
  constructor(
    private readonly store: Store,
    flushMs = 0,
    private readonly onError?: (err: unknown) => void,
  ) {
    this.flushMs = flushMs > 0 ? Math.max(flushMs, REPORT_FLUSH_MS) : 0;
  }

  /** Count a settled request (synchronous: no store call). */
  add(r: ReportedRequest, usage: ReportUsage, microUsd: number, now: number): void {
    const subject = reportSubject(r);
    if (!subject) return;
    this.merge(periodId('d', now), subject, (r.model ?? 'unknown').slice(0, 256), 1, usage, microUsd);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref?.();
    }
  }

  private merge(day: string, subject: string, model: string, requests: number, usage: ReportUsage, microUsd: number): void {
    let rows = this.pending.get(day);
    if (!rows) this.pending.set(day, (rows = new Map()));
    const id = rowId(subject, model);
    const cur = rows.get(id);
    if (!cur) {
      const { inputTokens, outputTokens, cacheReadTokens, cacheWriteTokens } = usage;
      rows.set(id, { subject, model, requests, inputTokens, outputTokens, cacheReadTokens, cacheWriteTokens, microUsd });
      return;
    }
    cur.requests += requests;
    cur.inputTokens += usage.inputTokens;
    cur.outputTokens += usage.outputTokens;
    cur.cacheReadTokens += usage.cacheReadTokens;
    cur.cacheWriteTokens += usage.cacheWriteTokens;
    cur.microUsd += microUsd;
  }

  /** Write everything counted so far; resolves when it has landed (a failed write is kept for the next flush). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = new Map();
    const writes = [...batch].map(([day, rows]) => {
      const expiresAt = Math.floor(Date.parse(`${day}T00:00:00Z`) / 1000) + KEEP_DAYS * 86_400;
      return this.store.addReportUsage(day, [...rows.values()], expiresAt).catch((err) => {
        this.onError?.(err);
        for (const row of rows.values()) this.merge(day, row.subject, row.model, row.requests, row, row.microUsd);
      });
    });
    this.flushing = Promise.all([this.flushing, ...writes]).then(() => {});
    return this.flushing;
  }
}
