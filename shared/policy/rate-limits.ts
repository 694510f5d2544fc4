import { GatewayError } from '../http/errors.ts';
import type { RateLimits, Store } from '../store/types.ts';

/**
 * Rate limits (requests and tokens per minute) with leased capacity.
 *
 * Each subject (a key or a team) has one counter item per minute window in the usage table. An
 * instance never admits against the table directly: it leases a small block of capacity with one
 * conditional update (`ADD req :n` only if the total stays within the limit) and spends it
 * locally, so most requests need no round trip. Because every lease is conditional, the total
 * leased across all instances never exceeds the limit: the limit is never over-admitted. The price
 * is that capacity leased by one instance and not spent before the window ends is lost to the others,
 * so near the limit a subject can be admitted up to (instances - 1) x block fewer requests than its
 * limit in a window. Blocks are small (a tenth of the limit, at most `leaseRequests`), and a lease
 * that does not fit falls back to leasing exactly what the request needs.
 */

export const WINDOW_MS = 60_000;

export interface LimiterOptions {
  store: Store;
  /** Largest block of requests one lease takes. 1 = no leasing (one conditional update per request). */
  leaseRequests: number;
  /** Largest block of tokens one lease takes. */
  leaseTokens: number;
  onError?: (err: unknown) => void;
}

/** Capacity taken for one request from one subject, settled after the response. */
export interface Grant {
  counterId: string;
  poolId: string;
  window: number;
  requests: number;
  tokens: number;
}

/** Where a subject stands in the current window, for the rate-limit headers. */
export interface RateStatus {
  rpm?: number;
  tpm?: number;
  remainingRequests?: number;
  remainingTokens?: number;
  /** Epoch ms when the window (and so both limits) resets. */
  resetAt: number;
}

export type TakeResult = { ok: true; grant?: Grant; status: RateStatus } | { ok: false; limit: 'requests' | 'tokens'; status: RateStatus };

interface Pool {
  window: number;
  /** The window's counter item (`rl:<subject>:<window>`). */
  counterId: string;
  /** Leased here and not spent yet. */
  reqLeft: number;
  tokLeft: number;
  /** The counter's totals as last seen (a lower bound of what all instances have leased). */
  globalReq: number;
  globalTok: number;
  inflight?: Promise<void>;
  /** An exact lease of this size failed in this window: larger needs fail without asking. */
  failed?: { requests: number; tokens: number };
  /** Requests and tokens taken lately (carried across windows): sizes the blocks. */
  reqRate: RateMeter;
  tokRate: RateMeter;
}

export function windowOf(now: number): number {
  return Math.floor(now / WINDOW_MS);
}

/** How much a subject used in the last whole second and in the current one (sizes lease blocks). */
export class RateMeter {
  private sec = 0;
  private cur = 0;
  private prev = 0;

  hit(now: number, n: number): void {
    const sec = Math.floor(now / 1000);
    if (sec !== this.sec) {
      this.prev = sec === this.sec + 1 ? this.cur : 0;
      this.cur = 0;
      this.sec = sec;
    }
    this.cur += n;
  }

  /** Use per second: the larger of the last second's and the current one's so far. */
  perSecond(now: number): number {
    const sec = Math.floor(now / 1000);
    if (sec === this.sec) return Math.max(this.prev, this.cur);
    return sec === this.sec + 1 ? this.cur : 0;
  }
}

/** Seconds of a subject's recent use one lease block covers (renewed at half: a busy subject leases about every BLOCK_SECONDS / 2); a quiet subject gets the configured minimum. */
export const BLOCK_SECONDS = 10;

export class RateLimiter {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly opts: LimiterOptions) {}

  private pool(poolId: string, window: number): Pool {
    let p = this.pools.get(poolId);
    if (!p || p.window !== window) {
      if (!p && this.pools.size > 50_000) this.pools.clear();
      p = { window, counterId: `rl:${poolId}:${window}`, reqLeft: 0, tokLeft: 0, globalReq: 0, globalTok: 0, reqRate: p?.reqRate ?? new RateMeter(), tokRate: p?.tokRate ?? new RateMeter() };
      this.pools.set(poolId, p);
    }
    return p;
  }

  private status(p: Pool, limits: RateLimits): RateStatus {
    return {
      rpm: limits.rpm,
      tpm: limits.tpm,
      remainingRequests: limits.rpm ? Math.max(0, limits.rpm - p.globalReq) + p.reqLeft : undefined,
      remainingTokens: limits.tpm ? Math.max(0, limits.tpm - p.globalTok) + p.tokLeft : undefined,
      resetAt: (p.window + 1) * WINDOW_MS,
    };
  }

  /**
   * Take one request and `tokens` tokens for `subject` (e.g. `key:abc`) in the window of `now`.
   * Zero round trips while the local lease lasts (answered synchronously, no promise); a promise when
   * it must wait for a lease (one conditional update).
   */
  take(subject: string, limits: RateLimits, tokens: number, now: number): TakeResult | Promise<TakeResult> {
    const window = windowOf(now);
    const rpm = limits.rpm;
    const tpm = limits.tpm;
    const needR = rpm ? 1 : 0;
    // A request larger than the whole limit could never pass: reserve at most the limit.
    const needT = tpm ? Math.min(Math.max(0, Math.ceil(tokens)), tpm) : 0;
    if (!needR && !needT) return { ok: true, status: { resetAt: (window + 1) * WINDOW_MS } };
    const p = this.pool(subject, window);
    return this.fromLease(p, subject, limits, needR, needT, now) ?? this.leaseAndTake(subject, limits, needR, needT, now);
  }

  /** Take from the local lease, or refuse from what is known; undefined when a lease must be asked for (or waited on). */
  private fromLease(p: Pool, subject: string, limits: RateLimits, needR: number, needT: number, now: number): TakeResult | undefined {
    const { rpm, tpm } = limits;
    if (p.reqLeft >= needR && p.tokLeft >= needT) {
      p.reqLeft -= needR;
      p.tokLeft -= needT;
      p.reqRate.hit(now, needR);
      p.tokRate.hit(now, needT);
      this.renew(p, limits, now);
      return { ok: true, grant: { counterId: p.counterId, poolId: subject, window: p.window, requests: needR, tokens: needT }, status: this.status(p, limits) };
    }
    if (p.inflight) return undefined;
    const shortR = Math.max(0, needR - p.reqLeft);
    const shortT = Math.max(0, needT - p.tokLeft);
    // Counters only grow within a window: what is known to be spent stays spent.
    if (rpm && shortR > 0 && p.globalReq + shortR > rpm) return { ok: false, limit: 'requests', status: this.status(p, limits) };
    if (tpm && shortT > 0 && p.globalTok + shortT > tpm) return { ok: false, limit: 'tokens', status: this.status(p, limits) };
    if (p.failed && shortR >= p.failed.requests && shortT >= p.failed.tokens) {
      return { ok: false, limit: shortR > 0 && (!tpm || p.globalTok + shortT <= tpm) ? 'requests' : 'tokens', status: this.status(p, limits) };
    }
    return undefined;
  }

  /** `take` once the local lease is short: wait for the lease in flight, or lease what is missing, and take again. */
  private async leaseAndTake(subject: string, limits: RateLimits, needR: number, needT: number, now: number): Promise<TakeResult> {
    for (;;) {
      const p = this.pool(subject, windowOf(now));
      if (!p.inflight) {
        p.inflight = this.lease(p, limits, Math.max(0, needR - p.reqLeft), Math.max(0, needT - p.tokLeft), now).finally(() => {
          p.inflight = undefined;
        });
      }
      await p.inflight;
      const r = this.fromLease(this.pool(subject, windowOf(now)), subject, limits, needR, needT, now);
      if (r) return r;
    }
  }

  /**
   * Block sizes for a subject: at least the configured blocks, or about BLOCK_SECONDS of its recent
   * use when busier, and never more than a tenth of the limit.
   */
  private blocks(p: Pool, limits: RateLimits, now: number): { r: number; t: number } {
    // leaseRequests 1 means no leasing: exactly what each request needs, one update per request.
    if (this.opts.leaseRequests <= 1) return { r: limits.rpm ? 1 : 0, t: limits.tpm ? Math.min(this.opts.leaseTokens, Math.max(1, Math.floor(limits.tpm / 10))) : 0 };
    const r = limits.rpm ? Math.min(Math.max(1, Math.floor(limits.rpm / 10)), Math.max(this.opts.leaseRequests, Math.ceil(p.reqRate.perSecond(now) * BLOCK_SECONDS))) : 0;
    const t = limits.tpm ? Math.min(Math.max(1, Math.floor(limits.tpm / 10)), Math.max(this.opts.leaseTokens, Math.ceil(p.tokRate.perSecond(now) * BLOCK_SECONDS))) : 0;
    return { r, t };
  }

  /**
   * Lease the next block in the background once the local one is half spent, so a subject in
   * steady use never waits on a lease (the lease is the same conditional update: never over-admits).
   */
  private renew(p: Pool, limits: RateLimits, now: number): void {
    if (p.inflight || this.opts.leaseRequests <= 1) return;
    const b = this.blocks(p, limits, now);
    const lowR = !!limits.rpm && p.reqLeft * 2 < b.r && p.globalReq + b.r <= limits.rpm;
    const lowT = !!limits.tpm && p.tokLeft * 2 < b.t && p.globalTok + b.t <= limits.tpm;
    if (!lowR && !lowT) return;
    p.inflight = this.lease(p, limits, lowR ? 1 : 0, lowT ? 1 : 0, now, true)
      .catch((err) => this.opts.onError?.(err))
      .finally(() => {
        p.inflight = undefined;
      });
  }

  private async lease(p: Pool, limits: RateLimits, shortR: number, shortT: number, now: number, ahead = false): Promise<void> {
    const rpm = limits.rpm;
    const tpm = limits.tpm;
    const counterId = p.counterId;
    const expiresAt = Math.floor(((p.window + 1) * WINDOW_MS) / 1000) + 3600;
    const caps = this.blocks(p, limits, now);
    let blockR = 0;
    let blockT = 0;
    if (rpm && shortR > 0) blockR = Math.max(shortR, Math.min(caps.r, rpm - p.globalReq));
    if (tpm && shortT > 0) blockT = Math.max(shortT, Math.min(caps.t, tpm - p.globalTok));
    const attempt = (r: number, t: number) =>
      this.opts.store.lease(counterId, { requests: r, tokens: t, maxRequests: r ? rpm : undefined, maxTokens: t ? tpm : undefined, expiresAt });
    let res = await attempt(blockR, blockT);
    let got = { r: blockR, t: blockT };
    // A lease ahead of need that does not fit is simply not taken: the next request asks for exactly what it needs.
    if (!res.ok && ahead) return;
    if (!res.ok && (blockR > shortR || blockT > shortT)) {
      res = await attempt(shortR, shortT);
      got = { r: shortR, t: shortT };
    }
    if (res.ok) {
      p.reqLeft += got.r;
      p.tokLeft += got.t;
      p.globalReq = Math.max(p.globalReq, res.requests);
      p.globalTok = Math.max(p.globalTok, res.tokens);
      return;
    }
    // Refused even for exactly what is needed: learn where the counter stands, so the next
    // requests in this window are answered without asking.
    p.failed = { requests: shortR, tokens: shortT };
    try {
      const t = (await this.opts.store.getCounters([counterId])).get(counterId);
      if (t) {
        p.globalReq = Math.max(p.globalReq, t.requests);
        p.globalTok = Math.max(p.globalTok, t.tokens);
      }
    } catch (err) {
      this.opts.onError?.(err);
    }
  }

  /**
   * Where `subject` stands as this instance last saw it, without a round trip (for responses that
   * spend no capacity); undefined when the instance holds nothing for the current window.
   */
  peek(subject: string, limits: RateLimits, now: number): RateStatus | undefined {
    const p = this.pools.get(subject);
    if (!p || p.window !== windowOf(now) || (!limits.rpm && !limits.tpm)) return undefined;
    return this.status(p, limits);
  }

  /** Give a grant back whole (the request did not go ahead). */
  giveBack(g: Grant): void {
    const p = this.pools.get(g.poolId);
    if (!p || p.window !== g.window) return;
    p.reqLeft += g.requests;
    p.tokLeft += g.tokens;
  }

  /**
   * Settle a grant with the tokens the request really used: unused reserved tokens return to the
   * local lease; tokens beyond the reservation come out of it, or are added to the counter (the only
   * case with a promise: the write).
   */
  settle(g: Grant, actualTokens: number): Promise<void> | undefined {
    if (!g.tokens) return undefined;
    const p = this.pools.get(g.poolId);
    const current = p && p.window === g.window ? p : undefined;
    const diff = g.tokens - actualTokens;
    if (diff >= 0) {
      if (current) current.tokLeft += diff;
      return undefined;
    }
    let over = -diff;
    if (current) {
      const fromPool = Math.min(current.tokLeft, over);
      current.tokLeft -= fromPool;
      over -= fromPool;
    }
    if (over <= 0) return undefined;
    return this.opts.store.addUsage(g.counterId, { tokens: over }, Math.floor(((g.window + 1) * WINDOW_MS) / 1000) + 3600).then((t) => {
      if (current) current.globalTok = Math.max(current.globalTok, t.tokens);
    });
  }
}


/** The 429 for a spent per-minute limit of `owner` (`key "name"` / `team "name"`). */
export function rateLimitError(owner: string, which: 'requests' | 'tokens', limit: number | undefined, resetAt: number, now: number, headers: Record<string, string>): GatewayError {
  const retryAfter = Math.max(1, Math.ceil((resetAt - now) / 1000));
  return new GatewayError('rate_limit', `Rate limit reached for ${owner}: ${limit} ${which} per minute. Try again in ${retryAfter}s.`, {
    code: 'rate_limit_exceeded',
    headers: { ...headers, 'retry-after': String(retryAfter) },
  });
}
