import type { Budget, CounterTotals, Store, UsageDelta } from '../store/types.ts';
import { GatewayError } from '../http/errors.ts';
import { ZERO_TOTALS } from '../store/types.ts';
import { BLOCK_SECONDS, RateMeter } from './rate-limits.ts';

export type BudgetField = keyof Budget;
export type Period = 'd' | 'm';
const PERIODS: readonly Period[] = ['d', 'm'];

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

/** A usage counter's pools, one per committed field. */
type PoolsOf = { [F in BudgetPool['field']]?: BudgetPool };

/** A reservation against one budget, settled after the response. */
export interface BudgetGrant {
  pool: BudgetPool;
  amount: number;
  /** From a locally held block (settled locally) or reserved on the counter itself (settled there). */
  fromBlock: boolean;
  expiresAt: number;
}

/** Where a request's subjects stand against their budgets: the first spent one, and what remains. */
export interface BudgetCheck {
  denial?: BudgetDenial;
  status: BudgetStatus;
}

/** A request's reservations against every budget (none when one refused it). */
export interface Reservation {
  grants: BudgetGrant[];
  denial?: BudgetDenial;
}

/** One budget's answer to a reservation: the grant, or none and the committed total that refused it. */
interface Taken {
  grant?: BudgetGrant;
  committed: number;
}

/**
 * Settled requests waiting in a batch that write it before its interval is up. High enough that a
 * busy instance writes on the interval (a count of 1000 made 2 writes every 0.2 s at 5,000 req/s,
 * each an SDK call of about a millisecond on the event loop), low enough to bound a batch.
 */
const FLUSH_RECORDS = 20_000;

/** Most worst-case requests one block of budget is leased for. */
const BUDGET_BLOCK_REQUESTS = 50;

/** Every budget a key or team may have: its period and unit. */
export const BUDGET_FIELDS: { field: BudgetField; period: Period; unit: 'usd' | 'tokens' }[] = [
  { field: 'usdPerDay', period: 'd', unit: 'usd' },
  { field: 'usdPerMonth', period: 'm', unit: 'usd' },
  { field: 'tokensPerDay', period: 'd', unit: 'tokens' },
  { field: 'tokensPerMonth', period: 'm', unit: 'tokens' },
];

type BudgetFieldSpec = (typeof BUDGET_FIELDS)[number];

/** One budget a request is checked and reserved against: made once per subjects list (see `BudgetTracker.plan`). */
interface Ask {
  s: BudgetSubject;
  f: BudgetFieldSpec;
  limit: number;
  /** The limit in the counter's units (micro-dollars or tokens). */
  units: number;
  field: BudgetPool['field'];
}

/** A subjects list's budgets and, for the day it was last asked for, their counter ids and expiries. */
interface Plan {
  asks: Ask[];
  day: number;
  ids: string[];
  expiries: number[];
}

const DAY_MS = 86_400_000;

/** The last day's period ids and ends, kept: a request asks for them several times (each a Date and an ISO string). */
let memoDay = NaN;
let memoIds = { d: '', m: '' };
let memoEnds = { d: 0, m: 0 };

function memoize(now: number): void {
  const day = Math.floor(now / DAY_MS);
  if (day === memoDay) return;
  const start = new Date(day * DAY_MS);
  const iso = start.toISOString();
  memoIds = { d: iso.slice(0, 10), m: iso.slice(0, 7) };
  memoEnds = { d: (day + 1) * DAY_MS, m: Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1) };
  memoDay = day;
}

export function periodId(period: Period, now: number): string {
  memoize(now);
  return memoIds[period];
}

export function periodEnd(period: Period, now: number): number {
  memoize(now);
  return memoEnds[period];
}

/** Per subject, its counter ids of the last day it was asked for (the same strings every request). */
const counterIds = new Map<string, { day: number; d: string; m: string }>();

export function usageCounterId(subject: string, period: Period, now: number): string {
  const day = Math.floor(now / DAY_MS);
  let ids = counterIds.get(subject);
  if (!ids || ids.day !== day) {
    if (!ids && counterIds.size > 50_000) counterIds.clear();
    ids = { day, d: `use:${subject}:d:${periodId('d', now)}`, m: `use:${subject}:m:${periodId('m', now)}` };
    counterIds.set(subject, ids);
  }
  return ids[period];
}

/** Seconds past a period's end that its counters are kept (for reading recent usage). */
function counterExpiry(period: Period, now: number): number {
  return Math.floor(periodEnd(period, now) / 1000) + (period === 'd' ? 7 : 62) * 86_400;
}

/** Add `delta`'s non-zero numbers to `into`. */
function sumInto(into: UsageDelta, delta: UsageDelta): void {
  for (const k in delta) {
    const v = delta[k as keyof UsageDelta];
    if (v) into[k as keyof UsageDelta] = (into[k as keyof UsageDelta] ?? 0) + v;
  }
}

/** Lower `status`'s remaining amount of the ask's unit to what its counter leaves; returns what is spent. */
function remainingInto(status: BudgetStatus, { f, limit }: Ask, t: CounterTotals): number {
  const spent = f.unit === 'usd' ? t.microUsd / 1e6 : t.tokens;
  const remaining = Math.max(0, limit - spent);
  if (f.unit === 'usd') status.remainingUsd = Math.min(status.remainingUsd ?? Infinity, remaining);
  else status.remainingTokens = Math.min(status.remainingTokens ?? Infinity, remaining);
  return spent;
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
  /**
   * Per subjects list (the policy keeps one per key record), its budgets and counter ids: a request
   * walks its own budgets, not every field of every subject, and builds no id or list to do it.
   */
  private readonly plans = new WeakMap<BudgetSubject[], Plan>();
  /** Reads of counters the view has never held, per counter (see `readCold`). */
  private readonly coldReads = new Map<string, Promise<void>>();
  /** Per counter and unit: committed budget leased and reserved by this instance. */
  private readonly pools = new Map<string, PoolsOf>();
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
    private readonly flushRecords = FLUSH_RECORDS,
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
    sumInto(b.delta, delta);
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

  /** The budgets of `subjects`, with their counter ids for the day of `now`. */
  private plan(subjects: BudgetSubject[], now: number): Plan {
    let plan = this.plans.get(subjects);
    if (!plan) {
      const asks: Ask[] = [];
      for (const s of subjects) {
        for (const f of BUDGET_FIELDS) {
          const limit = s.budget[f.field];
          if (limit === undefined) continue;
          const usd = f.unit === 'usd';
          asks.push({ s, f, limit, units: usd ? Math.round(limit * 1e6) : Math.floor(limit), field: usd ? 'committedMicroUsd' : 'committedTokens' });
        }
      }
      plan = { asks, day: NaN, ids: [], expiries: [] };
      this.plans.set(subjects, plan);
    }
    const day = Math.floor(now / DAY_MS);
    if (plan.day !== day) {
      plan.ids = plan.asks.map((a) => usageCounterId(a.s.subject, a.f.period, now));
      plan.expiries = plan.asks.map((a) => counterExpiry(a.f.period, now));
      plan.day = day;
    }
    return plan;
  }

  /**
   * The first budget that is spent, if any. Answered from the instance's view (synchronously, no
   * promise); a promise only when it reads counters the instance has never seen (cold).
   */
  check(subjects: BudgetSubject[], now: number, background: (p: Promise<unknown>) => void): BudgetCheck | Promise<BudgetCheck> {
    const { asks, ids } = this.plan(subjects, now);
    if (!asks.length) return { status: {} };
    let missing: string[] | undefined;
    for (const id of ids) if (!this.view.has(id) && !missing?.includes(id)) (missing ??= []).push(id);
    if (!missing) return this.judge(asks, ids, now, background);
    return this.readCold(missing, now).then(() => this.judge(asks, ids, now, background));
  }

  /**
   * Read counters the view lacks, one read per counter at a time: the requests that arrive while a
   * counter is being read (a cold instance under load, a new day) wait for that read, not one each.
   */
  private readCold(ids: string[], now: number): Promise<unknown> {
    let fresh: string[] | undefined;
    const waits: Promise<void>[] = [];
    for (const id of ids) {
      const p = this.coldReads.get(id);
      if (p) waits.push(p);
      else (fresh ??= []).push(id);
    }
    if (fresh) {
      const cold = fresh;
      const read = this.store.getCounters(cold).then((got) => {
        for (const id of cold) this.set(id, got.get(id) ?? ZERO_TOTALS, now);
      });
      const settled = read.finally(() => {
        for (const id of cold) if (this.coldReads.get(id) === settled) this.coldReads.delete(id);
      });
      for (const id of cold) this.coldReads.set(id, settled);
      waits.push(settled);
    }
    return waits.length === 1 ? waits[0]! : Promise.all(waits);
  }

  /** `check` once every counter is in the view (its plan's asks and counter ids for `now`): refresh stale ones in the background, and judge. */
  private judge(asks: Plan['asks'], ids: string[], now: number, background: (p: Promise<unknown>) => void): BudgetCheck {
    let stale: string[] | undefined;
    let denial: BudgetDenial | undefined;
    const status: BudgetStatus = {};
    for (let i = 0; i < asks.length; i++) {
      const { s, f, limit } = asks[i]!;
      const id = ids[i]!;
      const seen = this.view.get(id)!;
      if (now - seen.at > this.refreshMs && !this.refreshing.has(id) && !stale?.includes(id)) (stale ??= []).push(id);
      const spent = remainingInto(status, asks[i]!, seen.totals);
      if (!denial && spent >= limit) denial = { label: s.label, field: f.field, limit, spent, resetAt: periodEnd(f.period, now) };
    }
    if (stale) {
      const refresh = stale;
      for (const id of refresh) this.refreshing.add(id);
      background(
        this.store
          .getCounters(refresh)
          .then((got) => {
            // Aged from when the read started (the caller's clock).
            for (const id of refresh) this.set(id, got.get(id) ?? ZERO_TOTALS, now);
          })
          .catch((err) => this.onError?.(err))
          .finally(() => refresh.forEach((id) => this.refreshing.delete(id))),
      );
    }
    return { denial, status };
  }

  /**
   * Reserve a request's worst case against every budget of the subjects (see the class comment).
   * No round trip while the instance's blocks last (answered synchronously, no promise); all
   * budgets are asked in parallel otherwise. On a refusal every reservation taken is given back and
   * the denial names the budget. `needOf` is only called when a subject has a budget (pricing the
   * worst case is work most requests need not do).
   */
  reserve(subjects: BudgetSubject[], needOf: () => BudgetNeed, now: number): Reservation | Promise<Reservation> {
    const { asks, ids, expiries } = this.plan(subjects, now);
    if (!asks.length) return { grants: [] };
    const need = needOf();
    let waits = false;
    const takes: (Taken | Promise<Taken>)[] = [];
    for (let i = 0; i < asks.length; i++) {
      const { f, units, field } = asks[i]!;
      const amount = Math.max(0, Math.ceil(f.unit === 'usd' ? need.microUsd : need.tokens));
      let t: Taken | Promise<Taken>;
      try {
        t = this.take(ids[i]!, field, units, amount, expiries[i]!, now);
      } catch (err) {
        t = Promise.reject(err);
      }
      waits ||= t instanceof Promise;
      takes.push(t);
    }
    if (!waits) return this.reserved(asks, takes as Taken[], now);
    return Promise.allSettled(takes).then((results) => {
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      return this.reserved(
        asks,
        results.map((r) => (r.status === 'fulfilled' ? r.value : undefined)),
        now,
        failed?.reason,
      );
    });
  }

  /** The reservation from every budget's answer: all grants, or none and the first denial (or the error) with the grants given back. */
  private reserved(asks: Ask[], taken: (Taken | undefined)[], now: number, error?: unknown): Reservation {
    const grants: BudgetGrant[] = [];
    let denial: BudgetDenial | undefined;
    for (let i = 0; i < taken.length; i++) {
      const t = taken[i];
      if (!t) continue;
      if (t.grant) grants.push(t.grant);
      else if (!denial) {
        const { s, f, limit } = asks[i]!;
        const committed = t.committed / (f.unit === 'usd' ? 1e6 : 1);
        denial = { label: s.label, field: f.field, limit, spent: committed, resetAt: periodEnd(f.period, now) };
      }
    }
    if (error || denial) {
      this.release(grants, now);
      if (error) throw error;
    }
    return { grants: denial ? [] : grants, denial };
  }

  /** The pool of a counter's field (looked up by the counter id itself: no key string built per request). */
  private pool(counterId: string, field: BudgetPool['field']): BudgetPool {
    let of = this.pools.get(counterId);
    if (!of) {
      if (this.pools.size > 25_000) this.pools.clear();
      this.pools.set(counterId, (of = {}));
    }
    let p = of[field];
    if (!p) {
      const seen = this.view.get(counterId)?.totals;
      p = of[field] = { counterId, field, left: 0, committed: seen ? seen[field] : 0, rate: new RateMeter() };
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

  /** One reservation: from the instance's block synchronously while it lasts; a promise when it must lease or ask the counter. */
  private take(counterId: string, field: BudgetPool['field'], limit: number, amount: number, expiresAt: number, now: number): Taken | Promise<Taken> {
    const p = this.pool(counterId, field);
    if (amount === 0) return { grant: undefined, committed: p.committed };
    return this.fromBlock(p, limit, amount, expiresAt, now) ?? this.leaseAndTake(p, limit, amount, expiresAt, now);
  }

  private fromBlock(p: BudgetPool, limit: number, amount: number, expiresAt: number, now: number): Taken | undefined {
    if (p.left < amount) return undefined;
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

  /** `take` once the block is short: wait for the lease in flight or lease a block, else reserve on the counter itself. */
  private async leaseAndTake(p: BudgetPool, limit: number, amount: number, expiresAt: number, now: number): Promise<Taken> {
    for (;;) {
      if (p.inflight) {
        await p.inflight;
      } else {
        // Far from the budget: lease a block (worth several requests), if one fits as far as this
        // instance knows; the conditional update has the last word.
        const block = this.blockSize(p, limit, amount, now);
        if (block >= 2 * amount && p.committed + block <= limit) {
          p.inflight = this.leaseBlock(p, limit, block, expiresAt);
          await p.inflight;
        } else {
          // Near the budget: this request's own reservation, only while something remains.
          const r = await this.store.reserve(p.counterId, { field: p.field, amount, atMost: limit - 1, expiresAt });
          if (!r.ok) {
            p.committed = Math.max(p.committed, limit);
            return { committed: p.committed };
          }
          p.committed = r.totals[p.field];
          this.noteTotals(p.counterId, r.totals);
          return { grant: { pool: p, amount, fromBlock: false, expiresAt }, committed: p.committed };
        }
      }
      const t = this.fromBlock(p, limit, amount, expiresAt, now);
      if (t) return t;
    }
  }

  /** A counter's totals as a write returned them: the spend view learns from them too. */
  private noteTotals(counterId: string, totals: CounterTotals): void {
    const seen = this.view.get(counterId);
    if (seen && totals.requests >= seen.totals.requests) seen.totals = totals;
  }

  /** Give reservations back whole (the request did not go ahead). */
  release(grants: BudgetGrant[], now: number): void {
    const committed = this.settlement(grants, { microUsd: 0, tokens: 0 });
    if (committed) for (const [id, d] of committed) void this.write(id, d.delta, d.expiresAt, now).catch((err) => this.onError?.(err));
  }

  /**
   * What settling reservations with the real cost writes to the counters (committed deltas per
   * counter; undefined when nothing); differences on local blocks are settled locally and write nothing.
   */
  settlement(grants: BudgetGrant[], actual: BudgetNeed): Map<string, { delta: UsageDelta; expiresAt: number }> | undefined {
    let out: Map<string, { delta: UsageDelta; expiresAt: number }> | undefined;
    for (const g of grants) {
      const p = g.pool;
      const real = Math.max(0, Math.ceil(p.field === 'committedMicroUsd' ? actual.microUsd : actual.tokens));
      let delta = real - g.amount;
      const current = this.pools.get(p.counterId)?.[p.field] === p;
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
      out ??= new Map();
      const e = out.get(p.counterId) ?? { delta: {}, expiresAt: g.expiresAt };
      e.delta[p.field] = (e.delta[p.field] ?? 0) + delta;
      out.set(p.counterId, e);
    }
    return out;
  }

  /** Remaining budget as this instance's view has it (no round trip; unseen counters are skipped). */
  peek(subjects: BudgetSubject[], now: number): BudgetStatus {
    const { asks, ids } = this.plan(subjects, now);
    const status: BudgetStatus = {};
    for (let i = 0; i < asks.length; i++) {
      const seen = this.view.get(ids[i]!);
      if (seen) remainingInto(status, asks[i]!, seen.totals);
    }
    return status;
  }

  /**
   * Add a finished request's usage to the subjects' day and month counters, with the settlement of
   * its budget reservations (`grants`) in the same writes. Returns the writes' promise (resolved
   * when they have landed, failures reported to onError), or undefined when everything was batched
   * for the next flush.
   */
  record(subjects: readonly string[], delta: { inputTokens: number; outputTokens: number; cacheReadTokens: number; cacheWriteTokens: number; microUsd: number }, now: number, grants: BudgetGrant[] = []): Promise<void> | undefined {
    const tokens = delta.inputTokens + delta.outputTokens;
    const committed = grants.length ? this.settlement(grants, { microUsd: delta.microUsd, tokens }) : undefined;
    let writes: Promise<void>[] | undefined;
    const add = (id: string, d: UsageDelta, expiresAt: number, urgent: boolean) => {
      const w = this.add(id, d, expiresAt, now, urgent);
      if (w) (writes ??= []).push(w);
    };
    // One delta for every counter (adding it copies its numbers: none keeps it).
    const usage: UsageDelta = { requests: 1, tokens, inputTokens: delta.inputTokens, outputTokens: delta.outputTokens, cacheReadTokens: delta.cacheReadTokens, cacheWriteTokens: delta.cacheWriteTokens, microUsd: delta.microUsd };
    for (const subject of subjects) {
      for (const period of PERIODS) {
        const id = usageCounterId(subject, period, now);
        const extra = committed?.get(id);
        committed?.delete(id);
        // A reservation on the counter itself (near the budget) is released at once: others may wait on it.
        add(id, extra ? { ...usage, ...extra.delta } : usage, counterExpiry(period, now), !!extra);
      }
    }
    // Reservations taken in a period that has ended meanwhile settle on their own counters.
    if (committed) for (const [id, d] of committed) add(id, d.delta, d.expiresAt, true);
    if (this.flushMs > 0 && ++this.pendingRecords >= this.flushRecords) void this.flush();
    if (!writes) return undefined;
    return Promise.allSettled(writes).then((results) => {
      for (const r of results) if (r.status === 'rejected') this.onError?.(r.reason);
    });
  }

  /**
   * Add usage to one counter: batched for the next flush (flushMs > 0, undefined), or written now.
   * A write goes out at once when none is in flight for the counter; usage that arrives meanwhile is
   * summed and sent as one write when the current one returns. So a busy instance makes at most one
   * write per counter per round trip instead of one per request, with no timer (a Lambda serving one
   * request at a time writes at once). The promise resolves when the write carrying this usage has landed.
   */
  private add(id: string, delta: UsageDelta, expiresAt: number, now: number, urgent: boolean): Promise<void> | undefined {
    if (this.flushMs > 0 && !urgent) {
      this.queue(id, delta, expiresAt, now);
      return undefined;
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
    sumInto(batch.delta, delta);
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
          const p = this.pools.get(id)?.[field];
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
