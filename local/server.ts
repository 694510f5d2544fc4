import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { loadConfigOrExit } from '../shared/config/load.ts';
import type { GatewayConfig } from '../shared/config/schema.ts';
import { Gateway } from '../shared/gateway.ts';
import { FileLogSink } from '../shared/telemetry/file-sink.ts';
import type { LogSink } from '../shared/telemetry/record.ts';
import type { Store } from '../shared/store/types.ts';
import { prepareLocalAuth } from './auth-setup.ts';
import { nodeHandler } from './node-adapter.ts';

export interface LocalServerOptions {
  config: GatewayConfig;
  env?: Record<string, string | undefined>;
  port?: number;
  host?: string;
  /** Log sinks; default: NDJSON files under config.logging.localDir. */
  sinks?: LogSink[];
  /** Where keys and usage live when `auth.required` (the caller owns and closes it). */
  store?: Store;
  /** Clock for rate-limit windows (tests pin it). */
  now?: () => number;
}

export interface LocalServer {
  url: string;
  gateway: Gateway;
  server: Server;
  close(): Promise<void>;
}

/** Serve the gateway core on node:http. Used by `npm start`, the tests and the benchmarks. */
export async function startLocalServer(opts: LocalServerOptions): Promise<LocalServer> {
  const sinks = opts.sinks ?? [new FileLogSink(opts.config.logging.localDir)];
  const gateway = new Gateway({
    config: opts.config,
    env: opts.env ?? process.env,
    sinks,
    onSinkError: (err) => console.error(`log sink failed: ${(err as Error).message}`),
    store: opts.store,
    now: opts.now,
  });
  const pending = new Set<Promise<unknown>>();
  const server = createServer({ keepAliveTimeout: 65_000 }, nodeHandler(gateway, pending));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    gateway,
    server,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.allSettled([...pending]);
      await gateway.flush();
    },
  };
}

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? '127.0.0.1';
  const auth = await prepareLocalAuth(config, process.env);
  const srv = await startLocalServer({ config, port, host, env: auth?.env, store: auth?.store });
  const lines = [`LLM gateway listening on ${srv.url}`, '', 'Providers:'];
  for (const p of srv.gateway.providers.values()) lines.push(`  ${p.live ? 'live' : 'off '}  ${p.name} (${p.type})${p.live ? '' : ` - ${p.notLiveReason}`}`);
  lines.push('', 'Models:');
  for (const m of srv.gateway.models) lines.push(`  ${m.live ? 'live' : 'off '}  ${m.id} -> ${m.route}`);
  if (auth) lines.push('', ...auth.banner);
  const keyHeader = auth ? ` -H "authorization: Bearer ${auth.keyExpr}"` : '';
  lines.push('', `Try: curl ${srv.url}/v1/chat/completions${keyHeader} -H 'content-type: application/json' -d '{"model":"mock","messages":[{"role":"user","content":"Hello gateway"}]}'`);
  lines.push(`Request logs: ${config.logging.localDir}/dt=YYYY-MM-DD/hour=HH/requests.ndjson (charts: ${srv.url}/admin/dashboard, with GATEWAY_ADMIN_TOKEN)`);
  console.log(lines.join('\n'));
  const stop = async () => {
    await srv.close();
    await auth?.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
