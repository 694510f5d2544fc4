/**
 * Where the DynamoDB store is, without the AWS SDK: the gateway resolves these at start and loads
 * the SDK (shared/store/dynamodb.ts) on its first store call (shared/store/lazy.ts).
 */

export interface DynamoTables {
  keys: string;
  usage: string;
}

/** Store settings resolved from the configuration and the environment. */
export interface DynamoSettings {
  tables: DynamoTables;
  region?: string;
  endpoint?: string;
}

/**
 * Table names and endpoint: the environment (set by the CDK stack or the local server) wins over
 * the configuration file.
 */
export function dynamoSettings(cfg: { keysTable: string; usageTable: string; region?: string; endpoint?: string }, env: Record<string, string | undefined>): DynamoSettings {
  return {
    tables: { keys: env.GATEWAY_KEYS_TABLE || cfg.keysTable, usage: env.GATEWAY_USAGE_TABLE || cfg.usageTable },
    region: cfg.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION,
    endpoint: env.DYNAMODB_ENDPOINT || cfg.endpoint,
  };
}

/** Whether the endpoint is a DynamoDB on this machine (dummy credentials; tables created on first use). */
export function isLocalEndpoint(endpoint: string | undefined): boolean {
  return endpoint !== undefined && /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/.test(endpoint);
}
