import { CreateTableCommand, DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoSettings } from './settings.ts';
import type { Store } from './types.ts';

export { dynamoSettings, isLocalEndpoint } from './settings.ts';

/**
 * The DynamoDB store with the AWS SDK loaded by its first call: the SDK (its client, @smithy, the
 * HTTP handler, the credential chain: about half of what a bundle would load at start) is a chunk
 * of its own (infra/bundling.ts), so a cold start does not compile it, and an open gateway, or a
 * request whose key is cached, never does. Every method waits for the one load, then is the
 * DynamoStore's (shared/store/dynamodb.ts).
 */
export function createDynamoStore(settings: DynamoSettings): Store {
  let loaded: Store | undefined;
  let loading: Promise<Store> | undefined;
  const store = (): Promise<Store> => (loading ??= import('./dynamodb.ts').then((m) => (loaded = m.createDynamoStore(settings))));
  const call =
    <K extends Exclude<keyof Store, 'close'>>(method: K) =>
    async (...args: Parameters<Store[K]>): Promise<Awaited<ReturnType<Store[K]>>> =>
      ((await store())[method] as (...a: Parameters<Store[K]>) => Promise<Awaited<ReturnType<Store[K]>>>)(...args);
  return {
    createKey: call('createKey'),
    getKey: call('getKey'),
    listKeys: call('listKeys'),
    replaceKey: call('replaceKey'),
    hasAnyKey: call('hasAnyKey'),
    getTeam: call('getTeam'),
    putTeam: call('putTeam'),
    listTeams: call('listTeams'),
    lease: call('lease'),
    reserve: call('reserve'),
    addUsage: call('addUsage'),
    getCounters: call('getCounters'),
    claim: call('claim'),
    addReportUsage: call('addReportUsage'),
    usageReport: call('usageReport'),
    // Closing a store never used closes nothing (and loads nothing).
    close: () => loaded?.close(),
  };
}

/** What the cache and the response store use of a DynamoDB client (a real one is one too). */
export type DynamoSender = Pick<DynamoDBClient, 'send' | 'destroy'>;

/**
 * A DynamoDB client made on its first `send` (shared/store/dynamodb.ts `dynamoClient`), for the
 * stores a gateway opens at start (the response cache, stored Responses): the SDK's client (its
 * HTTP handler, credential chain, signer) loads with their first call, not at cold start.
 */
export function lazyDynamoClient(settings: DynamoSettings): DynamoSender {
  let client: DynamoDBClient | undefined;
  let loading: Promise<DynamoDBClient> | undefined;
  const load = () => (loading ??= import('./dynamodb.ts').then((m) => (client = m.dynamoClient(settings))));
  return {
    send: (async (command: Parameters<DynamoDBClient['send']>[0]) => (await load()).send(command)) as DynamoDBClient['send'],
    destroy: () => client?.destroy(),
  };
}

/** Create one on-demand table keyed on the string `pk` if it does not exist, and wait until it is active. */
export async function ensureTable(client: DynamoSender, name: string): Promise<void> {
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

/**
 * A runner for calls on one table that, when `autoCreate` (a local DynamoDB only; in AWS the stack
 * owns the tables), creates the table the first time a call finds it missing and runs the call again.
 */
export function createOnFirstUse(client: DynamoSender, table: string, autoCreate: boolean): <T>(fn: () => Promise<T>) => Promise<T> {
  if (!autoCreate) return (fn) => fn();
  let created: Promise<void> | undefined;
  return async (fn) => {
    try {
      return await fn();
    } catch (err) {
      if ((err as Error).name !== 'ResourceNotFoundException') throw err;
      created ??= ensureTable(client, table);
      await created;
      return fn();
    }
  };
}
