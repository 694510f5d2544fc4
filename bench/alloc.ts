import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoad } from './load.ts';
import { CLIENT_CORE, dumpOnSignal, pinSelf } from './procs.ts';
import { startFloor, startOurs, startUpstream, type Running } from './targets.ts';

/**
 * `npx tsx bench/alloc.ts`: what a proxy allocates per request, one request at a time (the
 * sequential shape of `npm run bench`), and where. The proxy runs with bench/alloc-preload.mjs (V8's
 * sampling heap profiler, collected objects included); after 2 s of warm-up the samples start over,
 * then BENCH_DURATION seconds (default 5) of requests are profiled. Printed: bytes per request, the
 * functions allocating most (self), the source files (from the bundle's module comments) and the
 * gateway's own functions by bytes allocated under them (callees included).
 * BENCH_TARGET=ours (keys on, the default), ours-open (no keys) or floor. BENCH_CONNECTIONS=64:
 * the concurrent shape instead. BENCH_ALLOC_SURVIVORS=1: only what survived the young generation
 * (promoted to the old one, or alive at the end), i.e. what costs scavenges and mark-compacts.
 */

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const durationS = Number(process.env.BENCH_DURATION ?? 5);
const which = process.env.BENCH_TARGET ?? 'ours';
const dir = mkdtempSync(join(tmpdir(), 'gw-bench-alloc-'));
process.env.BENCH_ALLOC_DIR = dir; // inherited by the proxy (bench/procs.ts spawnNode)
const preload = ['--import', './bench/alloc-preload.mjs'];
pinSelf(CLIENT_CORE);
/** BENCH_ALLOC_LINES=1: own functions named with their line in the bench bundle (to read what allocates). */
const LINES = process.env.BENCH_ALLOC_LINES === '1';

function takeProfile(pid: number): Promise<{ head: Node }> {
  return dumpOnSignal<{ head: Node }>(pid, join(dir, `alloc-${pid}.heapprofile`));
}

/** The source file of a bundle line: esbuild marks each module with a `// path` comment line. */
const moduleStarts = new Map<string, { line: number; path: string }[]>();
function sourceOf(url: string, line: number): string {
  if (!url.startsWith('file://')) return url || '(native)';
  const path = fileURLToPath(url);
  if (!path.includes('gw-bench')) return path.includes('node_modules/') ? `node_modules/${path.split('node_modules/')[1]!.split('/').slice(0, path.includes('node_modules/@') ? 2 : 1).join('/')}` : path;
  let starts = moduleStarts.get(path);
  if (!starts) {
    starts = [];
    readFileSync(path, 'utf8')
      .split('\n')
      .forEach((l, i) => {
        const m = /^\/\/ ((?:shared|local|bench|functions|node_modules)\/\S+)$/.exec(l);
        if (m) starts!.push({ line: i, path: m[1]! });
      });
    moduleStarts.set(path, starts);
  }
  let found = 'bundle';
  for (const s of starts) if (s.line <= line) found = s.path;
  return found;
}

const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: '8' });
let proxy: Running | undefined;
try {
  proxy = which === 'floor' ? await startFloor(up.url, preload) : await startOurs(up.url, { auth: which !== 'ours-open', nodeArgs: preload });
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 1);
  const shape = { name: connections > 1 ? 'concurrent' : 'sequential', connections } as const;
  await runLoad(proxy.target, shape, 2);
  await takeProfile(proxy.pids.server!);
  const r = await runLoad(proxy.target, shape, durationS);
  const { head } = await takeProfile(proxy.pids.server!);
  const n = r.requests;
  const self = new Map<string, number>();
  const files = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  // Native frames (push, Map, join...) are named with the JavaScript function that called them.
  const walk = (node: Node, own: Set<string>, caller: string): number => {
    const { functionName, url, lineNumber } = node.callFrame;
    const src = sourceOf(url, lineNumber);
    const fn = `${functionName || '(anonymous)'} ${src}`;
    total += node.selfSize;
    const at = LINES && url.includes('gw-bench') ? `:${lineNumber + 1}` : '';
    const selfKey = url ? fn + at : `${fn} <- ${caller}`;
    self.set(selfKey, (self.get(selfKey) ?? 0) + node.selfSize);
    files.set(src, (files.get(src) ?? 0) + node.selfSize);
    const mine = /^(shared|local|functions)\//.test(src) && !own.has(fn);
    const next = mine ? new Set(own).add(fn) : own;
    let sum = node.selfSize;
    for (const c of node.children) sum += walk(c, next, url ? fn + at : caller);
    if (mine) inclusive.set(fn, (inclusive.get(fn) ?? 0) + sum);
    return sum;
  };
  walk(head, new Set(), '(root)');
  const per = (b: number) => `${(b / n / 1024).toFixed(2).padStart(7)} KB`;
  const top = (m: Map<string, number>, k: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, b]) => `${per(b)}  ${name}`)
      .join('\n');
  console.log(`${proxy.target.name}: ${n} requests in ${durationS} s, ${(total / n / 1024).toFixed(1)} KB ${process.env.BENCH_ALLOC_SURVIVORS === '1' ? 'surviving the young generation' : 'allocated'} per request (sampled)`);
  console.log(`\nTop functions by bytes allocated (self), per request:\n${top(self, 45)}`);
  console.log(`\nBy source file, per request:\n${top(files, 25)}`);
  console.log(`\nThe gateway's own functions, callees included, per request:\n${top(inclusive, 30)}`);
} finally {
  await proxy?.stop();
  await up.stop();
  rmSync(dir, { recursive: true, force: true });
}
