import type { StreamEvent } from '../core/types.ts';
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
  /** The client went away: let go of the upstream (events iterator or reader). */
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

/** Streams the frame built, and how to turn on their keep-alive comments (`withSseKeepAlive` calls it). */
const keepAlives = new WeakMap<Response, (intervalMs: number) => void>();

/** Switches on keep-alive comments inside a stream the frame built; false for any other response. */
export function keepFramedAlive(res: Response, intervalMs: number): boolean {
  const on = keepAlives.get(res);
  if (!on) return false;
  on(intervalMs);
  return true;
}

const COMMENT = encodeText(': keepalive\n\n');

function streamFailure(err: unknown): GatewayError {
  return err instanceof GatewayError ? err : new GatewayError('upstream', 'The upstream stream failed.', { cause: err });
}

/** The Response for a source: one ReadableStream, pulled by the client, with the ending and cancel written once. */
export function framedResponse(source: StreamSource, trace: RequestTrace | undefined, init: ResponseInit, opts: FrameOptions = {}): Response {
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = Date.now();
  const finish = () => {
    finished = true;
    clearTimeout(timer);
    source.beforeEnd?.();
    trace?.end();
  };
  const bytes = (p: Piece) => (typeof p === 'string' ? encodeText(p) : p);
  let controller: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(ctrl) {
      controller = ctrl;
    },
    async pull(ctrl) {
      try {
        const piece = await source.next();
        if (piece !== undefined) {
          trace?.firstByte();
          last = Date.now();
          ctrl.enqueue(bytes(piece));
          return;
        }
        const tail = source.end?.();
        if (tail !== undefined && tail.length) ctrl.enqueue(bytes(tail));
        ctrl.close();
      } catch (err) {
        const out = source.fail((opts.failed ?? streamFailure)(err));
        if (out instanceof Error) ctrl.error(out);
        else {
          if (out.length) ctrl.enqueue(bytes(out));
          ctrl.close();
        }
      }
      finish();
    },
    async cancel(why) {
      if (!finished) {
        trace?.fail('client_closed', { message: opts.closedMessage ?? 'The client closed the stream.' });
        finish();
      }
      await source.release(why);
    },
  });
  const res = new Response(body, init);
  keepAlives.set(res, (intervalMs) => {
    const tick = () => {
      if (finished) return;
      const idle = Date.now() - last;
      if (idle >= intervalMs) {
        try {
          controller.enqueue(COMMENT);
        } catch {
          return;
        }
        last = Date.now();
      }
      timer = setTimeout(tick, Math.max(1, intervalMs - (Date.now() - last)));
      // A response nobody reads must not keep the process alive.
      timer.unref?.();
    };
    if (intervalMs > 0 && !finished) {
      timer = setTimeout(tick, intervalMs);
      timer.unref?.();
    }
  });
  return res;
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
