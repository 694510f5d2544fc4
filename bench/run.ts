import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { measureColdStart, type ColdStartResult } from './coldstart.ts';
import { measureLambdaTail } from './lambda-run.ts';
import type { LambdaTailResult } from './lambda-tail.ts';
import { runLoad, runRotation, type LoadResult, type Shape } from './load.ts';
import { CLIENT_CORE, PINNING, pinSelf, SERVER_CORE } from './procs.ts';
import { goals, loadWarnings, printColdStart, printGoals, printLambdaTail, printLoad, printStreaming, type Goal } from './report.ts';
import { BURST_CONCURRENCY, measureStreaming, type StreamResult } from './streaming.ts';
import { direct, startFloor, startOurs, startPortkey, startUpstream, startWorkFloor, type Running } from './targets.ts';

/**
 * `npm run bench`: our gateway's overhead against a bare node:http proxy (the floor) and Portkey's
 * open-source gateway, on loopback, in one run, as ratios. Not part of the test suite; informational
 * (it never fails on a missed goal). `npm run bench -- --quick` is a shorter run (about a minute).
 * Settings (environment; defaults full / quick):
 *   BENCH_DURATION=6/3     seconds of load per target and shape
 *   BENCH_WARMUP=2/1       seconds of warm-up load per target and shape (not measured)
 *   BENCH_WARMUP_ROUNDS=5/2   then rounds of 1 s warm-up turns across the targets, as the measured
 *                          rounds take them (not measured; 0: none)
 *   BENCH_CONNECTIONS=64   connections of the concurrent shape
 *   BENCH_STREAM_REQUESTS=40/15, BENCH_STREAM_CHUNKS=8, BENCH_STREAM_GAP_MS=10
 *   BENCH_STREAM_WARMUP=300/100   unmeasured streams per target before those, 20 at a time
 *   BENCH_COLD_RUNS=5/3    fresh processes per bundle for the cold start
 *   BENCH_LAMBDA_INVOCATIONS=100/40   invocations per mode of the simulated Lambda (billed ms after the body)
 *   BENCH_ONLY=load,streaming,lambda,cold   which parts to run
 *   BENCH_TARGETS=floor,work-floor,ours,ours-open,portkey   which proxies to run (direct always runs)
 *   BENCH_PIN=0            do not pin processes to cores
 *   BENCH_TIMEOUT=540/240  seconds after which the run gives up (children stopped, exit 1)
 */

const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
/** A setting from the environment (its full or quick default), checked: a positive number, or with `count` a whole number from 0. */
const num = (name: string, full: number, short: number, count = false) => {
  const v = Number(process.env[name] ?? (quick ? short : full));
  if (count ? !Number.isInteger(v) || v < 0 : !Number.isFinite(v) || v <= 0) throw new Error(`${name} must be ${count ? 'a whole number, 0 or more' : 'a positive number'}`);
  return v;
};
const settings = {
  quick,
  durationS: num('BENCH_DURATION', 6, 3),
  warmupS: num('BENCH_WARMUP', 2, 1),
  warmupRounds: num('BENCH_WARMUP_ROUNDS', 5, 2, true),
  connections: num('BENCH_CONNECTIONS', 64, 64),
  streamRequests: num('BENCH_STREAM_REQUESTS', 40, 15),
  streamWarmup: num('BENCH_STREAM_WARMUP', 300, 100, true),
  streamChunks: num('BENCH_STREAM_CHUNKS', 8, 8),
  streamGapMs: num('BENCH_STREAM_GAP_MS', 10, 10),
  coldRuns: num('BENCH_COLD_RUNS', 5, 3),
  lambdaInvocations: num('BENCH_LAMBDA_INVOCATIONS', 100, 40),
  timeoutS: num('BENCH_TIMEOUT', 540, 240),
};
const only = new Set((process.env.BENCH_ONLY ?? 'load,streaming,lambda,cold').split(',').map((s) => s.trim()));
const proxies = new Set((process.env.BENCH_TARGETS ?? 'floor,work-floor,ours,ours-open,portkey').split(',').map((s) => s.trim()));
const shapes: Shape[] = [
  { name: 'sequential', connections: 1 },
  { name: 'concurrent', connections: settings.connections },
];

// Bounded: whatever hangs, the run ends (the exit handler in procs.ts kills the children).
const watchdog = setTimeout(() => {
  process.stderr.write(`\nBenchmark gave up after ${settings.timeoutS} s (BENCH_TIMEOUT).\n`);
  process.exit(1);
}, settings.timeoutS * 1000);
watchdog.unref();

const log = (s: string) => process.stdout.write(`${s}\n`);
const started = Date.now();
pinSelf(CLIENT_CORE);

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  kernel: release(),
  pinning: PINNING
    ? `load generator, streaming client, mock upstream and dynalite on core ${CLIENT_CORE}; the one proxy under test on core ${SERVER_CORE}`
    : 'none (taskset missing, BENCH_PIN=0 or fewer than 2 cores)',
};
log(`Benchmark on ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}. Pinning: ${machine.pinning}.`);

// The upstream streams with the settings above; every stream has role + content + finish + usage + [DONE] writes.
type Starter = () => Promise<Running>;
const upstreamChild = await startUpstream({ BENCH_STREAM_CHUNKS: String(settings.streamChunks), BENCH_STREAM_GAP_MS: String(settings.streamGapMs) });
const upstream = upstreamChild.url;
const directTarget: Starter = async () => direct(upstreamChild);
const upstreamWrites = settings.streamChunks + 4;

const loadTargets: [string, Starter][] = [['direct', directTarget]];
if (proxies.has('floor')) loadTargets.push(['floor', () => startFloor(upstream)]);
if (proxies.has('work-floor')) loadTargets.push(['work-floor', () => startWorkFloor(upstream)]);
if (proxies.has('ours')) loadTargets.push(['ours', () => startOurs(upstream, { auth: true })]);
if (proxies.has('ours-open')) loadTargets.push(['ours-open', () => startOurs(upstream, { auth: false })]);
if (proxies.has('portkey')) loadTargets.push(['portkey', () => startPortkey(upstream, false)]);

const load: LoadResult[] = [];
const stream: StreamResult[] = [];
let cold: ColdStartResult[] = [];
let lambda: LambdaTailResult[] = [];
try {
  if (only.has('load')) {
    // Every target runs at once (idle but for its turn); each shape is measured in 1 s slices taken
    // in turns across the targets (bench/load.ts runRotation), so a slow minute of a shared machine
    // falls on all of them rather than on whichever ran in it.
    log(`\nLoad: ${settings.durationS} s per target and shape, in ${settings.durationS} rounds of 1 s slices taken in turns across the targets, after ${settings.warmupS} s warm-up each and ${settings.warmupRounds} unmeasured rounds of turns; sequential = 1 connection, concurrent = ${settings.connections}.`);
    const running: [string, Running][] = [];
    try {
      for (const [name, start] of loadTargets) running.push([name, await start()]);
      for (const shape of shapes) {
        for (const [, r] of running) await runLoad(r.target, shape, settings.warmupS);
        // Then warm-up turns like the measured ones: each turn is a fresh client connection after
        // the target sat idle, and V8 deoptimizes node's stream code on such new paths (closes,
        // reconnects) until its type feedback covers them. A target with more code of its own
        // (ours) takes about five turns to settle (docs/benchmarks.md, 2026-12-02).
        if (settings.warmupRounds > 0) await runRotation(running.map(([, r]) => r), shape, settings.warmupRounds, 1);
        const results = await runRotation(running.map(([, r]) => r), shape, settings.durationS, 1);
        for (const [i, res] of results.entries()) {
          const name = running[i]![0];
          const calls = res.storeCalls ? `  store ${Object.entries(res.storeCalls).map(([op, c]) => `${op} ${c}`).join(', ') || 'no calls'} (${res.storeCallsPerReq}/req)` : '';
          log(`  ${name.padEnd(9)} ${shape.name.padEnd(11)} ${String(res.rps).padStart(6)} req/s  p50 ${res.p50Ms.toFixed(3)} ms  p99 ${res.p99Ms.toFixed(3)} ms  cpu ${res.cpuUsPerReq ?? 'n/a'} us/req${calls}${res.non2xx || res.errors ? `  (${res.non2xx} non-2xx, ${res.errors} errors)` : ''}`);
          load.push(res);
        }
      }
    } finally {
      for (const [, r] of running) await r.stop();
    }
  }

  if (only.has('streaming')) {
    log(`\nStreaming: ${settings.streamRequests} streams per target, ${upstreamWrites} upstream writes each, ${settings.streamGapMs} ms apart, after ${settings.streamWarmup} unmeasured streams ${BURST_CONCURRENCY} at a time.`);
    const streamTargets: [string, Starter][] = [['direct', directTarget]];
    if (proxies.has('floor')) streamTargets.push(['floor', () => startFloor(upstream)]);
    if (proxies.has('ours')) streamTargets.push(['ours', () => startOurs(upstream, { auth: true })]);
    if (proxies.has('portkey')) streamTargets.push(['portkey', () => startPortkey(upstream, true)]);
    for (const [name, start] of streamTargets) {
      const r = await start();
      try {
        const res = await measureStreaming(r.target, settings.streamRequests, upstreamWrites, { burst: settings.streamWarmup });
        log(`  ${name.padEnd(9)} first event p50 ${res.firstEventP50Ms.toFixed(3)} ms, reads/stream ${res.clientReadsMedian}/${upstreamWrites}, coalesced ${res.coalescedEvents}`);
        stream.push(res);
      } finally {
        await r.stop();
      }
    }
  }

  if (only.has('lambda')) {
    log(`\nLambda (simulated streaming runtime): ${settings.lambdaInvocations} invocations per mode, one at a time.`);
    lambda = await measureLambdaTail(upstream, settings.lambdaInvocations);
  }
} finally {
  await upstreamChild.stop();
}

if (only.has('cold')) {
  log(`\nCold start: ${settings.coldRuns} fresh processes per bundle, taken in turn (run 1 of each bundle, then run 2...).`);
  cold = await measureColdStart(settings.coldRuns, log);
}

log('');
if (load.length) printLoad(load, log);
if (stream.length) printStreaming(stream, log);
if (lambda.length) printLambdaTail(lambda, log);
if (cold.length) printColdStart(cold, log);
const goalList: Goal[] = goals(load, stream, cold);
const warnings = loadWarnings(load);
printGoals(goalList, log, warnings);

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
mkdirSync(join('bench', 'results'), { recursive: true });
const file = join('bench', 'results', `${stamp}.json`);
writeFileSync(file, `${JSON.stringify({ timestamp: new Date().toISOString(), machine, settings, load, streaming: stream, lambdaTail: lambda, coldStart: cold, goals: goalList, warnings, elapsedS: Math.round((Date.now() - started) / 1000) }, null, 2)}\n`);
log(`\nResults written to ${file} (${Math.round((Date.now() - started) / 1000)} s).`);
clearTimeout(watchdog);
