import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
// Taken with getBuiltinModule, not imported: no ES module facade of node:http(s) to build at cold start (about 0.8 ms).
const { Agent: HttpAgent, request: httpRequest } = process.getBuiltinModule('node:http');
const { Agent: HttpsAgent, request: httpsRequest } = process.getBuiltinModule('node:https');
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { BytesResponse, rawHeaderValue, ReaderResponse, type PullSource } from './bytes.ts';
import type { CallSignal } from './client-signal.ts';
import { isHeaders } from './web.ts';
import { atTurnEnd } from './turn-end.ts';

/**
 * The upstream call on node:http(s) instead of the global fetch(): the same web Request/Response
 * shapes for the core, at a fraction of the CPU per call (undici's fetch spends several times
 * what node:http does on a small JSON exchange; see docs/benchmarks.md). What it does:
 * - keep-alive connection pools (one for http, one for https);
 * - a string or byte body sent with its content-length;
 * - the body handed on chunk by chunk as the socket delivers it (never coalesced or held back),
 *   with backpressure: the socket is paused while the reader is not asking;
 * - gzip/deflate/br bodies decoded, as fetch() would (we do not ask for compression ourselves);
 * - the signal aborts the call at any point (before the answer or mid-body);
 * - network failures reject (or error the body) like fetch(): an Error whose `cause` carries the
 *   system error code (ECONNREFUSED, ECONNRESET, ...).
 * Redirects are not followed (an LLM or MCP API that redirects is answered as is).
 *
 * An idle kept-alive connection can be closed by the server just as a request goes out on it (the
 * server's idle timeout against our reuse): the request then fails with a reset or a hang-up before
 * any answer, and the server never handled it. Such a request, on a reused connection that had been
 * idle for STALE_AFTER_MS or more, is sent once more on a new one (as node's documentation advises
 * for `request.reusedSocket`). A failure on a new connection, or on one that was idle only a moment
 * (no idle timeout strikes that soon: the server is failing), is never resent. (Giving the agents a
 * timeout would make node drop idle connections before a server's announced `Keep-Alive: timeout`,
 * but it arms a socket timer that every read and write refreshes: about 100 more calls into node per
 * request, counted by bench/footprint.ts.)
 */

/** How long a connection must have been idle for a reset on reusing it to be taken as the server's idle timeout. */
const STALE_AFTER_MS = 1_000;

const agents = {
  http: new HttpAgent({ keepAlive: true, scheduling: 'lifo' }),
  https: new HttpsAgent({ keepAlive: true, scheduling: 'lifo' }),
};

/**
 * Calls sent and not answered yet (no answer's head, no failure). While any are, a new call goes out
 * at the end of the loop's turn with the other writes of that turn (shared/http/turn-end.ts).
 */
let unanswered = 0;

/** When each pooled connection last became idle (a WeakMap: node's sockets keep their own shape). */
const idleSince = new WeakMap<object, number>();

/** How long before a server's announced `Keep-Alive: timeout` node stops reusing a connection (node's own margin). */
const HINT_MARGIN_MS = 1_000;

/**
 * Whether a connection whose answer is over can be kept for the next request: node's
 * `Agent.prototype.keepSocketAlive` for agents without a timeout, with the server's
 * `Keep-Alive: timeout=N` hint read from the answer's raw header pairs (node reads `res.headers`,
 * which builds the whole header record of every answer for this one header; about 3 µs a
 * request). With no agent timeout node only uses the hint to refuse a connection the server
 * closes within its margin (timeout=1 or 0), and so does this. The time it became idle is noted for
 * `staleConnection` (the agent's documented hook: a second 'free' listener would make every
 * socket's 'free' event go through a listener array).
 */
function keepSocketAlive(this: { keepAliveMsecs: number }, socket: Socket): boolean {
  socket.setKeepAlive(true, this.keepAliveMsecs);
  socket.unref();
  idleSince.set(socket, performance.now());
  const raw = (socket as unknown as { _httpMessage?: { res?: IncomingMessage } })._httpMessage?.res?.rawHeaders;
  const hint = raw ? rawHeaderValue(raw, 'keep-alive') : null;
  const seconds = hint ? /^timeout=(\d+)/.exec(hint)?.[1] : undefined;
  if (seconds !== undefined && Number(seconds) * 1000 <= HINT_MARGIN_MS) return false;
  if (socket.timeout !== 0) socket.setTimeout(0);
  return true;
}
for (const agent of [agents.http, agents.https]) agent.keepSocketAlive = keepSocketAlive;

/** The request failed the way a server's idle timeout fails it: reset or hung up on a connection it had let idle. */
function staleConnection(req: ClientRequest, err: NodeJS.ErrnoException): boolean {
  if (!req.reusedSocket || (err.code !== 'ECONNRESET' && err.code !== 'EPIPE')) return false;
  const since = req.socket ? idleSince.get(req.socket) : undefined;
  return since !== undefined && performance.now() - since >= STALE_AFTER_MS;
}

export interface UpstreamInit {
  method?: string;
  headers?: HeadersInit;
  body?: string | Uint8Array | null;
  /** The attempt's deadline (a LazySignal: a listener, no EventTarget) or any AbortSignal. */
  signal?: CallSignal;
  /** Called once when the response body is over: read to the end, failed, or cancelled. */
  onBodyEnd?: () => void;
  /** The error a reader of the body sees when it fails mid-way (default: like fetch()). */
  bodyError?: (err: unknown) => unknown;
}

/**
 * The request's header lines as node's flat [name, value, ...] list, with the Host header node
 * would add: node then writes them as they are, each checked once, instead of storing them one by
 * one (setHeader) and looking some up again (host, authorization, expect).
 */
function headerLines(headers: OutgoingHttpHeaders, host: string): string[] {
  const lines: string[] = [];
  for (const k in headers) lines.push(k, headers[k] as string);
  lines.push('Host', host);
  return lines;
}

function plainHeaders(h: HeadersInit | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  if (!h) return out;
  if (isHeaders(h)) h.forEach((v, k) => (out[k] = v));
  else if (Array.isArray(h)) for (const [k, v] of h) out[k!.toLowerCase()] = v;
  else for (const k in h) out[k.toLowerCase()] = (h as Record<string, string>)[k];
  return out;
}

function networkError(err: unknown): Error {
  return new TypeError('fetch failed', { cause: err });
}

/** node:zlib, loaded by the first compressed answer (upstreams rarely compress: not at import). */
const zlib = () => process.getBuiltinModule('node:zlib');

function decoded(res: IncomingMessage): Readable {
  // From the raw pairs: `res.headers` would build node's whole header record for this one.
  const enc = (rawHeaderValue(res.rawHeaders, 'content-encoding') ?? '').trim().toLowerCase();
  const d = enc === 'gzip' || enc === 'x-gzip' ? zlib().createGunzip() : enc === 'deflate' ? zlib().createInflate() : enc === 'br' ? zlib().createBrotliDecompress() : undefined;
  if (!d) return res;
  res.on('error', (err) => d.destroy(err));
  return res.pipe(d);
}

/**
 * A node response body read at the reader's pace, straight from the socket (no web stream): the
 * socket is paused while a chunk waits to be read. The answer is a ReaderResponse over it: the
 * attempt runner and the relays read it directly (`bodyReader`), `.body` makes a web stream only
 * when someone asks for it.
 */
class SocketBody implements PullSource {
  private readonly queue: Buffer[] = [];
  private waiter?: { resolve: (r: ReadableStreamReadResult<Uint8Array>) => void; reject: (err: unknown) => void };
  private ended = false;
  private error: unknown;
  private settled = false;
  private readonly src: Readable;

  constructor(
    private readonly res: IncomingMessage,
    private readonly init: UpstreamInit,
  ) {
    const src = (this.src = decoded(res));
    src.on('data', (chunk: Buffer) => {
      if (this.settled) return;
      if (this.waiter) this.answer({ done: false, value: chunk });
      else {
        this.queue.push(chunk);
        src.pause();
      }
    });
    src.on('end', () => {
      if (this.settled) return;
      this.over();
      this.ended = true;
      if (this.waiter) this.answer({ done: true, value: undefined });
    });
    const fail = (err: unknown) => {
      if (this.settled) return;
      this.over();
      const signal = init.signal;
      const e = signal?.aborted ? (signal.reason ?? err) : networkError(err);
      this.error = init.bodyError ? init.bodyError(e) : e;
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.reject(this.error);
      }
    };
    src.on('error', fail);
    if (src !== res) res.on('error', fail);
    // A connection that closes before the body is complete is an error, not an end.
    res.on('close', () => {
      if (!res.complete) fail(Object.assign(new Error('the connection closed before the body was complete'), { code: 'ECONNRESET' }));
    });
  }

  private over(): void {
    this.settled = true;
    this.init.onBodyEnd?.();
  }

  private answer(r: ReadableStreamReadResult<Uint8Array>): void {
    const w = this.waiter!;
    this.waiter = undefined;
    w.resolve(r);
  }

  readNow(): ReadableStreamReadResult<Uint8Array> | undefined {
    const chunk = this.queue.shift();
    if (chunk) return { done: false, value: chunk };
    if (this.error === undefined && (this.ended || (this.settled && !this.waiter))) return { done: true, value: undefined };
    return undefined;
  }

  read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    const now = this.readNow();
    if (now) return Promise.resolve(now);
    if (this.error !== undefined) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      if (this.src.isPaused()) this.src.resume();
    });
  }

  cancel(_why?: unknown): Promise<void> {
    this.queue.length = 0;
    if (!this.settled) this.over();
    if (this.waiter) this.answer({ done: true, value: undefined });
    this.res.destroy();
    return Promise.resolve();
  }
}

/** Where a URL sends a request, as node:http's options take it. */
interface Target {
  https: boolean;
  hostname: string;
  port: string | undefined;
  path: string;
  auth: string | undefined;
  /** The Host header node would send for it. */
  host: string;
}

/** Targets by URL string: a gateway calls a handful of upstream URLs over and over (bounded: cleared when full). */
const targets = new Map<string, Target>();

/** The target of `url` (parsed once per URL string), or the protocol it names when that is not http(s). */
function targetOf(url: string): Target | string {
  const known = targets.get(url);
  if (known) return known;
  const u = new URL(url);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return u.protocol;
  const target: Target = {
    https: u.protocol === 'https:',
    hostname: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
    port: u.port || undefined,
    path: `${u.pathname}${u.search}`,
    auth: u.username ? `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}` : undefined,
    // URL leaves out a scheme's default port, as node's Host header does; an IPv6 host keeps its brackets.
    host: u.host,
  };
  if (targets.size >= 256) targets.clear();
  targets.set(url, target);
  return target;
}

export function upstreamFetch(url: string, init: UpstreamInit = {}): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const u = targetOf(url);
    if (typeof u === 'string') {
      reject(networkError(new Error(`unsupported protocol ${u}`)));
      return;
    }
    const https = u.https;
    const signal = init.signal;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let counted = true;
    unanswered++;
    const settle = () => {
      if (!counted) return;
      counted = false;
      unanswered--;
    };
    const answer = (res: Response) => {
      settle();
      resolve(res);
    };
    const fail = (err: unknown) => {
      settle();
      reject(err);
    };
    const headers = plainHeaders(init.headers);
    // A string body goes as its bytes: node would join it to the request's head and send that
    // string, leaving the head itself unflattened (a string of ~30 pieces held by the request
    // until it ends); written beside bytes, the head is flattened where it is.
    const body = typeof init.body === 'string' ? Buffer.from(init.body) : (init.body ?? undefined);
    if (body !== undefined) headers['content-length'] = String(body.byteLength);
    // As a list unless node has more to do with them (credentials in the URL, an `expect` or a `host` header).
    const lines = u.auth === undefined && headers.expect === undefined && headers.host === undefined ? headerLines(headers, u.host) : headers;
    const send = (mayResend: boolean): void => {
      const req = (https ? httpsRequest : httpRequest)({
        protocol: https ? 'https:' : 'http:',
        hostname: u.hostname,
        port: u.port,
        path: u.path,
        method: init.method ?? 'GET',
        headers: lines,
        agent: https ? agents.https : agents.http,
        auth: u.auth,
      });
      let answered = false;
      const onAbort = () => {
        const err = (signal!.reason ?? new DOMException('This operation was aborted', 'AbortError')) as Error;
        if (!answered) fail(err);
        req.destroy(err);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (answered) return;
        if (mayResend && staleConnection(req, err) && !signal?.aborted) {
          // The server closed this idle connection as we reused it: once more, on a new one.
          signal?.removeEventListener('abort', onAbort);
          send(false);
          return;
        }
        fail(signal?.aborted ? (signal.reason ?? err) : networkError(err));
      });
      req.on('response', (res) => {
        answered = true;
        // The listener stays until the body ends: an abort mid-body destroys the request, which
        // errors the body stream.
        res.on('close', () => signal?.removeEventListener('abort', onAbort));
        const status = res.statusCode ?? 502;
        const nullBody = status === 204 || status === 205 || status === 304 || init.method === 'HEAD';
        if (nullBody) res.resume();
        try {
          const meta = { status, statusText: res.statusMessage };
          // The headers stay node's raw pairs until someone asks for them as Headers.
          answer(nullBody ? new BytesResponse(null, meta, res.rawHeaders) : new ReaderResponse(new SocketBody(res, init), meta, res.rawHeaders));
        } catch (err) {
          // A status the web Response cannot carry (below 200 or above 599).
          res.destroy();
          fail(networkError(err));
        }
      });
      req.end(body);
    };
    const start = (): void => {
      // Held to the end of the turn, the call may have been cancelled meanwhile.
      if (signal?.aborted) return fail(signal.reason);
      try {
        send(true);
      } catch (err) {
        // node:http refuses the request (a header value it cannot send, say).
        fail(err);
      }
    };
    if (unanswered > 1) atTurnEnd(start);
    else start();
  });
}
