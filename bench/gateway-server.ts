import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../shared/config/load.ts';
import { createDynamoStore, dynamoSettings, ensureTables, type DynamoStore } from '../shared/store/dynamodb.ts';
import { startLocalServer } from '../local/server.ts';
import { announceReady, onStopSignal } from './child.ts';

/**
 * Our gateway as the benchmark runs it: the local server (`startLocalServer`, the same shell as
 * `npm start`) in its own process, with an `openai-compatible` provider pointed at the mock
 * upstream (BENCH_UPSTREAM), request logging on (NDJSON files under BENCH_LOG_DIR, default a fresh
 * temporary folder) and no response cache.
 *
 * With BENCH_DYNAMO_ENDPOINT (a DynamoDB API, dynalite in the benchmark): keys required, rate
 * limits and budgets on, keys and counters in that store's tables, the admin API guarded by
 * BENCH_ADMIN_TOKEN. The benchmark then creates its key through the admin API, as an operator
 * would. Without it the gateway is open (no key, no limits): the difference is the store's cost.
 */

export const BENCH_MODEL = 'gpt-4o-mini';
export const BENCH_UPSTREAM_MODEL = 'gpt-4o-mini-2024-07-18';

export function benchConfig(upstream: string, logDir: string, dynamoEndpoint?: string) {
  return parseConfig(
    {
      providers: { upstream: { type: 'openai-compatible', baseUrl: `${upstream}/v1` } },
      models: { [BENCH_MODEL]: { provider: 'upstream', model: BENCH_UPSTREAM_MODEL } },
      logging: { localDir: logDir },
      // Prices make budgets count dollars (the key has a daily USD budget).
      pricing: { [BENCH_UPSTREAM_MODEL]: { input: 0.15, output: 0.6 } },
      ...(dynamoEndpoint
        ? {
            auth: { required: true },
            store: { endpoint: dynamoEndpoint, region: 'local', keysTable: 'bench-keys', usageTable: 'bench-usage' },
          }
        : {}),
    },
    'benchmark configuration',
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const upstream = process.env.BENCH_UPSTREAM ?? 'http://127.0.0.1:1';
  const logDir = process.env.BENCH_LOG_DIR ?? mkdtempSync(join(tmpdir(), 'gw-bench-logs-'));
  const endpoint = process.env.BENCH_DYNAMO_ENDPOINT || undefined;
  const config = benchConfig(upstream, logDir, endpoint);
  let store: DynamoStore | undefined;
  const env: Record<string, string> = {};
  if (endpoint) {
    const settings = dynamoSettings(config.store, {});
    await ensureTables(settings);
    store = createDynamoStore(settings);
    env.GATEWAY_ADMIN_TOKEN = process.env.BENCH_ADMIN_TOKEN ?? '';
  }
  const srv = await startLocalServer({ config, env, store, port: Number(process.env.BENCH_PORT ?? 0) });
  announceReady(srv.url);
  onStopSignal(async () => {
    await srv.close();
    store?.close();
  });
}
