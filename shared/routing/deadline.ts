import { GatewayError } from '../http/errors.ts';
import { LazySignal, type ClientSignal } from '../http/client-signal.ts';
import type { AttemptTimeouts } from './router.ts';

type DeadlineReason = 'first_byte' | 'total' | 'idle';

/**
 * One attempt's deadline: the first byte of the answer, the silence between chunks once it has
 * started, the whole call, and the client going away, all as one signal. These are the only
 * timers on an upstream call (resolved once per target by the router; providers, `fetchUpstream`
 * and the Bedrock `SdkCall` set none). `error()` names
 * whatever a call then throws: a timeout (504 `upstream_timeout`), the client's leaving (499
 * `client_closed`), or the error itself.
 *
 * One timer serves the three limits: it is armed for the earliest limit due and, when it fires,
 * checks which limit (if any) has passed and is re-armed for the next one. The idle limit only moves
 * a due time per piece (no timer set or cleared per chunk). The timer is unref'd (a deadline never
 * keeps a process alive by itself) and cleared by `release()`. The signal is a `LazySignal`: its
 * listeners in a list, a web AbortSignal made only for a call that asks for one (`webSignal`).
 */
export class Deadline {
  /** The abort, as a listener list (a web AbortSignal is made only if a call asks for one). */
  private readonly cancel = new LazySignal();
  private timedOut: DeadlineReason | undefined;
  private readonly t0 = performance.now();
  /** When each limit falls due (performance.now() ms); undefined when it does not run. */
  private firstDue: number | undefined;
  private readonly totalDue: number;
  private idleDue: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the timer is armed to fire. */
  private timerAt = Infinity;
  private released = false;
  /** The pending `race`'s reject (one wait at a time on an attempt; a second one chains through `others`). */
  private racing: ((err: unknown) => void) | undefined;
  private others: Array<(err: unknown) => void> | undefined;

  constructor(
    private readonly provider: string,
    private readonly timeouts: AttemptTimeouts,
    private readonly clientSignal: ClientSignal,
  ) {
    this.firstDue = this.t0 + timeouts.firstByteTimeoutMs;
    this.totalDue = this.t0 + timeouts.totalTimeoutMs;
    if (clientSignal.aborted) this.abort(clientSignal.reason);
    else {
      clientSignal.addEventListener('abort', this, { once: true });
      this.arm(Math.min(this.firstDue, this.totalDue));
    }
  }

  /** The client went away (the deadline is its own abort listener: no closure per attempt). */
  handleEvent(): void {
    this.abort(this.clientSignal.reason);
  }

  /** Aborts on any of the limits or when the client goes away (`webSignal()` for a web AbortSignal). */
  get signal(): LazySignal {
    return this.cancel;
  }

  /** Whether `release()` has run. */
  get done(): boolean {
    return this.released;
  }

  private arm(at: number): void {
    if (at >= this.timerAt || this.released) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.check(), Math.max(0, at - performance.now())).unref();
  }

  /** The timer fired: abort for the limit that has passed (first byte, total, idle), else re-arm for the next one. */
  private check(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.released || this.cancel.aborted) return;
    const now = performance.now();
    const why: DeadlineReason | undefined =
      this.firstDue !== undefined && now >= this.firstDue ? 'first_byte' : now >= this.totalDue ? 'total' : this.idleDue !== undefined && now >= this.idleDue ? 'idle' : undefined;
    if (why) {
      this.timedOut = why;
      this.abort(this.timeoutError(why));
    } else this.arm(Math.min(this.firstDue ?? Infinity, this.totalDue, this.idleDue ?? Infinity));
  }

  private abort(reason: unknown): void {
    this.cancel.abort(reason);
    const racing = this.racing;
    const others = this.others;
    this.racing = this.others = undefined;
    if (racing) racing(this.error(reason));
    if (others) for (const reject of others) reject(this.error(reason));
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
    this.firstDue = undefined;
  }

  /** About to wait on the upstream for the next piece: the idle limit runs (once the answer has started). */
  private waiting(): void {
    if (this.firstDue !== undefined || this.released) return;
    this.idleDue = performance.now() + this.timeouts.idleTimeoutMs;
    this.arm(this.idleDue);
  }

  /** The piece came. */
  private got(): void {
    this.idleDue = undefined;
  }

  /** The call is over, however it ended: clear the timer and stop listening to the client. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.clientSignal.removeEventListener('abort', this);
  }

  /** What a failure of the call is to the gateway: the client's leaving, a timeout, or the error as it is. */
  error(err: unknown): unknown {
    if (!this.timedOut && this.clientSignal.aborted) return clientClosed(err);
    if (this.timedOut) return this.timeoutError(this.timedOut, err);
    return err;
  }

  /**
   * `p`, or the deadline's error as soon as it aborts (so a provider that ignores the signal still
   * fails over). `piece`: `p` is the next piece of an answer, waited for under the idle limit once
   * the answer has started (`waiting()` before, `got()` when it settles).
   */
  race<T>(p: Promise<T>, piece = false): Promise<T> {
    const signal = this.cancel;
    if (signal.aborted) {
      p.catch(() => {});
      return Promise.reject(this.error(signal.reason));
    }
    if (piece) this.waiting();
    return new Promise<T>((resolve, reject) => {
      if (this.racing) (this.others ??= []).push(reject);
      else this.racing = reject;
      p.then(
        (v) => {
          this.settled(reject, piece);
          resolve(v);
        },
        (e) => {
          this.settled(reject, piece);
          reject(e);
        },
      );
    });
  }

  private settled(reject: (err: unknown) => void, piece: boolean): void {
    if (piece) this.got();
    if (this.racing === reject) this.racing = undefined;
    else if (this.others) this.others = this.others.filter((r) => r !== reject);
  }
}

/** The client went away (499 `client_closed`): what a call cut short by its leaving fails with. */
export function clientClosed(cause?: unknown): GatewayError {
  return new GatewayError('invalid_request', 'The client closed the request.', { status: 499, code: 'client_closed', cause });
}
