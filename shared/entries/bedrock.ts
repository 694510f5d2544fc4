/** The Bedrock provider with the AWS SDK: its first call (shared/providers/bedrock/lazy.ts). */
import '../gateway.ts'; // see README.md here
export * from '../providers/bedrock/index.ts';
