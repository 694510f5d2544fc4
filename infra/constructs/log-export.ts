import { Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import { CfnNamedQuery, CfnWorkGroup } from 'aws-cdk-lib/aws-athena';
import { CfnDatabase, CfnTable } from 'aws-cdk-lib/aws-glue';
import { Compression, DeliveryStream, S3Bucket, StreamEncryption } from 'aws-cdk-lib/aws-kinesisfirehose';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership, StorageClass } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { DeployConfig } from '../../shared/config/deploy.ts';
import { LOG_COLUMNS, LOG_PARTITION_KEYS, logErrorObjectPrefix, logObjectPrefix, partitionProjection } from '../../shared/telemetry/schema.ts';

export interface LogExportProps {
  logs: DeployConfig['logs'];
}

/**
 * Request logs for Athena: Firehose batches the gateway's records (one JSON line each) into
 * gzip-compressed S3 objects under `logs/dt=YYYY-MM-DD/hour=HH/`; a Glue table built from the one
 * log schema (shared/telemetry/schema.ts) reads them with partition projection, so new partitions
 * need no crawler; an Athena workgroup holds the output location and the saved queries.
 * `grantWriter(fn)` lets a function put its records on the stream and names the stream to it.
 */
export class LogExport extends Construct {
  readonly bucket: Bucket;
  readonly athenaResults: Bucket;
  readonly deliveryStream: DeliveryStream;
  readonly database: CfnDatabase;
  readonly table: CfnTable;
  readonly workGroup: CfnWorkGroup;
  readonly databaseName: string;
  readonly tableName = 'requests';

  constructor(scope: Construct, id: string, props: LogExportProps) {
    super(scope, id);
    const bucketDefaults = {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: false,
    };
    const accessLogs = new Bucket(this, 'AccessLogs', {
      ...bucketDefaults,
      // S3 server access logs are delivered with ACLs (LogDeliveryWrite), which need ObjectWriter.
      objectOwnership: ObjectOwnership.OBJECT_WRITER,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ expiration: Duration.days(props.logs.expireDays) }],
    });
    this.bucket = new Bucket(this, 'Logs', {
      ...bucketDefaults,
      removalPolicy: RemovalPolicy.RETAIN,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'logs-bucket/',
      lifecycleRules: [
        {
          transitions: [{ storageClass: StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(props.logs.transitionToInfrequentAccessDays) }],
          expiration: Duration.days(props.logs.expireDays),
        },
      ],
    });
    this.athenaResults = new Bucket(this, 'AthenaResults', {
      ...bucketDefaults,
      // Query results are disposable: emptied on `cdk destroy`, which would fail on a non-empty bucket.
      removalPolicy: RemovalPolicy.DESTROY,
      autoDeleteObjects: true,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'athena-results/',
      lifecycleRules: [{ expiration: Duration.days(30) }],
    });

    this.deliveryStream = new DeliveryStream(this, 'Stream', {
      destination: new S3Bucket(this.bucket, {
        compression: Compression.GZIP,
        dataOutputPrefix: logObjectPrefix(),
        errorOutputPrefix: logErrorObjectPrefix(),
        bufferingInterval: Duration.seconds(props.logs.bufferSeconds),
        bufferingSize: Size.mebibytes(props.logs.bufferMiB),
      }),
      encryption: StreamEncryption.awsOwnedKey(),
    });

    const account = Stack.of(this).account;
    // Named after the stack, so two stacks (staging, prod) do not collide in one account and region.
    const stackName = Stack.of(this).stackName;
    this.databaseName = glueDatabaseName(stackName);
    this.database = new CfnDatabase(this, 'Database', {
      catalogId: account,
      databaseInput: { name: this.databaseName, description: 'LLM gateway request logs' },
    });
    const location = `s3://${this.bucket.bucketName}/logs/`;
    this.table = new CfnTable(this, 'Table', {
      catalogId: account,
      databaseName: this.databaseName,
      tableInput: {
        name: this.tableName,
        description: 'One row per gateway request (schema: shared/telemetry/schema.ts, docs/log-schema.md)',
        tableType: 'EXTERNAL_TABLE',
        parameters: {
          classification: 'json',
          compressionType: 'gzip',
          // Partition projection over the Firehose prefix (both from shared/telemetry/schema.ts).
          ...partitionProjection(`s3://${this.bucket.bucketName}/`, '2024-01-01'),
        },
        partitionKeys: LOG_PARTITION_KEYS.map((k) => ({ name: k.name, type: k.glueType })),
        storageDescriptor: {
          location,
          inputFormat: 'org.apache.hadoop.mapred.TextInputFormat',
          outputFormat: 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat',
          compressed: true,
          serdeInfo: {
            serializationLibrary: 'org.openx.data.jsonserde.JsonSerDe',
            parameters: { 'case.insensitive': 'true', 'ignore.malformed.json': 'true' },
          },
          columns: LOG_COLUMNS.map((c) => ({ name: c.name.toLowerCase(), type: c.glueType, comment: c.description.slice(0, 255) })),
        },
      },
    });
    this.table.addResourceDependency(this.database);

    this.workGroup = new CfnWorkGroup(this, 'WorkGroup', {
      name: `${stackName}-logs`,
      description: 'Queries over the LLM gateway request logs',
      state: 'ENABLED',
      recursiveDeleteOption: true,
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        resultConfiguration: {
          outputLocation: `s3://${this.athenaResults.bucketName}/results/`,
          encryptionConfiguration: { encryptionOption: 'SSE_S3' },
        },
      },
    });

    for (const [name, description, sql] of savedQueries(this.databaseName, this.tableName)) {
      const q = new CfnNamedQuery(this, `Query${name.replace(/[^A-Za-z0-9]/g, '')}`, {
        name,
        description,
        database: this.databaseName,
        workGroup: this.workGroup.name,
        queryString: sql,
      });
      q.addResourceDependency(this.workGroup);
    }
  }

  /** Let the function put request records on the stream, named by `LOG_STREAM_NAME` (functions/lib/sinks.ts). */
  grantWriter(fn: LambdaFunction): void {
    fn.addEnvironment('LOG_STREAM_NAME', this.deliveryStream.deliveryStreamName);
    this.deliveryStream.grantPutRecords(fn);
  }
}

/** The Glue database of a stack's request logs (Glue names: lower case, digits, _). */
export function glueDatabaseName(stackName: string): string {
  return `${stackName.toLowerCase().replace(/[^a-z0-9_]/g, '_')}_logs`;
}

/** The saved queries: [name, description, SQL]. Column names come from the log schema. */
export function savedQueries(db: string, table: string): Array<[string, string, string]> {
  const t = `"${db}"."${table}"`;
  const lastDays = (n: number) => `dt >= date_format(current_date - interval '${n}' day, '%Y-%m-%d')`;
  // Settled requests (priced, with a key) of the current UTC month, by the `dt` partition.
  const thisMonth = `dt >= date_format(date_trunc('month', current_date), '%Y-%m-%d') AND dt < date_format(date_add('month', 1, date_trunc('month', current_date)), '%Y-%m-%d')`;
  return [
    [
      'Spend by team and key (30 days)',
      'Cost in USD and tokens per team and key over the last 30 days',
      `SELECT team, keyid, count(*) AS requests, sum(inputtokens) AS input_tokens, sum(outputtokens) AS output_tokens, round(sum(costusd), 4) AS cost_usd\nFROM ${t}\nWHERE ${lastDays(30)}\nGROUP BY team, keyid\nORDER BY cost_usd DESC`,
    ],
    [
      'Spend by team and model (this month)',
      'Chargeback: requests, tokens and USD per team (or key without a team) and model for the current UTC month; the same numbers as `npm run keys -- report` (for another month, change the two month bounds)',
      `SELECT coalesce(team, concat('key:', keyid)) AS team_or_key, model, count(*) AS requests, sum(inputtokens) AS input_tokens, sum(outputtokens) AS output_tokens,\n  sum(cachereadtokens) AS cache_read_tokens, round(sum(costusd), 6) AS cost_usd\nFROM ${t}\nWHERE ${thisMonth} AND keyid IS NOT NULL AND costusd IS NOT NULL\nGROUP BY coalesce(team, concat('key:', keyid)), model\nORDER BY team_or_key, cost_usd DESC`,
    ],
    [
      'Tokens and latency by model (7 days)',
      'Requests, tokens and latency percentiles per model and provider over the last 7 days',
      `SELECT model, provider, upstreammodel, count(*) AS requests, sum(inputtokens) AS input_tokens, sum(outputtokens) AS output_tokens,\n  approx_percentile(latencyms, 0.5) AS p50_ms, approx_percentile(latencyms, 0.99) AS p99_ms, approx_percentile(ttfbms, 0.5) AS ttfb_p50_ms\nFROM ${t}\nWHERE ${lastDays(7)}\nGROUP BY model, provider, upstreammodel\nORDER BY requests DESC`,
    ],
    [
      'Error and fallback rates by hour (24 hours)',
      'Share of requests that failed, failed mid-stream or needed a fallback, per hour',
      `SELECT dt, hour, count(*) AS requests,\n  round(avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0 END) * 100, 2) AS pct_5xx,\n  round(avg(CASE WHEN status >= 400 AND status < 500 THEN 1.0 ELSE 0 END) * 100, 2) AS pct_4xx,\n  round(avg(CASE WHEN outcome = 'stream_error' THEN 1.0 ELSE 0 END) * 100, 2) AS pct_stream_errors,\n  round(avg(CASE WHEN fallbacks > 0 THEN 1.0 ELSE 0 END) * 100, 2) AS pct_fallback\nFROM ${t}\nWHERE ${lastDays(1)}\nGROUP BY dt, hour\nORDER BY dt, hour`,
    ],
    [
      'Cache hit ratio by model (7 days)',
      "Share of requests answered from the gateway's response cache",
      `SELECT model, count(*) AS requests, round(avg(CASE WHEN cachehit THEN 1.0 ELSE 0 END) * 100, 2) AS pct_cache_hits\nFROM ${t}\nWHERE ${lastDays(7)} AND frontdoor IS NOT NULL\nGROUP BY model\nORDER BY requests DESC`,
    ],
    [
      'Top users (7 days)',
      'Keys with the most requests and tokens, with their team and user agent',
      `SELECT keyid, team, arbitrary(useragent) AS user_agent, count(*) AS requests, sum(inputtokens + outputtokens) AS tokens, round(sum(costusd), 4) AS cost_usd\nFROM ${t}\nWHERE ${lastDays(7)}\nGROUP BY keyid, team\nORDER BY requests DESC\nLIMIT 50`,
    ],
  ];
}
