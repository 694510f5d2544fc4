import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVER_NODE_FLAGS } from '../local/node-flags.ts';
import { benchScript, CLIENT_CORE, freePort, SERVER_CORE, spawnNode, type Child } from './procs.ts';
import type { StoreCallCounter, Target } from './load.ts';

/**
 * The servers of the benchmark, each started in its own process: the mock upstream (on the client's
 * core), and one proxy under test at a time (alone on the other core): the floor, ours, Portkey.
 */

export const CHAT_PATH = '/v1/chat/completions';
/** What the client sends to the targets without keys: shaped like a gateway key, as long as one (68 characters). */
export const CLIENT_KEY = `gwk_${'a'.repeat(20)}_${'b'.repeat(43)}`;

export interface Running {
  target: Target;
  /** Processes whose CPU time a load run charges to this target: the server under test, and (ours with keys) its store. */
  pids: { server?: number; store?: number };
  /** Calls the store (dynalite) has received so far, by operation; ours with keys only. */
  storeCalls?: StoreCallCounter;
  stop(): Promise<void>;
}

export async function startUpstream(env: Record<string, string>): Promise<Child> {
  return spawnNode({ name: 'mock upstream', args: await benchScript('upstream'), core: CLIENT_CORE, env, ready: { kind: 'line' } });
}

/** The same headers go to every target (Portkey reads its two, the others ignore them), so every request is the same bytes. */
export function clientHeaders(upstream: string, key = CLIENT_KEY): Record<string, string> {
  return { authorization: `Bearer ${key}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream}/v1` };
}

export function direct(upstream: Child): Running {
  return { target: { name: 'direct', url: upstream.url, path: CHAT_PATH, headers: clientHeaders(upstream.url) }, pids: { server: upstream.proc.pid }, stop: async () => {} };
}

function running(name: string, child: Child, upstream: string, cleanup?: () => Promise<void> | void, key?: string, store?: Child): Running {
  return {
    target: { name, url: child.url, path: CHAT_PATH, headers: clientHeaders(upstream, key) },
    pids: { server: child.proc.pid, store: store?.proc.pid },
    storeCalls: store ? async () => (await (await fetch(`${store.url}/__bench/calls`)).json()) as Record<string, number> : undefined,
    async stop() {
      await child.stop();
      await cleanup?.();
    },
  };
}

export async function startFloor(upstream: string, nodeArgs: string[] = []): Promise<Running> {
  const child = await spawnNode({ name: 'floor proxy', args: [...nodeArgs, ...(await benchScript('floor-proxy'))], core: SERVER_CORE, env: { BENCH_UPSTREAM: upstream }, ready: { kind: 'line' } });
  return running('floor', child, upstream);
}

/** The work floor (bench/work-floor-proxy.ts): the bare proxy plus the parsing and logging any gateway must do. */
export async function startWorkFloor(upstream: string, nodeArgs: string[] = []): Promise<Running> {
  const child = await spawnNode({ name: 'work floor proxy', args: [...nodeArgs, ...(await benchScript('work-floor-proxy'))], core: SERVER_CORE, env: { BENCH_UPSTREAM: upstream }, ready: { kind: 'line' } });
  return running('work-floor', child, upstream);
}

export interface OursOptions {
  /**
   * Keys, rate limits and budgets on, with a DynamoDB API (dynalite, its own process) as the store,
   * and a key made through the admin API (default). false: the gateway open, no store.
   */
  auth?: boolean;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Another checkout whose gateway runs instead of this one's (bench/ab.ts). */
  root?: string;
}

/** The key the benchmark makes: rate limits and a daily USD budget far above what a run spends, so every request is checked and none refused. */
export const BENCH_KEY_LIMITS = { limits: { rpm: 1_000_000_000, tpm: 1_000_000_000_000 }, budget: { usdPerDay: 1_000_000 } };

export async function startOurs(upstream: string, opts: OursOptions = {}): Promise<Running> {
  const auth = opts.auth ?? true;
  const logDir = mkdtempSync(join(tmpdir(), 'gw-bench-logs-'));
  const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`;
  let store: Child | undefined;
  let child: Child | undefined;
  const cleanup = async () => {
    await store?.stop();
    rmSync(logDir, { recursive: true, force: true });
  };
  try {
    if (auth) store = await spawnNode({ name: 'dynalite', args: await benchScript('dynamo-server'), core: CLIENT_CORE, ready: { kind: 'line' } });
    child = await spawnNode({
      name: 'our gateway',
      // As `npm start` runs it (local/node-flags.ts), then the caller's flags (a later flag wins).
      args: [...SERVER_NODE_FLAGS, ...(opts.nodeArgs ?? []), ...(await benchScript('gateway-server', opts.root))],
      core: SERVER_CORE,
      env: { BENCH_UPSTREAM: upstream, BENCH_LOG_DIR: logDir, BENCH_DYNAMO_ENDPOINT: store?.url ?? '', BENCH_ADMIN_TOKEN: adminToken },
      ready: { kind: 'line' },
    });
    let key: string | undefined;
    if (auth) {
      const res = await fetch(`${child.url}/admin/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'bench', ...BENCH_KEY_LIMITS }),
      });
      const json = (await res.json()) as { key?: string };
      if (res.status !== 201 || !json.key) throw new Error(`creating the benchmark key failed: HTTP ${res.status} ${JSON.stringify(json)}`);
      key = json.key;
    }
    return running(auth ? 'ours' : 'ours-open', child, upstream, cleanup, key, store);
  } catch (err) {
    await child?.stop();
    await cleanup();
    throw err;
  }
}

/**
 * The proxies a bench script can start by name, with node flags of its own (a profiler, coverage),
 * and the bench script each one runs (whose bundle names it in a profile or a coverage file).
 */
export const PROXIES = {
  floor: { script: 'floor-proxy', start: (upstream: string, nodeArgs: string[] = []) => startFloor(upstream, nodeArgs) },
  'work-floor': { script: 'work-floor-proxy', start: (upstream: string, nodeArgs: string[] = []) => startWorkFloor(upstream, nodeArgs) },
  ours: { script: 'gateway-server', start: (upstream: string, nodeArgs: string[] = []) => startOurs(upstream, { nodeArgs }) },
  'ours-open': { script: 'gateway-server', start: (upstream: string, nodeArgs: string[] = []) => startOurs(upstream, { auth: false, nodeArgs }) },
} as const;
export type ProxyName = keyof typeof PROXIES;

/**
 * Portkey's open-source gateway, as its package ships it. `streamingFix` adds bench/portkey-preload.mjs,
 * without which its streaming fails on Node ("TypeError: immutable"); the load runs use it as shipped.
 */
export async function startPortkey(upstream: string, streamingFix: boolean): Promise<Running> {
  const port = await freePort();
  const child = await spawnNode({
    name: 'Portkey gateway',
    args: [...(streamingFix ? ['--import', './bench/portkey-preload.mjs'] : []), 'node_modules/@portkey-ai/gateway/build/start-server.js', `--port=${port}`, '--headless'],
    core: SERVER_CORE,
    env: { NODE_ENV: 'production' },
    ready: { kind: 'http', port, path: '/' },
  });
  return running('portkey', child, upstream);
}
