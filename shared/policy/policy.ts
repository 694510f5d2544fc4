import type { BudgetAlerts } from '../alerts/budget-alerts.ts';
import type { ChatRequest, FrontDoor } from '../core/types.ts';
import type { Callers } from '../auth/index.ts';
import { GatewayError } from '../http/errors.ts';
import type { KeyRecord, RateLimits, Store, TeamRecord } from '../store/types.ts';
import type { RequestRecord, RequestTrace } from '../telemetry/record.ts';
import { budgetError, BudgetTracker, type BudgetCheck, type BudgetGrant, type BudgetSubject, type Reservation } from './budgets.ts';
import { estimatePromptTokens } from './estimate.ts';
import { limitHeaders } from './headers.ts';
import { KeyDirectory, storeUnavailable, type Access, type Principal } from './identity.ts';
import { modelAllowed } from './keys.ts';
import { costMicroUsd, priceFinished, priceOf, type Price } from './pricing.ts';
import { UsageReport } from './usage-report.ts';
import { RateLimiter, rateLimitError, type Grant, type RateStatus, type TakeResult } from './rate-limits.ts';

export type { Access, Principal } from './identity.ts';

export interface PolicySettings {
  /** Seconds a key lookup (hit or miss) is kept in memory; a revocation bites within this time. */
  cacheTtlSeconds: number;
  leaseRequests: number;
  leaseTokens: number;
  /** Output tokens reserved when a request sets no max_tokens. */
  defaultMaxTokens: number;
  /** Seconds before the instance's view of budget counters is refreshed (in the background). */
  budgetRefreshSeconds: number;
  /** Status for a spent budget: 429 (default) or 402. */
  budgetStatus: 429 | 402;
  pricing: Record<string, Price>;
  /**
   * Milliseconds usage settlements are batched in memory before one write per counter (0: written
   * per request, coalesced while a write is in flight). `flush()` writes them at once.
   */
  usageFlushMs?: number;
}

export interface PolicyOptions {
  store: Store;
  settings: PolicySettings;
  /** Clock (epoch ms); tests pin it to keep a minute window steady. */
  now?: () => number;
  onError?: (err: unknown) => void;
  /** Budget alerts, checked when usage writes land. */
  alerts?: Pick<BudgetAlerts, 'watch' | 'observe'>;
  /** Callers without keys: OIDC tokens and IAM callers (shared/auth). */
  callers?: Callers;
}

/** What a request is about to spend: tokens reserved (of which output), the model and the targets that may serve it. */
interface Call {
  model: string;
  tokens: number;
  inputTokens?: number;
  outputTokens?: number;
  targets?: readonly { provider: string; model: string }[];
}

/** Paths answered without a key (liveness; the admin API has its own guard). */
export function isPublicPath(path: string): boolean {
  return path === '/' || path === '/health' || path === '/admin' || path.startsWith('/admin/');
}

/** A principal's rate-limit and budget subjects: its key, and its team when it has one. */
interface Subjects {
  team?: TeamRecord;
  rate: { subject: string; owner: string; limits: RateLimits }[];
  budget: BudgetSubject[];
  /** The subjects' names (`key:<id>`, `team:<name>`): the usage counters a request adds to. */
  names: string[];
  /** Whether any rate limit applies (the record's `rateLimit`). */
  limited: boolean;
}

/** Per key record (one per read of the key), its subjects: the same objects and strings for every request of the key. */
const subjectsByKey = new WeakMap<KeyRecord, Subjects>();

function subjectsOf({ key, team }: Principal): Subjects {
  const known = subjectsByKey.get(key);
  if (known && known.team === team) return known;
  const rate = [{ subject: `key:${key.id}`, owner: `key "${key.name}"`, limits: key.limits }];
  const budget: BudgetSubject[] = [{ subject: `key:${key.id}`, label: `key "${key.name}"`, budget: key.budget }];
  if (team) {
    rate.push({ subject: `team:${team.name}`, owner: `team "${team.name}"`, limits: team.limits });
    budget.push({ subject: `team:${team.name}`, label: `team "${team.name}"`, budget: team.budget });
  }
  const subjects: Subjects = { team, rate, budget, names: budget.map((b) => b.subject), limited: rate.some((s) => s.limits.rpm || s.limits.tpm) };
  subjectsByKey.set(key, subjects);
  return subjects;
}

/** `fn`'s answer as a promise: an answer given synchronously, or a throw, becomes a settled promise at once. */
function settled<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * The request pipeline's policy, composed of the key directory (`identity.ts`), rate limits
 * (`rate-limits.ts`), budgets (`budgets.ts`) and pricing (`pricing.ts`): `authenticate` at the
 * start of every model and MCP route (401), `admit` once the model is known and before the upstream
 * call (403 / 429), and settlement of real usage after the response through the trace's end hook
 * (off the hot path).
 */
export class Policy {
  private readonly keys: KeyDirectory;
  private readonly limiter: RateLimiter;
  private readonly budgets: BudgetTracker;
  /** Spend per team and model for the FinOps report (shared/policy/usage-report.ts). */
  readonly usageReport: UsageReport;
  /**
   * The key under which a request's Access is kept on its trace object (this instance's own): a
   * WeakMap entry per request would cost the garbage collector several microseconds each.
   */
  private readonly accessKey = Symbol('access');
  private readonly now: () => number;

  constructor(private readonly opts: PolicyOptions) {
    this.now = opts.now ?? Date.now;
    this.keys = new KeyDirectory(opts.store, opts.settings.cacheTtlSeconds, this.now, opts.onError);
    this.limiter = new RateLimiter({ store: opts.store, leaseRequests: opts.settings.leaseRequests, leaseTokens: opts.settings.leaseTokens, onError: opts.onError });
    this.budgets = new BudgetTracker(opts.store, opts.settings.budgetRefreshSeconds * 1000, opts.onError, opts.settings.usageFlushMs ?? 0);
    if (opts.alerts) this.budgets.onTotals = (id, totals) => opts.alerts!.observe(id, totals);
    this.usageReport = new UsageReport(opts.store, opts.settings.usageFlushMs, opts.onError);
  }

  /** Write the usage batched on this instance (shutdown, end of a Lambda invocation, before an admin usage read). */
  flush(): Promise<void> {
    return Promise.all([this.budgets.flush(), this.usageReport.flush()]).then(() => {});
  }

  get store(): Store {
    return this.opts.store;
  }

  /** Forget cached lookups of a key (after an admin change on this instance). */
  invalidateKey(id?: string): void {
    this.keys.invalidateKey(id);
  }

  invalidateTeam(name: string): void {
    this.keys.invalidateTeam(name);
  }

  /**
   * Check the request's key; rejects with a 401 GatewayError (rendered in the caller's format). A
   * key cached on this instance is checked synchronously (the promise is already settled).
   */
  authenticate(request: Request, trace: RequestTrace, extras: { waitUntil(p: Promise<unknown>): void }): Promise<Access> {
    return settled(() => this.authenticateNow(request, trace, extras));
  }

  /**
   * `authenticate` for the request pipeline: the access itself when the key is cached on this
   * instance (no promise, no turn of the microtask queue), a promise when the store must be asked;
   * a 401 is thrown (or rejects).
   */
  authenticateNow(request: Request, trace: RequestTrace, extras: { waitUntil(p: Promise<unknown>): void }): Access | Promise<Access> {
    const waitUntil = (p: Promise<unknown>) => extras.waitUntil(p);
    if (this.opts.callers) return this.authenticateCaller(this.opts.callers, request, trace, waitUntil);
    const found = this.keys.identify(request, waitUntil);
    return found instanceof Promise ? found.then((p) => this.enter(p, trace, waitUntil)) : this.enter(found, trace, waitUntil);
  }

  /** OIDC tokens and IAM callers become the same Principal a key does (undefined: the key path). */
  private async authenticateCaller(callers: Callers, request: Request, trace: RequestTrace, waitUntil: (p: Promise<unknown>) => void): Promise<Access> {
    const caller = await callers.principal(request, trace, this.now(), (name) => this.keys.teamRecord(name));
    return this.enter(caller ?? (await this.keys.identify(request, waitUntil)), trace, waitUntil);
  }

  /** The request acts as `principal` (401 when its key is revoked or expired). */
  private enter({ key, team }: Principal, trace: RequestTrace, waitUntil: (p: Promise<unknown>) => void): Access {
    trace.record.keyId = key.id;
    trace.record.authKind ??= 'key';
    if (key.team) trace.record.team = key.team;
    this.keys.refuseInactive(key);
    const access: Access = { key, team, waitUntil };
    (trace as unknown as Record<symbol, Access>)[this.accessKey] = access;
    return access;
  }

  private accessOf(trace: RequestTrace): Access | undefined {
    return (trace as unknown as Record<symbol, Access | undefined>)[this.accessKey];
  }

  /** Whether the request's key may use `model` (true when the request needed no key). */
  allows(trace: RequestTrace, model: string): boolean {
    const a = this.accessOf(trace);
    return !a || modelAllowed(a.key.models, model);
  }

  /** Throw 403 when the request's key may not use `model` (for routes without token admission). */
  permit(trace: RequestTrace, model: string): void {
    const a = this.accessOf(trace);
    if (a) permitAccess(a, model);
  }

  /** The MCP allow lists of the request's key and team (absent: no limit from that side; none without a key). */
  mcpLists(trace: RequestTrace): Array<readonly string[] | undefined> {
    const a = this.accessOf(trace);
    return a ? [a.key.mcp, a.team?.mcp] : [];
  }

  /**
   * Count `count` requests (MCP tool calls) against the per-minute request limits of the request's
   * key and team, all or none: throws the 429 (with `retry-after`) naming the limit reached.
   */
  async admitRequests(trace: RequestTrace, count: number): Promise<void> {
    const a = this.accessOf(trace);
    const limited = a ? subjectsOf(a).rate.filter((s) => s.limits.rpm) : [];
    if (!limited.length) return;
    const now = this.now();
    const grants: Grant[] = [];
    for (let i = 0; i < count; i++) {
      for (const s of limited) {
        const r = await this.limiter.take(s.subject, { rpm: s.limits.rpm }, 0, now);
        if (r.ok) {
          if (r.grant) grants.push(r.grant);
          continue;
        }
        for (const g of grants) this.limiter.giveBack(g);
        trace.record.rateLimit = 'limited';
        trace.record.rateLimitReason = 'requests_per_minute';
        throw rateLimitError(s.owner, 'requests', s.limits.rpm, r.status.resetAt, now, {});
      }
    }
    trace.record.rateLimit = 'allowed';
  }

  /**
   * Rate-limit and budget headers for a response that spends no capacity (model list, token count),
   * from this instance's view: no round trip. Empty without a key.
   */
  currentHeaders(trace: RequestTrace, door: FrontDoor | undefined): Record<string, string> {
    const a = this.accessOf(trace);
    if (!a) return {};
    const now = this.now();
    const { rate, budget } = subjectsOf(a);
    const statuses = rate.flatMap((s) => this.limiter.peek(s.subject, s.limits, now) ?? []);
    return limitHeaders(door, statuses, this.budgets.peek(budget, now), now);
  }

  /**
   * Reserve capacity for a chat request: the prompt estimate plus its output allowance (max_tokens,
   * or `limits.defaultMaxTokens` when absent), priced at the dearest of the targets that may serve it.
   */
  admitChat(trace: RequestTrace, req: ChatRequest, door: FrontDoor, targets?: readonly { provider: string; model: string }[]): Promise<Record<string, string>> {
    return settled(() => this.admitChatNow(trace, req, door, targets));
  }

  /**
   * `admitChat` for the request pipeline: the headers themselves while the instance's leases and
   * views last (no promise), a promise when the store must be asked; a 403/429 is thrown (or rejects).
   */
  admitChatNow(trace: RequestTrace, req: ChatRequest, door: FrontDoor, targets?: readonly { provider: string; model: string }[]): Record<string, string> | Promise<Record<string, string>> {
    // `n` choices: n calls, each with the prompt and up to the output limit.
    const input = estimatePromptTokens(req) * (req.n ?? 1);
    const output = (req.maxTokens ?? this.opts.settings.defaultMaxTokens) * (req.n ?? 1);
    return this.admitNow(trace, { model: req.model, tokens: input + output, inputTokens: input, outputTokens: output, targets }, door);
  }

  /** The worst-case cost of a call in micro-dollars: the dearest price among its targets. */
  private worstCost(call: Call): number {
    const usage = { inputTokens: call.inputTokens ?? call.tokens, outputTokens: call.outputTokens ?? 0 };
    const pricing = this.opts.settings.pricing;
    if (!call.targets?.length) return Math.max(0, costMicroUsd(priceOf(pricing, undefined, undefined, call.model), usage));
    let worst = 0;
    for (const t of call.targets) worst = Math.max(worst, costMicroUsd(priceOf(pricing, t.provider, t.model, call.model), usage));
    return worst;
  }

  /**
   * Allow list (403), budgets and rate limits (429) for a request about to call `model`, with an
   * estimated `tokens` reservation (of which `outputTokens` are output, for pricing). Returns the
   * rate-limit/usage headers for the response, and registers the settlement of real usage when the
   * request ends. No-op without a key. While the instance's leases and views last this is
   * synchronous work: the promise is already settled.
   */
  admit(trace: RequestTrace, call: Call, door: FrontDoor | undefined): Promise<Record<string, string>> {
    return settled(() => this.admitNow(trace, call, door));
  }

  private admitNow(trace: RequestTrace, call: Call, door: FrontDoor | undefined): Record<string, string> | Promise<Record<string, string>> {
    const a = this.accessOf(trace);
    if (!a) return {};
    permitAccess(a, call.model);
    const now = this.now();
    const subjects = subjectsOf(a);

    // Rate limits, the spend view and budget reservations in parallel: at most one round trip of
    // latency between them (none while the instance's leases last: then no promise at all).
    let takes: (TakeResult | Promise<TakeResult>)[];
    let budget: BudgetCheck | Promise<BudgetCheck>;
    let reserved: Reservation | Promise<Reservation>;
    let waits = false;
    try {
      takes = [];
      for (const s of subjects.rate) {
        const t = this.limiter.take(s.subject, s.limits, call.tokens, now);
        waits ||= t instanceof Promise;
        takes.push(t);
      }
      budget = this.budgets.check(subjects.budget, now, a.waitUntil);
      reserved = this.budgets.reserve(subjects.budget, () => ({ microUsd: this.worstCost(call), tokens: call.tokens }), now);
    } catch (err) {
      storeUnavailable(err, this.opts.onError);
    }
    if (!waits && !(budget instanceof Promise) && !(reserved instanceof Promise)) return this.decide(trace, a, subjects, takes as TakeResult[], budget, reserved, door, now);
    return Promise.all([Promise.all(takes), budget, reserved])
      .catch((err) => storeUnavailable(err, this.opts.onError))
      .then(([t, b, r]) => this.decide(trace, a, subjects, t, b, r, door, now));
  }

  /** Admit or refuse on the answers of the limits and budgets; an admitted request settles its usage when it ends. */
  private decide(trace: RequestTrace, a: Access, subjects: Subjects, takes: TakeResult[], budget: BudgetCheck, reserved: Reservation, door: FrontDoor | undefined, now: number): Record<string, string> {
    const grants: Grant[] = [];
    const statuses: RateStatus[] = [];
    let refused = -1;
    for (let i = 0; i < takes.length; i++) {
      const t = takes[i]!;
      statuses.push(t.status);
      if (!t.ok) refused = refused < 0 ? i : refused;
      else if (t.grant) grants.push(t.grant);
    }
    const denial = budget.denial ?? reserved.denial;
    if (denial) {
      if (denial.field.startsWith('usd')) budget.status.remainingUsd = 0;
      else budget.status.remainingTokens = 0;
    }
    const headers = limitHeaders(door, statuses, budget.status, now);

    if (refused >= 0 || denial) {
      for (const g of grants) this.limiter.giveBack(g);
      this.budgets.release(reserved.grants, now);
      trace.record.rateLimit = 'limited';
      if (denial) {
        trace.record.rateLimitReason = 'budget';
        throw budgetError(denial, headers, now, this.opts.settings.budgetStatus);
      }
      const r = takes[refused]!;
      const which = r.ok ? 'requests' : r.limit;
      trace.record.rateLimitReason = which === 'requests' ? 'requests_per_minute' : 'tokens_per_minute';
      throw rateLimitError(subjects.rate[refused]!.owner, which, which === 'requests' ? r.status.rpm : r.status.tpm, r.status.resetAt, now, headers);
    }
    if (subjects.limited) trace.record.rateLimit = 'allowed';
    trace.onEnd((record) => this.settle(record, a, subjects, grants, reserved.grants));
    return headers;
  }

  /**
   * When the request ends: price it (synchronously: the cost goes into the log record about to be
   * written), count it for the usage report, and replace the reservations with what it really used
   * in the usage counters. Only a write that must go out now leaves a promise (to `waitUntil`).
   */
  private settle(record: RequestRecord, a: Access, subjects: Subjects, grants: Grant[], budgetGrants: BudgetGrant[]): void {
    const report = (err: unknown) => this.opts.onError?.(err);
    const { usage, microUsd } = priceFinished(this.opts.settings.pricing, record);
    this.usageReport.add(record, usage, microUsd, this.now());
    let writes: Promise<unknown>[] | undefined;
    try {
      const now = this.now();
      this.opts.alerts?.watch(subjects.budget, now);
      const total = usage.inputTokens + usage.outputTokens;
      for (const g of grants) {
        const w = this.limiter.settle(g, total);
        if (w) (writes ??= []).push(w);
      }
      const delta = { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, cacheReadTokens: usage.cacheReadTokens, cacheWriteTokens: usage.cacheWriteTokens, microUsd };
      const w = this.budgets.record(subjects.names, delta, now, budgetGrants);
      if (w) (writes ??= []).push(w);
    } catch (err) {
      report(err);
    }
    if (writes) a.waitUntil(Promise.all(writes).catch(report));
  }
}

/** Throw 403 when the access's key may not use `model`. */
function permitAccess(a: Access, model: string): void {
  if (!modelAllowed(a.key.models, model)) {
    throw new GatewayError('permission', `The key "${a.key.name}" is not allowed to use the model '${model}'.`, { code: 'model_not_allowed', param: 'model' });
  }
}
