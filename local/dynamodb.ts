import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import dynalite from 'dynalite';

export interface LocalDynamo {
  /** e.g. http://127.0.0.1:41234 */
  endpoint: string;
  close(): Promise<void>;
}

/**
 * A real DynamoDB API on this machine (dynalite): on disk under `dir` (keys survive a restart), or
 * in memory without one (tests). Listens on loopback only.
 */
export async function startLocalDynamo(opts: { dir?: string; port?: number } = {}): Promise<LocalDynamo> {
  if (opts.dir) mkdirSync(opts.dir, { recursive: true });
  const server = dynalite({ path: opts.dir, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
