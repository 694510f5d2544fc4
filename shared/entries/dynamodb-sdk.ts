/** The AWS SDK's DynamoDB client and commands: the response cache's and stored Responses' first call, or a store without lean credentials (shared/store/lazy.ts, shared/store/dynamodb.ts). */
import '../gateway.ts'; // see README.md here
export * from '../store/dynamodb-sdk.ts';
