import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { AwsJsonClient } from '../aws/json-client.ts';
import { awsTarget, type AwsTarget } from '../aws/target.ts';
import {
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
  type DeferredCommand,
  type DynamoCaller,
  type Ops,
} from './commands.ts';
import type { CounterTotals, KeyPage, KeyRecord, LeaseRequest, LeaseResult, ReportRow, ReserveRequest, Store, TeamRecord, UsageDelta } from './types.ts';
import { spanAwsCalls } from '../tracing/spans.ts';
import { isLocalEndpoint, type DynamoSettings, type DynamoTables } from './settings.ts';
import { lazyDynamoClient } from './lazy.ts';

export { dynamoSettings, isLocalEndpoint, type DynamoSettings, type DynamoTables } from './settings.ts';

/**
 * The Store on DynamoDB. Two tables, both with a single string partition key `pk`:
 *
 * - keys:  `key#<id>` items (one per gateway key, holding the key's SHA-256, never the key) and
 *          `team#<name>` items (team limits and budgets).
 * - usage: counters, one item per subject and window (`rl:key:<id>:<minute>` for rate-limit leases,
 *          `use:team:<name>:d:<YYYY-MM-DD>` / `...:m:<YYYY-MM>` for budgets; `rpt:<YYYY-MM-DD>` for
 *          the usage report, one item per day with a number per subject, model and field) and
 *          budget-alert markers (`alert:<subject>:<budget>:<period>:<percent>`, see `claim`), with the TTL
 *          attribute `expiresAt` (epoch seconds). Readers never trust TTL deletion: window ids are in
 *          the key, so an expired window is simply never read again.
 *
 * Every limit check is a single-item conditional update (no transactions: they cost double and the
 * local emulator lacks them).
 */

export interface DynamoStoreOptions {
  client: DynamoCaller;
  tables: DynamoTables;
}

type Item = Record<string, AttributeValue>;

// ---- plain JSON <-> AttributeValue ----------------------------------------------------------

export function toAttr(v: unknown): AttributeValue {
  if (v === null || v === undefined) return { NULL: true };
  if (typeof v === 'string') return { S: v };
  if (typeof v === 'number') return { N: String(v) };
  if (typeof v === 'boolean') return { BOOL: v };
  if (Array.isArray(v)) return { L: v.map(toAttr) };
  if (typeof v === 'object') {
    const m: Item = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) m[k] = toAttr(x);
    return { M: m };
  }
  throw new TypeError(`cannot store a ${typeof v}`);
}

export function fromAttr(a: AttributeValue): unknown {
  if (a.S !== undefined) return a.S;
  if (a.N !== undefined) return Number(a.N);
  if (a.BOOL !== undefined) return a.BOOL;
  if (a.NULL) return null;
  if (a.L) return a.L.map(fromAttr);
  if (a.M) return Object.fromEntries(Object.entries(a.M).map(([k, x]) => [k, fromAttr(x)]));
  if (a.SS) return [...a.SS];
  return undefined;
}

function toItem(obj: Record<string, unknown>): Item {
  return (toAttr(obj) as { M: Item }).M;
}

function fromItem(item: Item): Record<string, unknown> {
  return Object.fromEntries(Object.entries(item).map(([k, x]) => [k, fromAttr(x)]));
}

// ---- records ----------------------------------------------------------------------------------

const KEY_PREFIX = 'key#';
const TEAM_PREFIX = 'team#';

function keyItem(rec: KeyRecord): Item {
  return toItem({ pk: KEY_PREFIX + rec.id, kind: 'key', ...rec });
}

function keyFrom(item: Item): KeyRecord {
  const o = fromItem(item);
  return {
    id: o.id as string,
    hash: o.hash as string,
    name: o.name as string,
    team: (o.team as string | undefined) ?? undefined,
    models: (o.models as string[] | undefined) ?? undefined,
    mcp: (o.mcp as string[] | undefined) ?? undefined,
    limits: (o.limits as KeyRecord['limits']) ?? {},
    budget: (o.budget as KeyRecord['budget']) ?? {},
    createdAt: o.createdAt as string,
    updatedAt: (o.updatedAt as string) ?? (o.createdAt as string),
    expiresAt: (o.expiresAt as string | undefined) ?? undefined,
    revokedAt: (o.revokedAt as string | undefined) ?? undefined,
    metadata: (o.metadata as Record<string, string>) ?? {},
    version: (o.version as number) ?? 0,
  };
}

function teamFrom(item: Item): TeamRecord {
  const o = fromItem(item);
  return {
    name: o.name as string,
    mcp: (o.mcp as string[] | undefined) ?? undefined,
    limits: (o.limits as TeamRecord['limits']) ?? {},
    budget: (o.budget as TeamRecord['budget']) ?? {},
    metadata: (o.metadata as Record<string, string>) ?? {},
    createdAt: o.createdAt as string,
    updatedAt: (o.updatedAt as string) ?? (o.createdAt as string),
  };
}

const COUNTER_ATTRS: [keyof CounterTotals, string][] = [
  ['requests', 'req'],
  ['tokens', 'tok'],
  ['inputTokens', 'inp'],
  ['outputTokens', 'outp'],
  ['cacheReadTokens', 'cr'],
  ['cacheWriteTokens', 'cw'],
  ['microUsd', 'usd'],
  ['committedMicroUsd', 'cusd'],
  ['committedTokens', 'ctok'],
];

const REPORT_PREFIX = 'rpt:';
const REPORT_ROWS_PER_WRITE = 40;
type ReportField = Exclude<keyof ReportRow, 'subject' | 'model'>;
const REPORT_ATTRS = COUNTER_ATTRS.filter((a): a is [ReportField, string] => ['requests', 'inputTokens', 'outputTokens', 'cacheReadTokens', 'cacheWriteTokens', 'microUsd'].includes(a[0]));
const REPORT_FIELDS = new Map(REPORT_ATTRS.map(([field, attr]) => [attr, field]));

/** The UTC days of a period: `YYYY-MM-DD` itself, or every day of `YYYY-MM`. */
export function daysOf(period: string): string[] {
  if (period.length === 10) return [period];
  const [y, m] = period.split('-').map(Number) as [number, number];
  const n = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return Array.from({ length: n }, (_, i) => `${period}-${String(i + 1).padStart(2, '0')}`);
}

function totalsFrom(item: Item | undefined): CounterTotals {
  const t = { requests: 0, tokens: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 0, committedMicroUsd: 0, committedTokens: 0 };
  if (!item) return t;
  for (const [field, attr] of COUNTER_ATTRS) if (item[attr]?.N !== undefined) t[field] = Number(item[attr]!.N);
  return t;
}

function encodeCursor(key: Item | undefined): string | undefined {
  return key ? Buffer.from(JSON.stringify(fromItem(key))).toString('base64url') : undefined;
}

function decodeCursor(cursor: string | undefined): Item | undefined {
  if (!cursor) return undefined;
  try {
    const o = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
    if (typeof o.pk !== 'string') return undefined;
    return { pk: { S: o.pk } };
  } catch {
    return undefined;
  }
}

export class DynamoStore implements Store {
  private readonly client: DynamoCaller;
  readonly tables: DynamoTables;

  constructor(opts: DynamoStoreOptions) {
    this.client = opts.client;
    this.tables = opts.tables;
  }

  async createKey(rec: KeyRecord): Promise<boolean> {
    try {
      await this.client.send(new PutItemCommand({ TableName: this.tables.keys, Item: keyItem(rec), ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const out = await this.client.send(new GetItemCommand({ TableName: this.tables.keys, Key: { pk: { S: KEY_PREFIX + id } }, ConsistentRead: true }));
    return out.Item ? keyFrom(out.Item) : undefined;
  }

  async replaceKey(rec: KeyRecord, expectedVersion: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tables.keys,
          Item: keyItem(rec),
          ConditionExpression: 'attribute_exists(pk) AND version = :v',
          ExpressionAttributeValues: { ':v': { N: String(expectedVersion) } },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  async listKeys(opts: { team?: string; limit?: number; cursor?: string } = {}): Promise<KeyPage> {
    const limit = Math.min(Math.max(opts.limit ?? 100, 1), 1000);
    const keys: KeyRecord[] = [];
    let start = decodeCursor(opts.cursor);
    const values: Item = { ':k': { S: 'key' } };
    let filter = 'kind = :k';
    if (opts.team) {
      filter += ' AND team = :t';
      values[':t'] = { S: opts.team };
    }
    for (;;) {
      const out = await this.client.send(
        new ScanCommand({ TableName: this.tables.keys, FilterExpression: filter, ExpressionAttributeValues: values, ExclusiveStartKey: start, Limit: 200, ConsistentRead: true }),
      );
      for (const item of out.Items ?? []) {
        keys.push(keyFrom(item));
        if (keys.length === limit) {
          // Resume after the last key returned (scan order is stable for a given table).
          const more = item !== out.Items![out.Items!.length - 1] || out.LastEvaluatedKey !== undefined;
          return { keys, cursor: more ? encodeCursor({ pk: item.pk! }) : undefined };
        }
      }
      if (!out.LastEvaluatedKey) return { keys };
      start = out.LastEvaluatedKey;
    }
  }

  async hasAnyKey(): Promise<boolean> {
    const page = await this.listKeys({ limit: 1 });
    return page.keys.length > 0;
  }

  async getTeam(name: string): Promise<TeamRecord | undefined> {
    const out = await this.client.send(new GetItemCommand({ TableName: this.tables.keys, Key: { pk: { S: TEAM_PREFIX + name } }, ConsistentRead: true }));
    return out.Item ? teamFrom(out.Item) : undefined;
  }

  async putTeam(rec: TeamRecord): Promise<void> {
    await this.client.send(new PutItemCommand({ TableName: this.tables.keys, Item: toItem({ pk: TEAM_PREFIX + rec.name, kind: 'team', ...rec }) }));
  }

  async listTeams(): Promise<TeamRecord[]> {
    const teams: TeamRecord[] = [];
    let start: Item | undefined;
    do {
      const out = await this.client.send(
        new ScanCommand({ TableName: this.tables.keys, FilterExpression: 'kind = :k', ExpressionAttributeValues: { ':k': { S: 'team' } }, ExclusiveStartKey: start, ConsistentRead: true }),
      );
      for (const item of out.Items ?? []) teams.push(teamFrom(item));
      start = out.LastEvaluatedKey;
    } while (start);
    return teams.sort((a, b) => a.name.localeCompare(b.name));
  }

  async lease(counterId: string, req: LeaseRequest): Promise<LeaseResult> {
    const conds: string[] = [];
    const values: Item = { ':r': { N: String(req.requests) }, ':t': { N: String(req.tokens) }, ':e': { N: String(req.expiresAt) } };
    if (req.maxRequests !== undefined) {
      const room = req.maxRequests - req.requests;
      if (room < 0) return { ok: false };
      conds.push('(attribute_not_exists(req) OR req <= :rmax)');
      values[':rmax'] = { N: String(room) };
    }
    if (req.maxTokens !== undefined) {
      const room = req.maxTokens - req.tokens;
      if (room < 0) return { ok: false };
      conds.push('(attribute_not_exists(tok) OR tok <= :tmax)');
      values[':tmax'] = { N: String(room) };
    }
    try {
      const out = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tables.usage,
          Key: { pk: { S: counterId } },
          UpdateExpression: 'ADD req :r, tok :t SET expiresAt = if_not_exists(expiresAt, :e)',
          ConditionExpression: conds.length ? conds.join(' AND ') : undefined,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      const t = totalsFrom(out.Attributes);
      return { ok: true, requests: t.requests, tokens: t.tokens };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return { ok: false };
      throw err;
    }
  }

  async reserve(counterId: string, req: ReserveRequest): Promise<{ ok: true; totals: CounterTotals } | { ok: false }> {
    const attr = req.field === 'committedMicroUsd' ? 'cusd' : 'ctok';
    if (req.atMost < 0) return { ok: false };
    try {
      const out = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tables.usage,
          Key: { pk: { S: counterId } },
          UpdateExpression: `ADD ${attr} :a SET expiresAt = if_not_exists(expiresAt, :e)`,
          ConditionExpression: `attribute_not_exists(${attr}) OR ${attr} <= :max`,
          ExpressionAttributeValues: { ':a': { N: String(req.amount) }, ':max': { N: String(req.atMost) }, ':e': { N: String(req.expiresAt) } },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { ok: true, totals: totalsFrom(out.Attributes) };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return { ok: false };
      throw err;
    }
  }

  async addUsage(counterId: string, delta: UsageDelta, expiresAt: number): Promise<CounterTotals> {
    const adds: string[] = [];
    const values: Item = { ':e': { N: String(expiresAt) } };
    for (const [field, attr] of COUNTER_ATTRS) {
      const v = delta[field];
      if (v) {
        adds.push(`${attr} :${attr}`);
        values[`:${attr}`] = { N: String(v) };
      }
    }
    const out = await this.client.send(
      new UpdateItemCommand({
        TableName: this.tables.usage,
        Key: { pk: { S: counterId } },
        UpdateExpression: `${adds.length ? `ADD ${adds.join(', ')} ` : ''}SET expiresAt = if_not_exists(expiresAt, :e)`,
        ExpressionAttributeValues: values,
        ReturnValues: 'ALL_NEW',
      }),
    );
    return totalsFrom(out.Attributes);
  }

  async claim(id: string, expiresAt: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutItemCommand({ TableName: this.tables.usage, Item: { pk: { S: id }, expiresAt: { N: String(expiresAt) } }, ConditionExpression: 'attribute_not_exists(pk)' }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  async getCounters(ids: string[]): Promise<Map<string, CounterTotals>> {
    const result = new Map<string, CounterTotals>();
    for (const item of await this.usageItems(ids)) result.set(item.pk!.S!, totalsFrom(item));
    return result;
  }

  /** Usage items by id (consistent reads, one round trip per 100 ids); missing ones are absent. */
  private async usageItems(ids: string[]): Promise<Item[]> {
    const items: Item[] = [];
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += 100) {
      let keys: Item[] | undefined = unique.slice(i, i + 100).map((id) => ({ pk: { S: id } }));
      for (let round = 0; keys?.length && round < 5; round++) {
        const out = await this.client.send(new BatchGetItemCommand({ RequestItems: { [this.tables.usage]: { Keys: keys, ConsistentRead: true } } }));
        items.push(...(out.Responses?.[this.tables.usage] ?? []));
        keys = out.UnprocessedKeys?.[this.tables.usage]?.Keys as Item[] | undefined;
      }
    }
    return items;
  }

  async addReportUsage(day: string, rows: ReportRow[], expiresAt: number): Promise<void> {
    // A few dozen rows per update keep the expression within DynamoDB's 4 KB limit.
    for (let i = 0; i < rows.length; i += REPORT_ROWS_PER_WRITE) {
      const names: Record<string, string> = {};
      const values: Item = { ':e': { N: String(expiresAt) } };
      const adds: string[] = [];
      for (const row of rows.slice(i, i + REPORT_ROWS_PER_WRITE)) {
        for (const [field, attr] of REPORT_ATTRS) {
          if (!row[field]) continue;
          const n = adds.length;
          names[`#a${n}`] = `${attr}|${row.subject}|${row.model}`;
          values[`:a${n}`] = { N: String(row[field]) };
          adds.push(`#a${n} :a${n}`);
        }
      }
      if (!adds.length) continue;
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tables.usage,
          Key: { pk: { S: REPORT_PREFIX + day } },
          UpdateExpression: `ADD ${adds.join(', ')} SET expiresAt = if_not_exists(expiresAt, :e)`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
    }
  }

  async usageReport(period: string): Promise<ReportRow[]> {
    const rows = new Map<string, ReportRow>();
    for (const item of await this.usageItems(daysOf(period).map((d) => REPORT_PREFIX + d))) {
      for (const [name, v] of Object.entries(item)) {
        // `<field>|<subject>|<model>`: the subject has no `|`, the model may.
        const m = /^([a-z]+)\|([^|]+)\|(.*)$/s.exec(name);
        const field = m && REPORT_FIELDS.get(m[1]!);
        if (!field || v.N === undefined) continue;
        const id = `${m![2]}|${m![3]}`;
        let row = rows.get(id);
        if (!row) rows.set(id, (row = { subject: m![2]!, model: m![3]!, requests: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 0 }));
        row[field] += Number(v.N);
      }
    }
    return [...rows.values()].sort((a, b) => a.subject.localeCompare(b.subject) || a.model.localeCompare(b.model));
  }

  close(): void {
    this.client.destroy();
  }
}

/** Where the lean client sends the store's calls (shared/aws/target.ts), or a local endpoint with dummy credentials; undefined: the SDK's chains are needed. */
export function leanDynamoTarget(s: DynamoSettings, env: Record<string, string | undefined> = process.env): AwsTarget | undefined {
  if (isLocalEndpoint(s.endpoint)) return { region: s.region ?? 'local', endpoint: s.endpoint!, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
  return awsTarget({ endpointPrefix: 'dynamodb', envName: 'DYNAMODB' }, s, env);
}

/** A DynamoCaller on the lean client, with a middleware stack of the SDK's shape (spans; tests count calls with it). */
export interface LeanDynamoCaller extends DynamoCaller {
  middlewareStack: AwsJsonClient['middlewareStack'];
}

/**
 * The store's DynamoDB caller: the lean JSON client where `leanDynamoTarget` resolves (Lambda, a
 * local endpoint), else the AWS SDK, loaded by the first call (shared/store/dynamodb-sdk.ts).
 */
export function dynamoClient(s: DynamoSettings, env: Record<string, string | undefined> = process.env): LeanDynamoCaller | DynamoCaller {
  const target = leanDynamoTarget(s, env);
  if (!target) return lazyDynamoClient(s);
  const client = new AwsJsonClient({ service: 'dynamodb', targetPrefix: 'DynamoDB_20120810', jsonVersion: '1.0', target });
  // Each call is a span when a recorder is installed (X-Ray in Lambda).
  spanAwsCalls(client, 'DynamoDB');
  return {
    send: <K extends keyof Ops>(command: DeferredCommand<K>) => client.call<Ops[K][1]>(command.op, command.input as object).then((out) => binaryIn(out) as Ops[K][1]),
    destroy: () => client.destroy(),
    middlewareStack: client.middlewareStack,
  };
}

/**
 * An answer's binary attribute values back to bytes, in place: `B` (and each of `BS`) holds base64
 * in the JSON protocol. Attribute values are objects, so a string under `B` is only ever a binary
 * value (an attribute named `B` maps to an object).
 */
function binaryIn(v: unknown): unknown {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = binaryIn(v[i]);
  } else if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const k in o) {
      const x = o[k];
      if (k === 'B' && typeof x === 'string') o[k] = Buffer.from(x, 'base64');
      else if (k === 'BS' && Array.isArray(x) && x.every((b) => typeof b === 'string')) o[k] = x.map((b: string) => Buffer.from(b, 'base64'));
      else if (x !== null && typeof x === 'object') o[k] = binaryIn(x);
    }
  }
  return v;
}

export function createDynamoStore(s: DynamoSettings): DynamoStore {
  return new DynamoStore({ client: dynamoClient(s), tables: s.tables });
}

/**
 * Create the tables if they do not exist (local server and tests; in AWS the CDK stack owns them,
 * with TTL on `expiresAt` in the usage table).
 */
export async function ensureTables(s: DynamoSettings): Promise<void> {
  const client = dynamoClient(s);
  try {
    for (const name of [s.tables.keys, s.tables.usage]) await ensureTable(client, name);
  } finally {
    client.destroy();
  }
}

/** Create one on-demand table keyed on the string `pk` if it does not exist, and wait until it is active. */
export async function ensureTable(client: Pick<DynamoCaller, 'send'>, name: string): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: name }));
    return;
  } catch (err) {
    if ((err as Error).name !== 'ResourceNotFoundException') throw err;
  }
  try {
    await client.send(
      new CreateTableCommand({
        TableName: name,
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
  } catch (err) {
    if ((err as Error).name !== 'ResourceInUseException') throw err;
  }
  for (let i = 0; i < 100; i++) {
    const d = await client.send(new DescribeTableCommand({ TableName: name }));
    if (d.Table?.TableStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
