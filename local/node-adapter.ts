import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../shared/gateway.ts';

/**
 * The thin shell between node:http and the gateway core: IncomingMessage -> web Request, web
 * Response -> ServerResponse, chunk by chunk as the core produces them. A client that disconnects
 * aborts the request's signal, which cancels the upstream call.
 */
export function nodeHandler(gateway: Gateway, pending: Set<Promise<unknown>>) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    const headers = new Headers();
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, {
      method: req.method,
      headers,
      body: hasBody ? requestBody(req) : undefined,
      signal: controller.signal,
      // @ts-expect-error duplex is required by Node's fetch for streamed bodies but missing from the DOM types
      duplex: 'half',
    });
    const waitUntil = (p: Promise<unknown>) => {
      pending.add(p);
      p.finally(() => pending.delete(p));
    };
    gateway
      .handle(request, { waitUntil })
      .then((response) => writeResponse(response, res, req.method === 'HEAD'))
      .catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end();
      });
  };
}

/**
 * The request body as a web stream, chunk by chunk, paused while the core is not reading (a
 * lighter bridge than Readable.toWeb, which costs a measurable share of a small request).
 */
function requestBody(req: IncomingMessage): ReadableStream<Uint8Array> {
  let over = false;
  return new ReadableStream<Uint8Array>(
    {
      start(ctrl) {
        req.on('data', (chunk: Buffer) => {
          if (over) return;
          ctrl.enqueue(chunk);
          if ((ctrl.desiredSize ?? 0) <= 0) req.pause();
        });
        req.on('end', () => {
          if (over) return;
          over = true;
          ctrl.close();
        });
        const fail = (err: Error) => {
          if (over) return;
          over = true;
          ctrl.error(err);
        };
        req.on('error', fail);
        req.on('close', () => {
          if (!req.complete) fail(new Error('the client closed the connection before the request body was complete'));
        });
      },
      pull() {
        if (req.isPaused()) req.resume();
      },
      cancel() {
        // Drain a little of what is left, so a 413 can still reach the client over this
        // connection; a client that keeps sending past that is cut off.
        over = true;
        let drained = 0;
        req.on('data', (chunk: Buffer) => {
          drained += chunk.byteLength;
          if (drained > 1024 * 1024) req.destroy();
        });
        req.resume();
      },
    },
    { highWaterMark: 1 },
  );
}

async function writeResponse(response: Response, res: ServerResponse, head: boolean): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => (headers[k] = v));
  res.writeHead(response.status, headers);
  if (!response.body || head) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  res.on('close', () => {
    if (!res.writableFinished) reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise((r) => res.once('drain', r));
    }
  } catch {
    // The core ends its own streams with an error event; an exception here means the client left
    // or a body that cannot carry an error event (a non-streaming pass-through) broke mid-way.
    // Cut the connection so the client cannot mistake a truncated body for a complete one.
    res.destroy();
    return;
  }
  res.end();
}
