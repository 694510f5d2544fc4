import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentile, runLoad, runRotation, type LoadResult } from './load.ts';
import { CLIENT_CORE, dumpOnSignal, pinSelf } from './procs.ts';
import { direct, startFloor, startOurs, startUpstream, type Running } from './targets.ts';

/**
 * `npx tsx bench/phases.ts`: where each proxy's added latency goes, one request at a time (the
 * sequential shape of `npm run bench`). Each proxy runs with bench/phases-preload.mjs, which times
 * three phases of every request from node:http's diagnostics channels, in the proxy's own process:
 * before the upstream call (request head parsed -> upstream request created), the upstream call as
 * the proxy sees it, and after the answer (its head parsed -> our response finished). The client's
 * added latency (over the mock upstream itself) is printed beside them. Targets in 1 s turns, as
 * the load runs take them. BENCH_DURATION seconds each (default 6), after 2 s of warm-up.
 * BENCH_CONNECTIONS=64: the concurrent shape instead (the phases, timed for one request at a time,
 * are not printed then; CPU by thread and garbage collections are).
 */

const durationS = Number(process.env.BENCH_DURATION ?? 6);
const phasesDir = mkdtempSync(join(tmpdir(), 'gw-bench-phases-'));
process.env.BENCH_PHASES_DIR = phasesDir; // inherited by the proxies (bench/procs.ts spawnNode)
const preload = ['--import', './bench/phases-preload.mjs'];
pinSelf(CLIENT_CORE);

type Phases = { before: number[]; upstream: number[]; after: number[]; gc: Record<string, [count: number, pauseUs: number]> };

/**
 * CPU time each kind of thread of a process has run so far, in microseconds, by thread name
 * (the main thread, V8's workers, libuv's pool...), from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds on the CPU, first field). Empty where /proc is missing.
 */
function threadCpuUs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const kind = tid === String(pid) ? 'main' : name.replace(/\d+$/, '').trim();
        const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        out.set(kind, (out.get(kind) ?? 0) + ns / 1000);
      } catch {
        // the thread ended between the listing and the read
      }
    }
  } catch {
    // no /proc here
  }
  return out;
}

/** The phases a proxy recorded since the last call (its preload writes them on SIGUSR2). */
function takePhases(pid: number): Promise<Phases> {
  return dumpOnSignal<Phases>(pid, join(phasesDir, `phases-${pid}.json`));
}

const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: '8' });
const proxies: Running[] = [];
try {
  proxies.push(await startFloor(up.url, preload), await startOurs(up.url, { auth: false, nodeArgs: preload }), await startOurs(up.url, { auth: true, nodeArgs: preload }));
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 1);
  const shape = connections > 1 ? ({ name: 'concurrent', connections } as const) : ({ name: 'sequential', connections: 1 } as const);
  const all = [direct(up), ...proxies];
  for (const t of all) await runLoad(t.target, shape, 2);
  for (const p of proxies) await takePhases(p.pids.server!);
  const cpu0 = proxies.map((p) => threadCpuUs(p.pids.server!));
  const results: LoadResult[] = await runRotation(all, shape, durationS, 1);
  const cpu1 = proxies.map((p) => threadCpuUs(p.pids.server!));
  const base = results[0]!;
  const us = (ms: number) => Math.round(ms * 1000);
  console.log(`${connections} connection(s), ${durationS} s per target in 1 s turns; microseconds, p50 (added = client-observed, over ${base.target} at ${us(base.p50Ms)} us).`);
  const phases: Phases[] = [];
  for (const p of proxies) phases.push(await takePhases(p.pids.server!));
  if (connections === 1) {
    console.log(`${'target'.padEnd(10)} ${'requests'.padStart(8)} ${'added'.padStart(6)} ${'before upstream'.padStart(16)} ${'upstream call'.padStart(14)} ${'after answer'.padStart(13)} ${'before+after'.padStart(13)}`);
    // One row per proxy at a percentile of its phases, beside the client-observed added latency at it.
    const rows = (pct: 50 | 99, added: (r: LoadResult) => number) => {
      const at = (v: number[]) => String(Math.round(percentile(Float64Array.from(v).sort(), pct)));
      for (let i = 0; i < proxies.length; i++) {
        const r = results[i + 1]!;
        const ph = phases[i]!;
        const sum = ph.before.map((b, j) => b + ph.after[j]!);
        console.log(`${r.target.padEnd(10)} ${String(ph.before.length).padStart(8)} ${String(us(added(r))).padStart(6)} ${at(ph.before).padStart(16)} ${at(ph.upstream).padStart(14)} ${at(ph.after).padStart(13)} ${at(sum).padStart(13)}`);
      }
    };
    rows(50, (r) => r.p50Ms - base.p50Ms);
    // The tail: the same phases at p99 (which phase the slow requests are slow in).
    console.log(`p99 (added = client-observed p99, over ${base.target}'s p99 at ${us(base.p99Ms)} us):`);
    rows(99, (r) => r.p99Ms - base.p99Ms);
  }
  console.log('CPU per request by thread (us; over every request of the turns, warm-up excluded):');
  for (let i = 0; i < proxies.length; i++) {
    const n = results[i + 1]!.requests;
    const all = [...cpu1[i]!].map(([k, v]) => [k, v - (cpu0[i]!.get(k) ?? 0)] as const);
    const total = all.reduce((a, [, v]) => a + v, 0);
    const parts = all.filter(([, v]) => v / n >= 0.5).sort((a, b) => b[1] - a[1]);
    console.log(`${results[i + 1]!.target.padEnd(10)} total ${Math.round(total / n)}: ${parts.map(([k, v]) => `${k} ${Math.round(v / n)}`).join(', ')}`);
  }
  console.log('Garbage collections (per 1,000 requests: count, main-thread pause in ms):');
  for (let i = 0; i < proxies.length; i++) {
    const n = results[i + 1]!.requests;
    const gc = Object.entries(phases[i]!.gc).sort((a, b) => b[1][1] - a[1][1]);
    console.log(`${results[i + 1]!.target.padEnd(10)} ${gc.map(([k, [c, us]]) => `${k} ${((c * 1000) / n).toFixed(2)} / ${((us * 1000) / n / 1000).toFixed(2)} ms`).join(', ') || 'none'}`);
  }
} finally {
  for (const p of proxies) await p.stop();
  await up.stop();
  rmSync(phasesDir, { recursive: true, force: true });
}
