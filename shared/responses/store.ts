import { ConditionalCheckFailedException, DeleteItemCommand, GetItemCommand, PutItemCommand, createOnFirstUse, dynamoSettings, isLocalEndpoint, lazyStoreCaller, type DynamoSender } from '../store/lazy.ts';

type Json = Record<string, unknown>;

/** A stored response: the Response object and the whole conversation that was its input. */
export interface StoredResponse {
  id: string;
  /** The key id that created it (`anonymous` when auth is off); nobody else may read it. */
  owner: string;
  /** The Response object as the client got it (`store: true`, `previous_response_id` set). */
  response: Json;
  /** Every input item of the conversation up to this turn, flattened (earlier turns' inputs and outputs first). */
  items: Json[];
  /** The provider that answered, and whether the id is that (OpenAI) upstream's own. */
  provider: string;
  upstreamId: boolean;
  /** Epoch seconds. */
  expiresAt: number;
}

const PREFIX = 'resp#';

/**
 * Stored responses in the usage table (already TTL'd on `expiresAt` and granted to the model
 * function), one item per response under `resp#<id>`: `owner`, `expiresAt`, and `body`, the gzip of
 * `{ response, items, provider, upstreamId }`. One GetItem rebuilds a conversation.
 */
export class ResponseStore {
  private readonly send: <T>(fn: () => Promise<T>) => Promise<T>;

  constructor(
    private readonly client: DynamoSender,
    readonly table: string,
    private readonly now: () => number,
    /** Create the table on first use when missing (a local DynamoDB only; in AWS the stack owns it). */
    autoCreate: boolean,
  ) {
    this.send = createOnFirstUse(client, table, autoCreate);
  }

  /** The compressed body of a record, or undefined when it exceeds `maxBytes`. */
  static encode(rec: StoredResponse, maxBytes: number): Uint8Array | { tooLarge: number } {
    const body = process.getBuiltinModule('node:zlib').gzipSync(JSON.stringify({ response: rec.response, items: rec.items, provider: rec.provider, upstreamId: rec.upstreamId }));
    return body.byteLength > maxBytes ? { tooLarge: body.byteLength } : body;
  }

  /** Store (or replace, for the same owner only) a record whose body is already encoded. */
  async put(rec: Pick<StoredResponse, 'id' | 'owner' | 'expiresAt'>, body: Uint8Array): Promise<boolean> {
    try {
      await this.send(() =>
        this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: { pk: { S: PREFIX + rec.id }, owner: { S: rec.owner }, body: { B: body }, expiresAt: { N: String(rec.expiresAt) } },
            ConditionExpression: 'attribute_not_exists(pk) OR #o = :o',
            ExpressionAttributeNames: { '#o': 'owner' },
            ExpressionAttributeValues: { ':o': { S: rec.owner } },
          }),
        ),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as Error).name === 'ConditionalCheckFailedException') return false;
      throw err;
    }
  }

  /**
   * The record if it exists and has not expired: `mine` when `owner` created it, `foreign` when
   * another key did (the caller answers 404 all the same), undefined when there is none.
   */
  async get(id: string, owner: string): Promise<{ mine: StoredResponse } | 'foreign' | undefined> {
    const out = await this.send(() => this.client.send(new GetItemCommand({ TableName: this.table, Key: { pk: { S: PREFIX + id } }, ConsistentRead: true })));
    const item = out.Item;
    if (!item?.body?.B || !item.owner?.S || !item.expiresAt?.N) return undefined;
    const expiresAt = Number(item.expiresAt.N);
    if (expiresAt * 1000 <= this.now()) return undefined;
    if (item.owner.S !== owner) return 'foreign';
    const body = JSON.parse(process.getBuiltinModule('node:zlib').gunzipSync(item.body.B).toString('utf8')) as Pick<StoredResponse, 'response' | 'items' | 'provider' | 'upstreamId'>;
    return { mine: { id, owner, expiresAt, ...body } };
  }

  /** Delete the owner's record; false when there was none of theirs. */
  async delete(id: string, owner: string): Promise<boolean> {
    try {
      await this.send(() =>
        this.client.send(
          new DeleteItemCommand({
            TableName: this.table,
            Key: { pk: { S: PREFIX + id } },
            ConditionExpression: '#o = :o AND expiresAt > :now',
            ExpressionAttributeNames: { '#o': 'owner' },
            ExpressionAttributeValues: { ':o': { S: owner }, ':now': { N: String(Math.floor(this.now() / 1000)) } },
          }),
        ),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as Error).name === 'ConditionalCheckFailedException') return false;
      throw err;
    }
  }

  close(): void {
    this.client.destroy();
  }
}

/** The store for a configuration: the usage table and endpoint from the environment when set (CDK stack, local server). */
export function createResponseStore(cfg: { keysTable: string; usageTable: string; region?: string; endpoint?: string }, env: Record<string, string | undefined>, now: () => number): ResponseStore {
  const settings = dynamoSettings(cfg, env);
  return new ResponseStore(lazyStoreCaller(settings), settings.tables.usage, now, isLocalEndpoint(settings.endpoint));
}
