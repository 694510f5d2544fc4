import { BatchGetItemCommand, GetItemCommand, PutItemCommand, createOnFirstUse, ensureTable, isLocalEndpoint, lazyStoreCaller, type DynamoSender } from '../store/lazy.ts';

/**
 * Where cache entries live. One item per entry under a string key `pk`, holding the compressed
 * entry (`body`, binary) and its expiry (`expiresAt`, epoch seconds, the table's TTL attribute).
 * Readers check the expiry themselves: DynamoDB deletes expired items lazily (up to days later).
 */
export interface CacheItem {
  body: Uint8Array;
  /** Epoch seconds. */
  expiresAt: number;
}

export interface CacheBackend {
  get(pk: string): Promise<CacheItem | undefined>;
  /** Several items in one round trip (semantic buckets); missing or expired ones are absent. */
  getMany(pks: string[]): Promise<Map<string, CacheItem>>;
  put(pk: string, item: CacheItem): Promise<void>;
  close(): void;
}

export class DynamoCacheBackend implements CacheBackend {
  private readonly send: <T>(fn: () => Promise<T>) => Promise<T>;

  constructor(
    private readonly client: DynamoSender,
    readonly table: string,
    private readonly now: () => number = Date.now,
    /** Create the table on first use when it is missing (a local DynamoDB only; in AWS the stack owns it). */
    autoCreate = false,
  ) {
    this.send = createOnFirstUse(client, table, autoCreate);
  }

  private live(item: Record<string, { B?: Uint8Array; N?: string }> | undefined): CacheItem | undefined {
    if (!item?.body?.B || !item.expiresAt?.N) return undefined;
    const expiresAt = Number(item.expiresAt.N);
    if (expiresAt * 1000 <= this.now()) return undefined;
    return { body: item.body.B, expiresAt };
  }

  async get(pk: string): Promise<CacheItem | undefined> {
    const out = await this.send(() => this.client.send(new GetItemCommand({ TableName: this.table, Key: { pk: { S: pk } } })));
    return this.live(out.Item as never);
  }

  async getMany(pks: string[]): Promise<Map<string, CacheItem>> {
    const result = new Map<string, CacheItem>();
    const unique = [...new Set(pks)];
    for (let i = 0; i < unique.length; i += 100) {
      let keys: Record<string, { S: string }>[] | undefined = unique.slice(i, i + 100).map((pk) => ({ pk: { S: pk } }));
      for (let round = 0; keys?.length && round < 3; round++) {
        const ks = keys;
        const out = await this.send(() => this.client.send(new BatchGetItemCommand({ RequestItems: { [this.table]: { Keys: ks } } })));
        for (const item of out.Responses?.[this.table] ?? []) {
          const live = this.live(item as never);
          if (live) result.set(item.pk!.S!, live);
        }
        keys = out.UnprocessedKeys?.[this.table]?.Keys as never;
      }
    }
    return result;
  }

  async put(pk: string, item: CacheItem): Promise<void> {
    await this.send(() =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: { pk: { S: pk }, body: { B: item.body }, expiresAt: { N: String(item.expiresAt) }, createdAt: { N: String(Math.floor(this.now() / 1000)) } },
        }),
      ),
    );
  }

  close(): void {
    this.client.destroy();
  }
}

/** A bounded in-process map (one instance; `npm start` without DynamoDB, and unit tests). */
export class MemoryCacheBackend implements CacheBackend {
  private readonly items = new Map<string, CacheItem>();

  constructor(
    private readonly maxEntries = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  async get(pk: string): Promise<CacheItem | undefined> {
    const it = this.items.get(pk);
    if (!it) return undefined;
    if (it.expiresAt * 1000 <= this.now()) {
      this.items.delete(pk);
      return undefined;
    }
    return it;
  }

  async getMany(pks: string[]): Promise<Map<string, CacheItem>> {
    const out = new Map<string, CacheItem>();
    for (const pk of pks) {
      const it = await this.get(pk);
      if (it) out.set(pk, it);
    }
    return out;
  }

  async put(pk: string, item: CacheItem): Promise<void> {
    this.items.delete(pk);
    this.items.set(pk, item);
    while (this.items.size > this.maxEntries) this.items.delete(this.items.keys().next().value!);
  }

  close(): void {}
}

/** Create the cache table if missing (local server and tests; in AWS the CDK stack owns it, with TTL). */
export function ensureCacheTable(client: Pick<DynamoSender, 'send'>, table: string): Promise<void> {
  return ensureTable(client, table);
}

/** The DynamoDB backend for a configuration: table and endpoint from the environment when set (CDK stack, local server). */
export function createDynamoCache(cfg: { table: string }, env: Record<string, string | undefined>, now: () => number = Date.now, storeCfg: { region?: string; endpoint?: string } = {}): DynamoCacheBackend {
  const settings = { tables: { keys: '', usage: '' }, region: storeCfg.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION, endpoint: env.DYNAMODB_ENDPOINT || storeCfg.endpoint };
  return new DynamoCacheBackend(lazyStoreCaller(settings), env.GATEWAY_CACHE_TABLE || cfg.table, now, isLocalEndpoint(settings.endpoint));
}
