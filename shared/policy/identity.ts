import { GatewayError } from '../http/errors.ts';
import type { KeyRecord, Store, TeamRecord } from '../store/types.ts';
import { hashesEqual, hashKey, parseKey, presentedKey } from './keys.ts';

/** Who a request acts as: a key-like record and its team. */
export interface Principal {
  key: KeyRecord;
  team?: TeamRecord;
}

/** What an authenticated request carries through the pipeline. */
export interface Access extends Principal {
  waitUntil: (p: Promise<unknown>) => void;
}

type Lookup = { principal: Principal } | { reason: 'unknown' };

/** The store failed: refuse (fail closed) with a 503 the client may retry, never a stack trace. */
export function storeUnavailable(err: unknown, onError?: (err: unknown) => void): never {
  onError?.(err);
  throw new GatewayError('overloaded', 'The gateway cannot check keys and limits right now; try again shortly.', { status: 503, code: 'policy_store_unavailable', cause: err });
}

/**
 * Keys and their teams, looked up by the key a request presents, with an in-memory cache: a cached
 * entry older than half the TTL is re-read in the background, so a key in steady use never waits on
 * DynamoDB, while no entry is ever used past the TTL: a revocation bites within `cacheTtlSeconds`.
 * The cache is keyed by the presented string itself (it lives only in this process's memory, as the
 * request did): a warm key costs one map lookup, and is hashed only when it is read from the store,
 * whose records hold the hash alone.
 */
export class KeyDirectory {
  private readonly keyCache = new Map<string, { at: number; result: Lookup }>();
  private readonly teamCache = new Map<string, { at: number; team?: TeamRecord }>();
  private readonly inflight = new Map<string, Promise<Lookup>>();

  constructor(
    private readonly store: Store,
    /** Seconds a lookup (hit or miss) is kept in memory. */
    private readonly cacheTtlSeconds: number,
    private readonly now: () => number,
    private readonly onError?: (err: unknown) => void,
  ) {}

  /** Forget cached lookups of a key (after an admin change on this instance); all without an id. */
  invalidateKey(id?: string): void {
    if (!id) {
      this.keyCache.clear();
      this.teamCache.clear();
      return;
    }
    for (const [key, entry] of this.keyCache) if ('principal' in entry.result && entry.result.principal.key.id === id) this.keyCache.delete(key);
  }

  invalidateTeam(name: string): void {
    this.teamCache.delete(name);
    for (const [key, entry] of this.keyCache) if ('principal' in entry.result && entry.result.principal.key.team === name) this.keyCache.delete(key);
  }

  /**
   * The principal of the gateway key a request presents: 401 without a key or with an unknown one,
   * 503 when the store fails. Revocation and expiry are checked by `refuseInactive`. A key whose
   * cached entry is fresh is answered synchronously (no promise); otherwise a promise of the read.
   */
  identify(request: Request, background: (p: Promise<unknown>) => void): Principal | Promise<Principal> {
    const key = presentedKey(request.headers);
    if (!key) {
      throw new GatewayError('authentication', 'No API key provided. Send your gateway key as `Authorization: Bearer <key>` or `x-api-key: <key>`.', { code: 'missing_api_key' });
    }
    const found = this.lookup(key, background);
    return found instanceof Promise ? found.catch((err) => storeUnavailable(err, this.onError)).then(principalOf) : principalOf(found);
  }

  /** Throw 401 for a revoked or expired key record. */
  refuseInactive(rec: KeyRecord): void {
    if (rec.revokedAt) throw new GatewayError('authentication', 'This API key has been revoked.', { code: 'revoked_api_key' });
    if (rec.expiresAt && Date.parse(rec.expiresAt) <= this.now()) throw new GatewayError('authentication', `This API key expired at ${rec.expiresAt}.`, { code: 'expired_api_key' });
  }

  private fresh(at: number): boolean {
    return this.now() - at < this.cacheTtlSeconds * 1000;
  }

  /** A team's record (cached as for keys), for callers identified without a key (shared/auth); 503 when the store fails. */
  teamRecord(name: string): Promise<TeamRecord | undefined> {
    return this.team(name).catch((err) => storeUnavailable(err, this.onError));
  }

  private async team(name: string): Promise<TeamRecord | undefined> {
    const c = this.teamCache.get(name);
    // Called when a key is (re-)read: a team entry past half its TTL is read again with it, so a
    // team's limits are never older than the key entry that carries them.
    if (c && this.now() - c.at < (this.cacheTtlSeconds * 1000) / 2) return c.team;
    const team = await this.store.getTeam(name);
    this.teamCache.set(name, { at: this.now(), team });
    return team;
  }

  /** A key's record (and its team's): from the in-memory cache when fresh (see the class comment), else a promise of the read. */
  private lookup(key: string, background: (p: Promise<unknown>) => void): Lookup | Promise<Lookup> {
    const cached = this.keyCache.get(key);
    if (cached && this.fresh(cached.at)) {
      if (this.now() - cached.at >= (this.cacheTtlSeconds * 1000) / 2 && !this.inflight.has(key)) {
        const id = parseKey(key);
        if (id) background(this.read(id, key, teamOf(cached.result)).catch((err) => this.onError?.(err)));
      }
      return cached.result;
    }
    const id = parseKey(key);
    if (!id) return UNKNOWN;
    // The team the key had when last read: its record is read in parallel with the key's.
    return this.inflight.get(key) ?? this.read(id, key, cached && teamOf(cached.result));
  }

  /** Read a key and its team from the store (one read per key at a time) and cache the answer. */
  private read(id: string, key: string, teamHint?: string): Promise<Lookup> {
    const p = (async (): Promise<Lookup> => {
      const at = this.now();
      const hinted = teamHint ? this.team(teamHint) : undefined;
      hinted?.catch(() => {});
      const rec = await this.store.getKey(id);
      const valid = !!rec && hashesEqual(rec.hash, hashKey(key));
      const team = valid && rec.team ? await (rec.team === teamHint ? hinted! : this.team(rec.team)) : undefined;
      const result: Lookup = valid ? { principal: { key: rec, team } } : UNKNOWN;
      if (this.cacheTtlSeconds > 0) {
        if (this.keyCache.size > 10_000) this.keyCache.clear();
        // Aged from when the read started: a revocation written meanwhile is still caught in time.
        this.keyCache.set(key, { at, result });
      }
      return result;
    })().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }
}

const UNKNOWN: Lookup = { reason: 'unknown' };

function teamOf(found: Lookup): string | undefined {
  return 'principal' in found ? found.principal.key.team : undefined;
}

function principalOf(found: Lookup): Principal {
  if (!('principal' in found)) throw new GatewayError('authentication', 'Invalid API key: the gateway does not know this key.', { code: 'invalid_api_key' });
  return found.principal;
}
