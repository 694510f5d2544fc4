import { readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GC_KINDS } from './gc-kinds.mjs';
import { CHAT_BODY } from './load.ts';
import { CLIENT_CORE, pinSelf } from './procs.ts';
import { startFloor, startOurs, startUpstream, startWorkFloor, type Running } from './targets.ts';

/**
 * `npx tsx bench/tail.ts [floor|work-floor|ours-open|ours ...]` (default: floor ours-open ours):
 * what the slowest 1% of sequential requests coincide with. Each proxy runs with
 * bench/tail-preload.mjs, which timestamps its garbage collections, its outgoing HTTP requests
 * (store calls are those not sent to the mock upstream) and its log flushes; one client sends
 * requests one at a time for BENCH_DURATION seconds (default 8, after 2 s of warm-up) and times
 * each. Printed per proxy: p50/p99, how long the slowest 1% took, how many of them overlap a GC
 * pause, fall within 20 ms after a store call or a log flush, and the same share among all
 * requests (an event that causes slow requests makes them far likelier near it than elsewhere),
 * and the GC pauses by kind (scavenges, mark-compacts) with their median and longest.
 */

type Window = [start: number, end: number];
interface TailEvents {
  gcs: [start: number, pause: number, kind?: number][];
  requests: [start: number, port: string][];
  appends: number[];
}

const durationS = Number(process.env.BENCH_DURATION ?? 8);
const which = process.argv.slice(2).length ? process.argv.slice(2) : ['floor', 'ours-open', 'ours'];
const file = join(tmpdir(), `gw-bench-tail-${process.pid}.json`);
process.env.BENCH_TAIL_FILE = file; // inherited by the proxy (bench/procs.ts spawnNode)
const preload = ['--import', './bench/tail-preload.mjs'];
pinSelf(CLIENT_CORE);

function start(name: string, upstream: string): Promise<Running> {
  if (name === 'floor') return startFloor(upstream, preload);
  if (name === 'work-floor') return startWorkFloor(upstream, preload);
  if (name === 'ours' || name === 'ours-open') return startOurs(upstream, { auth: name === 'ours', nodeArgs: preload });
  throw new Error(`unknown target ${name} (floor, work-floor, ours-open, ours)`);
}

/** Sequential requests for `seconds`, each timed in epoch milliseconds. */
async function sequential(p: Running, seconds: number): Promise<Window[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(p.target.url);
  const headers = { ...p.target.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(CHAT_BODY)) };
  const now = () => performance.timeOrigin + performance.now();
  const one = () =>
    new Promise<Window>((resolve, reject) => {
      const t0 = now();
      const req = request({ host: u.hostname, port: u.port, path: p.target.path, method: 'POST', agent, headers }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`${p.target.name} answered ${res.statusCode}`));
        res.resume();
        res.on('end', () => resolve([t0, now()]));
      });
      req.on('error', reject);
      req.end(CHAT_BODY);
    });
  const out: Window[] = [];
  for (const end = Date.now() + seconds * 1000; Date.now() < end; ) out.push(await one());
  agent.destroy();
  return out;
}

const pct = (part: number, whole: number) => (whole ? `${((100 * part) / whole).toFixed(1)}%` : 'n/a');

const up = await startUpstream({});
const upPort = new URL(up.url).port;
try {
  for (const name of which) {
    const p = await start(name, up.url);
    let reqs: Window[];
    try {
      await sequential(p, 2);
      reqs = await sequential(p, durationS);
    } finally {
      await p.stop();
    }
    const ev = JSON.parse(readFileSync(file, 'utf8')) as TailEvents;
    const first = reqs[0]![0];
    const last = reqs.at(-1)![1];
    const gcs = ev.gcs.filter(([s]) => s >= first && s <= last);
    const calls = ev.requests.filter(([s, port]) => port !== upPort && s >= first && s <= last).map(([s]) => s);
    const flushes = ev.appends.filter((s) => s >= first && s <= last);
    const sorted = reqs.map(([a, b]) => b - a).sort((a, b) => a - b);
    const p50 = sorted[sorted.length >> 1]!;
    const p99 = sorted[Math.floor(sorted.length * 0.99)]!;
    const slow = reqs.filter(([a, b]) => b - a >= p99);
    const slowMs = slow.map(([a, b]) => b - a).sort((a, b) => a - b);
    const overlapsGc = ([a, b]: Window) => gcs.some(([s, d]) => s < b && s + d > a);
    const after = (times: number[]) => ([a, b]: Window) => times.some((t) => b >= t && a <= t + 20);
    const row = (label: string, test: (w: Window) => boolean, count: string) => {
      const s = slow.filter(test).length;
      const all = reqs.filter(test).length;
      console.log(`  ${label.padEnd(34)} ${String(s).padStart(4)} of the slowest (${pct(s, slow.length)}); ${pct(all, reqs.length)} of all requests; ${count}`);
    };
    console.log(`${p.target.name}: ${reqs.length} requests, p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms; the slowest 1% (${slow.length}) took ${slowMs[0]!.toFixed(2)}-${slowMs.at(-1)!.toFixed(2)} ms (median ${slowMs[slowMs.length >> 1]!.toFixed(2)})`);
    row('overlapping a GC pause', overlapsGc, `${gcs.length} pauses, ${gcs.reduce((t, [, d]) => t + d, 0).toFixed(1)} ms in all, longest ${Math.max(0, ...gcs.map(([, d]) => d)).toFixed(2)} ms`);
    row('within 20 ms after a store call', after(calls), `${calls.length} calls`);
    row('within 20 ms after a log flush', after(flushes), `${flushes.length} flushes`);
    const kinds = new Map<string, number[]>();
    for (const [, d, k] of gcs) {
      const name = GC_KINDS[k ?? -1] ?? `kind ${k}`;
      kinds.set(name, [...(kinds.get(name) ?? []), d]);
    }
    console.log(`  GC pauses by kind: ${[...kinds].map(([n, ds]) => `${n} ${ds.length} (median ${[...ds].sort((a, b) => a - b)[ds.length >> 1]!.toFixed(2)}, longest ${Math.max(...ds).toFixed(2)} ms)`).join('; ')}`);
    const byTenth = Array<number>(10).fill(0);
    for (const [a] of slow) byTenth[Math.floor((a % 1000) / 100)]!++;
    console.log(`  slowest by 100 ms slot of each second: ${byTenth.join(' ')}`);
  }
} finally {
  await up.stop();
  rmSync(file, { force: true });
}
