import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMetered } from './metrics.ts';
import type { RequestRecord } from './record.ts';

/**
 * Summaries of request log records (what `GET /admin/stats` serves locally): totals, per model and
 * per hour. Health checks and admin calls are left out, as in the metrics.
 */

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface Summary {
  requests: number;
  ok: number;
  errors: { '4xx': number; '5xx': number; streamError: number; clientClosed: number };
  /** Errors by `errorType` (e.g. invalid_request, upstream, rate_limited). */
  errorTypes: Record<string, number>;
  latencyMs: Percentiles;
  ttfbMs: Percentiles;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  costUsd: number;
  cacheHits: number;
  fallbacks: number;
  rateLimited: number;
  guardrailBlocked: number;
}

export interface Stats {
  from: string;
  to: string;
  generatedAt: string;
  totals: Summary;
  byModel: Array<{ model: string } & Summary>;
  /** One entry per hour in [from, to), oldest first, empty hours included. */
  byHour: Array<{ hour: string } & Summary>;
}

class Acc {
  private readonly latencies: number[] = [];
  private readonly ttfbs: number[] = [];
  private readonly s: Omit<Summary, 'latencyMs' | 'ttfbMs'> = {
    requests: 0,
    ok: 0,
    errors: { '4xx': 0, '5xx': 0, streamError: 0, clientClosed: 0 },
    errorTypes: {},
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    costUsd: 0,
    cacheHits: 0,
    fallbacks: 0,
    rateLimited: 0,
    guardrailBlocked: 0,
  };

  add(r: RequestRecord): void {
    const s = this.s;
    s.requests++;
    if (r.outcome === 'ok' && r.status < 400) s.ok++;
    if (r.status >= 400 && r.status < 500) s.errors['4xx']++;
    if (r.status >= 500) s.errors['5xx']++;
    if (r.outcome === 'stream_error') s.errors.streamError++;
    if (r.outcome === 'client_closed') s.errors.clientClosed++;
    if (r.errorType) s.errorTypes[r.errorType] = (s.errorTypes[r.errorType] ?? 0) + 1;
    if (typeof r.latencyMs === 'number') this.latencies.push(r.latencyMs);
    if (typeof r.ttfbMs === 'number') this.ttfbs.push(r.ttfbMs);
    s.inputTokens += r.inputTokens ?? 0;
    s.outputTokens += r.outputTokens ?? 0;
    s.cacheReadTokens += r.cacheReadTokens ?? 0;
    s.costUsd += r.costUsd ?? 0;
    if (r.cacheHit) s.cacheHits++;
    s.fallbacks += r.fallbacks ?? 0;
    if (r.rateLimit === 'limited') s.rateLimited++;
    if (r.guardrail === 'blocked') s.guardrailBlocked++;
  }

  summary(): Summary {
    return { ...this.s, costUsd: Math.round(this.s.costUsd * 1e6) / 1e6, latencyMs: percentiles(this.latencies), ttfbMs: percentiles(this.ttfbs) };
  }
}

/** Nearest-rank percentiles (null when there is no sample). */
export function percentiles(values: number[]): Percentiles {
  if (!values.length) return { p50: null, p95: null, p99: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: at(50), p95: at(95), p99: at(99) };
}

const HOUR = 3_600_000;

function hourStart(ms: number): number {
  return Math.floor(ms / HOUR) * HOUR;
}

/** Summarise the records whose timestamp lies in [from, to). */
export function summarize(records: Iterable<RequestRecord>, from: Date, to: Date): Stats {
  const f = from.getTime();
  const t = to.getTime();
  const totals = new Acc();
  const models = new Map<string, Acc>();
  const hours = new Map<number, Acc>();
  for (let h = hourStart(f); h < t; h += HOUR) hours.set(h, new Acc());
  for (const r of records) {
    if (!isMetered(r)) continue;
    const ts = Date.parse(r.timestamp);
    if (!(ts >= f && ts < t)) continue;
    totals.add(r);
    const model = r.model ?? '(none)';
    let m = models.get(model);
    if (!m) models.set(model, (m = new Acc()));
    m.add(r);
    hours.get(hourStart(ts))?.add(r);
  }
  return {
    from: from.toISOString(),
    to: to.toISOString(),
    generatedAt: new Date().toISOString(),
    totals: totals.summary(),
    byModel: [...models].map(([model, a]) => ({ model, ...a.summary() })).sort((a, b) => b.requests - a.requests || a.model.localeCompare(b.model)),
    byHour: [...hours].sort((a, b) => a[0] - b[0]).map(([h, a]) => ({ hour: new Date(h).toISOString(), ...a.summary() })),
  };
}

/**
 * Read the records of the hours that overlap [from, to) from a local log folder laid out as
 * `dt=YYYY-MM-DD/hour=HH/*.ndjson`. Lines that are not JSON objects are skipped.
 */
export async function readLocalRecords(dir: string, from: Date, to: Date): Promise<RequestRecord[]> {
  const out: RequestRecord[] = [];
  const wanted = new Set<string>();
  for (let h = hourStart(from.getTime()); h < to.getTime(); h += HOUR) {
    const iso = new Date(h).toISOString();
    wanted.add(join(`dt=${iso.slice(0, 10)}`, `hour=${iso.slice(11, 13)}`));
  }
  let days: string[];
  try {
    days = (await readdir(dir)).filter((d) => /^dt=\d{4}-\d{2}-\d{2}$/.test(d));
  } catch {
    return out;
  }
  for (const day of days) {
    let hourDirs: string[];
    try {
      hourDirs = (await readdir(join(dir, day))).filter((h) => /^hour=\d{2}$/.test(h));
    } catch {
      continue;
    }
    for (const hour of hourDirs) {
      if (!wanted.has(join(day, hour))) continue;
      const files = (await readdir(join(dir, day, hour)).catch(() => [] as string[])).filter((f) => f.endsWith('.ndjson'));
      for (const file of files) {
        const text = await readFile(join(dir, day, hour, file), 'utf8').catch(() => '');
        for (const line of text.split('\n')) {
          if (!line) continue;
          try {
            const r = JSON.parse(line) as RequestRecord;
            if (r && typeof r === 'object' && typeof r.timestamp === 'string') out.push(r);
          } catch {
            // a torn last line (a write in progress): skip it
          }
        }
      }
    }
  }
  return out;
}

/** Parse `?hours=N` or `?from=...&to=...` (ISO) into a window; default: the last 24 hours. */
export function statsWindow(params: URLSearchParams, now = Date.now()): { from: Date; to: Date } | { error: string; param: string } {
  const toParam = params.get('to');
  const fromParam = params.get('from');
  const hoursParam = params.get('hours');
  const to = toParam ? new Date(toParam) : new Date(now);
  if (Number.isNaN(to.getTime())) return { error: "'to' must be an ISO 8601 date-time.", param: 'to' };
  let from: Date;
  if (fromParam) {
    from = new Date(fromParam);
    if (Number.isNaN(from.getTime())) return { error: "'from' must be an ISO 8601 date-time.", param: 'from' };
  } else {
    const hours = hoursParam ? Number(hoursParam) : 24;
    if (!Number.isInteger(hours) || hours < 1 || hours > 24 * 31) return { error: "'hours' must be an integer from 1 to 744.", param: 'hours' };
    from = new Date(to.getTime() - hours * HOUR);
  }
  if (from.getTime() >= to.getTime()) return { error: "'from' must be before 'to'.", param: 'from' };
  if (to.getTime() - from.getTime() > 24 * 31 * HOUR) return { error: 'The window is at most 31 days.', param: 'from' };
  return { from, to };
}
