import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchScript, CLIENT_CORE, freePort, SERVER_CORE, spawnNode, type Child } from './procs.ts';
import type { Target } from './load.ts';

/**
 * The servers of the benchmark, each started in its own process: the mock upstream (on the client's
 * core), and one proxy under test at a time (alone on the other core): the floor, ours, Portkey.
 */

export const CHAT_PATH = '/v1/chat/completions';
export const CLIENT_KEY = 'sk-bench-client-0000000000000000';

export interface Running {
  target: Target;
  stop(): Promise<void>;
}

export async function startUpstream(env: Record<string, string>): Promise<Child> {
  return spawnNode({ name: 'mock upstream', args: await benchScript('upstream'), core: CLIENT_CORE, env, ready: { kind: 'line' } });
}

/** The same headers go to every target (Portkey reads its two, the others ignore them), so every request is the same bytes. */
export function clientHeaders(upstream: string): Record<string, string> {
  return { authorization: `Bearer ${CLIENT_KEY}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream}/v1` };
}

export function direct(upstream: string): Running {
  return { target: { name: 'direct', url: upstream, path: CHAT_PATH, headers: clientHeaders(upstream) }, stop: async () => {} };
}

function running(name: string, child: Child, upstream: string, cleanup?: () => void): Running {
  return {
    target: { name, url: child.url, path: CHAT_PATH, headers: clientHeaders(upstream) },
    async stop() {
      await child.stop();
      cleanup?.();
    },
  };
}

export async function startFloor(upstream: string): Promise<Running> {
  const child = await spawnNode({ name: 'floor proxy', args: await benchScript('floor-proxy'), core: SERVER_CORE, env: { BENCH_UPSTREAM: upstream }, ready: { kind: 'line' } });
  return running('floor', child, upstream);
}

export interface OursOptions {
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

export async function startOurs(upstream: string, opts: OursOptions = {}): Promise<Running> {
  const logDir = mkdtempSync(join(tmpdir(), 'gw-bench-logs-'));
  const child = await spawnNode({
    name: 'our gateway',
    args: [...(opts.nodeArgs ?? []), ...(await benchScript('gateway-server'))],
    core: SERVER_CORE,
    env: { BENCH_UPSTREAM: upstream, BENCH_LOG_DIR: logDir },
    ready: { kind: 'line' },
  });
  return running('ours', child, upstream, () => rmSync(logDir, { recursive: true, force: true }));
}

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
