import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * `npm run keys -- <command>`: manage gateway keys and team limits through the admin API.
 * Locally it sends the admin token (GATEWAY_ADMIN_TOKEN, else data/admin-token.txt written by
 * `npm start`); against AWS it signs each request with SigV4 using your AWS credentials.
 */

const HELP = `Usage: npm run keys -- <command> [options]

Commands:
  create --name NAME [--team T] [--models a,b] [limits]   create a key (the key is printed once)
  list [--team T]                                       list keys
  get ID                                                show a key
  update ID [--name N] [--team T] [--models a,b] [limits] change a key (--models '' allows all)
  revoke ID                                             revoke a key
  usage ID                                              a key's usage this minute, day and month
  teams                                                 list teams with limits
  team set NAME [limits]                                set a team's limits and budgets
  team get NAME | team usage NAME                       show a team's limits or usage
  report [--month YYYY-MM | --day YYYY-MM-DD]           spend, tokens and requests per team and model
                                                        (default: this month), with totals

Limits: --rpm N --tpm N --usd-per-day X --usd-per-month X --tokens-per-day N --tokens-per-month N
Keys:   --expires-in 30d (or 12h, 90m) | --expires-at 2026-01-01T00:00:00Z   --tag k=v (repeatable)

Options:
  --url URL     gateway base URL (env GATEWAY_URL; default http://127.0.0.1:$PORT, PORT defaulting to 8080);
                for AWS, the deploy's GatewayUrl (e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod/)
  --token T     admin token (env GATEWAY_ADMIN_TOKEN; locally data/admin-token.txt)
  --aws         sign requests with SigV4 (default when the URL is an amazonaws.com host)
  --region R    region for SigV4 (default: from the URL, AWS_REGION)
  --json        print the raw JSON answer
`;

const OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  aws: { type: 'boolean' },
  region: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  name: { type: 'string' },
  team: { type: 'string' },
  models: { type: 'string' },
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  'usd-per-day': { type: 'string' },
  'usd-per-month': { type: 'string' },
  'tokens-per-day': { type: 'string' },
  'tokens-per-month': { type: 'string' },
  'expires-in': { type: 'string' },
  'expires-at': { type: 'string' },
  tag: { type: 'string', multiple: true },
  limit: { type: 'string' },
  month: { type: 'string' },
  day: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

export class CliError extends Error {}

function num(v: string | undefined, flag: string, int = true): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (int && !Number.isInteger(n))) throw new CliError(`--${flag} must be a positive ${int ? 'integer' : 'number'}`);
  return n;
}

function limitsFrom(v: Values): { limits?: Record<string, number>; budget?: Record<string, number> } {
  const limits: Record<string, number> = {};
  const budget: Record<string, number> = {};
  const set = (o: Record<string, number>, k: string, x: number | undefined) => x !== undefined && (o[k] = x);
  set(limits, 'rpm', num(v.rpm, 'rpm'));
  set(limits, 'tpm', num(v.tpm, 'tpm'));
  set(budget, 'usdPerDay', num(v['usd-per-day'], 'usd-per-day', false));
  set(budget, 'usdPerMonth', num(v['usd-per-month'], 'usd-per-month', false));
  set(budget, 'tokensPerDay', num(v['tokens-per-day'], 'tokens-per-day'));
  set(budget, 'tokensPerMonth', num(v['tokens-per-month'], 'tokens-per-month'));
  return { limits: Object.keys(limits).length ? limits : undefined, budget: Object.keys(budget).length ? budget : undefined };
}

function expiry(v: Values): string | undefined {
  if (v['expires-at']) {
    if (Number.isNaN(Date.parse(v['expires-at']))) throw new CliError('--expires-at must be an ISO 8601 date-time');
    return new Date(v['expires-at']).toISOString();
  }
  if (v['expires-in']) {
    const m = /^(\d+)([dhm])$/.exec(v['expires-in']);
    if (!m) throw new CliError('--expires-in must look like 30d, 12h or 90m');
    const ms = Number(m[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
    return new Date(Date.now() + ms).toISOString();
  }
  return undefined;
}

function tags(v: Values): Record<string, string> | undefined {
  if (!v.tag?.length) return undefined;
  const out: Record<string, string> = {};
  for (const t of v.tag) {
    const i = t.indexOf('=');
    if (i < 1) throw new CliError('--tag must look like key=value');
    out[t.slice(0, i)] = t.slice(i + 1);
  }
  return out;
}

function bytesOf(d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof d === 'string') return d;
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** Node's hashes in the shape @smithy/signature-v4 expects. */
export class NodeSha256 {
  private h: Hash | Hmac;
  private readonly secret?: string | Uint8Array;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.secret = secret === undefined ? undefined : bytesOf(secret);
    this.h = this.fresh();
  }
  private fresh(): Hash | Hmac {
    return this.secret ? createHmac('sha256', this.secret) : createHash('sha256');
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(bytesOf(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {
    this.h = this.fresh();
  }
}

export interface Target {
  base: URL;
  token?: string;
  aws: boolean;
  region?: string;
}

function isLocal(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

export function resolveTarget(v: Values, env: Record<string, string | undefined>): Target {
  const raw = v.url ?? env.GATEWAY_URL ?? `http://127.0.0.1:${env.PORT || 8080}`;
  let base: URL;
  try {
    base = new URL(raw.endsWith('/') ? raw : `${raw}/`);
  } catch {
    throw new CliError(`--url is not a URL: ${raw}`);
  }
  const aws = v.aws ?? /\.amazonaws\.com$/.test(base.hostname);
  let token = v.token ?? env.GATEWAY_ADMIN_TOKEN;
  if (!token && !aws && isLocal(base)) {
    try {
      token = readFileSync('data/admin-token.txt', 'utf8').trim();
    } catch {
      // none: the server will say what it needs
    }
  }
  const region = v.region ?? executeApiRegion(base.hostname) ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  return { base, token, aws, region };
}

/** The region of an API Gateway (execute-api) host name, if it is one. */
export function executeApiRegion(hostname: string): string | undefined {
  return /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$/.exec(hostname)?.[1];
}

/**
 * Headers for a request to API Gateway signed with SigV4 (service execute-api) with the credentials
 * the AWS SDK finds (profile, SSO, a Lambda's or task's role); `host` is left for fetch to set.
 */
export async function sigv4Headers(url: URL, method: string, region: string, headers: Record<string, string>, body?: string): Promise<Record<string, string>> {
  const [{ SignatureV4 }, { defaultProvider }] = await Promise.all([import('@smithy/signature-v4'), import('@aws-sdk/credential-provider-node')]);
  const signer = new SignatureV4({ service: 'execute-api', region, credentials: defaultProvider(), sha256: NodeSha256 });
  const query: Record<string, string> = {};
  url.searchParams.forEach((v, k) => (query[k] = v));
  const signed = await signer.sign({
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port ? Number(url.port) : undefined,
    path: url.pathname,
    query,
    headers: { ...headers, host: url.host },
    body,
  });
  const { host: _host, ...rest } = signed.headers as Record<string, string>;
  return rest;
}

/** One admin API call: JSON in, JSON out; SigV4-signed for AWS, admin token otherwise. */
export async function call(t: Target, method: string, path: string, body?: unknown, query?: Record<string, string>): Promise<{ status: number; json: unknown }> {
  const url = new URL(path.replace(/^\//, ''), t.base);
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
  const text = body === undefined ? undefined : JSON.stringify(body);
  let headers: Record<string, string> = { accept: 'application/json' };
  if (text !== undefined) headers['content-type'] = 'application/json';
  if (t.aws) {
    if (!t.region) throw new CliError('Cannot tell the AWS region: pass --region or set AWS_REGION.');
    headers = await sigv4Headers(url, method, t.region, headers, text);
  } else if (t.token) {
    headers.authorization = `Bearer ${t.token}`;
  }
  let res: Response;
  try {
    res = await fetch(url, { method, headers, body: text });
  } catch (err) {
    throw new CliError(`Cannot reach ${t.base.href}: ${(err as Error).cause ? String(((err as Error).cause as Error).message) : (err as Error).message}. Is the gateway running (npm start)?`);
  }
  const raw = await res.text();
  let json: unknown;
  try {
    json = raw ? JSON.parse(raw) : {};
  } catch {
    json = { raw };
  }
  if (!res.ok) {
    const msg = (json as { error?: { message?: string }; message?: string })?.error?.message ?? (json as { message?: string })?.message ?? raw;
    throw new CliError(`${method} ${url.pathname} failed (${res.status}): ${msg}`);
  }
  return { status: res.status, json };
}

type KeyView = { id: string; name: string; team: string | null; models: string[] | null; limits: Record<string, number>; budget: Record<string, number>; status: string; expiresAt: string | null; createdAt: string };

function describeLimits(limits: Record<string, number>, budget: Record<string, number>): string {
  const parts = [...Object.entries(limits), ...Object.entries(budget)].map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(' ') : 'no limits';
}

function keyLine(k: KeyView): string {
  return `${k.id}  ${k.status.padEnd(7)}  ${k.name}${k.team ? `  team=${k.team}` : ''}  models=${k.models?.join(',') ?? '*'}  ${describeLimits(k.limits, k.budget)}${k.expiresAt ? `  expires=${k.expiresAt}` : ''}`;
}

type ReportLine = { team: string | null; keyId: string | null; model?: string; requests: number; inputTokens: number; outputTokens: number; costUsd: number };
type Report = { kind: string; period: string; rows: ReportLine[]; totals: ReportLine };

/** The usage report as a table: one line per team (or key without a team) and model, then totals. */
export function reportTable(r: Report): string {
  const line = (x: ReportLine): string[] => [x.team ?? `key:${x.keyId}`, x.model ?? '', String(x.requests), String(x.inputTokens), String(x.outputTokens), x.costUsd.toFixed(6)];
  const table = [['TEAM', 'MODEL', 'REQUESTS', 'INPUT TOKENS', 'OUTPUT TOKENS', 'SPEND USD'], ...r.rows.map(line), line({ ...r.totals, team: 'TOTAL', keyId: null })];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const text = table.map((row) => row.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd());
  return [`Usage report for the ${r.kind} ${r.period} (UTC)`, ...text.slice(0, -1), ...(r.rows.length ? [] : ['(no usage)']), text.at(-1)!].join('\n');
}

export async function run(argv: string[], env: Record<string, string | undefined>, out: (s: string) => void): Promise<void> {
  const { values: v, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [cmd, a1, a2] = positionals;
  if (v.help || !cmd) {
    out(HELP);
    return;
  }
  const t = resolveTarget(v, env);
  const show = (json: unknown, human: () => string) => out(v.json ? JSON.stringify(json, null, 2) : human());
  const need = (x: string | undefined, what: string): string => {
    if (!x) throw new CliError(`Missing ${what}. See: npm run keys -- --help`);
    return x;
  };
  const models = v.models === undefined ? undefined : v.models.split(',').map((s) => s.trim()).filter(Boolean);

  switch (cmd) {
    case 'create': {
      const body = { name: need(v.name, '--name'), team: v.team, models, ...limitsFrom(v), expiresAt: expiry(v), metadata: tags(v) };
      const { json } = await call(t, 'POST', 'admin/keys', body);
      const k = json as KeyView & { key: string };
      show(json, () => `Created key ${k.id} (${k.name})\n${keyLine(k)}\n\nKey (shown only now, store it safely):\n${k.key}`);
      return;
    }
    case 'list': {
      const query: Record<string, string> = {};
      if (v.team) query.team = v.team;
      if (v.limit) query.limit = v.limit;
      const all: KeyView[] = [];
      let cursor: string | null = null;
      do {
        const { json } = await call(t, 'GET', 'admin/keys', undefined, cursor ? { ...query, cursor } : query);
        const page = json as { data: KeyView[]; next_cursor: string | null };
        all.push(...page.data);
        cursor = v.limit ? null : page.next_cursor;
      } while (cursor);
      show({ data: all }, () => (all.length ? all.map(keyLine).join('\n') : 'No keys.'));
      return;
    }
    case 'get': {
      const { json } = await call(t, 'GET', `admin/keys/${encodeURIComponent(need(a1, 'key id'))}`);
      show(json, () => keyLine(json as KeyView));
      return;
    }
    case 'update': {
      const body: Record<string, unknown> = { name: v.name, team: v.team, ...limitsFrom(v), metadata: tags(v) };
      if (models !== undefined) body.models = models.length ? models : null;
      const exp = expiry(v);
      if (exp) body.expiresAt = exp;
      const { json } = await call(t, 'PATCH', `admin/keys/${encodeURIComponent(need(a1, 'key id'))}`, body);
      show(json, () => `Updated ${keyLine(json as KeyView)}`);
      return;
    }
    case 'revoke': {
      const { json } = await call(t, 'POST', `admin/keys/${encodeURIComponent(need(a1, 'key id'))}/revoke`);
      show(json, () => `Revoked key ${(json as KeyView).id} (${(json as KeyView).name}).`);
      return;
    }
    case 'usage': {
      const { json } = await call(t, 'GET', `admin/keys/${encodeURIComponent(need(a1, 'key id'))}/usage`);
      show(json, () => JSON.stringify(json, null, 2));
      return;
    }
    case 'teams': {
      const { json } = await call(t, 'GET', 'admin/teams');
      const teams = (json as { data: { name: string; limits: Record<string, number>; budget: Record<string, number> }[] }).data;
      show(json, () => (teams.length ? teams.map((x) => `${x.name}  ${describeLimits(x.limits, x.budget)}`).join('\n') : 'No team limits set.'));
      return;
    }
    case 'team': {
      const name = encodeURIComponent(need(a2, 'team name'));
      if (a1 === 'set') {
        const { json } = await call(t, 'PATCH', `admin/teams/${name}`, { ...limitsFrom(v), metadata: tags(v) });
        const x = json as { name: string; limits: Record<string, number>; budget: Record<string, number> };
        show(json, () => `Team ${x.name}: ${describeLimits(x.limits, x.budget)}`);
        return;
      }
      if (a1 === 'get' || a1 === 'usage') {
        const { json } = await call(t, 'GET', `admin/teams/${name}${a1 === 'usage' ? '/usage' : ''}`);
        show(json, () => JSON.stringify(json, null, 2));
        return;
      }
      throw new CliError('Use: team set NAME | team get NAME | team usage NAME');
    }
    case 'report': {
      if (v.month && v.day) throw new CliError('Give --month or --day, not both.');
      const query: Record<string, string> = v.day ? { day: v.day } : v.month ? { period: v.month } : {};
      const { json } = await call(t, 'GET', 'admin/report', undefined, query);
      show(json, () => reportTable(json as Report));
      return;
    }
    default:
      throw new CliError(`Unknown command '${cmd}'. See: npm run keys -- --help`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    await run(process.argv.slice(2), process.env, (s) => console.log(s));
  } catch (err) {
    if (err instanceof CliError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`keys: ${(err as Error).message}`);
      process.exit(1);
    }
    throw err;
  }
}
