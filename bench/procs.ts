import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { build } from 'esbuild';

/**
 * Child processes for the benchmark: every server under test runs in its own process, so it never
 * shares an event loop with the load generator, and each can be pinned to a CPU core.
 */

export const TSX_IMPORT = ['--import', 'tsx'];

let bundleDir: string | undefined;
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
});

/**
 * The node arguments that run one of bench/'s child entry points. They are bundled with esbuild
 * first (as the Lambda functions are: one file, no loader hooks, real line numbers in CPU
 * profiles); BENCH_TSX=1 runs the TypeScript through tsx instead. `root`: another checkout of the
 * project whose sources go into the bundle (bench/ab.ts compares two); its packages still resolve
 * from this one's node_modules.
 */
export async function benchScript(name: 'upstream' | 'floor-proxy' | 'work-floor-proxy' | 'gateway-server' | 'dynamo-server', root?: string): Promise<string[]> {
  const entry = join(root ?? '.', 'bench', `${name}.ts`);
  if (process.env.BENCH_TSX === '1') return [...TSX_IMPORT, entry];
  // Under node_modules/ (git-ignored), so the bundles resolve the project's packages.
  bundleDir ??= join('node_modules', '.cache', 'gw-bench', String(process.pid));
  mkdirSync(bundleDir, { recursive: true });
  const outfile = join(bundleDir, root ? `${name}-${createHash('sha256').update(resolve(root)).digest('hex').slice(0, 8)}.mjs` : `${name}.mjs`);
  if (!existsSync(outfile)) {
    await build({ entryPoints: [entry], outfile, bundle: true, platform: 'node', target: 'node20', format: 'esm', packages: 'external', logLevel: 'warning' });
  }
  return [outfile];
}

/** Whether `taskset` can pin processes here (Linux with at least two cores), unless BENCH_PIN=0. */
export const PINNING = process.env.BENCH_PIN !== '0' && cpus().length >= 2 && spawnSync('taskset', ['-p', String(process.pid)]).status === 0;

/** Core of the load generator, the streaming client and the mock upstream. */
export const CLIENT_CORE = 0;
/** Core of the one proxy under test (floor, ours or Portkey), which gets it alone. */
export const SERVER_CORE = 1;

/** Node flags from an environment variable (space separated; none when unset). */
export function nodeArgsFrom(name: string): string[] {
  return (process.env[name] ?? '').split(' ').filter(Boolean);
}

/** Pin this process (all its threads) to a core. */
export function pinSelf(core: number): void {
  if (!PINNING) return;
  spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' });
}

export interface Child {
  name: string;
  proc: ChildProcess;
  /** Base URL (no trailing slash) the child listens on. */
  url: string;
  /** Stop it with SIGTERM (it flushes and exits), SIGKILL after a grace period. */
  stop(): Promise<void>;
}

interface SpawnOptions {
  name: string;
  args: string[];
  core?: number;
  env?: Record<string, string>;
  /** How the child says it is ready: a `{"ready":true,"url":...}` stdout line, or a port to poll. */
  ready: { kind: 'line' } | { kind: 'http'; port: number; path: string };
  timeoutMs?: number;
}

/** Start `node <args>` (pinned when possible) and wait until it is ready to serve. */
export async function spawnNode(opts: SpawnOptions): Promise<Child> {
  const nodeArgs = [...opts.args];
  const [cmd, args] = PINNING && opts.core !== undefined ? ['taskset', ['-c', String(opts.core), process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  const proc = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  const stderr: string[] = [];
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    stderr.push(d);
    if (stderr.length > 50) stderr.shift();
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const timeoutMs = opts.timeoutMs ?? 30_000;

  let url: string;
  const fail = (why: string) => {
    proc.kill('SIGKILL');
    return new Error(`${opts.name} did not start: ${why}\n${stderr.join('').slice(-2000)}`);
  };
  if (opts.ready.kind === 'line') {
    const lines = createInterface({ input: proc.stdout! });
    const ready = new Promise<string>((resolve) => {
      lines.on('line', (line) => {
        if (!line.startsWith('{')) return;
        try {
          const msg = JSON.parse(line) as { ready?: boolean; url?: string };
          if (msg.ready && msg.url) resolve(msg.url);
        } catch {
          // not our line
        }
      });
    });
    const r = await Promise.race([ready, exited.then((c) => ({ exit: c })), sleep(timeoutMs).then(() => ({ timeout: true }))]);
    if (typeof r !== 'string') throw fail('exit' in r ? `exited with ${r.exit}` : 'timed out');
    url = r;
  } else {
    proc.stdout!.resume();
    const { port, path } = opts.ready;
    url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + timeoutMs;
    let up = false;
    while (!up) {
      if (proc.exitCode !== null) throw fail(`exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw fail('timed out');
      try {
        const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        up = res.ok;
      } catch {
        // not listening yet
      }
      if (!up) await sleep(100);
    }
  }
  return {
    name: opts.name,
    proc,
    url,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * What a child's bench preload dumps on SIGUSR2 (bench/phases-preload.mjs, bench/alloc-preload.mjs):
 * `file` is removed, the signal sent, and the file's JSON read once it appears (the preloads write
 * it under another name and rename it, so it is whole when it appears).
 */
export async function dumpOnSignal<T>(pid: number, file: string, waitMs = 5000): Promise<T> {
  rmSync(file, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let waited = 0; !existsSync(file); waited += 20) {
    if (waited >= waitMs) throw new Error(`process ${pid} wrote no ${file} within ${waitMs} ms of SIGUSR2`);
    await sleep(20);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** A TCP port that was free a moment ago (for children that need a port number up front). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
