/**
 * The client's leaving, as the attempt runner needs it: whether it has happened, and a listener
 * told when it does. A web Request's AbortSignal is one; a shell's `ClientLeave` is a cheaper one
 * (no AbortController per request: a real AbortSignal is made only if someone asks for `signal`).
 */
export interface ClientSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: EventListenerObject, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: EventListenerObject): void;
}

/** The client's leaving as the shells report it: `leave()` once, listeners told once. */
export class ClientLeave implements ClientSignal {
  aborted = false;
  reason: unknown = undefined;
  #listeners: EventListenerObject[] | undefined;
  #controller: AbortController | undefined;

  addEventListener(_type: 'abort', listener: EventListenerObject, _options?: { once?: boolean }): void {
    if (!this.aborted) (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: EventListenerObject): void {
    const i = this.#listeners?.indexOf(listener) ?? -1;
    if (i >= 0) this.#listeners!.splice(i, 1);
  }

  /** The client went away: listeners (each once) and the signal, if one was made, are told. */
  leave(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new DOMException('This operation was aborted', 'AbortError');
    this.#controller?.abort(this.reason);
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) for (const l of listeners) l.handleEvent(new Event('abort'));
  }

  /** The same leaving as a web AbortSignal, made the first time someone asks. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }
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
