import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';
import { serveChild } from './child.ts';

/**
 * The floor: the least a reverse proxy in Node can do. node:http in, node:http out over a keep-alive
 * agent, bodies piped both ways chunk by chunk, hop-by-hop headers dropped. No parsing, no logging.
 * BENCH_UPSTREAM names the upstream's base URL.
 */

const upstream = new URL(process.env.BENCH_UPSTREAM ?? 'http://127.0.0.1:1');
const agent = new Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo' });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

function forwardable(h: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const k in h) if (!HOP.has(k)) out[k] = h[k];
  return out;
}

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const headers = forwardable(req.headers);
  headers.host = upstream.host;
  const up = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (ures) => {
    res.writeHead(ures.statusCode ?? 502, forwardable(ures.headers));
    ures.pipe(res);
  });
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
    res.end();
  });
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
});

serveChild(server, () => agent.destroy());
