/** The Bedrock-native Converse door: the first `/bedrock/...` request (Gateway.bedrock). */
import '../gateway.ts'; // see README.md here
export * from '../wire/bedrock-converse/door.ts';
