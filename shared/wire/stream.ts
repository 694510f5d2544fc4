import type { StreamEvent } from '../core/types.ts';
import { ReaderResponse, type PullSource } from '../http/bytes.ts';
import { GatewayError } from '../http/errors.ts';
import { encodeText } from '../http/sse.ts';
import type { RequestTrace } from '../telemetry/record.ts';

/**
 * The one stream frame every answer stream is written in: the events-to-stream encoders of the
 * doors and the same-format relays. A source gives the answer piece by piece (each piece whole
 * events, so a keep-alive comment can go between any two); the frame owns the ReadableStream, the
 * failure ending, the client's cancel and the end of the trace, once for all.
 */

export type Piece = string | Uint8Array;

export interface StreamSource {
  /** The next piece for the client (never empty), or undefined when the answer is complete. Throws when it broke. */
  next(): Promise<Piece | undefined>;
  /** What closes a complete answer (may be empty). */
  end?(): Piece;
  /**
   * What closes a broken answer (the source records the failure on the trace itself), or an Error
   * to fail the client's stream with (a JSON body cannot end in an event).
   */
  fail(err: GatewayError): Piece | Error;
  /** The client went away, or the source broke: let go of the upstream (events iterator or reader). */
  release(why: unknown): Promise<unknown> | void;
  /** Runs once before the trace ends, however the stream ended (e.g. to report usage gathered on the way). */
  beforeEnd?(): void;
}

export interface FrameOptions {
  /** The message the trace records when the client cancels. */
  closedMessage?: string;
  /** The caller's own reading of a non-GatewayError failure (the default names the upstream stream). */
  failed?: (err: unknown) => GatewayError;
}

/**
 * How to turn on the keep-alive comments of a stream the frame built (`withSseKeepAlive` calls it),
 * held by the response itself: a WeakMap keyed by the response would keep the frame alive through
 * the young generation's collections while the response is young (see `WebResponse.parsedJson`).
 */
const KEEP_ALIVE = Symbol('keep-alive switch');
type Switchable = Response & { [KEEP_ALIVE]?: (intervalMs: number) => void };

/** Switches on keep-alive comments inside a stream the frame built; false for any other response. */
export function keepFramedAlive(res: Response, intervalMs: number): boolean {
  const on = (res as Switchable)[KEEP_ALIVE];
  if (!on) return false;
  on(intervalMs);
  return true;
}

const COMMENT = encodeText(': keepalive\n\n');

function streamFailure(err: unknown): GatewayError {
  return err instanceof GatewayError ? err : new GatewayError('upstream', 'The upstream stream failed.', { cause: err });
}

/**
 * The Response for a source: pulled by the client, piece by piece, with the ending and cancel
 * written once. The shell reads the frame itself (`bodyReader`): no web stream between the source
 * and the client's socket unless someone asks for `.body`.
 */
export function framedResponse(source: StreamSource, trace: RequestTrace | undefined, init: ResponseInit, opts: FrameOptions = {}): Response {
  const frame = new Frame(source, trace, opts);
  const res: Switchable = new ReaderResponse(frame, init);
  res[KEEP_ALIVE] = (intervalMs) => frame.keepAlive(intervalMs);
  return res;
}

/**
 * The frame as a pull source: `read()` asks the source for its next piece (one at a time); pieces
 * that arrive while no read waits (keep-alive comments, the ending) are queued. A read is answered
 * the moment its piece exists: no tick, timer or batching in between.
 */
class Frame implements PullSource {
  private readonly queue: Uint8Array[] = [];
  private waiter?: { resolve: (r: ReadableStreamReadResult<Uint8Array>) => void; reject: (err: unknown) => void };
  private pulling = false;
  /** The source is over (ended, failed or cancelled): no more pulls. */
  private finished = false;
  /** The reader's stream is over: after the queue, reads end (or fail with `error`). */
  private closed = false;
  private error?: Error;
  private timer?: ReturnType<typeof setTimeout>;
  private last = Date.now();

  constructor(
    private readonly source: StreamSource,
    private readonly trace: RequestTrace | undefined,
    private readonly opts: FrameOptions,
  ) {}

  read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    const piece = this.queue.shift();
    if (piece) return Promise.resolve({ done: false, value: piece });
    if (this.error) return Promise.reject(this.error);
    if (this.closed) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      if (!this.pulling) void this.pull();
    });
  }

  async cancel(why?: unknown): Promise<void> {
    this.queue.length = 0;
    this.end();
    if (!this.finished) {
      this.trace?.fail('client_closed', { message: this.opts.closedMessage ?? 'The client closed the stream.' });
      this.finish();
    }
    await this.source.release(why);
  }

  /** Keep-alive comments between pieces while the source is silent for `intervalMs`. */
  keepAlive(intervalMs: number): void {
    const tick = () => {
      if (this.finished) return;
      if (Date.now() - this.last >= intervalMs) {
        this.push(COMMENT);
        this.last = Date.now();
      }
      this.timer = setTimeout(tick, Math.max(1, intervalMs - (Date.now() - this.last)));
      // A response nobody reads must not keep the process alive.
      this.timer.unref?.();
    };
    if (intervalMs > 0 && !this.finished) {
      this.timer = setTimeout(tick, intervalMs);
      this.timer.unref?.();
    }
  }

  private async pull(): Promise<void> {
    this.pulling = true;
    try {
      const piece = await this.source.next();
      if (this.closed) return;
      if (piece !== undefined) {
        this.trace?.firstByte();
        this.last = Date.now();
        this.push(bytes(piece));
        return;
      }
      const tail = this.source.end?.();
      if (tail !== undefined && tail.length) this.push(bytes(tail));
      this.end();
    } catch (err) {
      if (this.closed) return;
      const out = this.source.fail((this.opts.failed ?? streamFailure)(err));
      if (out instanceof Error) this.end(out);
      else {
        if (out.length) this.push(bytes(out));
        this.end();
      }
      // The source broke: let go of what it reads from (an upstream may still be sending, e.g. an
      // event past the splitter's bound, or an iterator still waiting).
      try {
        void Promise.resolve(this.source.release(err)).catch(() => {});
      } catch {
        // already let go
      }
    } finally {
      this.pulling = false;
    }
    this.finish();
  }

  private push(piece: Uint8Array): void {
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ done: false, value: piece });
    } else this.queue.push(piece);
  }

  /** No more pieces: a waiting read ends (or fails with `error`). */
  private end(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.error = error;
    const w = this.waiter;
    this.waiter = undefined;
    if (error) w?.reject(error);
    else w?.resolve({ done: true, value: undefined });
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.source.beforeEnd?.();
    this.trace?.end();
  }
}

function bytes(p: Piece): Uint8Array {
  return typeof p === 'string' ? encodeText(p) : p;
}

/**
 * An events-to-stream encoder: neutral events in, the door's pieces out. `encode` gives the text
 * for one event ('' when it adds nothing yet), `end` the closing text, `fail` the error ending.
 */
export function encodeEvents(
  /** The event already pulled, if it is still to be encoded. */
  first: IteratorResult<StreamEvent> | undefined,
  events: AsyncIterator<StreamEvent>,
  trace: RequestTrace,
  enc: {
    encode(ev: StreamEvent): Piece;
    end(): Piece;
    /** The error ending (after the trace recorded the failure). */
    fail(err: GatewayError): Piece;
    /** Pieces ready before the first event (e.g. opening events). */
    opening?: Piece;
  },
  init: ResponseInit,
): Response {
  let pending: IteratorResult<StreamEvent> | undefined = first;
  let opening = enc.opening;
  return framedResponse(
    {
      async next() {
        if (opening !== undefined && opening.length) {
          const o = opening;
          opening = undefined;
          return o;
        }
        for (;;) {
          const r = pending ?? (await events.next());
          pending = undefined;
          if (r.done) return undefined;
          const piece = enc.encode(r.value);
          if (piece.length) return piece;
        }
      },
      end: () => enc.end(),
      fail(err) {
        trace.fail('stream_error', err);
        return enc.fail(err);
      },
      release: () => events.return?.(),
    },
    trace,
    init,
  );
}
