import type { TraceContext } from '../tracing/context.ts';

/** Told when a signal aborts: an object (its `handleEvent`: no closure needed) or a function. */
export type AbortListener = EventListenerObject | ((event: Event) => void);

/**
 * The client's leaving, as the attempt runner needs it: whether it has happened, and a listener
 * told when it does. A web Request's AbortSignal is one; a shell's `ClientLeave` is a cheaper one
 * (no AbortController per request: a real AbortSignal is made only if someone asks for `signal`).
 */
export interface ClientSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: AbortListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: AbortListener): void;
}

/**
 * What an upstream call is given to stop by (`CallContext.signal`: the attempt's deadline): a
 * `LazySignal`, or any web AbortSignal. `webSignal()` makes it a web one for an API that needs one.
 */
export type CallSignal = ClientSignal;

/**
 * An abort signal as a listener list: whether it has fired, its reason, listeners told once, and a
 * web AbortSignal made only the first time someone asks for `signal` (an SDK, the global fetch(), a
 * timer) and aborted with it. The shell's `ClientLeave` and each attempt's deadline are one: no
 * AbortController, AbortSignal or EventTarget listener per request or per upstream call.
 */
export class LazySignal implements ClientSignal {
  aborted = false;
  reason: unknown = undefined;
  /** The trace upstream calls made under this signal belong to (shared/tracing/context.ts `traceCalls`). */
  trace: TraceContext | undefined = undefined;
  #listeners: AbortListener[] | undefined;
  #controller: AbortController | undefined;

  addEventListener(_type: 'abort', listener: AbortListener, _options?: { once?: boolean }): void {
    if (!this.aborted) (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: AbortListener): void {
    const i = this.#listeners?.indexOf(listener) ?? -1;
    if (i >= 0) this.#listeners!.splice(i, 1);
  }

  /**
   * Fire (once): the web signal, if one was made, then each listener once. A listener that throws
   * does not keep the others from being told; its error is thrown on its own, as an EventTarget's is.
   */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.#controller?.abort(reason);
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (!listeners) return;
    const event = new Event('abort');
    for (const l of listeners) {
      try {
        if (typeof l === 'function') l(event);
        else l.handleEvent(event);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /** The same abort as a web AbortSignal, made the first time someone asks. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }
}

/** The client's leaving as the shells report it: `leave()` once, listeners told once. */
export class ClientLeave extends LazySignal {
  /** The client went away: listeners (each once) and the signal, if one was made, are told. */
  leave(): void {
    if (!this.aborted) this.abort(new DOMException('This operation was aborted', 'AbortError'));
  }
}

/** A web AbortSignal for `s`: itself when it is one, else the one a LazySignal makes when asked. */
export function webSignal(s: ClientSignal): AbortSignal {
  return s instanceof LazySignal ? s.signal : (s as AbortSignal);
}

/** Wait `ms`, or fail with the client's leaving (`reason`) as soon as it happens. */
export function sleepUnlessLeft(ms: number, client: ClientSignal): Promise<void> {
  if (client.aborted) return Promise.reject(client.reason);
  return new Promise((resolve, reject) => {
    const listener = {
      handleEvent() {
        clearTimeout(timer);
        reject(client.reason);
      },
    };
    const timer = setTimeout(() => {
      client.removeEventListener('abort', listener);
      resolve();
    }, ms);
    client.addEventListener('abort', listener, { once: true });
  });
}
