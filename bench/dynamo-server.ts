import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import dynalite from 'dynalite';
import type { AddressInfo } from 'node:net';
import { announceReady, onStopSignal } from './child.ts';

/**
 * The benchmark's DynamoDB API: dynalite in memory, in its own process (on the load generator's
 * core), so our gateway pays for its store round trips over a real socket, as it would in AWS,
 * without the store's own work landing on the gateway's core.
 *
 * It counts the calls it receives, by operation (the X-Amz-Target header, e.g. `UpdateItem`):
 * `GET /__bench/calls` answers the counts so far as JSON, so a load run can charge the store
 * calls made during its measured window to the requests of that window.
 */
export const CALLS_PATH = '/__bench/calls';

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 }) as Server;
const calls: Record<string, number> = {};
const handlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
server.removeAllListeners('request');
server.on('request', (req: IncomingMessage, res: ServerResponse) => {
  if (req.method === 'GET' && req.url === CALLS_PATH) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(calls));
    return;
  }
  const target = String(req.headers['x-amz-target'] ?? 'unknown');
  const op = target.slice(target.lastIndexOf('.') + 1);
  calls[op] = (calls[op] ?? 0) + 1;
  for (const h of handlers) h.call(server, req, res);
});
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1', () => resolve());
});
announceReady(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
onStopSignal(
  () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
);
