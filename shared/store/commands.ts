import type * as Dynamo from '@aws-sdk/client-dynamodb';

/**
 * DynamoDB operations as the gateway names them, without the AWS SDK: each command is its operation
 * and input (used as the SDK's are: `send(new GetItemCommand({...}))`), sent by a `DynamoCaller`,
 * either the lean JSON client (shared/aws/json-client.ts, the store's) or the SDK
 * (shared/store/dynamodb-sdk.ts, which makes the SDK's command when it sends one). Importing these
 * instead of the SDK's keeps its commands, schemas and @smithy out of a cold start.
 */

/** The operations sent (input and output types). */
export interface Ops {
  GetItem: [Dynamo.GetItemCommandInput, Dynamo.GetItemCommandOutput];
  BatchGetItem: [Dynamo.BatchGetItemCommandInput, Dynamo.BatchGetItemCommandOutput];
  PutItem: [Dynamo.PutItemCommandInput, Dynamo.PutItemCommandOutput];
  DeleteItem: [Dynamo.DeleteItemCommandInput, Dynamo.DeleteItemCommandOutput];
  UpdateItem: [Dynamo.UpdateItemCommandInput, Dynamo.UpdateItemCommandOutput];
  Scan: [Dynamo.ScanCommandInput, Dynamo.ScanCommandOutput];
  DescribeTable: [Dynamo.DescribeTableCommandInput, Dynamo.DescribeTableCommandOutput];
  CreateTable: [Dynamo.CreateTableCommandInput, Dynamo.CreateTableCommandOutput];
}

export class DeferredCommand<K extends keyof Ops> {
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
export const UpdateItemCommand = deferred('UpdateItem');
export const ScanCommand = deferred('Scan');
export const DescribeTableCommand = deferred('DescribeTable');
export const CreateTableCommand = deferred('CreateTable');

/** Sends the commands above. */
export interface DynamoCaller {
  send<K extends keyof Ops>(command: DeferredCommand<K>): Promise<Ops[K][1]>;
  destroy(): void;
}

/** `err instanceof ConditionalCheckFailedException`, by the error's name (as the SDK's own classes match). */
export class ConditionalCheckFailedException {
  static [Symbol.hasInstance](err: unknown): boolean {
    return (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
  }
}
