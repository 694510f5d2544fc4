import type { ColdStartResult } from './coldstart.ts';
import type { LambdaTailResult } from './lambda-tail.ts';
import type { LoadResult } from './load.ts';
import type { StreamResult } from './streaming.ts';

/** Tables and goals of `npm run bench`. Added latency = a proxy's percentile minus direct's, same shape. */

export interface Goal {
  goal: string;
  value: number | null;
  limit: number;
  pass: boolean;
  /**
   * The same ratio for the work floor in the same run (load goals): whether the goal is within
   * reach of the least work a gateway does on this machine, in this run. Where the work floor
   * misses too, no gateway doing that work in Node meets the goal here.
   */
  workFloor?: { value: number | null; pass: boolean };
  /**
   * The bare proxy's own value for a goal relative to Portkey, in the same run: where it misses,
   * no proxy at all meets the goal on this machine in this run (Portkey was that close to the floor).
   */
  floor?: { value: number | null; pass: boolean };
}

type Log = (s: string) => void;

const f3 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(3));
const f2 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(2));

export function table(rows: string[][], log: Log): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const [n, r] of rows.entries()) {
    log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
    if (n === 0) log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

export function added(load: LoadResult[], target: string, shape: string, p: 'p50Ms' | 'p99Ms'): number | null {
  const d = load.find((r) => r.target === 'direct' && r.shape === shape);
  const t = load.find((r) => r.target === target && r.shape === shape);
  return d && t ? t[p] - d[p] : null;
}

/**
 * `a`'s added latency over `b`'s, or null when the run cannot tell: a target measured faster than
 * the mock upstream alone (a negative added latency, or the reference's not above zero) means the
 * run's noise is larger than the overheads compared, and a ratio of such numbers would pass or
 * miss a goal by chance.
 */
export function ratio(load: LoadResult[], a: string, b: string, shape: string, p: 'p50Ms' | 'p99Ms'): number | null {
  const x = added(load, a, shape, p);
  const y = added(load, b, shape, p);
  return x === null || y === null || x < 0 || y <= 0 ? null : x / y;
}

/**
 * What makes this run's added-latency ratios unreliable, one line each: a target whose latency at
 * some percentile was at or below the mock upstream's own (the upstream, which shares its core with
 * the load generator, was itself the bottleneck, or the machine changed speed between turns).
 */
export function loadWarnings(load: LoadResult[]): string[] {
  const out: string[] = [];
  for (const shape of ['sequential', 'concurrent']) {
    const d = load.find((r) => r.target === 'direct' && r.shape === shape);
    if (!d) continue;
    for (const p of ['p50Ms', 'p99Ms'] as const) {
      const slower = load.filter((r) => r.shape === shape && r.target !== 'direct' && added(load, r.target, shape, p)! <= 0).map((r) => r.target);
      if (slower.length) out.push(`${shape} ${p.slice(0, 3)}: ${slower.join(', ')} measured at or below direct (${f3(d[p])} ms, ${d.rps} req/s): ratios with these targets read n/a, and the others at this percentile measure the machine more than the proxies`);
    }
  }
  return out;
}

const cpuRatio = (load: LoadResult[], a: string, b: string, shape: string): number | null => {
  const x = load.find((r) => r.target === a && r.shape === shape)?.cpuUsPerReq;
  const y = load.find((r) => r.target === b && r.shape === shape)?.cpuUsPerReq;
  return x == null || y == null || y <= 0 ? null : x / y;
};

export const TARGET_NOTES: Record<string, string> = {
  direct: 'the mock upstream itself',
  floor: 'minimal node:http reverse proxy',
  'work-floor': 'the floor plus the work any gateway must do: body and answer parsed, body re-serialised, one log line (no goal)',
  ours: 'our gateway: keys + rate limits + budgets on dynalite, logging to files, no cache',
  'ours-open': 'our gateway without keys (no store), logging to files',
  portkey: "Portkey's gateway 1.15.2 (npm package, as shipped)",
};

export function printLoad(load: LoadResult[], log: Log): void {
  log('Load: POST /v1/chat/completions, small non-streaming completion (latencies in ms; added = over direct;');
  log('cpu = CPU time of the server under test per request, in microseconds, and the part of it off its main thread (bg:');
  log("V8's background compiler and GC helpers, libuv's pool; high while V8 still compiles); for ours also its store, dynalite)");
  for (const t of new Set(load.map((r) => r.target))) log(`  ${t.padEnd(10)} ${TARGET_NOTES[t] ?? ''}`);
  log('');
  const rows = [['shape', 'target', 'req/s', 'p50', 'p99', 'added p50', 'added p99', 'cpu us/req', 'bg us/req', 'store us/req', 'store calls/req', 'non-2xx/err']];
  for (const r of load) {
    rows.push([
      r.shape,
      r.target,
      String(r.rps),
      f3(r.p50Ms),
      f3(r.p99Ms),
      r.target === 'direct' ? '' : f3(added(load, r.target, r.shape, 'p50Ms')),
      r.target === 'direct' ? '' : f3(added(load, r.target, r.shape, 'p99Ms')),
      r.cpuUsPerReq == null ? 'n/a' : String(r.cpuUsPerReq),
      r.bgCpuUsPerReq == null ? 'n/a' : String(r.bgCpuUsPerReq),
      r.storeCpuUsPerReq == null ? '' : String(r.storeCpuUsPerReq),
      r.storeCallsPerReq == null ? '' : r.storeCallsPerReq.toFixed(4),
      `${r.non2xx}/${r.errors}`,
    ]);
  }
  table(rows, log);
  log('\nRatios of added latency (goal: ours/floor <= 1.5, ours/portkey <= 0.25; open = ours-open, without keys; work = work-floor), and of CPU per request');
  const rr = [['shape', 'ours/floor p50', 'ours/floor p99', 'ours/portkey p50', 'ours/portkey p99', 'open/floor p50', 'open/portkey p50', 'open/portkey p99', 'work/floor p50', 'cpu ours/floor', 'cpu open/portkey', 'cpu work/floor']];
  for (const shape of ['sequential', 'concurrent']) {
    if (!load.some((r) => r.shape === shape)) continue;
    rr.push([
      shape,
      f2(ratio(load, 'ours', 'floor', shape, 'p50Ms')),
      f2(ratio(load, 'ours', 'floor', shape, 'p99Ms')),
      f2(ratio(load, 'ours', 'portkey', shape, 'p50Ms')),
      f2(ratio(load, 'ours', 'portkey', shape, 'p99Ms')),
      f2(ratio(load, 'ours-open', 'floor', shape, 'p50Ms')),
      f2(ratio(load, 'ours-open', 'portkey', shape, 'p50Ms')),
      f2(ratio(load, 'ours-open', 'portkey', shape, 'p99Ms')),
      f2(ratio(load, 'work-floor', 'floor', shape, 'p50Ms')),
      f2(cpuRatio(load, 'ours', 'floor', shape)),
      f2(cpuRatio(load, 'ours-open', 'portkey', shape)),
      f2(cpuRatio(load, 'work-floor', 'floor', shape)),
    ]);
  }
  table(rr, log);
  log('');
}

export function printStreaming(stream: StreamResult[], log: Log): void {
  const d = stream.find((s) => s.target === 'direct');
  log('Streaming: upstream write -> client read, same clock (ms; added = over direct)');
  const rows = [['target', 'first p50', 'added', 'first p90', 'event p50', 'event p99', 'reads/writes', 'coalesced', 'gap err p50', 'gap err max', 'incomplete']];
  for (const s of stream) {
    rows.push([s.target, f3(s.firstEventP50Ms), s.target === 'direct' || !d ? '' : f3(s.firstEventP50Ms - d.firstEventP50Ms), f3(s.firstEventP90Ms), f3(s.perEventP50Ms), f3(s.perEventP99Ms), `${s.clientReadsMedian}/${s.upstreamWrites}`, String(s.coalescedEvents), f3(s.gapDistortionP50Ms), f3(s.gapDistortionMaxMs), String(s.incomplete)]);
  }
  table(rows, log);
  log('');
}

export function printLambdaTail(rows: LambdaTailResult[], log: Log): void {
  log('Lambda cost: billed ms after the response body ended (usage settlement, log export to Firehose, X-Ray),');
  log('per invocation of the real Lambda entry under a simulated streaming runtime (keys, limits, budgets on dynalite)');
  table(
    [
      ['mode', 'invocations', 'response p50', 'after body p50', 'after body p99', 'share of billed', 'Firehose calls'],
      ...rows.map((r) => [r.mode, String(r.invocations), f3(r.responseP50Ms), f3(r.tailP50Ms), f3(r.tailP99Ms), `${(r.tailShare * 100).toFixed(1)}%`, String(r.firehoseCalls)]),
    ],
    log,
  );
  log('');
}

export function printColdStart(cold: ColdStartResult[], log: Log): void {
  const base = cold.find((c) => c.baseline);
  log('Cold start: median time to import each Lambda bundle in a fresh Node process (ms), as deployed (no --enable-source-maps)');
  const rows = [['bundle', 'JS KiB', 'maps KiB', 'loaded at start KiB (files)', 'on demand KiB', 'import', 'x baseline', 'import CPU', 'x baseline CPU', 'import w/ --enable-source-maps', 'process start->loaded']];
  for (const c of cold) {
    rows.push([
      c.bundle,
      c.sizeKiB.toFixed(1),
      c.mapKiB.toFixed(1),
      c.startKiB === undefined ? '' : `${c.startKiB.toFixed(1)} (${c.startFiles})`,
      c.lazyKiB === undefined ? '' : c.lazyKiB.toFixed(1),
      f3(c.importMs),
      c.baseline || !base ? '' : f2(c.importMs / base.importMs),
      f3(c.importCpuMs),
      c.baseline || !base ? '' : f2(c.importCpuMs / base.importCpuMs),
      f3(c.importMsSourceMaps),
      f3(c.processMs),
    ]);
  }
  table(rows, log);
  for (const c of cold) if (c.notNeededAtStart?.length) log(`  ${c.bundle}: loaded at start but not needed by a request: ${c.notNeededAtStart.join(', ')}`);
  log('');
}

export function goals(load: LoadResult[], stream: StreamResult[], cold: ColdStartResult[]): Goal[] {
  const out: Goal[] = [];
  const check = (goal: string, value: number | null, limit: number, strict = false) => out.push({ goal, value, limit, pass: value !== null && (strict ? value < limit : value <= limit) });
  const withWork = load.some((r) => r.target === 'work-floor');
  const atMost = (value: number | null, limit: number) => ({ value, pass: value !== null && value <= limit });
  for (const shape of ['sequential', 'concurrent']) {
    if (!load.some((r) => r.shape === shape && r.target === 'ours')) continue;
    for (const p of ['p50Ms', 'p99Ms'] as const) {
      const pn = p.slice(0, 3);
      for (const [other, limit] of [['floor', 1.5], ['portkey', 0.25]] as const) {
        if (!load.some((r) => r.target === other)) continue;
        check(`${shape} ${pn}: ours/${other} added latency <= ${limit}`, ratio(load, 'ours', other, shape, p), limit);
        if (withWork) out.at(-1)!.workFloor = atMost(ratio(load, 'work-floor', other, shape, p), limit);
        if (other === 'portkey' && load.some((r) => r.target === 'floor')) out.at(-1)!.floor = atMost(ratio(load, 'floor', other, shape, p), limit);
      }
    }
  }
  const rpsOf = (target: string) => load.find((r) => r.target === target && r.shape === 'concurrent')?.rps;
  const floorRps = rpsOf('floor');
  const oursRps = rpsOf('ours');
  if (floorRps !== undefined && oursRps !== undefined) {
    const share = (rps: number | undefined) => (rps !== undefined && floorRps > 0 ? rps / floorRps : null);
    const v = share(oursRps);
    const w = share(rpsOf('work-floor'));
    out.push({ goal: 'concurrent: ours/floor throughput >= 0.5', value: v, limit: 0.5, pass: v !== null && v >= 0.5, ...(withWork ? { workFloor: { value: w, pass: w !== null && w >= 0.5 } } : {}) });
  }
  for (const r of load) {
    if (r.target !== 'ours' || r.storeCallsPerReq == null) continue;
    check(`${r.shape}: store calls per request on a warm key <= 1/50 (0.02)`, r.storeCallsPerReq, 0.02);
  }
  const d = stream.find((s) => s.target === 'direct');
  const o = stream.find((s) => s.target === 'ours');
  if (d && o) check('streaming: first event added by ours < 1 ms (p50)', o.firstEventP50Ms - d.firstEventP50Ms, 1, true);
  if (o) check('streaming: no coalesced events through ours', o.coalescedEvents, 0);
  // Cold start (issue #17), for the gateway function (the admin function's bundle is printed above).
  const base = cold.find((c) => c.baseline);
  const gw = cold.find((c) => c.bundle === 'gateway');
  if (gw) {
    check('cold start: gateway bundle imports in <= 60 ms (as deployed; judged on an idle machine)', gw.importMs, 60);
    check('cold start: gateway bundle import <= 6x the empty handler (same run)', base && base.importMs > 0 ? gw.importMs / base.importMs : null, 6);
    check('cold start: gateway bundle loaded at start <= 500 KB (1000 bytes)', gw.startKiB === undefined ? null : (gw.startKiB * 1024) / 1000, 500);
    check('cold start: nothing loaded at start that a request does not need (count; source maps included)', gw.notNeededAtStart === undefined ? null : gw.notNeededAtStart.length + (gw.sourceMapsAtStart ? 1 : 0), 0);
  }
  return out;
}

export function printGoals(list: Goal[], log: Log, warnings: string[] = []): void {
  log('Goals (informational; the benchmark never fails on them). In brackets, the same goal\'s value in this run for the work floor');
  log('(where it misses too, the goal is out of reach here of any gateway doing the least work in Node) and, for the goals');
  log('against Portkey, for the bare proxy (where it misses, the goal is out of reach here of any proxy at all)');
  for (const w of warnings) log(`  note: ${w}`);
  for (const g of list) {
    const refs = [g.floor && `floor ${f3(g.floor.value)} ${g.floor.pass ? 'PASS' : 'MISS'}`, g.workFloor && `work floor ${f3(g.workFloor.value)} ${g.workFloor.pass ? 'PASS' : 'MISS'}`].filter(Boolean);
    const w = refs.length ? ` [${refs.join(', ')}]` : '';
    log(`  ${g.pass ? 'PASS' : 'MISS'}  ${g.goal}: ${g.value === null ? 'n/a' : f3(g.value)}${w}`);
  }
}
