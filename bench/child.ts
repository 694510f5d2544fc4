import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Helpers for bench/'s child entry points (kept free of heavy imports). */

/** Announce readiness to the parent (used by the child entry points in bench/). */
export function announceReady(url: string): void {
  process.stdout.write(`${JSON.stringify({ ready: true, url })}\n`);
}

/** Stop a child entry point cleanly on SIGTERM/SIGINT (so --cpu-prof can write its profile). */
export function onStopSignal(close: () => Promise<void>): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/**
 * Serve a child's node:http server on 127.0.0.1 (BENCH_PORT, or any free port), announce it when
 * listening, and on the stop signal close it with its connections, then run `cleanup`.
 */
export function serveChild(server: Server, cleanup?: () => void): void {
  server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    announceReady(`http://127.0.0.1:${port}`);
  });
  onStopSignal(async () => {
    server.closeAllConnections();
    server.close();
    cleanup?.();
  });
}
