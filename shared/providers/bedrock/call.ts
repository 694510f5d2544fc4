import type { GatewayError } from '../../http/errors.ts';
import { bedrockError } from '../../wire/bedrock-converse/errors.ts';
import { inheritTrace } from '../../tracing/context.ts';
import type { CallSignal } from '../../http/client-signal.ts';

/**
 * One SDK call: an AbortSignal for the SDK's `abortSignal` option that fires with the attempt's
 * deadline (`ctx.signal`: first byte, idle, total, the client's leaving; the deadline names those
 * failures) or when the caller stops reading a stream early; and the GatewayError for whatever else
 * the SDK throws. It sets no timers of its own.
 */
export class SdkCall {
  private readonly controller = new AbortController();
  private readonly onAbort = () => this.abort();

  constructor(
    private readonly provider: string,
    private readonly deadline: CallSignal,
  ) {
    inheritTrace(this.controller.signal, deadline);
    if (deadline.aborted) this.abort();
    else deadline.addEventListener('abort', this.onAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Stop the call now (the deadline fired, or the caller gave up on the stream). */
  abort(): void {
    this.controller.abort(this.deadline.reason);
  }

  /** The call is over, however it ended. */
  done(): void {
    this.deadline.removeEventListener('abort', this.onAbort);
  }

  /** What to throw for a failure of this call (after an abort, the attempt's deadline names it instead). */
  error(err: unknown, midStream = false): GatewayError {
    return bedrockError(this.provider, this.deadline.aborted ? (this.deadline.reason ?? err) : err, midStream);
  }
}
