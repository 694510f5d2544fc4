import type { PutRecordBatchCommand, PutRecordBatchOutput } from '@aws-sdk/client-firehose';
import type { LogSink, RequestRecord } from './record.ts';
import { spanAwsCalls } from '../tracing/spans.ts';

/**
 * AWS log sink: request records to an Amazon Data Firehose delivery stream (which delivers them,
 * compressed and partitioned by `dt`/`hour`, to S3 for Athena). `write()` only queues (the record
 * is final and the client already has its response); `flush()`, awaited by the Lambda entry after
 * the response has been streamed, sends the queue with PutRecordBatch:
 * - each record is one line of JSON ending in `\n` (so the S3 objects are NDJSON);
 * - batches of at most 500 records and 4 MiB (the API's limits); a record is at most 1,000 KiB
 *   (bodies are dropped from a larger one);
 * - records the service rejected (FailedPutCount / per-record ErrorCode) and batches whose call
 *   failed are retried with exponential backoff, a bounded number of times;
 * - a record that still could not be delivered is written to the function's log (stdout, one JSON
 *   line with `"marker":"GATEWAY_LOG_UNDELIVERED"`), so it is never silently lost.
 */

export const UNDELIVERED_MARKER = 'GATEWAY_LOG_UNDELIVERED';
/** CloudWatch Logs metric filter pattern matching the undelivered-record lines (for an alarm). */
export const UNDELIVERED_FILTER_PATTERN = `{ $.marker = "${UNDELIVERED_MARKER}" }`;

export const FIREHOSE_MAX_BATCH_RECORDS = 500;
export const FIREHOSE_MAX_BATCH_BYTES = 4 * 1024 * 1024;
export const FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024;

/** Errors where trying the same call again cannot help. */
const PERMANENT = new Set(['ResourceNotFoundException', 'InvalidArgumentException', 'AccessDeniedException', 'InvalidKMSResourceException', 'ValidationException']);

/** The one method of the SDK client the sink uses (tests stub it; nothing else is replaced). */
export interface FirehoseSender {
  send(command: PutRecordBatchCommand): Promise<PutRecordBatchOutput>;
}

export interface FirehoseSinkOptions {
  deliveryStreamName: string;
  /**
   * Default: the lean JSON client (shared/aws/json-client.ts) where the function's role and region
   * are in the environment (Lambda), else a FirehoseClient of the AWS SDK (loaded on the first send).
   */
  client?: FirehoseSender;
  /** Retries after the first try (default 3). */
  maxRetries?: number;
  /** Backoff base and cap in ms: base * 2^(n-1), with jitter, capped (defaults 100 / 2000). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Where undeliverable records go, one line each (default: stdout, i.e. the Lambda log). */
  writeLine?: (line: string) => void;
  /** Told how many records could not be delivered (e.g. to count them in a metric). */
  onUndelivered?: (count: number) => void;
}

interface Entry {
  record: RequestRecord;
  data: Uint8Array;
  errorCode?: string;
  errorMessage?: string;
}

/** One PutRecordBatch call for these records' bytes. */
type Put = (records: Uint8Array[]) => Promise<PutRecordBatchOutput>;

export class FirehoseLogSink implements LogSink {
  private put?: Promise<Put>;
  private readonly maxRetries: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly writeLine: (line: string) => void;
  private queue: Entry[] = [];
  private queuedBytes = 0;
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly opts: FirehoseSinkOptions) {
    this.maxRetries = opts.maxRetries ?? 3;
    this.baseDelayMs = opts.baseDelayMs ?? 100;
    this.maxDelayMs = opts.maxDelayMs ?? 2_000;
    this.writeLine = opts.writeLine ?? ((line) => void process.stdout.write(`${line}\n`));
  }

  write(record: RequestRecord): void {
    const entry = encode(record);
    if (!entry) {
      this.undelivered([{ record, data: new Uint8Array(), errorCode: 'RecordTooLarge', errorMessage: `over ${FIREHOSE_MAX_RECORD_BYTES} bytes` }]);
      return;
    }
    this.queue.push(entry);
    this.queuedBytes += entry.data.byteLength;
    // A full batch goes at once; anything smaller waits for flush() at the end of the invocation.
    if (this.queue.length >= FIREHOSE_MAX_BATCH_RECORDS || this.queuedBytes >= FIREHOSE_MAX_BATCH_BYTES) this.sendQueued();
  }

  async flush(): Promise<void> {
    this.sendQueued();
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }

  /** Records queued but not yet handed to PutRecordBatch. */
  get queued(): number {
    return this.queue.length;
  }

  private sendQueued(): void {
    const queue = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    for (const batch of batches(queue)) {
      const p = this.sendBatch(batch).catch((err) => {
        // Never lose a record to a bug in the send loop either.
        for (const e of batch) e.errorCode ??= 'SinkError';
        this.undelivered(batch, String(err));
      });
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    }
  }

  /** How a batch is sent: the given client, the lean client, or the SDK's (made on the first send). */
  private async putter(): Promise<Put> {
    const stream = this.opts.deliveryStreamName;
    // Loaded by the first send (after the first response), not at cold start.
    const aws = this.opts.client ? undefined : await import('../entries/aws-json.ts');
    const target = aws?.awsTarget({ endpointPrefix: 'firehose', envName: 'FIREHOSE' }, {});
    if (target) {
      const client = new aws!.AwsJsonClient({ service: 'firehose', targetPrefix: 'Firehose_20150804', jsonVersion: '1.1', target });
      spanAwsCalls(client, 'Firehose');
      return (records) => client.call('PutRecordBatch', { DeliveryStreamName: stream, Records: records.map((d) => ({ Data: d })) });
    }
    const sdk = await import('@aws-sdk/client-firehose');
    const client = this.opts.client ?? spanAwsCalls(new sdk.FirehoseClient({}), 'Firehose');
    return (records) => client.send(new sdk.PutRecordBatchCommand({ DeliveryStreamName: stream, Records: records.map((d) => ({ Data: d })) }));
  }

  private async sendBatch(batch: Entry[]): Promise<void> {
    let pending = batch;
    const put = await (this.put ??= this.putter());
    for (let attempt = 0; pending.length > 0 && attempt <= this.maxRetries; attempt++) {
      if (attempt > 0) await sleep(this.backoff(attempt));
      let out: PutRecordBatchOutput;
      try {
        out = await put(pending.map((e) => e.data));
      } catch (err) {
        const name = (err as { name?: string })?.name ?? 'Error';
        for (const e of pending) {
          e.errorCode = name;
          e.errorMessage = String((err as Error)?.message ?? err).slice(0, 256);
        }
        if (PERMANENT.has(name)) break;
        continue;
      }
      if (!out.FailedPutCount) {
        pending = [];
        break;
      }
      const responses = out.RequestResponses ?? [];
      pending = pending.filter((e, i) => {
        const r = responses[i];
        if (r && !r.ErrorCode) return false;
        e.errorCode = r?.ErrorCode ?? 'Unknown';
        e.errorMessage = r?.ErrorMessage;
        return true;
      });
    }
    if (pending.length) this.undelivered(pending);
  }

  private backoff(attempt: number): number {
    const d = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    return d / 2 + Math.random() * (d / 2);
  }

  private undelivered(entries: Entry[], detail?: string): void {
    for (const e of entries) {
      try {
        this.writeLine(
          JSON.stringify({
            level: 'ERROR',
            message: 'request log record not delivered to Firehose',
            marker: UNDELIVERED_MARKER,
            deliveryStream: this.opts.deliveryStreamName,
            errorCode: e.errorCode,
            errorMessage: e.errorMessage ?? detail,
            record: e.record,
          }),
        );
      } catch {
        // the log itself failed: nothing more can be done
      }
    }
    this.opts.onUndelivered?.(entries.length);
  }
}

const encoder = new TextEncoder();

/** One NDJSON line; bodies are dropped from a record over the per-record limit. */
function encode(record: RequestRecord): Entry | undefined {
  let data = encoder.encode(`${JSON.stringify(record)}\n`);
  if (data.byteLength > FIREHOSE_MAX_RECORD_BYTES && (record.requestBody !== undefined || record.responseBody !== undefined)) {
    const slim: RequestRecord = { ...record, requestBody: undefined, responseBody: undefined, bodiesTruncated: true };
    data = encoder.encode(`${JSON.stringify(slim)}\n`);
    record = slim;
  }
  if (data.byteLength > FIREHOSE_MAX_RECORD_BYTES) return undefined;
  return { record, data };
}

/** Split into PutRecordBatch-sized batches (<= 500 records, <= 4 MiB). */
function* batches(entries: Entry[]): Generator<Entry[]> {
  let batch: Entry[] = [];
  let bytes = 0;
  for (const e of entries) {
    if (batch.length && (batch.length >= FIREHOSE_MAX_BATCH_RECORDS || bytes + e.data.byteLength > FIREHOSE_MAX_BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(e);
    bytes += e.data.byteLength;
  }
  if (batch.length) yield batch;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
