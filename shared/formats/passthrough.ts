import { GatewayError } from '../http/errors.ts';
import type { RequestTrace } from '../telemetry/record.ts';

type Json = Record<string, unknown>;

/**
 * What every same-format pass-through (an upstream's answer relayed to a client of the same API)
 * shares: the upstream reader, one end of the trace, and a client's cancel recorded as
 * `client_closed` before the upstream read is cancelled.
 */
export class PassthroughRelay {
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  finished = false;

  constructor(
    upstream: Response,
    private readonly trace: RequestTrace,
    /** Runs just before the trace ends (e.g. to report usage gathered on the way). */
    private readonly beforeEnd?: () => void,
  ) {
    this.reader = upstream.body!.getReader();
  }

  finish(): void {
    this.finished = true;
    this.beforeEnd?.();
    this.trace.end();
  }

  /** An `UnderlyingSource.cancel` for the client's side. */
  cancel(message: string): (why: unknown) => Promise<void> {
    return (why) => {
      if (!this.finished) {
        this.trace.fail('client_closed', { message });
        this.finish();
      }
      return this.reader.cancel(why);
    };
  }

  /**
   * A non-streaming JSON answer: its bytes go to the client as they arrive; once all have gone,
   * `inspect` gets the parsed body (for usage), and a body that is not JSON is logged as an error.
   */
  json(status: number, headers: Record<string, string>, inspect: (body: Json) => void): Response {
    const parts: Uint8Array[] = [];
    const body = new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        try {
          const { done, value } = await this.reader.read();
          if (done) {
            try {
              inspect(JSON.parse(Buffer.concat(parts).toString('utf8')) as Json);
            } catch {
              this.trace.fail('error', { kind: 'upstream', message: 'The upstream answer was not valid JSON.' });
            }
            ctrl.close();
            this.finish();
            return;
          }
          this.trace.firstByte();
          parts.push(value);
          ctrl.enqueue(value);
        } catch (err) {
          const ge = err instanceof GatewayError ? err : new GatewayError('upstream', 'The upstream response failed.');
          this.trace.fail('stream_error', ge);
          ctrl.error(ge);
          this.finish();
        }
      },
      cancel: this.cancel('The client closed the connection.'),
    });
    return new Response(body, { status, headers });
  }
}
