import type { DeferredCommand, DynamoCaller, Ops } from './commands.ts';
import type { DynamoSettings } from './settings.ts';
import type { Store } from './types.ts';

export { dynamoSettings, isLocalEndpoint } from './settings.ts';

/**
 * The DynamoDB store loaded by its first call (a chunk of its own, infra/bundling.ts), so a cold
 * start does not compile it, and an open gateway, or a request whose key is cached, never does.
 * Every method waits for the one load, then is the DynamoStore's (shared/store/dynamodb.ts).
 */
export function createDynamoStore(settings: DynamoSettings): Store {
  let loaded: Store | undefined;
  let loading: Promise<Store> | undefined;
  const dynamo = (): Promise<Store> => (loading ??= store().then((m) => (loaded = m.createDynamoStore(settings))));
  const call =
    <K extends Exclude<keyof Store, 'close'>>(method: K) =>
    async (...args: Parameters<Store[K]>): Promise<Awaited<ReturnType<Store[K]>>> =>
      ((loaded ?? (await dynamo()))[method] as (...a: Parameters<Store[K]>) => Promise<Awaited<ReturnType<Store[K]>>>)(...args);
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

/** The store module (the SDK only if its credentials need the SDK's chain: shared/store/dynamodb.ts). */
const store = () => import('../entries/dynamodb.ts');

export { BatchGetItemCommand, ConditionalCheckFailedException, DeleteItemCommand, GetItemCommand, PutItemCommand, type Ops } from './commands.ts';

/** What the response cache and stored Responses use of DynamoDB. */
export type DynamoSender = DynamoCaller;

/**
 * The AWS SDK's DynamoDB client made on its first `send` (shared/store/dynamodb-sdk.ts), for a
 * store whose credentials only the SDK's chains resolve (shared/store/dynamodb.ts `dynamoClient`):
 * the SDK (its commands, client, HTTP handler, credential chain, signer) loads with its first call.
 */
export function lazyDynamoClient(settings: DynamoSettings): DynamoSender {
  return onFirstSend(() => import('../entries/dynamodb-sdk.ts').then((m) => m.sdkCaller(settings)));
}

/** A caller made by its first `send` (every send waits for the one making). */
function onFirstSend(make: () => Promise<DynamoCaller>): DynamoSender {
  let made: DynamoCaller | undefined;
  let loading: Promise<DynamoCaller> | undefined;
  return {
    async send<K extends keyof Ops>(command: DeferredCommand<K>): Promise<Ops[K][1]> {
      return (made ?? (await (loading ??= make().then((c) => (made = c))))).send(command);
    },
    destroy: () => made?.destroy(),
  };
}

/**
 * The store's DynamoDB caller (shared/store/dynamodb.ts `dynamoClient`: the lean client where the
 * environment has the credentials, else the SDK), made by the first `send`: for the stores a
 * gateway opens at start (the response cache, stored Responses), so nothing of it loads at cold start.
 */
export function lazyStoreCaller(settings: DynamoSettings): DynamoSender {
  return onFirstSend(() => store().then((m) => m.dynamoClient(settings)));
}

/** shared/store/dynamodb.ts `ensureTable` (local server and tests). */
export async function ensureTable(caller: Pick<DynamoCaller, 'send'>, name: string): Promise<void> {
  return (await store()).ensureTable(caller, name);
}

/**
 * A runner for calls on one table that, when `autoCreate` (a local DynamoDB only; in AWS the stack
 * owns the tables), creates the table the first time a call finds it missing and runs the call again.
 */
export function createOnFirstUse(sender: DynamoSender, table: string, autoCreate: boolean): <T>(fn: () => Promise<T>) => Promise<T> {
  if (!autoCreate) return (fn) => fn();
  let created: Promise<void> | undefined;
  return async (fn) => {
    try {
      return await fn();
    } catch (err) {
      if ((err as Error).name !== 'ResourceNotFoundException') throw err;
      created ??= ensureTable(sender, table);
      await created;
      return fn();
    }
  };
}
