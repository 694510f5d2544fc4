import type { Budget, CounterTotals, Store, UsageDelta } from '../store/types.ts';
import { GatewayError } from '../http/errors.ts';
import { ZERO_TOTALS } from '../store/types.ts';
import { BLOCK_SECONDS, RateMeter } from './rate-limits.ts';

export type BudgetField = keyof Budget;
export type Period = 'd' | 'm';

export interface BudgetSubject {
  /** `key:<id>` or `team:<name>`. */
  subject: string;
  /** For messages: `key "name"` / `team "name"`. */
  label: string;
  budget: Budget;
}

export interface BudgetDenial {
  label: string;
  field: BudgetField;
  limit: number;
  spent: number;
  resetAt: number;
}

export interface BudgetStatus {
  remainingUsd?: number;
  remainingTokens?: number;
}

/** A request's worst case against budgets: micro-dollars and tokens. */
export interface BudgetNeed {
  microUsd: number;
  tokens: number;
}

interface BudgetPool {
  key: string;
  counterId: string;
  field: 'committedMicroUsd' | 'committedTokens';
  /** Leased by this instance and not reserved yet. */
  left: number;
  /** The committed total as last seen (a lower bound while this instance's blocks are unspent). */
  committed: number;
  inflight?: Promise<void>;
  /** Amounts reserved lately: sizes the blocks. */
  rate: RateMeter;
}

/** A reservation against one budget, settled after the response. */
export interface BudgetGrant {
  pool: BudgetPool;
  amount: number;
  /** From a locally held block (settled locally) or reserved on the counter itself (settled there). */
  fromBlock: boolean;
  expiresAt: number;
}

/** Most worst-case requests one block of budget is leased for. */
const BUDGET_BLOCK_REQUESTS = 50;

/** Every budget a key or team may have: its period and unit. */
export const BUDGET_FIELDS: { field: BudgetField; period: Period; unit: 'usd' | 'tokens' }[] = [
  { field: 'usdPerDay', period: 'd', unit: 'usd' },
  { field: 'usdPerMonth', period: 'm', unit: 'usd' },
  { field: 'tokensPerDay', period: 'd', unit: 'tokens' },
  { field: 'tokensPerMonth', period: 'm', unit: 'tokens' },
];

/** The last day's ids, kept: a request asks for them several times (a Date and an ISO string each). */
let memoDay = NaN;
let memoIds = { d: '', m: '' };

export function periodId(period: Period, now: number): string {
  const day = Math.floor(now / 86_400_000);
  if (day !== memoDay) {
    const iso = new Date(day * 86_400_000).toISOString();
    memoIds = { d: iso.slice(0, 10), m: iso.slice(0, 7) };
    memoDay = day;
  }
  return memoIds[period];
}

export function periodEnd(period: Period, now: number): number {
  const d = new Date(now);
  return period === 'd' ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

export function usageCounterId(subject: string, period: Period, now: number): string {
  return `use:${subject}:${period}:${periodId(period, now)}`;
}

/**
 * Budgets: spend per subject per UTC day and month, in usage counters that each response adds its
 * real tokens and cost to (after the response, off the hot path).
 *
 * Admission reserves each request's worst case (its prompt estimate plus its output allowance, at
 * the highest price among the targets that may serve it) against every budget, and settlement
 * replaces the reservation with the real cost. The reservations live in the counter's committed
 * fields (`committedMicroUsd`, `committedTokens`: settled spend + reservations in flight + unspent
 * blocks), which only grow past the budget by one request's reservation:
 *
 * - far from the budget, an instance leases a block of it (one conditional update: only if the
 *   committed total stays within the budget) and reserves from the block locally, with no round
 *   trip; a block is a tenth of the budget at most, and at most 50 worst-case requests;
 * - near the budget (no block fits any more), every request makes its own conditional update:
 *   "add my reservation if the committed total is still below the budget". So however many
 *   requests arrive at once, on however many instances, admitted reservations end at most one
 *   reservation past the budget; the last request admitted may overshoot by its own cost.
 *
 * A block that an instance does not spend (it stops, or the period ends) stays committed until the
 * period resets: near the budget a subject can be refused up to (instances - 1) x block early.
 * The instance also keeps a view of the spend, refreshed in the background when older than
 * `refreshMs`, for the remaining-budget headers and for refusing at once when it is spent.
 */
export class BudgetTracker {
  private readonly view = new Map<string, { totals: CounterTotals; at: number }>();
  private readonly refreshing = new Set<string>();
  /** Per counter and unit: committed budget leased and reserved by this instance. */
  private readonly pools = new Map<string, BudgetPool>();
  /** Per counter: the usage waiting for the write in flight to finish (see `add`). */
  private readonly writes = new Map<string, { open?: PendingWrite; running: boolean }>();

  /** Time-bounded batching (flushMs > 0): usage waiting for the next flush, per counter. */
  private readonly pending = new Map<string, { delta: UsageDelta; expiresAt: number; now: number }>();
  private pendingRecords = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> | undefined;

  /**
   * Called with a counter's totals each time a usage write lands (budget alerts); the write's
   * waiters (and so `flush()`) resolve after what it returns.
   */
  onTotals?: (counterId: string, totals: CounterTotals) => Promise<void> | undefined;

  /**
   * `flushMs` > 0 batches usage writes in time: a finished request's usage (and the settlement of
   * its reservations) is summed per counter in memory and written every `flushMs`, or at once when
   * `flushRecords` requests are waiting, and by `flush()` (shutdown, end of a Lambda invocation).
   * 0: each settlement is written at once (coalesced only while a write is in flight).
   */
  constructor(
    private readonly store: Store,
    private readonly refreshMs: number,
    private readonly onError?: (err: unknown) => void,
    private readonly flushMs = 0,
    private readonly flushRecords = 1000,
  ) {}

  /** Write every batched usage now; resolves when the writes have landed (failures go to onError and are kept for the next flush). */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const prior = this.flushing ?? Promise.resolve();
    if (!this.pending.size) return prior;
    const batch = [...this.pending];
    this.pending.clear();
    this.pendingRecords = 0;
    const run = Promise.all(
      batch.map(([id, b]) =>
        this.write(id, b.delta, b.expiresAt, b.now).catch((err) => {
          this.onError?.(err);
          // Kept for the next flush: usage is not dropped because one write failed.
          this.queue(id, b.delta, b.expiresAt, b.now);
        }),
      ),
    ).then(() => {});
    const done = Promise.all([prior, run]).then(() => {
      if (this.flushing === done) this.flushing = undefined;
    });
    this.flushing = done;
    return done;
  }

  /** `now`: the caller's clock when the usage was recorded (ages the spend view the write refreshes). */
  private queue(id: string, delta: UsageDelta, expiresAt: number, now: number): void {
    let b = this.pending.get(id);
    if (!b) {
      b = { delta: {}, expiresAt, now };
      this.pending.set(id, b);
    }
    b.now = Math.min(b.now, now);
    for (const k in delta) {
      const v = delta[k as keyof UsageDelta];
      if (v) b.delta[k as keyof UsageDelta] = (b.delta[k as keyof UsageDelta] ?? 0) + v;
    }
    b.expiresAt = Math.max(b.expiresAt, expiresAt);
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.flushMs);
      this.timer.unref?.();
    }
  }

  private set(id: string, totals: CounterTotals, at: number): void {
    const old = this.view.get(id);
    // Counters only grow: never let an older answer replace a newer one.
    if (old && old.totals.requests > totals.requests) {
      old.at = Math.max(old.at, at);
      return;
    }
    if (!old && this.view.size > 50_000) this.view.clear();
    this.view.set(id, { totals, at });
  }

  private idsFor(subjects: BudgetSubject[], now: number): string[] {
    const ids: string[] = [];
    for (const s of subjects) for (const f of BUDGET_FIELDS) if (s.budget[f.field] !== undefined) ids.push(usageCounterId(s.subject, f.period, now));
    return [...new Set(ids)];
  }

  /** The first budget that is spent, if any; reads counters the instance has never seen (cold). */
  async check(subjects: BudgetSubject[], now: number, background: (p: Promise<unknown>) => void): Promise<{ denial?: BudgetDenial; status: BudgetStatus }> {
    const ids = this.idsFor(subjects, now);
    if (!ids.length) return { status: {} };
    const missing = ids.filter((id) => !this.view.has(id));
    if (missing.length) {
      const got = await this.store.getCounters(missing);
      for (const id of missing) this.set(id, got.get(id) ?? ZERO_TOTALS, now);
    }
    const stale = ids.filter((id) => now - this.view.get(id)!.at > this.refreshMs && !this.refreshing.has(id));
    if (stale.length) {
      for (const id of stale) this.refreshing.add(id);
      background(
        this.store
          .getCounters(stale)
          .then((got) => {
            // Aged from when the read started (the caller's clock).
            for (const id of stale) this.set(id, got.get(id) ?? ZERO_TOTALS, now);
          })
          .catch((err) => this.onError?.(err))
          .finally(() => stale.forEach((id) => this.refreshing.delete(id))),
      );
    }
    let denial: BudgetDenial | undefined;
    const status: BudgetStatus = {};
    for (const s of subjects) {
      for (const f of BUDGET_FIELDS) {
        const limit = s.budget[f.field];
        if (limit === undefined) continue;
        const t = this.view.get(usageCounterId(s.subject, f.period, now))!.totals;
        const spent = f.unit === 'usd' ? t.microUsd / 1e6 : t.tokens;
        const remaining = Math.max(0, limit - spent);
        if (f.unit === 'usd') status.remainingUsd = Math.min(status.remainingUsd ?? Infinity, remaining);
        else status.remainingTokens = Math.min(status.remainingTokens ?? Infinity, remaining);
        if (!denial && spent >= limit) denial = { label: s.label, field: f.field, limit, spent, resetAt: periodEnd(f.period, now) };
      }
    }
    return { denial, status };
  }

  /**
   * Reserve a request's worst case against every budget of the subjects (see the class comment).
   * No round trip while the instance's blocks last; all budgets are asked in parallel otherwise.
   * On a refusal every reservation taken is given back and the denial names the budget.
   */
  /** `needOf` is only called when a subject has a budget (pricing the worst case is work most requests need not do). */
  async reserve(subjects: BudgetSubject[], needOf: () => BudgetNeed, now: number): Promise<{ grants: BudgetGrant[]; denial?: BudgetDenial }> {
    const asks: { s: BudgetSubject; f: (typeof BUDGET_FIELDS)[number]; limit: number }[] = [];
    for (const s of subjects) for (const f of BUDGET_FIELDS) if (s.budget[f.field] !== undefined) asks.push({ s, f, limit: s.budget[f.field]! });
    if (!asks.length) return { grants: [] };
    const need = needOf();
    const results = await Promise.allSettled(
      asks.map(({ s, f, limit }) => {
        const units = f.unit === 'usd' ? Math.round(limit * 1e6) : Math.floor(limit);
        const amount = Math.max(0, Math.ceil(f.unit === 'usd' ? need.microUsd : need.tokens));
        return this.take(usageCounterId(s.subject, f.period, now), f.unit === 'usd' ? 'committedMicroUsd' : 'committedTokens', units, amount, Math.floor(periodEnd(f.period, now) / 1000) + (f.period === 'd' ? 7 : 62) * 86_400, now);
      }),
    );
    const grants: BudgetGrant[] = [];
    let denial: BudgetDenial | undefined;
    let error: unknown;
    results.forEach((r, i) => {
      if (r.status === 'rejected') error ??= r.reason;
      else if (r.value.grant) grants.push(r.value.grant);
      else if (!denial) {
        const { s, f, limit } = asks[i]!;
        const committed = r.value.committed / (f.unit === 'usd' ? 1e6 : 1);
        denial = { label: s.label, field: f.field, limit, spent: committed, resetAt: periodEnd(f.period, now) };
      }
    });
    if (error || denial) {
      this.release(grants, now);
      if (error) throw error;
    }
    return { grants: denial ? [] : grants, denial };
  }

  private pool(counterId: string, field: BudgetPool['field']): BudgetPool {
    const key = `${counterId}|${field}`;
    let p = this.pools.get(key);
    if (!p) {
      if (this.pools.size > 50_000) this.pools.clear();
      const seen = this.view.get(counterId)?.totals;
      p = { key, counterId, field, left: 0, committed: seen ? seen[field] : 0, rate: new RateMeter() };
      this.pools.set(key, p);
    }
    return p;
  }

  /**
   * A block's size: worth BUDGET_BLOCK_REQUESTS worst-case requests, or about BLOCK_SECONDS of the
   * subject's recent reservations when busier; at most a tenth of the budget.
   */
  private blockSize(p: BudgetPool, limit: number, amount: number, now: number): number {
    return Math.min(Math.floor(limit / 10), Math.max(amount * BUDGET_BLOCK_REQUESTS, Math.ceil(p.rate.perSecond(now) * BLOCK_SECONDS)));
  }

  /** Lease a block (one conditional update: only if the committed total stays within the budget). */
  private leaseBlock(p: BudgetPool, limit: number, block: number, expiresAt: number): Promise<void> {
    const { counterId, field } = p;
    return this.store
      .reserve(counterId, { field, amount: block, atMost: limit - block, expiresAt })
      .then((r) => {
        if (r.ok) {
          p.left += block;
          p.committed = Math.max(p.committed, r.totals[field]);
          this.noteTotals(counterId, r.totals);
        } else p.committed = Math.max(p.committed, limit - block + 1);
      })
      .finally(() => (p.inflight = undefined));
  }

  private async take(counterId: string, field: BudgetPool['field'], limit: number, amount: number, expiresAt: number, now: number): Promise<{ grant?: BudgetGrant; committed: number }> {
    const p = this.pool(counterId, field);
    if (amount === 0) return { grant: undefined, committed: p.committed };
    for (;;) {
      if (p.left >= amount) {
        p.left -= amount;
        p.rate.hit(now, amount);
        // Half the block spent: lease the next one in the background, so no request waits on it.
        if (!p.inflight) {
          const block = this.blockSize(p, limit, amount, now);
          if (p.left * 2 < block && block >= 2 * amount && p.committed + block <= limit) {
            p.inflight = this.leaseBlock(p, limit, block, expiresAt).catch((err) => this.onError?.(err));
          }
        }
        return { grant: { pool: p, amount, fromBlock: true, expiresAt }, committed: p.committed };
      }
      if (p.inflight) {
        await p.inflight;
        continue;
      }
      // Far from the budget: lease a block (worth several requests), if one fits as far as this
      // instance knows; the conditional update has the last word.
      const block = this.blockSize(p, limit, amount, now);
      if (block >= 2 * amount && p.committed + block <= limit) {
        p.inflight = this.leaseBlock(p, limit, block, expiresAt);
        await p.inflight;
        continue;
      }
      // Near the budget: this request's own reservation, only while something remains.
      const r = await this.store.reserve(counterId, { field, amount, atMost: limit - 1, expiresAt });
      if (!r.ok) {
        p.committed = Math.max(p.committed, limit);
        return { committed: p.committed };
      }
      p.committed = r.totals[field];
      this.noteTotals(counterId, r.totals);
      return { grant: { pool: p, amount, fromBlock: false, expiresAt }, committed: p.committed };
    }
  }

  /** A counter's totals as a write returned them: the spend view learns from them too. */
  private noteTotals(counterId: string, totals: CounterTotals): void {
    const seen = this.view.get(counterId);
    if (seen && totals.requests >= seen.totals.requests) seen.totals = totals;
  }

  /** Give reservations back whole (the request did not go ahead). */
  release(grants: BudgetGrant[], now: number): void {
    for (const [id, d] of this.settlement(grants, { microUsd: 0, tokens: 0 })) void this.add(id, d.delta, d.expiresAt, now, true).catch((err) => this.onError?.(err));
  }

  /**
   * What settling reservations with the real cost writes to the counters (committed deltas per
   * counter); differences on local blocks are settled locally and write nothing.
   */
  settlement(grants: BudgetGrant[], actual: BudgetNeed): Map<string, { delta: UsageDelta; expiresAt: number }> {
    const out = new Map<string, { delta: UsageDelta; expiresAt: number }>();
    for (const g of grants) {
      const p = g.pool;
      const real = Math.max(0, Math.ceil(p.field === 'committedMicroUsd' ? actual.microUsd : actual.tokens));
      let delta = real - g.amount;
      const current = this.pools.get(p.key) === p;
      if (g.fromBlock) {
        if (delta <= 0) {
          if (current) p.left -= delta;
          continue;
        }
        // Cost beyond the reservation: from the block while it lasts, then onto the counter.
        const fromBlock = current ? Math.min(p.left, delta) : 0;
        p.left -= fromBlock;
        delta -= fromBlock;
      }
      if (!delta) continue;
      p.committed += delta;
      const e = out.get(p.counterId) ?? { delta: {}, expiresAt: g.expiresAt };
      e.delta[p.field] = (e.delta[p.field] ?? 0) + delta;
      out.set(p.counterId, e);
    }
    return out;
  }

  /** Remaining budget as this instance's view has it (no round trip; unseen counters are skipped). */
  peek(subjects: BudgetSubject[], now: number): BudgetStatus {
    const status: BudgetStatus = {};
    for (const s of subjects) {
      for (const f of BUDGET_FIELDS) {
        const limit = s.budget[f.field];
        const seen = limit === undefined ? undefined : this.view.get(usageCounterId(s.subject, f.period, now));
        if (limit === undefined || !seen) continue;
        const remaining = Math.max(0, limit - (f.unit === 'usd' ? seen.totals.microUsd / 1e6 : seen.totals.tokens));
        if (f.unit === 'usd') status.remainingUsd = Math.min(status.remainingUsd ?? Infinity, remaining);
        else status.remainingTokens = Math.min(status.remainingTokens ?? Infinity, remaining);
      }
    }
    return status;
  }

  /**
   * Add a finished request's usage to the subjects' day and month counters, with the settlement of
   * its budget reservations (`grants`) in the same writes.
   */
  async record(subjects: string[], delta: { inputTokens: number; outputTokens: number; cacheReadTokens: number; cacheWriteTokens: number; microUsd: number }, now: number, grants: BudgetGrant[] = []): Promise<void> {
    const tokens = delta.inputTokens + delta.outputTokens;
    const committed = this.settlement(grants, { microUsd: delta.microUsd, tokens });
    const writes: Promise<void>[] = [];
    for (const subject of subjects) {
      for (const period of ['d', 'm'] as const) {
        const id = usageCounterId(subject, period, now);
        // Kept a little past the window, for reading recent usage.
        const expiresAt = Math.floor(periodEnd(period, now) / 1000) + (period === 'd' ? 7 : 62) * 86_400;
        const extra = committed.get(id);
        committed.delete(id);
        // A reservation on the counter itself (near the budget) is released at once: others may wait on it.
        writes.push(this.add(id, { requests: 1, tokens, ...delta, ...extra?.delta }, expiresAt, now, !!extra));
      }
    }
    // Reservations taken in a period that has ended meanwhile settle on their own counters.
    for (const [id, d] of committed) writes.push(this.add(id, d.delta, d.expiresAt, now, true));
    if (this.flushMs > 0 && ++this.pendingRecords >= this.flushRecords) void this.flush();
    const results = await Promise.allSettled(writes);
    for (const r of results) if (r.status === 'rejected') this.onError?.(r.reason);
  }

  /**
   * Add usage to one counter. A write goes out at once when none is in flight for the counter;
   * usage that arrives meanwhile is summed and sent as one write when the current one returns. So a
   * busy instance makes at most one write per counter per round trip instead of one per request,
   * with no timer (a Lambda serving one request at a time writes at once). Resolves when the
   * write carrying this usage has landed.
   */
  private add(id: string, delta: UsageDelta, expiresAt: number, now: number, urgent = false): Promise<void> {
    if (this.flushMs > 0 && !urgent) {
      this.queue(id, delta, expiresAt, now);
      return Promise.resolve();
    }
    return this.write(id, delta, expiresAt, now);
  }

  private write(id: string, delta: UsageDelta, expiresAt: number, now: number): Promise<void> {
    let slot = this.writes.get(id);
    if (!slot) {
      slot = { running: false };
      this.writes.set(id, slot);
    }
    let batch = slot.open;
    if (!batch) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      batch = { delta: {}, expiresAt, done, resolve, reject };
      slot.open = batch;
    }
    for (const [k, v] of Object.entries(delta) as [keyof UsageDelta, number | undefined][]) if (v) batch.delta[k] = (batch.delta[k] ?? 0) + v;
    batch.expiresAt = Math.max(batch.expiresAt, expiresAt);
    if (!slot.running) void this.drain(id, slot, now);
    return batch.done;
  }

  private async drain(id: string, slot: { open?: PendingWrite; running: boolean }, now: number): Promise<void> {
    slot.running = true;
    for (let batch = slot.open; batch; batch = slot.open) {
      slot.open = undefined;
      try {
        const totals = await this.store.addUsage(id, batch.delta, batch.expiresAt);
        if (this.view.has(id)) this.set(id, totals, now);
        for (const field of ['committedMicroUsd', 'committedTokens'] as const) {
          const p = this.pools.get(`${id}|${field}`);
          if (p) p.committed = totals[field];
        }
        await this.onTotals?.(id, totals)?.catch((err) => this.onError?.(err));
        batch.resolve();
      } catch (err) {
        batch.reject(err);
      }
    }
    slot.running = false;
    this.writes.delete(id);
  }
}

interface PendingWrite {
  delta: UsageDelta;
  expiresAt: number;
  done: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

/** The refusal of a request whose budget is spent (429, or 402 when configured). */
export function budgetError(d: BudgetDenial, headers: Record<string, string>, now: number, status: 429 | 402): GatewayError {
  const period = d.field.endsWith('Day') ? 'daily' : 'monthly';
  const what = d.field.startsWith('usd') ? `USD budget of $${d.limit}` : `token budget of ${d.limit} tokens`;
  const resets = new Date(d.resetAt).toISOString();
  const retryAfter = Math.max(1, Math.ceil((d.resetAt - now) / 1000));
  return new GatewayError('rate_limit', `Budget exceeded: the ${period} ${what} of ${d.label} is spent; it resets at ${resets}.`, {
    status,
    code: 'budget_exceeded',
    headers: { ...headers, 'retry-after': String(retryAfter), 'x-should-retry': 'false' },
  });
}
