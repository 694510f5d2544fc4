import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Gateway, ShellReject } from '../shared/gateway.ts';
import { bodyReader, hasBody, headerRecord, rawToHeaders, responseBytes, ShellRequest } from '../shared/http/bytes.ts';
import { WebHeaders } from '../shared/http/web.ts';
import { atTurnEnd } from '../shared/http/turn-end.ts';

/**
 * The thin shell between node:http and the gateway core: IncomingMessage -> web Request, web
 * Response -> ServerResponse, chunk by chunk as the core produces them. A client that disconnects
 * aborts the request's signal, which cancels the upstream call.
 *
 * Hostile input never reaches `new Request` raw: the URL is built from a fixed origin (the Host
 * header is never parsed), request targets that are not a path (`*`, authority-form) and methods
 * fetch cannot carry (TRACE, TRACK, CONNECT) go to the core as rejects, which answer and log them
 * like any other request. Nothing a request does may throw out of the handler.
 */

/** The origin every request URL is built on: the core routes on the path and query only. */
const ORIGIN = 'http://gateway.local';
/** Methods the fetch Request refuses to carry. */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);

export type Pending = Set<Promise<unknown>>;

type Extras = ReturnType<typeof extrasFor>;

function extrasFor(pending: Pending) {
  return {
    waitUntil: (p: Promise<unknown>) => {
      pending.add(p);
      p.finally(() => pending.delete(p));
    },
  };
}

/**
 * A target the URL parser leaves as it is: segments of unreserved characters that are not `.` or
 * `..`, then an optional query of characters it does not escape (no `%`: a bad escape is its business).
 */
const PLAIN_TARGET = /^(?:\/(?!\.\.?(?:\/|\?|$))[\w.~-]*)+(?:\?[\w.~\-=&+,:@!$()*/]*)?$/;

/**
 * The path and query of a request target, or why it has none. Origin-form (`/path?q`) is used as
 * sent; absolute-form (`http://host/path?q`, which proxies send) is reduced to its path and query,
 * so what the core routes is exactly the path the URL names; anything else is refused.
 */
export function targetUrl(target: string | undefined): { url: string } | { reject: ShellReject } {
  const t = target ?? '/';
  const refuse = (message: string): { reject: ShellReject } => ({ reject: { status: 400, code: 'invalid_request_target', message, path: t.slice(0, 256) } });
  // A plain path (and query) is what the URL parser would give back unchanged: no parse for it.
  if (PLAIN_TARGET.test(t)) return { url: ORIGIN + t };
  try {
    if (t.startsWith('/')) return { url: new URL(ORIGIN + t).href };
    if (/^https?:\/\//i.test(t)) {
      const u = new URL(t);
      return { url: new URL(ORIGIN + u.pathname + u.search).href };
    }
  } catch {
    return refuse('The request target is not a valid URL path.');
  }
  return refuse(`The request target must be a path such as /v1/chat/completions${t === '*' ? " ('*' is not served)" : ''}.`);
}

/** Hand a request the shell cannot turn into a web Request to the core, which answers and logs it. */
function rejectRequest(gateway: Gateway, extras: Extras, req: IncomingMessage, res: ServerResponse, reject: ShellReject): void {
  const request = new ShellRequest(targetUrlOrRoot(req.url), { method: 'GET', headers: rawToHeaders(req.rawHeaders) });
  // The body of a refused request is not read: the connection closes after the answer.
  res.shouldKeepAlive = false;
  gateway
    .reject(request, extras, { method: req.method ?? 'UNKNOWN', ...reject })
    .then((response) => writeResponse(response, res, req.method === 'HEAD'))
    .catch(() => fail(res));
}

/** A request with no headers for the root: what the core is given for a request node:http could not parse. */
function bareRequest(): ShellRequest {
  return new ShellRequest(`${ORIGIN}/`, { method: 'GET', headers: new WebHeaders() });
}

function targetUrlOrRoot(target: string | undefined): string {
  const t = targetUrl(target);
  return 'url' in t ? t.url : `${ORIGIN}/`;
}

/** Last resort when the core itself failed: a bare 500 (the core logs its own failures). */
function fail(res: ServerResponse): void {
  try {
    if (!res.headersSent) {
      res.shouldKeepAlive = false;
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'The gateway failed to handle this request.', type: 'server_error', param: null, code: 'internal_error' } }));
    } else res.destroy();
  } catch {
    res.destroy();
  }
}

export function nodeHandler(gateway: Gateway, pending: Pending) {
  // The same for every request (nothing in the core writes to it): made once, not per request.
  const extras = extrasFor(pending);
  return (req: IncomingMessage, res: ServerResponse): void => {
    try {
      handleRequest(gateway, extras, req, res);
    } catch {
      fail(res);
    }
  };
}

/** Requests whose response has not closed yet (rejected ones left out). */
let active = 0;

function handleRequest(gateway: Gateway, extras: Extras, req: IncomingMessage, res: ServerResponse): void {
  const method = req.method ?? 'GET';
  if (FORBIDDEN_METHODS.has(method)) {
    return rejectRequest(gateway, extras, req, res, { status: 405, code: 'method_not_allowed', message: `Method ${method} is not served by this gateway.` });
  }
  const target = targetUrl(req.url);
  if ('reject' in target) return rejectRequest(gateway, extras, req, res, target.reject);
  // One listener for the client's leaving; the request's signal is made only if the core asks for it.
  let request: ShellRequest | undefined;
  let left = false;
  active++;
  res.on('close', () => {
    active--;
    if (res.writableFinished) return;
    left = true;
    request?.leaving.leave();
  });
  const sendsBody = method !== 'GET' && method !== 'HEAD';
  const dispatch = (body: { bytes?: Uint8Array; stream?: ReadableStream<Uint8Array> }) => {
    request = new ShellRequest(target.url, { method, headers: rawToHeaders(req.rawHeaders), ...body });
    if (left) request.leaving.leave();
    gateway
      .handle(request, extras)
      .then((response) => {
        // An answer given before the request body was read whole (413, 415, a refused key): the
        // rest of the body is not read, so this connection cannot carry another request. Close it
        // after the answer rather than leave the client's next request behind unread bytes.
        if (sendsBody && !req.complete) res.shouldKeepAlive = false;
        return writeResponse(response, res, method === 'HEAD');
      })
      .catch(() => fail(res));
  };
  if (!sendsBody) return dispatch({});
  // A small body of declared length is read whole first and handed over as bytes (no web body
  // stream: the core's body reader takes the bytes). Anything else streams (bounded by the core).
  const length = Number(req.headers['content-length'] ?? NaN);
  if (req.headers['transfer-encoding'] === undefined && length >= 0 && length <= SMALL_BODY_BYTES) {
    // Called from the request's events: nothing may throw out of them.
    const safely = (body: Parameters<typeof dispatch>[0]) => {
      try {
        dispatch(body);
      } catch {
        fail(res);
      }
    };
    readWhole(req, (bytes) => safely({ bytes }), (err) => safely({ stream: new ReadableStream({ start: (ctrl) => ctrl.error(err) }) }));
    return;
  }
  dispatch({ stream: requestBody(req) });
}

/** Bodies up to this many bytes, with a content-length, are read before the Request is built. */
const SMALL_BODY_BYTES = 64 * 1024;

/**
 * The whole body of a request whose length is known and small, to `done` (no promise: the request
 * goes to the core in the turn its last byte came in); `failed` once if the client leaves first.
 */
function readWhole(req: IncomingMessage, done: (bytes: Buffer) => void, failed: (err: Error) => void): void {
  const chunks: Buffer[] = [];
  let over = false;
  const failOnce = (err: Error) => {
    if (over) return;
    over = true;
    failed(err);
  };
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (over) return;
    over = true;
    done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
  });
  req.on('error', failOnce);
  req.on('close', () => {
    if (!req.complete) failOnce(new Error('the client closed the connection before the request body was complete'));
  });
}

/**
 * A request Node's HTTP parser refused (malformed request line or headers, headers too large, a
 * request that took too long): answered 400/431/408 and logged by the core, then the connection closes.
 */
export function clientErrorHandler(gateway: Gateway, pending: Pending) {
  return (err: NodeJS.ErrnoException, socket: Socket): void => {
    try {
      if (err.code === 'ECONNRESET' || !socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const code = status === 431 ? 'headers_too_large' : status === 408 ? 'request_timeout' : 'malformed_request';
      const message = status === 431 ? 'The request headers are too large.' : status === 408 ? 'The request took too long to arrive.' : 'The request is not valid HTTP/1.1.';
      gateway
        .reject(bareRequest(), extrasFor(pending), { method: 'UNKNOWN', path: '-', status, code, message })
        .then((response) => answerOnSocket(socket, response))
        .catch(() => socket.destroy());
    } catch {
      socket.destroy();
    }
  };
}

/** Write the core's answer straight onto a socket node:http no longer serves (refused HTTP, CONNECT), then close it. */
async function answerOnSocket(socket: Socket, response: Response): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer());
  const lines = [`HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? ''}`];
  response.headers.forEach((v, k) => lines.push(`${k}: ${v}`));
  lines.push(`content-length: ${body.byteLength}`, 'connection: close', '', '');
  if (socket.writable) socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body]));
  else socket.destroy();
}

/** CONNECT (a proxy tunnel) is not served: 405, logged by the core, and the socket closes. */
export function connectHandler(gateway: Gateway, pending: Pending) {
  return (req: IncomingMessage, socket: Socket): void => {
    const onError = () => socket.destroy();
    socket.on('error', onError);
    gateway
      .reject(bareRequest(), extrasFor(pending), { method: 'CONNECT', path: (req.url ?? '').slice(0, 256), status: 405, code: 'method_not_allowed', message: 'Method CONNECT is not served by this gateway.' })
      .then((response) => answerOnSocket(socket, response))
      .catch(onError);
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
        const failOnce = (err: Error) => {
          if (over) return;
          over = true;
          ctrl.error(err);
        };
        req.on('error', failOnce);
        req.on('close', () => {
          if (!req.complete) failOnce(new Error('the client closed the connection before the request body was complete'));
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

/** Statuses whose answers carry no body (and so no content-length). */
function bodiless(status: number): boolean {
  return status === 204 || status === 304 || status < 200;
}

async function writeResponse(response: Response, res: ServerResponse, head: boolean): Promise<void> {
  const headers = headerRecord(response);
  // An answer whose bytes are whole goes out in one write, with its length.
  const bytes = responseBytes(response);
  if (bytes) {
    if (!bodiless(response.status)) headers['content-length'] = String(bytes.byteLength);
    const write = () => {
      try {
        res.writeHead(response.status, headers);
        res.end(head || bodiless(response.status) ? undefined : bytes);
      } catch {
        fail(res);
      }
    };
    // With other requests in flight, at the end of the loop's turn with that turn's other writes.
    if (active > 1) atTurnEnd(write);
    else write();
    return;
  }
  res.writeHead(response.status, headers);
  if (!hasBody(response) || head) {
    res.end();
    return;
  }
  // The core's stream frame (or an upstream body) is read directly: no web stream in between.
  const reader = bodyReader(response);
  res.on('close', () => {
    if (!res.writableFinished) reader.cancel().catch(() => {});
  });
  // Writes held to the end of the turn (while other requests are open), in order: once one is held, the rest of this answer follows it.
  let held = 0;
  const write = (chunk: Uint8Array) => {
    held--;
    if (!res.destroyed) res.write(chunk);
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (held > 0 || active > 1) {
        held++;
        atTurnEnd(() => write(value));
        if (res.writableNeedDrain) await new Promise((r) => res.once('drain', r));
      } else if (!res.write(value)) await new Promise((r) => res.once('drain', r));
    }
  } catch {
    // The core ends its own streams with an error event; an exception here means the client left
    // or a body that cannot carry an error event (a non-streaming pass-through) broke mid-way.
    // Cut the connection so the client cannot mistake a truncated body for a complete one.
    res.destroy();
    return;
  }
  if (held > 0) atTurnEnd(() => res.end());
  else res.end();
}
