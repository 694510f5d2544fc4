/**
 * Relaying an MCP server's response body to the client as it arrives. For `text/event-stream`
 * bodies each event (one JSON-RPC message) is handed to `inspect` as soon as its blank line
 * arrives, and passed on unchanged or rewritten; nothing waits for the end of the stream. Other
 * bodies pass through chunk by chunk.
 */

import { SseSplitter } from '../http/sse.ts';

/** The `data` of one SSE event (data lines joined by newlines), or undefined when it has none. */
export function eventData(event: string): string | undefined {
  let data: string | undefined;
  for (const line of event.split(/\r\n|\n|\r/)) {
    if (!line.startsWith('data')) continue;
    if (line !== 'data' && line[4] !== ':') continue;
    let v = line.slice(5);
    if (v.startsWith(' ')) v = v.slice(1);
    data = data === undefined ? v : `${data}\n${v}`;
  }
  return data;
}

/** The same event with its data replaced (other fields such as `id:` and `event:` kept in order). */
export function replaceEventData(event: string, data: string): string {
  const out: string[] = [];
  let placed = false;
  for (const line of event.split(/\r\n|\n|\r/)) {
    if (line === '') continue;
    if (line === 'data' || line.startsWith('data:')) {
      if (!placed) for (const d of data.split('\n')) out.push(`data: ${d}`);
      placed = true;
      continue;
    }
    out.push(line);
  }
  return `${out.join('\n')}\n\n`;
}

export interface RelayHooks {
  /** Called with each chunk sent to the client. */
  sent(chunk: Uint8Array): void;
  /** The upstream body ended normally. */
  done(): void;
  /** The upstream body failed mid-way. */
  failed(err: unknown): void;
  /** The client went away. */
  cancelled(): void;
  /** For event streams: each event's data; return new data to rewrite the event. */
  inspect?(data: string): string | undefined;
}

/** A body for the client that pulls from `upstream` only as fast as the client reads. */
export function relayBody(upstream: ReadableStream<Uint8Array>, eventStream: boolean, hooks: RelayHooks): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const splitter = eventStream && hooks.inspect ? new SseSplitter({ bareCr: true }) : undefined;
  const encoder = new TextEncoder();
  let finished = false;
  const finish = (fn: () => void) => {
    if (finished) return;
    finished = true;
    fn();
  };
  const rewrite = (events: string[]): Uint8Array | undefined => {
    if (!events.length) return undefined;
    let text = '';
    for (const ev of events) {
      const data = eventData(ev);
      const next = data === undefined ? undefined : hooks.inspect!(data);
      text += next === undefined ? ev : replaceEventData(ev, next);
    }
    return encoder.encode(text);
  };
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        // Read until there is something whole to send (an event stream may split an event across chunks).
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            if (splitter) {
              const tail = splitter.end();
              if (tail) {
                const bytes = encoder.encode(tail);
                hooks.sent(bytes);
                ctrl.enqueue(bytes);
              }
            }
            ctrl.close();
            finish(hooks.done);
            return;
          }
          const out = splitter ? rewrite(splitter.push(value)) : value;
          if (out && out.byteLength) {
            hooks.sent(out);
            ctrl.enqueue(out);
            return;
          }
        }
      } catch (err) {
        finish(() => hooks.failed(err));
        // The server's body is let go (an event past the splitter's bound leaves it still sending).
        reader.cancel(err).catch(() => {});
        ctrl.error(err);
      }
    },
    cancel(reason) {
      finish(hooks.cancelled);
      return reader.cancel(reason);
    },
  });
}
