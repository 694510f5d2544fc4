import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * The frame every loopback mock server is built on: a node:http server on 127.0.0.1 at a free
 * port, the requests it saw (method, path, headers, in arrival order) and a close() that drops
 * every open connection (streams a test left hanging included) before the port is released.
 */

export interface SeenRequest {
  method: string;
  /** Path with the query string, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface Loopback {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  url: string;
  port: number;
  server: Server;
  /** Every request the server saw, in arrival order. */
  seen: SeenRequest[];
  close(): Promise<void>;
}

export type LoopbackHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * Start a loopback server. A handler that throws or rejects answers 500 (or, once headers went out,
 * drops the connection); `onError` replaces that answer (a mock that speaks an API's error shape).
 */
export async function startLoopback(handler: LoopbackHandler, onError: (err: unknown, res: ServerResponse) => void = defaultOnError): Promise<Loopback> {
  const seen: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    try {
      void Promise.resolve(handler(req, res)).catch((err) => onError(err, res));
    } catch (err) {
      onError(err, res);
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    seen,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function defaultOnError(err: unknown, res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(500, { 'content-type': 'text/plain' });
  res.end(`mock server failed: ${(err as Error)?.message ?? String(err)}`);
}

/** The whole request body as UTF-8 text. */
export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A loopback URL where nothing listens (a port that was just free). */
export async function deadUrl(): Promise<string> {
  const lb = await startLoopback(() => undefined);
  await lb.close();
  return lb.url;
}
