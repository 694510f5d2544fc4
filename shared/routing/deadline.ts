import { GatewayError } from '../http/errors.ts';
import type { AttemptTimeouts } from './router.ts';

type DeadlineReason = 'first_byte' | 'total' | 'idle';

/**
 * One attempt's deadline: the first byte of the answer, the silence between chunks once it has
 * started, the whole call, and the client going away, all as one AbortSignal. These are the only
 * timers on an upstream call (resolved once per target by the router; providers, `fetchUpstream`
 * and the Bedrock `SdkCall` set none). `error()` names
 * whatever a call then throws: a timeout (504 `upstream_timeout`), the client's leaving (499
 * `client_closed`), or the error itself. Its timers are unref'd (a deadline never keeps a process
 * alive by itself) and cleared by `release()`.
 */
export class Deadline {
  private readonly controller = new AbortController();
  private timedOut: DeadlineReason | undefined;
  private firstTimer: NodeJS.Timeout | undefined;
  private readonly totalTimer: NodeJS.Timeout;
  private idleTimer: NodeJS.Timeout | undefined;
  private released = false;
  private readonly onClient = () => this.controller.abort(this.clientSignal.reason);

  constructor(
    private readonly provider: string,
    private readonly timeouts: AttemptTimeouts,
    private readonly clientSignal: AbortSignal,
  ) {
    if (clientSignal.aborted) this.controller.abort(clientSignal.reason);
    else clientSignal.addEventListener('abort', this.onClient, { once: true });
    this.firstTimer = setTimeout(() => this.fire('first_byte'), timeouts.firstByteTimeoutMs).unref();
    this.totalTimer = setTimeout(() => this.fire('total'), timeouts.totalTimeoutMs).unref();
  }

  /** Aborts on any of the limits or when the client goes away. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Whether `release()` has run. */
  get done(): boolean {
    return this.released;
  }

  private fire(why: DeadlineReason): void {
    this.timedOut ??= why;
    this.controller.abort(this.timeoutError(why));
  }

  private timeoutError(why: DeadlineReason, cause?: unknown): GatewayError {
    const { firstByteTimeoutMs, idleTimeoutMs, totalTimeoutMs } = this.timeouts;
    return new GatewayError(
      'timeout',
      why === 'first_byte'
        ? `Provider "${this.provider}" did not answer within ${firstByteTimeoutMs} ms.`
        : why === 'idle'
          ? `Provider "${this.provider}" went silent for ${idleTimeoutMs} ms mid-answer.`
          : `Provider "${this.provider}" did not finish within ${totalTimeoutMs} ms.`,
      { code: 'upstream_timeout', cause },
    );
  }

  /** The answer's first byte (first event) is in hand: the first-byte limit is over, the idle limit starts. */
  gotFirstByte(): void {
    clearTimeout(this.firstTimer);
    this.firstTimer = undefined;
  }

  /** About to wait on the upstream for the next piece: the idle limit runs (once the answer has started). */
  waiting(): void {
    if (this.firstTimer === undefined && !this.released) this.idleTimer = setTimeout(() => this.fire('idle'), this.timeouts.idleTimeoutMs).unref();
  }

  /** The piece came. */
  got(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** The call is over, however it ended: clear the timers and stop listening to the client. */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearTimeout(this.firstTimer);
    clearTimeout(this.totalTimer);
    clearTimeout(this.idleTimer);
    this.clientSignal.removeEventListener('abort', this.onClient);
  }

  /** What a failure of the call is to the gateway: the client's leaving, a timeout, or the error as it is. */
  error(err: unknown): unknown {
    if (!this.timedOut && this.clientSignal.aborted) return clientClosed(err);
    if (this.timedOut) return this.timeoutError(this.timedOut, err);
    return err;
  }

  /**
   * `p`, or the deadline's error as soon as it aborts (so a provider that ignores the signal still
   * fails over); the listener is removed once `p` settles, so long streams keep none.
   */
  race<T>(p: Promise<T>): Promise<T> {
    const signal = this.controller.signal;
    if (signal.aborted) {
      p.catch(() => {});
      return Promise.reject(this.error(signal.reason));
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(this.error(signal.reason));
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }
}

/** The client went away (499 `client_closed`): what a call cut short by its leaving fails with. */
export function clientClosed(cause?: unknown): GatewayError {
  return new GatewayError('invalid_request', 'The client closed the request.', { status: 499, code: 'client_closed', cause });
}
