import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

/**
 * Fixed-duration load runs with autocannon, one target at a time or several in turns (runRotation). Latencies are taken from autocannon's per-response
 * event (a float in ms from the request's write to the response's end): its own histogram keeps
 * whole milliseconds only, too coarse for sub-millisecond overheads.
 */

export interface Target {
  name: string;
  /** Base URL, no trailing slash. */
  url: string;
  path: string;
  headers: Record<string, string>;
  /** Request body; default CHAT_BODY (a small non-streaming chat completion). */
  body?: string;
}

export interface Shape {
  name: 'sequential' | 'concurrent';
  connections: number;
}

export interface LoadResult {
  target: string;
  shape: Shape['name'];
  connections: number;
  durationS: number;
  requests: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  non2xx: number;
  errors: number;
  /**
   * CPU time (user + system) the server under test spent per answered request, in microseconds:
   * the proxy for floor/ours/Portkey, the mock upstream for direct. Less sensitive to a busy
   * machine than latency. Null where /proc is missing.
   */
  cpuUsPerReq: number | null;
  /**
   * The part of `cpuUsPerReq` spent off the server's main thread: V8's background compiler and
   * garbage-collector helpers, libuv's pool. High while V8 is still compiling the hot path (a
   * warm-up that was too short); it competes with the main thread for the one core the server has.
   */
  bgCpuUsPerReq: number | null;
  /** The same for ours' store (dynalite), when it has one. */
  storeCpuUsPerReq: number | null;
  /**
   * DynamoDB calls the store received during the measured run, by operation (ours with keys only;
   * counted by bench/dynamo-server.ts), and their total per answered request.
   */
  storeCalls: Record<string, number> | null;
  storeCallsPerReq: number | null;
}

/** Counts of calls by operation a store has received so far (see bench/dynamo-server.ts). */
export type StoreCallCounter = () => Promise<Record<string, number>>;

/**
 * CPU ms (user + system) a process has used so far, from /proc (Linux), or undefined; with
 * `mainThread`, only its main thread's.
 */
export function cpuMs(pid: number | undefined, mainThread = false): number | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5) (utime, stime), in clock ticks (USER_HZ, 100 on Linux).
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

export const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello.' }], max_tokens: 16 });

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function median(values: number[]): number {
  return percentile(Float64Array.from(values).sort(), 50);
}

/** What one timed slice of load gave, before it is summarised (slices of one target pool into one result). */
interface Sample {
  latencies: Float64Array;
  elapsedS: number;
  non2xx: number;
  errors: number;
  cpuMs: { server?: number; serverMain?: number; store?: number };
  calls: Record<string, number> | null;
}

async function sample(target: Target, shape: Shape, durationS: number, pids: { server?: number; store?: number }, storeCalls?: StoreCallCounter): Promise<Sample> {
  const calls0 = await storeCalls?.();
  const cpu0 = { server: cpuMs(pids.server), serverMain: cpuMs(pids.server, true), store: cpuMs(pids.store) };
  let lat = new Float64Array(1 << 16);
  let n = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const inst = autocannon(
      {
        url: `${target.url}${target.path}`,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...target.headers },
        body: target.body ?? CHAT_BODY,
        connections: shape.connections,
        pipelining: 1,
        duration: durationS,
        timeout: 10,
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    inst.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode < 200 || statusCode > 299) return;
      if (n === lat.length) {
        const bigger = new Float64Array(lat.length * 2);
        bigger.set(lat);
        lat = bigger;
      }
      lat[n++] = responseTime;
    });
  });
  const cpu1 = { server: cpuMs(pids.server), serverMain: cpuMs(pids.server, true), store: cpuMs(pids.store) };
  const calls1 = await storeCalls?.();
  let calls: Record<string, number> | null = null;
  if (calls0 && calls1) {
    calls = {};
    for (const [op, c] of Object.entries(calls1)) if (c - (calls0[op] ?? 0) > 0) calls[op] = c - (calls0[op] ?? 0);
  }
  const delta = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : b - a);
  return {
    latencies: lat.subarray(0, n),
    elapsedS: result.duration || durationS,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    cpuMs: { server: delta(cpu0.server, cpu1.server), serverMain: delta(cpu0.serverMain, cpu1.serverMain), store: delta(cpu0.store, cpu1.store) },
    calls,
  };
}

/** One result from the slices of one target and shape: latencies pooled, requests, time, CPU and store calls summed. */
function summarise(target: Target, shape: Shape, samples: Sample[]): LoadResult {
  const n = samples.reduce((a, s) => a + s.latencies.length, 0);
  const sorted = new Float64Array(n);
  let at = 0;
  for (const s of samples) {
    sorted.set(s.latencies, at);
    at += s.latencies.length;
  }
  sorted.sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  const elapsed = samples.reduce((a, s) => a + s.elapsedS, 0);
  const cpu = (k: 'server' | 'serverMain' | 'store') => (samples.every((s) => s.cpuMs[k] !== undefined) ? samples.reduce((a, s) => a + s.cpuMs[k]!, 0) : undefined);
  const server = cpu('server');
  const serverMain = cpu('serverMain');
  const perReq = (ms?: number) => (ms === undefined || !n ? null : Math.round((ms * 1000) / n));
  let calls: Record<string, number> | null = null;
  for (const s of samples) {
    if (!s.calls) continue;
    calls ??= {};
    for (const [op, c] of Object.entries(s.calls)) calls[op] = (calls[op] ?? 0) + c;
  }
  const totalCalls = calls ? Object.values(calls).reduce((a, b) => a + b, 0) : 0;
  return {
    target: target.name,
    shape: shape.name,
    connections: shape.connections,
    durationS: Math.round(elapsed * 100) / 100,
    requests: n,
    rps: Math.round(n / elapsed),
    p50Ms: round3(percentile(sorted, 50)),
    p90Ms: round3(percentile(sorted, 90)),
    p99Ms: round3(percentile(sorted, 99)),
    meanMs: round3(n ? sum / n : NaN),
    non2xx: samples.reduce((a, s) => a + s.non2xx, 0),
    errors: samples.reduce((a, s) => a + s.errors, 0),
    cpuUsPerReq: perReq(server),
    bgCpuUsPerReq: perReq(server === undefined || serverMain === undefined ? undefined : server - serverMain),
    storeCpuUsPerReq: perReq(cpu('store')),
    storeCalls: calls,
    storeCallsPerReq: calls && n ? Math.round((totalCalls / n) * 10_000) / 10_000 : null,
  };
}

export async function runLoad(target: Target, shape: Shape, durationS: number, pids: { server?: number; store?: number } = {}, storeCalls?: StoreCallCounter): Promise<LoadResult> {
  return summarise(target, shape, [await sample(target, shape, durationS, pids, storeCalls)]);
}

/** A running target as runRotation measures it. */
export interface Rotated {
  target: Target;
  pids?: { server?: number; store?: number };
  storeCalls?: StoreCallCounter;
}

/**
 * Several targets measured in turns: `rounds` slices of `sliceS` seconds each, one target after the
 * other in every round, pooled per target. A machine whose speed drifts over minutes (a shared VM)
 * then slows every target alike, where one long run per target would charge a slow minute to
 * whichever target ran in it; the ratios between targets are what the benchmark judges.
 */
export async function runRotation(targets: Rotated[], shape: Shape, rounds: number, sliceS: number): Promise<LoadResult[]> {
  const samples: Sample[][] = targets.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      await touch(t.target);
      samples[i]!.push(await sample(t.target, shape, sliceS, t.pids ?? {}, t.storeCalls));
    }
  }
  return targets.map((t, i) => summarise(t.target, shape, samples[i]!));
}

/**
 * One unmeasured request, answered, before a target's slice. Between its slices a target idles while
 * the others take theirs (5-6 s in a full run), longer than our gateway keeps a key's lookup and its
 * budget view (5 s by default, refreshed in the background at half that while the key is in use):
 * without this, every slice of ours began with its first requests, all 64 of them at 64 connections,
 * waiting on the store to read the key again, a tail of the rotation rather than of a warm key in
 * steady use, which is what the goals measure. Every target gets the same request.
 */
async function touch(target: Target): Promise<void> {
  const res = await fetch(`${target.url}${target.path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...target.headers }, body: target.body ?? CHAT_BODY });
  await res.arrayBuffer();
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
