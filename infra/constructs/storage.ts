import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, Billing, TableEncryptionV2, TableV2 } from 'aws-cdk-lib/aws-dynamodb';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

/**
 * The gateway's DynamoDB tables, all on-demand with a string partition key `pk`:
 * - keys: gateway keys (stored as hashes) and team settings. Point-in-time recovery, deletion
 *   protection, retained when the stack is deleted.
 * - usage: rate-limit windows and budget counters, expiring through the `expiresAt` TTL attribute.
 * - cache: response cache entries, expiring through `expiresAt`.
 *
 * A function gets the tables through `grantGateway` or `grantAdmin`: the environment naming them
 * plus exactly the access its code path needs (least privilege: only the admin function writes keys).
 */
export class GatewayTables extends Construct {
  readonly keys: TableV2;
  readonly usage: TableV2;
  readonly cache: TableV2;

  /** Lambda environment naming the tables (read by shared/store and shared/cache). */
  get environment(): Record<string, string> {
    return { GATEWAY_KEYS_TABLE: this.keys.tableName, GATEWAY_USAGE_TABLE: this.usage.tableName, GATEWAY_CACHE_TABLE: this.cache.tableName };
  }

  /** The model function: reads keys and team settings, counts usage, reads and writes the response cache. */
  grantGateway(fn: LambdaFunction): void {
    this.addEnvironment(fn);
    this.keys.grantReadData(fn);
    this.usage.grantReadWriteData(fn);
    this.cache.grantReadWriteData(fn);
  }

  /** The admin function: writes keys and team limits, reads usage. It is told all three table names, as before, but gets no access to the cache, which its code never uses. */
  grantAdmin(fn: LambdaFunction): void {
    this.addEnvironment(fn);
    this.keys.grantReadWriteData(fn);
    this.usage.grantReadData(fn);
  }

  private addEnvironment(fn: LambdaFunction): void {
    for (const [name, value] of Object.entries(this.environment)) fn.addEnvironment(name, value);
  }

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const common = {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      billing: Billing.onDemand(),
      encryption: TableEncryptionV2.awsManagedKey(),
    };
    this.keys = new TableV2(this, 'Keys', {
      ...common,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.usage = new TableV2(this, 'Usage', {
      ...common,
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.cache = new TableV2(this, 'Cache', {
      ...common,
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false },
      removalPolicy: RemovalPolicy.DESTROY,
    });
  }
}
