import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { readJsonBody } from '../http/body.ts';
import { GatewayError, jsonResponse } from '../http/errors.ts';
import { newKey } from '../policy/keys.ts';
import { periodId, usageCounterId } from '../policy/budgets.ts';
import { windowOf, WINDOW_MS } from '../policy/rate-limits.ts';
import type { Policy } from '../policy/policy.ts';
import type { CounterTotals, KeyRecord, ReportRow, TeamRecord } from '../store/types.ts';
import { ZERO_TOTALS } from '../store/types.ts';

/**
 * The admin API under /admin/: keys (create, list, get, update, revoke), team limits, usage, and the
 * usage report (spend per team and model for a day or month).
 *
 * Who may call it: in AWS, API Gateway authorizes these routes with IAM (SigV4) and the Lambda entry
 * passes the verified caller as `adminPrincipal`; locally (or anywhere) a caller may instead send
 * `Authorization: Bearer <token>` matching the token in `GATEWAY_ADMIN_TOKEN`.
 */

export interface AdminContext {
  policy: Policy | undefined;
  /** The admin token from the environment, if any. */
  adminToken?: string;
  /** Where the admin token comes from, for the 401's hint (default: the value of GATEWAY_ADMIN_TOKEN). */
  adminTokenSource?: string;
  /** The caller API Gateway already authorized with IAM (e.g. its ARN); trusted as is. */
  adminPrincipal?: string;
  maxBodyBytes: number;
  now?: () => number;
}

const name = z.string().trim().min(1).max(128);
const teamName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'team names are 1-64 letters, digits, ., _ and -');
const posInt = z.number().int().positive().max(1e12);
const limitsSchema = z.object({ rpm: posInt.nullable().optional(), tpm: posInt.nullable().optional() }).strict();
const budgetSchema = z
  .object({
    usdPerDay: z.number().positive().max(1e9).nullable().optional(),
    usdPerMonth: z.number().positive().max(1e9).nullable().optional(),
    tokensPerDay: posInt.nullable().optional(),
    tokensPerMonth: posInt.nullable().optional(),
  })
  .strict();
const metadataSchema = z.record(z.string().min(1).max(64), z.string().max(256)).refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata tags');
const modelsSchema = z.array(z.string().min(1).max(256)).max(256);
/** MCP allow list: `server` or `server/tool`, `*` wildcards; [] allows no MCP server. */
const mcpAllowSchema = z.array(z.string().regex(/^[a-z0-9*][a-z0-9_*-]*(\/.+)?$/, 'entries are `server` or `server/tool` (`*` wildcards)').max(320)).max(256);
const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date-time');

const createSchema = z
  .object({
    name,
    team: teamName.optional(),
    models: modelsSchema.optional(),
    mcp: mcpAllowSchema.optional(),
    limits: limitsSchema.optional(),
    budget: budgetSchema.optional(),
    expiresAt: isoDate.optional(),
    /** Alternative to expiresAt. */
    expiresInDays: z.number().positive().max(36_500).optional(),
    metadata: metadataSchema.optional(),
  })
  .strict();

const updateSchema = z
  .object({
    name: name.optional(),
    team: teamName.nullable().optional(),
    models: modelsSchema.nullable().optional(),
    mcp: mcpAllowSchema.nullable().optional(),
    limits: limitsSchema.optional(),
    budget: budgetSchema.optional(),
    expiresAt: isoDate.nullable().optional(),
    metadata: metadataSchema.optional(),
  })
  .strict();

const teamSchema = z
  .object({
    mcp: mcpAllowSchema.nullable().optional(),
    limits: limitsSchema.optional(),
    budget: budgetSchema.optional(),
    metadata: metadataSchema.optional(),
  })
  .strict();

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = issue.path.map(String).join('.') || null;
  throw new GatewayError('invalid_request', `${param ? `${param}: ` : ''}${issue.message}`, { param, code: 'invalid_value' });
}

/** Drop null/undefined fields (null in an update means "remove"). */
function compact<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], null> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined)) as never;
}

function merge<T extends object>(base: T, patch: object | undefined): T {
  return patch ? (compact({ ...base, ...patch }) as T) : base;
}

/** A key as the admin API shows it: never the hash. */
export function keyView(k: KeyRecord, now: number): Record<string, unknown> {
  const status = k.revokedAt ? 'revoked' : k.expiresAt && Date.parse(k.expiresAt) <= now ? 'expired' : 'active';
  return {
    id: k.id,
    name: k.name,
    team: k.team ?? null,
    models: k.models ?? null,
    mcp: k.mcp ?? null,
    limits: k.limits,
    budget: k.budget,
    metadata: k.metadata,
    status,
    createdAt: k.createdAt,
    updatedAt: k.updatedAt,
    expiresAt: k.expiresAt ?? null,
    revokedAt: k.revokedAt ?? null,
  };
}

function teamView(t: TeamRecord): Record<string, unknown> {
  return { name: t.name, mcp: t.mcp ?? null, limits: t.limits, budget: t.budget, metadata: t.metadata, createdAt: t.createdAt, updatedAt: t.updatedAt };
}

function totalsView(t: CounterTotals): Record<string, number> {
  return {
    requests: t.requests,
    tokens: t.tokens,
    inputTokens: t.inputTokens,
    outputTokens: t.outputTokens,
    cacheReadTokens: t.cacheReadTokens,
    cacheWriteTokens: t.cacheWriteTokens,
    costUsd: t.microUsd / 1e6,
  };
}

function sha(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export function adminAuthorized(request: Request, ctx: Pick<AdminContext, 'adminToken' | 'adminPrincipal'>): boolean {
  if (ctx.adminPrincipal) return true;
  if (!ctx.adminToken) return false;
  const m = /^Bearer\s+(.+)$/i.exec(request.headers.get('authorization')?.trim() ?? '');
  return !!m && timingSafeEqual(sha(m[1]!.trim()), sha(ctx.adminToken));
}

const ID_RE = /^[a-z2-7]{20}$/;

export async function handleAdmin(request: Request, path: string, ctx: AdminContext): Promise<Response> {
  if (!adminAuthorized(request, ctx)) {
    throw new GatewayError(
      'authentication',
      ctx.adminToken ? `The admin API needs \`Authorization: Bearer <admin token>\` (${ctx.adminTokenSource ?? 'the value of GATEWAY_ADMIN_TOKEN'}).` : 'The admin API is not enabled here: set GATEWAY_ADMIN_TOKEN, or call it through the IAM-protected admin route.',
      { code: 'admin_unauthorized' },
    );
  }
  const policy = ctx.policy;
  if (!policy) throw new GatewayError('not_found', 'Keys are not enabled: set `auth.required: true` in the configuration.', { code: 'auth_disabled', status: 404 });
  const store = policy.store;
  const now = (ctx.now ?? Date.now)();
  const nowIso = new Date(now).toISOString();
  const url = new URL(request.url);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent); // ['admin', ...] (the gateway has refused a path that does not decode)
  const method = request.method;
  const body = async () => readJsonBody(request, ctx.maxBodyBytes);
  const [, coll, id, sub] = parts;

  if (coll === 'keys') {
    if (!id) {
      if (method === 'POST') {
        const input = parse(createSchema, await body());
        if (input.expiresAt && input.expiresInDays) throw new GatewayError('invalid_request', 'Give expiresAt or expiresInDays, not both.', { param: 'expiresAt' });
        const expiresAt = input.expiresAt ? new Date(input.expiresAt).toISOString() : input.expiresInDays ? new Date(now + input.expiresInDays * 86_400_000).toISOString() : undefined;
        for (let i = 0; i < 3; i++) {
          const { id: keyId, key, hash } = newKey();
          const rec: KeyRecord = {
            id: keyId,
            hash,
            name: input.name,
            team: input.team,
            models: input.models?.length ? input.models : undefined,
            mcp: input.mcp,
            limits: compact(input.limits ?? {}),
            budget: compact(input.budget ?? {}),
            createdAt: nowIso,
            updatedAt: nowIso,
            expiresAt,
            metadata: input.metadata ?? {},
            version: 1,
          };
          if (await store.createKey(rec)) return jsonResponse({ ...keyView(rec, now), key }, 201);
        }
        throw new GatewayError('internal', 'Could not allocate a key id.');
      }
      if (method === 'GET') {
        const limit = url.searchParams.get('limit');
        const page = await store.listKeys({ team: url.searchParams.get('team') ?? undefined, limit: limit ? Number(limit) || 100 : undefined, cursor: url.searchParams.get('cursor') ?? undefined });
        return jsonResponse({ data: page.keys.map((k) => keyView(k, now)), next_cursor: page.cursor ?? null });
      }
      throw notAllowed(method, path);
    }
    if (!ID_RE.test(id)) throw new GatewayError('not_found', `No key with id '${id}'.`, { code: 'key_not_found' });
    if (!sub && method === 'GET') return jsonResponse(keyView(await mustKey(policy, id), now));
    if (!sub && method === 'PATCH') {
      const patch = parse(updateSchema, await body());
      for (let i = 0; i < 5; i++) {
        const cur = await mustKey(policy, id);
        const next: KeyRecord = {
          ...cur,
          name: patch.name ?? cur.name,
          team: patch.team === null ? undefined : (patch.team ?? cur.team),
          models: patch.models === null ? undefined : patch.models ? (patch.models.length ? patch.models : undefined) : cur.models,
          mcp: patch.mcp === null ? undefined : (patch.mcp ?? cur.mcp),
          limits: merge(cur.limits, patch.limits),
          budget: merge(cur.budget, patch.budget),
          expiresAt: patch.expiresAt === null ? undefined : patch.expiresAt ? new Date(patch.expiresAt).toISOString() : cur.expiresAt,
          metadata: patch.metadata ?? cur.metadata,
          updatedAt: nowIso,
          version: cur.version + 1,
        };
        if (await store.replaceKey(next, cur.version)) {
          policy.invalidateKey(id);
          return jsonResponse(keyView(next, now));
        }
      }
      throw new GatewayError('overloaded', 'The key kept changing while being updated; try again.', { status: 409, code: 'conflict' });
    }
    if ((!sub && method === 'DELETE') || (sub === 'revoke' && method === 'POST')) {
      for (let i = 0; i < 5; i++) {
        const cur = await mustKey(policy, id);
        if (cur.revokedAt) return jsonResponse(keyView(cur, now));
        const next: KeyRecord = { ...cur, revokedAt: nowIso, updatedAt: nowIso, version: cur.version + 1 };
        if (await store.replaceKey(next, cur.version)) {
          policy.invalidateKey(id);
          return jsonResponse(keyView(next, now));
        }
      }
      throw new GatewayError('overloaded', 'The key kept changing while being revoked; try again.', { status: 409, code: 'conflict' });
    }
    if (sub === 'usage' && method === 'GET') {
      const k = await mustKey(policy, id);
      return jsonResponse({ key: { id: k.id, name: k.name, team: k.team ?? null }, ...(await usage(policy, `key:${k.id}`, k.limits, now)) });
    }
    throw notAllowed(method, path);
  }

  if (coll === 'teams') {
    if (!id) {
      if (method === 'GET') return jsonResponse({ data: (await store.listTeams()).map(teamView) });
      throw notAllowed(method, path);
    }
    const team = parse(teamName, id);
    if (!sub && (method === 'PUT' || method === 'PATCH')) {
      const input = parse(teamSchema, await body());
      const cur = await store.getTeam(team);
      const rec: TeamRecord =
        method === 'PUT' || !cur
          ? { name: team, mcp: input.mcp ?? undefined, limits: compact(input.limits ?? {}), budget: compact(input.budget ?? {}), metadata: input.metadata ?? {}, createdAt: cur?.createdAt ?? nowIso, updatedAt: nowIso }
          : { ...cur, mcp: input.mcp === null ? undefined : (input.mcp ?? cur.mcp), limits: merge(cur.limits, input.limits), budget: merge(cur.budget, input.budget), metadata: input.metadata ?? cur.metadata, updatedAt: nowIso };
      await store.putTeam(rec);
      policy.invalidateTeam(team);
      return jsonResponse(teamView(rec), cur ? 200 : 201);
    }
    if (!sub && method === 'GET') {
      const t = await store.getTeam(team);
      if (!t) throw new GatewayError('not_found', `No limits are set for team '${team}'.`, { code: 'team_not_found' });
      return jsonResponse(teamView(t));
    }
    if (sub === 'usage' && method === 'GET') {
      const t = await store.getTeam(team);
      return jsonResponse({ team: team, ...(await usage(policy, `team:${team}`, t?.limits ?? {}, now)) });
    }
    throw notAllowed(method, path);
  }
  if (coll === 'report' && !id) {
    if (method !== 'GET') throw notAllowed(method, path);
    return jsonResponse(await report(policy, url.searchParams, now), 200, { 'cache-control': 'no-store' });
  }
  throw new GatewayError('not_found', `Unknown admin route: ${method} ${path}`, { code: 'unknown_route' });
}

type ReportTotals = Omit<ReportRow, 'subject' | 'model' | 'microUsd'> & { tokens: number; costUsd: number };

function reportTotals(rows: ReportRow[]): ReportTotals {
  const t = { requests: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 0 };
  for (const r of rows) for (const f of Object.keys(t) as (keyof typeof t)[]) t[f] += r[f];
  const { microUsd, ...rest } = t;
  return { ...rest, tokens: t.inputTokens + t.outputTokens, costUsd: microUsd / 1e6 };
}

/** Who a report subject is: a team, or a key without a team. */
function subjectView(subject: string): { team: string | null; keyId: string | null } {
  return subject.startsWith('team:') ? { team: subject.slice(5), keyId: null } : { team: null, keyId: subject.slice(4) };
}

/**
 * `GET /admin/report?period=YYYY-MM` (default: this month) or `?day=YYYY-MM-DD`: requests, tokens
 * and spend per team (or key without a team) and model, from the usage report's counters, with each
 * team's USD and token budget for that kind of period.
 */
async function report(policy: Policy, q: URLSearchParams, now: number): Promise<Record<string, unknown>> {
  const day = q.get('day');
  const month = q.get('period');
  if (day !== null && month !== null) throw new GatewayError('invalid_request', 'Give `period` (YYYY-MM) or `day` (YYYY-MM-DD), not both.', { param: 'day', code: 'invalid_value' });
  const period = day ?? month ?? periodId('m', now);
  const kind = day !== null ? 'day' : 'month';
  const re = kind === 'day' ? /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/ : /^\d{4}-(0[1-9]|1[0-2])$/;
  if (!re.test(period) || (kind === 'day' && new Date(`${period}T00:00:00Z`).toISOString().slice(0, 10) !== period)) {
    throw new GatewayError('invalid_request', kind === 'day' ? '`day` must be a date like 2026-11-30.' : '`period` must be a month like 2026-11.', { param: kind === 'day' ? 'day' : 'period', code: 'invalid_value' });
  }
  // This instance's batched usage first, so what it has served is counted.
  await policy.flush();
  const [rows, teams] = await Promise.all([policy.store.usageReport(period), policy.store.listTeams()]);
  // Teams with a budget are listed even without spend (the dashboard shows them against it).
  const bySubject = new Map<string, ReportRow[]>(teams.filter((t) => Object.keys(t.budget).length).map((t) => [`team:${t.name}`, []]));
  for (const r of rows) bySubject.set(r.subject, [...(bySubject.get(r.subject) ?? []), r]);
  const budgets = new Map(teams.map((t) => [`team:${t.name}`, t.budget]));
  return {
    kind,
    period,
    rows: rows.map((r) => ({ ...subjectView(r.subject), model: r.model, ...reportTotals([r]) })),
    byTeam: [...bySubject].sort(([a], [b]) => a.localeCompare(b)).map(([subject, list]) => {
      const b = budgets.get(subject) ?? {};
      return { ...subjectView(subject), ...reportTotals(list), budgetUsd: (kind === 'day' ? b.usdPerDay : b.usdPerMonth) ?? null, budgetTokens: (kind === 'day' ? b.tokensPerDay : b.tokensPerMonth) ?? null };
    }),
    totals: reportTotals(rows),
  };
}

function notAllowed(method: string, path: string): GatewayError {
  return new GatewayError('invalid_request', `Method ${method} is not allowed on ${path}.`, { status: 405, code: 'method_not_allowed' });
}

async function mustKey(policy: Policy, id: string): Promise<KeyRecord> {
  const k = await policy.store.getKey(id);
  if (!k) throw new GatewayError('not_found', `No key with id '${id}'.`, { code: 'key_not_found' });
  return k;
}

async function usage(policy: Policy, subject: string, limits: KeyRecord['limits'], now: number): Promise<Record<string, unknown>> {
  const w = windowOf(now);
  const minuteId = `rl:${subject}:${w}`;
  const dayId = usageCounterId(subject, 'd', now);
  const monthId = usageCounterId(subject, 'm', now);
  // This instance's batched usage first, so what it has served is counted.
  await policy.flush();
  const got = await policy.store.getCounters([minuteId, dayId, monthId]);
  const minute = got.get(minuteId) ?? ZERO_TOTALS;
  return {
    minute: {
      start: new Date(w * WINDOW_MS).toISOString(),
      limits,
      // Capacity leased by gateway instances in this minute (an upper bound of what was used).
      requestsLeased: minute.requests,
      tokensLeased: minute.tokens,
    },
    day: { period: periodId('d', now), ...totalsView(got.get(dayId) ?? ZERO_TOTALS) },
    month: { period: periodId('m', now), ...totalsView(got.get(monthId) ?? ZERO_TOTALS) },
  };
}
