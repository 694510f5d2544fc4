/**
 * The gateway's persistent state: keys, teams and usage counters. One real implementation
 * (DynamoDB, `dynamodb.ts`), which runs against AWS or, locally and in tests, against dynalite.
 */

/** Per-minute rate limits. Absent fields mean "no limit". */
export interface RateLimits {
  /** Requests per minute. */
  rpm?: number;
  /** Tokens (prompt + completion) per minute. */
  tpm?: number;
}

/** Spend caps per UTC day and calendar month (UTC). Absent fields mean "no budget". */
export interface Budget {
  usdPerDay?: number;
  usdPerMonth?: number;
  tokensPerDay?: number;
  tokensPerMonth?: number;
}

/** A gateway key as stored: the key itself is never stored, only its SHA-256 hash. */
export interface KeyRecord {
  /** Public id (also embedded in the key after the `gwk_` prefix). */
  id: string;
  /** Hex SHA-256 of the whole key string. */
  hash: string;
  name: string;
  team?: string;
  /** Model names or aliases the key may call (`*` wildcards allowed); absent or empty: all. */
  models?: string[];
  /** MCP servers and tools the key may use: `server` or `server/tool` (`*` wildcards); absent: all, empty: none. */
  mcp?: string[];
  limits: RateLimits;
  budget: Budget;
  /** ISO timestamps. */
  createdAt: string;
  updatedAt: string;
  expiresAt?: string;
  revokedAt?: string;
  /** Free-form tags (owner, cost centre, ...). */
  metadata: Record<string, string>;
  /** Optimistic-lock counter for updates. */
  version: number;
}

export interface TeamRecord {
  name: string;
  /** MCP servers and tools the team's keys may use (same form as KeyRecord.mcp); absent: all. */
  mcp?: string[];
  limits: RateLimits;
  budget: Budget;
  metadata: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

/** Totals held by a usage counter (one subject, one window). */
export interface CounterTotals {
  requests: number;
  tokens: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  /** Spend in micro-dollars (integers keep sums exact). */
  microUsd: number;
  /**
   * Budget counters only: what is committed against the budget, in micro-dollars and tokens: the
   * settled spend plus the reservations of requests in flight and the unspent blocks instances
   * hold (see BudgetTracker). Never less than the spend.
   */
  committedMicroUsd: number;
  committedTokens: number;
}

export interface UsageDelta {
  requests?: number;
  tokens?: number;
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  microUsd?: number;
  committedMicroUsd?: number;
  committedTokens?: number;
}

/** A conditional addition to one committed field of a budget counter. */
export interface ReserveRequest {
  field: 'committedMicroUsd' | 'committedTokens';
  amount: number;
  /** The addition happens only if the field is at most this before it (absent counts as 0). */
  atMost: number;
  /** Epoch seconds after which the counter item may be deleted (TTL attribute). */
  expiresAt: number;
}

export interface LeaseRequest {
  requests: number;
  tokens: number;
  /** Upper bounds the counter may reach after the lease (absent: unbounded). */
  maxRequests?: number;
  maxTokens?: number;
  /** Epoch seconds after which the counter item may be deleted (TTL attribute). */
  expiresAt: number;
}

export type LeaseResult = { ok: true; requests: number; tokens: number } | { ok: false };

/**
 * One line of the usage report: what a team (or a key without a team) spent on one model in a
 * period. `subject` is `team:<name>` or `key:<id>`; `model` is the model name the caller asked for.
 */
export interface ReportRow {
  subject: string;
  model: string;
  requests: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  microUsd: number;
}

export interface KeyPage {
  keys: KeyRecord[];
  cursor?: string;
}

export interface Store {
  /** Store a new key; fails (returns false) if the id is taken. */
  createKey(rec: KeyRecord): Promise<boolean>;
  getKey(id: string): Promise<KeyRecord | undefined>;
  listKeys(opts?: { team?: string; limit?: number; cursor?: string }): Promise<KeyPage>;
  /** Replace a key record if its version is still `expectedVersion`; false if it changed meanwhile. */
  replaceKey(rec: KeyRecord, expectedVersion: number): Promise<boolean>;
  /** Whether the keys table holds any key at all. */
  hasAnyKey(): Promise<boolean>;

  getTeam(name: string): Promise<TeamRecord | undefined>;
  putTeam(rec: TeamRecord): Promise<void>;
  listTeams(): Promise<TeamRecord[]>;

  /**
   * Atomically add to a counter's `requests`/`tokens` only if the results stay within the bounds
   * (one conditional update); returns the counter's new totals.
   */
  lease(counterId: string, req: LeaseRequest): Promise<LeaseResult>;
  /**
   * Add `amount` to a budget counter's committed field only if it is at most `atMost` before (one
   * conditional update); returns the counter's new totals, or `ok: false`.
   */
  reserve(counterId: string, req: ReserveRequest): Promise<{ ok: true; totals: CounterTotals } | { ok: false }>;
  /** Unconditionally add to a counter (negative amounts allowed); returns its new totals. */
  addUsage(counterId: string, delta: UsageDelta, expiresAt: number): Promise<CounterTotals>;
  /** Read counters (consistent reads, one round trip for up to 100 ids); missing ones are absent. */
  getCounters(ids: string[]): Promise<Map<string, CounterTotals>>;

  /**
   * Create a marker item unless one exists (one conditional put): true only for the caller that
   * created it, however many ask at once on however many instances. Budget alerts claim with it.
   */
  claim(id: string, expiresAt: number): Promise<boolean>;
  /** Add to the usage report's per subject and model counters of one UTC day (`YYYY-MM-DD`). */
  addReportUsage(day: string, rows: ReportRow[], expiresAt: number): Promise<void>;
  /** The usage report of a day (`YYYY-MM-DD`) or a month (`YYYY-MM`, summed over its days): one row per subject and model. */
  usageReport(period: string): Promise<ReportRow[]>;

  /** Release connections. */
  close(): void;
}

export const ZERO_TOTALS: CounterTotals = { requests: 0, tokens: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 0, committedMicroUsd: 0, committedTokens: 0 };
