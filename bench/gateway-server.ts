import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../shared/config/load.ts';
import { startLocalServer } from '../local/server.ts';
import { announceReady, onStopSignal } from './child.ts';

/**
 * Our gateway as the benchmark runs it: the local server (`startLocalServer`, the same shell as
 * `npm start`) in its own process, with an `openai-compatible` provider pointed at the mock
 * upstream (BENCH_UPSTREAM) and request logging on (NDJSON files under BENCH_LOG_DIR, default a
 * fresh temporary folder).
 */

export const BENCH_MODEL = 'gpt-4o-mini';

export function benchConfig(upstream: string, logDir: string) {
  return parseConfig(
    {
      providers: { upstream: { type: 'openai-compatible', baseUrl: `${upstream}/v1` } },
      models: { [BENCH_MODEL]: { provider: 'upstream', model: 'gpt-4o-mini-2024-07-18' } },
      logging: { localDir: logDir },
    },
    'benchmark configuration',
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const upstream = process.env.BENCH_UPSTREAM ?? 'http://127.0.0.1:1';
  const logDir = process.env.BENCH_LOG_DIR ?? mkdtempSync(join(tmpdir(), 'gw-bench-logs-'));
  const srv = await startLocalServer({ config: benchConfig(upstream, logDir), env: {}, port: Number(process.env.BENCH_PORT ?? 0) });
  announceReady(srv.url);
  onStopSignal(() => srv.close());
}
