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
import { startLocalDynamo } from './dynamodb.ts';
import { clientErrorHandler, connectHandler, nodeHandler } from './node-adapter.ts';

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
  // What the configuration turns on (the response cache) is loaded before the first request.
  await gateway.ready;
  const pending = new Set<Promise<unknown>>();
  const server = createServer({ keepAliveTimeout: 65_000 }, nodeHandler(gateway, pending));
  // Requests node:http refuses before they reach the handler, and CONNECT, are answered and logged by the core.
  server.on('clientError', clientErrorHandler(gateway, pending));
  server.on('connect', connectHandler(gateway, pending));
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
  // The AWS SDK's documented switch for its "Node.js version support" notice (printed on Node 20
  // at every start); the local server runs on any Node the package supports (README: local use).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const config = loadConfigOrExit();
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? '127.0.0.1';
  const auth = await prepareLocalAuth(config, process.env);
  // Stored Responses need a DynamoDB API without keys too (docs/responses.md): dynalite on disk, as with keys.
  const dynamo = !auth && config.responses.enabled && config.logging.bodies?.enabled && !process.env.DYNAMODB_ENDPOINT && !config.store.endpoint ? await startLocalDynamo({ dir: config.store.localDir }) : undefined;
  const srv = await startLocalServer({ config, port, host, env: auth?.env ?? (dynamo && { ...process.env, DYNAMODB_ENDPOINT: dynamo.endpoint }), store: auth?.store });
  const lines = [`LLM gateway listening on ${srv.url}`, '', 'Providers:'];
  for (const p of srv.gateway.providers.values()) lines.push(`  ${p.live ? 'live' : 'off '}  ${p.name} (${p.type})${p.live ? '' : ` - ${p.notLiveReason}`}`);
  lines.push('', 'Models:');
  for (const m of srv.gateway.models) lines.push(`  ${m.live ? 'live' : 'off '}  ${m.id} -> ${m.route}`);
  if (auth) lines.push('', ...auth.banner);
  const keyHeader = auth ? ` -H "authorization: Bearer ${auth.keyExpr}"` : '';
  lines.push('', `Try: curl ${srv.url}/v1/chat/completions${keyHeader} -H 'content-type: application/json' -d '{"model":"mock","messages":[{"role":"user","content":"Hello gateway"}]}'`);
  const tokenWhere = !auth ? 'GATEWAY_ADMIN_TOKEN' : auth.env.GATEWAY_ADMIN_TOKEN_FILE ? `the admin token in ${auth.env.GATEWAY_ADMIN_TOKEN_FILE}` : `the admin token in ${config.auth!.adminTokenEnv}`;
  lines.push(`Request logs: ${config.logging.localDir}/dt=YYYY-MM-DD/hour=HH/requests.ndjson (charts: ${srv.url}/admin/dashboard, with ${tokenWhere})`);
  console.log(lines.join('\n'));
  // A failure no request handler caught must not take the server (and its unwritten log records) down.
  process.on('uncaughtException', (err) => console.error(JSON.stringify({ level: 'ERROR', message: 'uncaught exception', error: String(err?.stack ?? err) })));
  process.on('unhandledRejection', (err) => console.error(JSON.stringify({ level: 'ERROR', message: 'unhandled rejection', error: String((err as Error)?.stack ?? err) })));
  let stopping = false;
  const stop = async (signal: string) => {
    // A second signal while stopping exits at once.
    if (stopping) process.exit(130);
    stopping = true;
    console.log(`${signal}: stopping (writing buffered log records)`);
    try {
      await srv.close();
      await auth?.close();
      await dynamo?.close();
    } catch (err) {
      console.error(`stopping failed: ${(err as Error).message}`);
      process.exit(1);
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

// Run as `node local/server.ts` only: a bundle that includes this module (the benchmark's
// gateway-server) has this module's import.meta.url equal to its own entry, and must not start a
// second server on PORT.
const entry = process.argv[1] ?? '';
if (import.meta.url === pathToFileURL(entry).href && /(^|[\\/])server\.[cm]?[jt]s$/.test(entry)) {
  await main();
}
