import type * as Dynamo from '@aws-sdk/client-dynamodb';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
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

/** The store module with the SDK (its commands imported by name, so a bundle keeps only those). */
const store = () => import('../entries/dynamodb.ts');

/** The operations the response cache and stored Responses send (input and output types). */
export interface Ops {
  GetItem: [Dynamo.GetItemCommandInput, Dynamo.GetItemCommandOutput];
  BatchGetItem: [Dynamo.BatchGetItemCommandInput, Dynamo.BatchGetItemCommandOutput];
  PutItem: [Dynamo.PutItemCommandInput, Dynamo.PutItemCommandOutput];
  DeleteItem: [Dynamo.DeleteItemCommandInput, Dynamo.DeleteItemCommandOutput];
}

/**
 * A command named before the SDK is loaded: its operation and input; a DynamoSender makes the
 * SDK's command when it sends it. Used as the SDK's are (`send(new GetItemCommand({...}))`), so
 * importing these instead of the SDK's keeps its commands, schemas and @smithy out of a cold start.
 */
class DeferredCommand<K extends keyof Ops> {
  constructor(
    readonly op: K,
    readonly input: Ops[K][0],
  ) {}
}
const deferred = <K extends keyof Ops>(op: K) =>
  class extends DeferredCommand<K> {
    constructor(input: Ops[K][0]) {
      super(op, input);
    }
  };
export const GetItemCommand = deferred('GetItem');
export const BatchGetItemCommand = deferred('BatchGetItem');
export const PutItemCommand = deferred('PutItem');
export const DeleteItemCommand = deferred('DeleteItem');

/** `err instanceof ConditionalCheckFailedException`, by the error's name (as the SDK's own classes match). */
export class ConditionalCheckFailedException {
  static [Symbol.hasInstance](err: unknown): boolean {
    return (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
  }
}

/** What the response cache and stored Responses use of DynamoDB. */
export interface DynamoSender {
  send<K extends keyof Ops>(command: DeferredCommand<K>): Promise<Ops[K][1]>;
  destroy(): void;
  /** The SDK's client (made by the first call). */
  client(): Promise<DynamoDBClient>;
}

/**
 * A DynamoDB client made on its first `send` (shared/store/dynamodb.ts `dynamoClient`), for the
 * stores a gateway opens at start (the response cache, stored Responses): the SDK (its commands,
 * client, HTTP handler, credential chain, signer) loads with their first call, not at cold start.
 */
export function lazyDynamoClient(settings: DynamoSettings): DynamoSender {
  type Made = { client: DynamoDBClient; commands: Awaited<ReturnType<typeof store>>['COMMANDS'] };
  let made: Made | undefined;
  let loading: Promise<Made> | undefined;
  const load = () => (loading ??= store().then((m) => (made = { client: m.dynamoClient(settings), commands: m.COMMANDS })));
  return {
    async send<K extends keyof Ops>(command: DeferredCommand<K>): Promise<Ops[K][1]> {
      const { client, commands } = made ?? (await load());
      const Command = commands[command.op] as new (input: Ops[K][0]) => Parameters<DynamoDBClient['send']>[0];
      return client.send(new Command(command.input)) as Promise<Ops[K][1]>;
    },
    destroy: () => made?.client.destroy(),
    client: async () => (made ?? (await load())).client,
  };
}

/** shared/store/dynamodb.ts `ensureTable`, loaded with the SDK (local server and tests). */
export async function ensureTable(client: Pick<DynamoDBClient, 'send'>, name: string): Promise<void> {
  return (await store()).ensureTable(client, name);
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
      created ??= sender.client().then((client) => ensureTable(client, table));
      await created;
      return fn();
    }
  };
}
