import { Writable } from 'node:stream';

/**
 * A stand-in for the Lambda Node.js runtime's `awslambda` global, as the runtime behaves for
 * response streaming: `streamifyResponse` marks the handler, and `HttpResponseStream.from` writes
 * the JSON metadata prelude followed by 8 NUL bytes before the body.
 */
export const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

export function installAwsLambdaGlobal(): void {
  (globalThis as Record<string, unknown>).awslambda = {
    streamifyResponse<T extends object>(fn: T): T {
      (fn as Record<symbol, unknown>)[Symbol.for('aws.lambda.runtime.handler.streaming')] = 'response';
      return fn;
    },
    HttpResponseStream: {
      from(stream: ResponseStreamStandIn, prelude: unknown) {
        stream.setContentType(PRELUDE_CONTENT_TYPE);
        stream.write(Buffer.from(JSON.stringify(prelude)));
        stream.write(Buffer.alloc(8));
        return stream;
      },
    },
  };
}

/** Collects what the handler writes, as the runtime's response stream would send it. */
export class ResponseStreamStandIn extends Writable {
  readonly chunks: Buffer[] = [];
  contentType: string | undefined;
  constructor(private readonly onChunk?: (chunk: Buffer) => void) {
    super();
  }
  setContentType(ct: string): void {
    this.contentType = ct;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    this.onChunk?.(chunk);
    cb();
  }

  /** Split the bytes into the metadata prelude and the body. */
  parsed(): { metadata: { statusCode: number; headers: Record<string, string> }; body: string } {
    const all = Buffer.concat(this.chunks);
    const sep = all.indexOf(Buffer.alloc(8));
    if (sep < 0) throw new Error('no metadata prelude separator in the response stream');
    return { metadata: JSON.parse(all.subarray(0, sep).toString('utf8')), body: all.subarray(sep + 8).toString('utf8') };
  }
}

export function lambdaContext(requestId = 'c0ffee00-0000-4000-8000-000000000001') {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'llm-gateway-test',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:llm-gateway-test',
    memoryLimitInMB: '1024',
    awsRequestId: requestId,
    logGroupName: '/aws/lambda/llm-gateway-test',
    logStreamName: '2026/11/25/[$LATEST]0123456789abcdef',
    getRemainingTimeInMillis: () => 900_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}
