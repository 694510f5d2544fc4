import { type IncomingMessage, type ServerResponse } from 'node:http';
import { FirehoseClient } from '@aws-sdk/client-firehose';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startLoopback } from './loopback.ts';

/**
 * A loopback stand-in for the Amazon Data Firehose API (awsJson1_1 protocol): the real SDK client
 * is pointed at it with an endpoint override, so the tests see the bytes the gateway really sends.
 * Each PutRecordBatch call is recorded with its decoded records; the answer of each call can be
 * scripted (per-record failures or a whole-call error); unscripted calls succeed.
 */

export interface PutCall {
  target: string;
  contentType: string;
  body: { DeliveryStreamName?: string; Records?: Array<{ Data?: string }> };
  /** Each record's Data, base64-decoded to text. */
  lines: string[];
}

export type FirehoseAnswer =
  /** Fail these record indexes (of this call) with this error code. */
  | { failRecords: number[]; errorCode?: string }
  /** Fail the whole call with an AWS error of this type and HTTP status. */
  | { error: string; status: number };

export interface MockFirehose {
  endpoint: string;
  calls: PutCall[];
  /** Queue answers for the next calls, in order. */
  script(...answers: FirehoseAnswer[]): void;
  /** A real FirehoseClient for this endpoint (SDK retries off, so the sink's own retries show). */
  client(): FirehoseClient;
  close(): Promise<void>;
}

export async function startMockFirehose(): Promise<MockFirehose> {
  const calls: PutCall[] = [];
  const queue: FirehoseAnswer[] = [];
  const lb = await startLoopback((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': `mock-${calls.length}` });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'POST' || target !== 'Firehose_20150804.PutRecordBatch') {
        send(400, { __type: 'UnknownOperationException', message: `unexpected ${req.method} ${target}` });
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as PutCall['body'];
      const lines = (body.Records ?? []).map((r) => Buffer.from(r.Data ?? '', 'base64').toString('utf8'));
      calls.push({ target, contentType: String(req.headers['content-type'] ?? ''), body, lines });
      const answer = queue.shift();
      if (answer && 'error' in answer) {
        send(answer.status, { __type: answer.error, message: `mock ${answer.error}` });
        return;
      }
      const failed = new Set(answer?.failRecords ?? []);
      send(200, {
        FailedPutCount: failed.size,
        Encrypted: false,
        RequestResponses: lines.map((_, i) =>
          failed.has(i) ? { ErrorCode: answer && 'failRecords' in answer ? (answer.errorCode ?? 'ServiceUnavailableException') : 'ServiceUnavailableException', ErrorMessage: 'Slow down.' } : { RecordId: `rec-${calls.length}-${i}` },
        ),
      });
    });
  });
  const { port } = lb;
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: FirehoseClient[] = [];
  return {
    endpoint,
    calls,
    script: (...answers) => void queue.push(...answers),
    client() {
      const c = new FirehoseClient({
        endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
        maxAttempts: 1,
        requestHandler: new NodeHttpHandler(),
      });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.destroy();
      await lb.close();
    },
  };
}
