import { GatewayError } from '../../http/errors.ts';
import type { UpstreamTimeouts } from '../../http/upstream.ts';
import { bedrockError } from '../../wire/bedrock-converse/errors.ts';

/**
 * One SDK call's lifetime: an AbortSignal for the SDK's `abortSignal` option that fires when the
 * client goes away, when no first byte came within `firstByteTimeoutMs`, or when the whole call
 * outlives `totalTimeoutMs`; and the matching GatewayError (499 / 504) for whatever the SDK then
 * throws.
 */
export class SdkCall {
  private readonly controller = new AbortController();
  private reason: 'first_byte' | 'total' | 'client' | undefined;
  private readonly firstByteTimer: NodeJS.Timeout;
  private readonly totalTimer: NodeJS.Timeout;
  private readonly onClientAbort = () => this.abort('client');

  constructor(
    private readonly provider: string,
    private readonly timeouts: UpstreamTimeouts,
    private readonly clientSignal: AbortSignal,
  ) {
    if (clientSignal.aborted) this.abort('client');
    else clientSignal.addEventListener('abort', this.onClientAbort, { once: true });
    this.firstByteTimer = setTimeout(() => this.abort('first_byte'), timeouts.firstByteTimeoutMs);
    this.totalTimer = setTimeout(() => this.abort('total'), timeouts.totalTimeoutMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Stop the call now (the client left, or the caller gave up on the stream). */
  abort(reason: 'first_byte' | 'total' | 'client'): void {
    if (!this.reason) this.reason = reason;
    this.controller.abort();
  }

  /** The upstream answered: the first-byte deadline no longer applies. */
  firstByte(): void {
    clearTimeout(this.firstByteTimer);
  }

  /** The call is over, however it ended. */
  done(): void {
    clearTimeout(this.firstByteTimer);
    clearTimeout(this.totalTimer);
    this.clientSignal.removeEventListener('abort', this.onClientAbort);
  }

  /** What to throw for a failure of this call (timeouts and client aborts take precedence). */
  error(err: unknown, midStream = false): GatewayError {
    if (this.reason === 'client') return new GatewayError('invalid_request', 'The client closed the request.', { status: 499, code: 'client_closed', cause: err });
    if (this.reason === 'first_byte') return new GatewayError('timeout', `Provider "${this.provider}" did not answer within ${this.timeouts.firstByteTimeoutMs} ms.`, { code: 'upstream_timeout', cause: err });
    if (this.reason === 'total') return new GatewayError('timeout', `Provider "${this.provider}" did not finish within ${this.timeouts.totalTimeoutMs} ms.`, { code: 'upstream_timeout', cause: err });
    return bedrockError(this.provider, err, midStream);
  }
}
