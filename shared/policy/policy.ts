import type { ChatRequest, FrontDoor } from '../core/types.ts';
import { GatewayError } from '../http/errors.ts';
import type { KeyRecord, Store, TeamRecord } from '../store/types.ts';
import type { RequestRecord, RequestTrace } from '../telemetry/record.ts';
import { estimatePromptTokens } from './estimate.ts';
import { limitHeaders } from './headers.ts';
import { hashesEqual, hashKey, modelAllowed, parseKey, presentedKey } from './keys.ts';
import { BudgetTracker, RateLimiter, type BudgetDenial, type BudgetGrant, type BudgetSubject, type Grant, type RateStatus } from './limits.ts';
import { costMicroUsd, priceFor, type Price } from './pricing.ts';

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
}

interface Principal {
  key: KeyRecord;
  team?: TeamRecord;
}

/** What an authenticated request carries through the pipeline. */
export interface Access {
  key: KeyRecord;
  team?: TeamRecord;
  waitUntil: (p: Promise<unknown>) => void;
}

type Lookup = { principal: Principal } | { reason: 'unknown' };

/** Paths answered without a key (liveness; the admin API has its own guard). */
export function isPublicPath(path: string): boolean {
  return path === '/' || path === '/health' || path === '/admin' || path.startsWith('/admin/');
}

/**
 * Keys, allow lists, rate limits and budgets for the request pipeline:
 * `authenticate` at the start of every model route (401), `admit` once the model is known and
 * before the upstream call (403 / 429), and settlement of real usage after the response through the
 * trace's end hook (off the hot path).
 */
export class Policy {
  readonly limiter: RateLimiter;
  readonly budgets: BudgetTracker;
  private readonly keyCache = new Map<string, { at: number; result: Lookup }>();
  private readonly teamCache = new Map<string, { at: number; team?: TeamRecord }>();
  private readonly inflight = new Map<string, Promise<Lookup>>();
  private readonly byTrace = new WeakMap<RequestTrace, Access>();
  private readonly now: () => number;

  constructor(private readonly opts: PolicyOptions) {
    this.now = opts.now ?? Date.now;
    this.limiter = new RateLimiter({ store: opts.store, leaseRequests: opts.settings.leaseRequests, leaseTokens: opts.settings.leaseTokens, onError: opts.onError });
    this.budgets = new BudgetTracker(opts.store, opts.settings.budgetRefreshSeconds * 1000, opts.onError, opts.settings.usageFlushMs ?? 0);
  }

  /** Write the usage batched on this instance (shutdown, end of a Lambda invocation, before an admin usage read). */
  flush(): Promise<void> {
    return this.budgets.flush();
  }

  get store(): Store {
    return this.opts.store;
  }

  /** Forget cached lookups of a key (after an admin change on this instance). */
  invalidateKey(id?: string): void {
    if (!id) {
      this.keyCache.clear();
      this.teamCache.clear();
      return;
    }
    for (const [hash, entry] of this.keyCache) if ('principal' in entry.result && entry.result.principal.key.id === id) this.keyCache.delete(hash);
  }

  invalidateTeam(name: string): void {
    this.teamCache.delete(name);
    for (const [hash, entry] of this.keyCache) if ('principal' in entry.result && entry.result.principal.key.team === name) this.keyCache.delete(hash);
  }

  private fresh(at: number): boolean {
    return this.now() - at < this.opts.settings.cacheTtlSeconds * 1000;
  }

  private async team(name: string): Promise<TeamRecord | undefined> {
    const c = this.teamCache.get(name);
    // Called when a key is (re-)read: a team entry past half its TTL is read again with it, so a
    // team's limits are never older than the key entry that carries them.
    if (c && this.now() - c.at < (this.opts.settings.cacheTtlSeconds * 1000) / 2) return c.team;
    const team = await this.opts.store.getTeam(name);
    this.teamCache.set(name, { at: this.now(), team });
    return team;
  }

  /**
   * A key's record (and its team's), from the in-memory cache when fresh. A cached entry older than
   * half the TTL is re-read in the background, so a key in steady use never waits on DynamoDB,
   * while no entry is ever used past the TTL: a revocation bites within `cacheTtlSeconds`.
   */
  private async lookup(key: string, background: (p: Promise<unknown>) => void): Promise<Lookup> {
    const id = parseKey(key);
    if (!id) return { reason: 'unknown' };
    const hash = hashKey(key);
    const ttlMs = this.opts.settings.cacheTtlSeconds * 1000;
    const cached = this.keyCache.get(hash);
    // The team the key had when last read: its record is read in parallel with the key's.
    const teamHint = cached && 'principal' in cached.result ? cached.result.principal.key.team : undefined;
    if (cached && this.fresh(cached.at)) {
      if (this.now() - cached.at >= ttlMs / 2 && !this.inflight.has(hash)) {
        background(this.read(id, hash, teamHint).catch((err) => this.opts.onError?.(err)));
      }
      return cached.result;
    }
    return this.inflight.get(hash) ?? this.read(id, hash, teamHint);
  }

  /** Read a key and its team from the store (one read per key at a time) and cache the answer. */
  private read(id: string, hash: string, teamHint?: string): Promise<Lookup> {
    const p = (async (): Promise<Lookup> => {
      const at = this.now();
      const hinted = teamHint ? this.team(teamHint) : undefined;
      hinted?.catch(() => {});
      const rec = await this.opts.store.getKey(id);
      const valid = !!rec && hashesEqual(rec.hash, hash);
      const team = valid && rec.team ? await (rec.team === teamHint ? hinted! : this.team(rec.team)) : undefined;
      const result: Lookup = valid ? { principal: { key: rec, team } } : { reason: 'unknown' };
      if (this.opts.settings.cacheTtlSeconds > 0) {
        if (this.keyCache.size > 10_000) this.keyCache.clear();
        // Aged from when the read started: a revocation written meanwhile is still caught in time.
        this.keyCache.set(hash, { at, result });
      }
      return result;
    })().finally(() => this.inflight.delete(hash));
    this.inflight.set(hash, p);
    return p;
  }

  /** Check the request's key; throws a 401 GatewayError (rendered in the caller's format). */
  async authenticate(request: Request, trace: RequestTrace, extras: { waitUntil(p: Promise<unknown>): void }): Promise<Access> {
    const key = presentedKey(request.headers);
    if (!key) {
      throw new GatewayError('authentication', 'No API key provided. Send your gateway key as `Authorization: Bearer <key>` or `x-api-key: <key>`.', { code: 'missing_api_key' });
    }
    const found = await this.lookup(key, (p) => extras.waitUntil(p)).catch((err) => this.unavailable(err));
    if (!('principal' in found)) throw new GatewayError('authentication', 'Invalid API key: the gateway does not know this key.', { code: 'invalid_api_key' });
    const { key: rec, team } = found.principal;
    trace.record.keyId = rec.id;
    if (rec.team) trace.record.team = rec.team;
    if (rec.revokedAt) throw new GatewayError('authentication', 'This API key has been revoked.', { code: 'revoked_api_key' });
    if (rec.expiresAt && Date.parse(rec.expiresAt) <= this.now()) throw new GatewayError('authentication', `This API key expired at ${rec.expiresAt}.`, { code: 'expired_api_key' });
    const access: Access = { key: rec, team, waitUntil: (p) => extras.waitUntil(p) };
    this.byTrace.set(trace, access);
    return access;
  }

  /** The store failed: refuse (fail closed) with a 503 the client may retry, never a stack trace. */
  private unavailable(err: unknown): never {
    this.opts.onError?.(err);
    throw new GatewayError('overloaded', 'The gateway cannot check keys and limits right now; try again shortly.', { status: 503, code: 'policy_store_unavailable', cause: err });
  }

  accessFor(trace: RequestTrace): Access | undefined {
    return this.byTrace.get(trace);
  }

  /** Whether the request's key may use `model` (true when the request needed no key). */
  allows(trace: RequestTrace, model: string): boolean {
    const a = this.byTrace.get(trace);
    return !a || modelAllowed(a.key.models, model);
  }

  /** Throw 403 when the request's key may not use `model` (for routes without token admission). */
  permit(trace: RequestTrace, model: string): void {
    const a = this.byTrace.get(trace);
    if (a && !modelAllowed(a.key.models, model)) {
      throw new GatewayError('permission', `The key "${a.key.name}" is not allowed to use the model '${model}'.`, { code: 'model_not_allowed', param: 'model' });
    }
  }

  /**
   * Rate-limit and budget headers for a response that spends no capacity (model list, token count),
   * from this instance's view: no round trip. Empty without a key.
   */
  currentHeaders(trace: RequestTrace, door: FrontDoor | undefined): Record<string, string> {
    const a = this.byTrace.get(trace);
    if (!a) return {};
    const now = this.now();
    const { rateSubjects, budgetSubjects } = this.subjects(a);
    const statuses = rateSubjects.flatMap((s) => this.limiter.peek(s.subject, s.limits, now) ?? []);
    return limitHeaders(door, statuses, this.budgets.peek(budgetSubjects, now), now);
  }

  private subjects({ key, team }: Access): { rateSubjects: { subject: string; limits: KeyRecord['limits'] }[]; budgetSubjects: BudgetSubject[] } {
    const rateSubjects: { subject: string; limits: KeyRecord['limits'] }[] = [{ subject: `key:${key.id}`, limits: key.limits }];
    const budgetSubjects: BudgetSubject[] = [{ subject: `key:${key.id}`, label: `key "${key.name}"`, budget: key.budget }];
    if (team) {
      rateSubjects.push({ subject: `team:${team.name}`, limits: team.limits });
      budgetSubjects.push({ subject: `team:${team.name}`, label: `team "${team.name}"`, budget: team.budget });
    }
    return { rateSubjects, budgetSubjects };
  }

  /**
   * Reserve capacity for a chat request: the prompt estimate plus its output allowance (max_tokens,
   * or `limits.defaultMaxTokens` when absent), priced at the dearest of the targets that may serve it.
   */
  admitChat(trace: RequestTrace, req: ChatRequest, door: FrontDoor, targets?: { provider: string; model: string }[]): Promise<Record<string, string>> {
    // `n` choices: n calls, each with the prompt and up to the output limit.
    const input = estimatePromptTokens(req) * (req.n ?? 1);
    const output = (req.maxTokens ?? this.opts.settings.defaultMaxTokens) * (req.n ?? 1);
    return this.admit(trace, { model: req.model, tokens: input + output, inputTokens: input, outputTokens: output, targets }, door);
  }

  /** The worst-case cost of a call in micro-dollars: the dearest price among its targets. */
  private worstCost(call: { model: string; tokens: number; inputTokens?: number; outputTokens?: number; targets?: { provider: string; model: string }[] }): number {
    const usage = { inputTokens: call.inputTokens ?? call.tokens, outputTokens: call.outputTokens ?? 0 };
    const served = call.targets?.length ? call.targets.map((t) => ({ provider: t.provider, upstreamModel: t.model, model: call.model })) : [{ model: call.model }];
    return Math.max(0, ...served.map((t) => costMicroUsd(priceFor(this.opts.settings.pricing, t), usage)));
  }

  /**
   * Allow list (403), budgets and rate limits (429) for a request about to call `model`, with an
   * estimated `tokens` reservation (of which `outputTokens` are output, for pricing). Returns the
   * rate-limit/usage headers for the response, and registers the settlement of real usage when the
   * request ends. No-op without a key.
   */
  async admit(
    trace: RequestTrace,
    call: { model: string; tokens: number; inputTokens?: number; outputTokens?: number; targets?: { provider: string; model: string }[] },
    door: FrontDoor | undefined,
  ): Promise<Record<string, string>> {
    const a = this.byTrace.get(trace);
    if (!a) return {};
    const { key, team } = a;
    this.permit(trace, call.model);
    const now = this.now();
    const { rateSubjects, budgetSubjects } = this.subjects(a);
    const hasRate = rateSubjects.some((s) => s.limits.rpm || s.limits.tpm);

    // Rate limits, the spend view and budget reservations in parallel: at most one round trip of
    // latency between them (none while the instance's leases last).
    const [takes, budget, reserved] = await Promise.all([
      Promise.all(rateSubjects.map((s) => this.limiter.take(s.subject, s.limits, call.tokens, now))),
      this.budgets.check(budgetSubjects, now, a.waitUntil),
      this.budgets.reserve(budgetSubjects, () => ({ microUsd: this.worstCost(call), tokens: call.tokens }), now),
    ]).catch((err) => this.unavailable(err));
    const grants = takes.flatMap((t) => (t.ok && t.grant ? [t.grant] : []));
    const budgetGrants = reserved.grants;
    const statuses: RateStatus[] = takes.map((t) => t.status);
    const denial = budget.denial ?? reserved.denial;
    if (denial) {
      if (denial.field.startsWith('usd')) budget.status.remainingUsd = 0;
      else budget.status.remainingTokens = 0;
    }
    const headers = limitHeaders(door, statuses, budget.status, now);

    const refused = takes.find((t) => !t.ok);
    if (refused || denial) {
      for (const g of grants) this.limiter.giveBack(g);
      this.budgets.release(budgetGrants, now);
      trace.record.rateLimit = 'limited';
      if (denial) {
        trace.record.rateLimitReason = 'budget';
        throw this.budgetError(denial, headers, now);
      }
      const which = refused!.ok ? 'requests' : refused!.limit;
      trace.record.rateLimitReason = which === 'requests' ? 'requests_per_minute' : 'tokens_per_minute';
      const retryAfter = Math.max(1, Math.ceil((refused!.status.resetAt - now) / 1000));
      const owner = takes.indexOf(refused!) === 0 ? `key "${key.name}"` : `team "${team!.name}"`;
      const limit = which === 'requests' ? refused!.status.rpm : refused!.status.tpm;
      throw new GatewayError('rate_limit', `Rate limit reached for ${owner}: ${limit} ${which} per minute. Try again in ${retryAfter}s.`, {
        code: 'rate_limit_exceeded',
        headers: { ...headers, 'retry-after': String(retryAfter) },
      });
    }
    if (hasRate) trace.record.rateLimit = 'allowed';

    const subjects = budgetSubjects.map((s) => s.subject);
    trace.onEnd((record) => {
      // Synchronous part: the cost goes into the log record about to be written.
      // An answer from the gateway's response cache cost no upstream tokens: nothing to settle.
      const usage = record.cacheHit
        ? { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }
        : { inputTokens: record.inputTokens ?? 0, outputTokens: record.outputTokens ?? 0, cacheReadTokens: record.cacheReadTokens ?? 0, cacheWriteTokens: record.cacheWriteTokens ?? 0 };
      const micro = costMicroUsd(priceFor(this.opts.settings.pricing, record), usage);
      record.costUsd = micro / 1e6;
      a.waitUntil(this.settle(grants, budgetGrants, subjects, usage, micro, record).catch((err) => this.opts.onError?.(err)));
    });
    return headers;
  }

  private async settle(grants: Grant[], budgetGrants: BudgetGrant[], subjects: string[], usage: { inputTokens: number; outputTokens: number; cacheReadTokens: number; cacheWriteTokens: number }, microUsd: number, _record: RequestRecord): Promise<void> {
    const total = usage.inputTokens + usage.outputTokens;
    await Promise.all([...grants.map((g) => this.limiter.settle(g, total)), this.budgets.record(subjects, { ...usage, microUsd }, this.now(), budgetGrants)]);
  }

  private budgetError(d: BudgetDenial, headers: Record<string, string>, now: number): GatewayError {
    const period = d.field.endsWith('Day') ? 'daily' : 'monthly';
    const what = d.field.startsWith('usd') ? `USD budget of $${d.limit}` : `token budget of ${d.limit} tokens`;
    const resets = new Date(d.resetAt).toISOString();
    const retryAfter = Math.max(1, Math.ceil((d.resetAt - now) / 1000));
    return new GatewayError('rate_limit', `Budget exceeded: the ${period} ${what} of ${d.label} is spent; it resets at ${resets}.`, {
      status: this.opts.settings.budgetStatus,
      code: 'budget_exceeded',
      headers: { ...headers, 'retry-after': String(retryAfter), 'x-should-retry': 'false' },
    });
  }
}
