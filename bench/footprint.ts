import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLoad } from './load.ts';
import { CLIENT_CORE, pinSelf } from './procs.ts';
import { STREAM_BODY } from './streaming.ts';
import { table } from './report.ts';
import { PROXIES, startUpstream, type ProxyName, type Running } from './targets.ts';

/**
 * `npx tsx bench/footprint.ts`: how much JavaScript each proxy runs per request, counted rather
 * than timed, so two runs on a machine whose speed drifts give the same figures. Each target runs
 * under NODE_V8_COVERAGE (V8's precise coverage with call counts, written by node when the process
 * exits), takes BENCH_DURATION seconds (default 3) of the benchmark's concurrent load
 * (BENCH_CONNECTIONS, default 64), and is stopped; then, per request (node:http's
 * `parserOnIncoming` calls counted as requests):
 * - the distinct functions of its own bundle that ran at least once per request, and all calls
 *   into its own code;
 * - the same for node's internal JavaScript (node:http, streams, events...).
 * Calls the store or timers make less often than once a request count toward the calls, spread over
 * the requests. BENCH_TARGETS: a comma-separated subset of floor, work-floor, ours, ours-open.
 * BENCH_STREAM=1: streamed chat completions instead (the upstream sends BENCH_STREAM_CHUNKS content
 * events, default 8, plus the role, finish, usage and [DONE] events), counted per stream.
 * BENCH_DIFF=1: also, for each target after the first, the node functions it calls most often
 * beyond the first target's calls, per request (module loading left out: a start-up cost that the
 * counts spread over the requests).
 */

interface FunctionCoverage {
  functionName: string;
  ranges: { startOffset: number; endOffset: number; count: number }[];
}
interface ScriptCoverage {
  url: string;
  functions: FunctionCoverage[];
}

export interface Footprint {
  target: string;
  requests: number;
  ownFunctionsPerRequest: number;
  ownCallsPerRequest: number;
  nodeFunctionsPerRequest: number;
  nodeCallsPerRequest: number;
  /** Calls per request of each of node's functions, by `script:function` (functions of one name in a script added up). */
  nodeCalls: Map<string, number>;
}

/** node's scripts that load modules: run at start-up (and by lazy imports), not by a request's own path. */
const LOADING = /^node:internal\/modules\/|cjs-module-lexer|^node:path$/;

/** The scripts of the one process, among those that wrote coverage into `dir`, that ran bench script `script` (its bundle, `<script>.mjs`). */
function proxyCoverage(dir: string, script: string): { scripts: ScriptCoverage[]; own: string } {
  for (const f of readdirSync(dir)) {
    const scripts = (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { result: ScriptCoverage[] }).result;
    const own = scripts.find((s) => s.url.endsWith(`/${script}.mjs`))?.url;
    if (own) return { scripts, own };
  }
  throw new Error(`no coverage from a process running ${script} in ${dir}`);
}

export function footprintOf(target: string, dir: string, script: string): Footprint {
  const { scripts, own } = proxyCoverage(dir, script);
  const requests = scripts.find((s) => s.url === 'node:_http_server')?.functions.find((fn) => fn.functionName === 'parserOnIncoming')?.ranges[0]?.count ?? 0;
  if (!requests) throw new Error(`${target}: no request counted`);
  const tally = { own: { functions: 0, calls: 0 }, node: { functions: 0, calls: 0 } };
  const nodeCalls = new Map<string, number>();
  for (const s of scripts) {
    const kind = s.url === own ? tally.own : s.url.startsWith('node:') ? tally.node : undefined;
    if (!kind) continue;
    for (const fn of s.functions) {
      const whole = fn.ranges[0]!;
      // The script's own top level (a module body runs once), not a function.
      if (fn.functionName === '' && whole.startOffset === 0) continue;
      kind.calls += whole.count;
      if (kind === tally.node && whole.count && !LOADING.test(s.url)) {
        const key = `${s.url}:${fn.functionName || '(anonymous)'}`;
        nodeCalls.set(key, (nodeCalls.get(key) ?? 0) + whole.count / requests);
      }
      // At least once a request (requests still in flight when the process stopped ran part of the path).
      if (whole.count >= 0.95 * requests) kind.functions++;
    }
  }
  const per = (n: number) => Math.round((n / requests) * 10) / 10;
  return {
    target,
    requests,
    ownFunctionsPerRequest: tally.own.functions,
    ownCallsPerRequest: per(tally.own.calls),
    nodeFunctionsPerRequest: tally.node.functions,
    nodeCallsPerRequest: per(tally.node.calls),
    nodeCalls,
  };
}

async function main(): Promise<void> {
  const durationS = Number(process.env.BENCH_DURATION ?? 3);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
  const names = (process.env.BENCH_TARGETS ?? 'floor,work-floor,ours-open,ours').split(',').map((s) => s.trim());
  const stream = process.env.BENCH_STREAM === '1';
  const chunks = process.env.BENCH_STREAM_CHUNKS ?? '8';
  pinSelf(CLIENT_CORE);
  const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: chunks });
  const rows: Footprint[] = [];
  try {
    for (const name of names) {
      if (!(name in PROXIES)) throw new Error(`unknown target ${name} (one of ${Object.keys(PROXIES).join(', ')})`);
      const spec = PROXIES[name as ProxyName];
      const dir = mkdtempSync(join(tmpdir(), `gw-bench-footprint-${name}-`));
      // Read by node at start: the target (and its store) inherit it, this process does not.
      process.env.NODE_V8_COVERAGE = dir;
      let running: Running;
      try {
        running = await spec.start(up.url);
      } finally {
        delete process.env.NODE_V8_COVERAGE;
      }
      try {
        const target = stream ? { ...running.target, body: STREAM_BODY } : running.target;
        const r = await runLoad(target, { name: connections === 1 ? 'sequential' : 'concurrent', connections }, durationS);
        if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx answers, ${r.errors} errors`);
      } finally {
        await running.stop();
      }
      rows.push(footprintOf(name, dir, spec.script));
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await up.stop();
  }
  const what = stream ? `stream (${Number(chunks) + 4} upstream events each)` : 'request';
  console.log(`JavaScript run per ${what} (${connections} connection(s), ${durationS} s per target; counts, not times)`);
  table(
    [
      ['target', 'requests', 'own functions', 'own calls', 'node functions', 'node calls'],
      ...rows.map((r) => [r.target, r.requests, r.ownFunctionsPerRequest, r.ownCallsPerRequest, r.nodeFunctionsPerRequest, r.nodeCallsPerRequest].map(String)),
    ],
    console.log,
  );
  if (process.env.BENCH_DIFF === '1') for (const row of rows.slice(1)) printDiff(rows[0]!, row);
}

/** The node functions `b` calls most often beyond `a`'s calls, per request. */
function printDiff(a: Footprint, b: Footprint): void {
  const diffs = [...new Set([...a.nodeCalls.keys(), ...b.nodeCalls.keys()])]
    .map((k) => ({ k, a: a.nodeCalls.get(k) ?? 0, b: b.nodeCalls.get(k) ?? 0 }))
    .filter((d) => d.b - d.a >= 0.5)
    .sort((x, y) => y.b - y.a - (x.b - x.a))
    .slice(0, 25);
  console.log(`\nnode functions ${b.target} calls more often than ${a.target} (calls per request)`);
  const f = (n: number) => n.toFixed(1);
  table([['function', a.target, b.target, 'more'], ...diffs.map((d) => [d.k, f(d.a), f(d.b), f(d.b - d.a)])], console.log);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
