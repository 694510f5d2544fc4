import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LambdaTailResult } from './lambda-tail.ts';
import { benchScript, CLIENT_CORE, nodeArgsFrom, PINNING, SERVER_CORE, spawnNode, TSX_IMPORT } from './procs.ts';

/**
 * Runs bench/lambda-tail.ts in a fresh process on the server's core (dynalite on the client's),
 * against the benchmark's mock upstream, and returns what it measured.
 */
export async function measureLambdaTail(upstream: string, invocations: number): Promise<LambdaTailResult[]> {
  const dynamo = await spawnNode({ name: 'dynalite', args: await benchScript('dynamo-server'), core: CLIENT_CORE, ready: { kind: 'line' } });
  const dir = mkdtempSync(join(tmpdir(), 'gw-bench-lambda-'));
  const out = join(dir, 'result.json');
  try {
    // BENCH_LAMBDA_NODE_ARGS: node flags for the simulated Lambda (e.g. `--cpu-prof --cpu-prof-dir=...` to profile it).
    const args = [...nodeArgsFrom('BENCH_LAMBDA_NODE_ARGS'), ...TSX_IMPORT, 'bench/lambda-tail.ts'];
    const [cmd, argv] = PINNING ? ['taskset', ['-c', String(SERVER_CORE), process.execPath, ...args]] : [process.execPath, args];
    const child = spawn(cmd, argv, {
      env: { ...process.env, BENCH_UPSTREAM: upstream, BENCH_DYNAMO_ENDPOINT: dynamo.url, BENCH_LAMBDA_INVOCATIONS: String(invocations), BENCH_LAMBDA_OUT: out },
      stdio: ['ignore', 'ignore', process.env.BENCH_LAMBDA_DEBUG ? 'inherit' : 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-2000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    clearTimeout(timer);
    if (code !== 0) throw new Error(`the simulated Lambda run failed (exit ${code}):\n${stderr}`);
    return JSON.parse(readFileSync(out, 'utf8')) as LambdaTailResult[];
  } finally {
    await dynamo.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
