/** The DynamoDB store and the SDK's commands: the first store call (shared/store/lazy.ts). */
import '../gateway.ts'; // see README.md here
export * from '../store/dynamodb.ts';
