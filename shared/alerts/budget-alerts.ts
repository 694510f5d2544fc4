import { BUDGET_FIELDS, periodEnd, periodId, usageCounterId, type BudgetSubject, type Period } from '../policy/budgets.ts';
import type { CounterTotals, Store } from '../store/types.ts';
import type { BudgetAlert, Notifier } from './notifiers.ts';

interface Watched {
  s: BudgetSubject;
  period: Period;
  periodId: string;
  end: number;
}

/**
 * Budget alerts: when a usage write returns a counter's new totals (after the response, with usage
 * settlement), every configured threshold the spend has reached is claimed in the store with a
 * conditional put (`alert:<subject>:<budget>:<period>:<percent>`, deleted by TTL after the period)
 * and only the claim's winner notifies: one notification per subject, budget, period and threshold
 * across all instances. The in-memory set only saves repeated claims on this instance. A claim
 * whose notification then fails is not retried (at most once, never a storm).
 */
export class BudgetAlerts {
  /** Per usage counter: whose budgets it counts (learnt when requests settle). */
  private readonly watched = new Map<string, Watched>();
  private readonly claimed = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly thresholds: readonly number[],
    private readonly notifiers: readonly Notifier[],
    private readonly onError?: (err: unknown) => void,
  ) {}

  /** Note the counters of subjects' budgets, so their totals are checked when written (a counter already watched as is stays). */
  watch(subjects: BudgetSubject[], now: number): void {
    if (!this.thresholds.length) return;
    for (const s of subjects) {
      for (const period of ['d', 'm'] as const) {
        if (!hasBudget(s, period)) continue;
        // The counter id names the subject, period and period id: the same subject object under it is watched as is.
        const id = usageCounterId(s.subject, period, now);
        if (this.watched.get(id)?.s === s) continue;
        if (this.watched.size > 50_000) this.watched.clear();
        this.watched.set(id, { s, period, periodId: periodId(period, now), end: periodEnd(period, now) });
      }
    }
  }

  /** A counter's totals as a write returned them: claim and send the thresholds newly reached. */
  observe(counterId: string, totals: CounterTotals): Promise<void> | undefined {
    const w = this.watched.get(counterId);
    if (!w) return undefined;
    const sends: Promise<void>[] = [];
    for (const f of BUDGET_FIELDS) {
      const limit = w.s.budget[f.field];
      if (f.period !== w.period || !limit) continue;
      const spent = f.unit === 'usd' ? totals.microUsd / 1e6 : totals.tokens;
      for (const percent of this.thresholds) {
        if (spent < (limit * percent) / 100) break;
        const id = `alert:${w.s.subject}:${f.field}:${w.periodId}:${percent}`;
        if (this.claimed.has(id)) continue;
        if (this.claimed.size > 50_000) this.claimed.clear();
        this.claimed.add(id);
        const alert: BudgetAlert = { subject: w.s.subject, who: w.s.label, budget: f.field, thresholdPercent: percent, spent, limit, unit: f.unit, period: w.periodId, periodEnd: new Date(w.end).toISOString() };
        sends.push(this.send(id, alert, Math.floor(w.end / 1000) + 86_400));
      }
    }
    return sends.length ? Promise.all(sends).then(() => {}) : undefined;
  }

  private async send(id: string, alert: BudgetAlert, expiresAt: number): Promise<void> {
    let won: boolean;
    try {
      won = await this.store.claim(id, expiresAt);
    } catch (err) {
      // Not claimed: the next write of the counter tries again.
      this.claimed.delete(id);
      this.onError?.(err);
      return;
    }
    if (!won) return;
    const sent = await Promise.allSettled(this.notifiers.map((n) => n.notify(alert)));
    for (const r of sent) if (r.status === 'rejected') this.onError?.(r.reason);
  }
}

function hasBudget(s: BudgetSubject, period: Period): boolean {
  for (const f of BUDGET_FIELDS) if (f.period === period && s.budget[f.field] !== undefined) return true;
  return false;
}
