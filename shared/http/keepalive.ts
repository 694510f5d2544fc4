import { bodyReader, hasBody, headerOf, ReaderResponse } from './bytes.ts';
import { keepFramedAlive } from '../wire/stream.ts';

const COMMENT = new TextEncoder().encode(': keepalive\n\n');
const LF = 10;
const CR = 13;

/**
 * Keep a server-sent-events response alive through silences: when no byte has gone out for
 * `intervalMs`, send an SSE comment line, which SSE parsers skip. A comment is only inserted
 * between events (after a blank line), never inside one, so passthrough bytes stay intact.
 * Pull-based: it reads the upstream only when the client wants more, so nothing is buffered.
 */
export function withSseKeepAlive(res: Response, intervalMs: number): Response {
  // The body is asked for last: a JSON answer carried as bytes keeps them (no stream made).
  if (!intervalMs || !(headerOf(res, 'content-type') ?? '').startsWith('text/event-stream') || !hasBody(res)) return res;
  // A stream the wire frame built sends the comments itself (between its pieces): no extra layer.
  if (keepFramedAlive(res, intervalMs)) return res;
  const reader = bodyReader(res);
  let last = Date.now();
  // The last three bytes sent (newest last), to tell whether the stream stands between two events.
  const tail = [LF, CR, LF];
  const betweenEvents = () => tail[2] === LF && (tail[1] === LF || (tail[1] === CR && tail[0] === LF));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const tick = () => {
        if (closed) return;
        const idle = Date.now() - last;
        if (idle >= intervalMs) {
          if (betweenEvents()) {
            try {
              controller.enqueue(COMMENT);
            } catch {
              return;
            }
          }
          last = Date.now();
          timer = setTimeout(tick, intervalMs);
        } else timer = setTimeout(tick, intervalMs - idle);
        // A response nobody reads must not keep the process alive.
        timer.unref?.();
      };
      timer = setTimeout(tick, intervalMs);
      timer.unref?.();
    },
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          closed = true;
          clearTimeout(timer);
          controller.close();
          return;
        }
        if (value.byteLength) {
          last = Date.now();
          for (let i = Math.max(0, value.byteLength - 3); i < value.byteLength; i++) {
            tail.shift();
            tail.push(value[i]!);
          }
        }
        controller.enqueue(value);
      } catch (err) {
        closed = true;
        clearTimeout(timer);
        controller.error(err);
      }
    },
    cancel(reason) {
      closed = true;
      clearTimeout(timer);
      return reader.cancel(reason);
    },
  });
  return new ReaderResponse(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}
