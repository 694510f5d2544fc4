/** The Bedrock-native InvokeModel door and model-id table: the first `/bedrock/...` request (Gateway.bedrock). */
import '../gateway.ts'; // see README.md here
export * from '../wire/bedrock-invoke/door.ts';
