import { resolve } from 'node:path';
import { median, runLoad, runRotation, type LoadResult } from './load.ts';
import { CLIENT_CORE, nodeArgsFrom, pinSelf } from './procs.ts';
import { startOurs, startUpstream, type Running } from './targets.ts';
import { STREAM_BODY } from './streaming.ts';

/**
 * `npx tsx bench/ab.ts`: is one variant of our gateway faster than another, as `npm run bench`
 * runs it (its own process, on the server core, against the mock upstream, keys on)? The two run
 * side by side and take turns under the same load, the first one alternating round by round, so
 * a machine whose speed drifts (this one's network path halves its speed for seconds at a time)
 * falls on both alike; each round gives a ratio B/A, and the median of the rounds is the answer.
 * Printed per round: throughput, CPU per request (the server process's, from /proc), p50 and p99
 * of each, and B/A for throughput, CPU and p99; then the median, lowest and highest ratios.
 *
 * A is this checkout. B is this checkout too unless AB_B_ROOT names another one (e.g. the base
 * commit: `git worktree add --detach /tmp/base HEAD~1`; its sources are bundled, packages come
 * from this checkout's node_modules). Both run with this checkout's `npm start` flags
 * (local/node-flags.ts); AB_A_ARGS / AB_B_ARGS: node flags for each after those (space separated;
 * a later flag wins, so `--min-semi-space-size=0 --max-semi-space-size=0` restores V8's defaults). AB_B_AUTH=0: B without keys (no store), i.e. what keys, limits and budgets cost.
 * AB_ROUNDS (default 9), AB_TURN_S seconds per turn (default 2), AB_CONNECTIONS (default 64; 1 for
 * the sequential shape), AB_STREAM=1 (streamed completions instead of the small JSON one). With nothing set it is an A/A run: how far apart two identical variants
 * read here, the noise any difference must clear. Printed: the median of the rounds' B/A ratios
 * (throughput, CPU per request, p99) and of their p50 differences in microseconds (for the
 * sequential shape, where a change to the request's path shows as microseconds of latency).
 */

const rounds = Number(process.env.AB_ROUNDS ?? 9);
const turnS = Number(process.env.AB_TURN_S ?? 2);
const connections = Number(process.env.AB_CONNECTIONS ?? 64);
const bRoot = process.env.AB_B_ROOT ? resolve(process.env.AB_B_ROOT) : undefined;
const shape = { name: connections === 1 ? 'sequential' : 'concurrent', connections } as const;
/** AB_STREAM=1: streamed chat completions (the upstream sends 8 content events, then the usage and [DONE], with no gap). */
const stream = process.env.AB_STREAM === '1';
const streamed = (r: Running): Running => (stream ? { ...r, target: { ...r.target, body: STREAM_BODY } } : r);

pinSelf(CLIENT_CORE);
const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: '8' });
const started: Running[] = [];
try {
  const a = streamed(await startOurs(up.url, { nodeArgs: nodeArgsFrom('AB_A_ARGS') }));
  started.push(a);
  const b = streamed(await startOurs(up.url, { nodeArgs: nodeArgsFrom('AB_B_ARGS'), auth: process.env.AB_B_AUTH !== '0', root: bRoot }));
  started.push(b);
  console.log(`A: this checkout ${process.env.AB_A_ARGS ?? ''}`);
  console.log(`B: ${bRoot ?? 'this checkout'} ${process.env.AB_B_ARGS ?? ''}${process.env.AB_B_AUTH === '0' ? ' (no keys)' : ''}`);
  console.log(`${rounds} rounds of ${turnS} s turns at ${connections} connection(s)${stream ? ', streamed completions' : ''}`);
  // Warm up as `npm run bench` does: continuously, then in turns (a fresh connection after idling deoptimizes node's stream code until its feedback covers that path).
  for (const t of started) await runLoad(t.target, shape, 4);
  await runRotation(started, shape, 5, 1);

  const rps: number[] = [];
  const cpu: number[] = [];
  const p99: number[] = [];
  const p50Diff: number[] = [];
  const turn = (t: Running) => runLoad(t.target, shape, turnS, t.pids);
  for (let r = 0; r < rounds; r++) {
    let ra: LoadResult;
    let rb: LoadResult;
    if (r % 2 === 0) {
      ra = await turn(a);
      rb = await turn(b);
    } else {
      rb = await turn(b);
      ra = await turn(a);
    }
    const failed = ra.non2xx + ra.errors + rb.non2xx + rb.errors;
    if (failed) throw new Error(`round ${r + 1}: ${failed} failed requests`);
    rps.push(rb.rps / ra.rps);
    if (ra.cpuUsPerReq && rb.cpuUsPerReq) cpu.push(rb.cpuUsPerReq / ra.cpuUsPerReq);
    p99.push(rb.p99Ms / ra.p99Ms);
    p50Diff.push((rb.p50Ms - ra.p50Ms) * 1000);
    const side = (x: LoadResult) => `${String(x.rps).padStart(6)} req/s ${String(x.cpuUsPerReq ?? '-').padStart(4)} us/req p50 ${x.p50Ms.toFixed(3)} p99 ${x.p99Ms.toFixed(3)} ms`;
    console.log(`round ${String(r + 1).padStart(2)}  A ${side(ra)}  B ${side(rb)}  B/A req/s ${rps.at(-1)!.toFixed(3)} cpu ${cpu.at(-1)?.toFixed(3) ?? '-'} p99 ${p99.at(-1)!.toFixed(3)}`);
  }
  const summary = (xs: number[], digits = 3) => `median ${median(xs).toFixed(digits)} (lowest ${Math.min(...xs).toFixed(digits)}, highest ${Math.max(...xs).toFixed(digits)})`;
  console.log(`B/A throughput: ${summary(rps)}`);
  if (cpu.length) console.log(`B/A CPU per request: ${summary(cpu)}`);
  console.log(`B/A p99: ${summary(p99)}`);
  console.log(`B-A p50 (us): ${summary(p50Diff, 1)}`);
} finally {
  for (const t of started) await t.stop();
  await up.stop();
}
