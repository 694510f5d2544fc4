/**
 * Static dummy credentials for the AWS SDK's default provider chain (the environment comes first),
 * and nothing else that could change how it signs: no session token, bearer token or profile, no
 * instance metadata lookups. For clients that only ever talk to loopback mocks.
 */
export function useDummyAwsCredentials(accessKeyId: string, secretAccessKey: string): void {
  process.env.AWS_ACCESS_KEY_ID = accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_BEARER_TOKEN_BEDROCK;
  delete process.env.AWS_PROFILE;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
}
