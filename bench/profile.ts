import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoad } from './load.ts';
import { CLIENT_CORE, nodeArgsFrom, pinSelf } from './procs.ts';
import { STREAM_BODY } from './streaming.ts';
import { PROXIES, startUpstream } from './targets.ts';

/**
 * `npx tsx bench/profile.ts`: our gateway (child process, `node --cpu-prof`) under the concurrent
 * load of `npm run bench` for BENCH_DURATION seconds (default 10), then the profile's top functions
 * by self time and the time per source file. The .cpuprofile stays in bench/results/profiles/
 * (open it in Chrome DevTools or speedscope). BENCH_STREAM=1 profiles streaming requests instead;
 * BENCH_AUTH=0 profiles the gateway without keys (no store); BENCH_TARGET=floor or work-floor
 * profiles the bare node:http proxy or the work floor instead, for comparison. Also printed: the inclusive time of the gateway's own
 * functions (where a request's time goes, callees included), and the process's sampled time per
 * request by kind (its own code, node internals, GC, syscalls...), comparable across targets.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const durationS = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
const dir = resolve('bench', 'results', 'profiles', new Date().toISOString().replace(/[:.]/g, '-'));
mkdirSync(dir, { recursive: true });
pinSelf(CLIENT_CORE);

const which = process.env.BENCH_TARGET;
const nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...nodeArgsFrom('BENCH_NODE_ARGS')];
/** Requests the profiled process answered (warm-up included: the profile covers its whole life). */
let requests = 0;
const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: '8' });
try {
  const proxy = await PROXIES[which === 'floor' || which === 'work-floor' ? which : process.env.BENCH_AUTH === '0' ? 'ours-open' : 'ours'].start(up.url, nodeArgs);
  try {
    const target = process.env.BENCH_STREAM === '1' ? { ...proxy.target, body: STREAM_BODY } : proxy.target;
    const warm = await runLoad(target, { name: 'concurrent', connections }, 2);
    const r = await runLoad(target, { name: 'concurrent', connections }, durationS, proxy.pids);
    requests = warm.requests + r.requests;
    console.log(`${proxy.target.name}: ${r.rps} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${r.non2xx} non-2xx, cpu ${r.cpuUsPerReq} us/req (store ${r.storeCpuUsPerReq ?? '-'})`);
  } finally {
    await proxy.stop();
  }
} finally {
  await up.stop();
}

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error(`no profile written in ${dir}`);
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: ProfileNode[]; startTime: number; endTime: number };
const total = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0);
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
const root = process.cwd();
for (const n of profile.nodes) {
  const hits = n.hitCount ?? 0;
  if (!hits) continue;
  const { functionName, url, lineNumber } = n.callFrame;
  let where = url;
  if (url.startsWith('file://')) where = relative(root, fileURLToPath(url));
  const fn = `${functionName || '(anonymous)'} ${where ? `${where}:${lineNumber + 1}` : ''}`.trim();
  byFn.set(fn, (byFn.get(fn) ?? 0) + hits);
  const key = where ? (where.startsWith('node_modules') ? where.split('/').slice(0, 2).join('/') : where) : functionName;
  byFile.set(key, (byFile.get(key) ?? 0) + hits);
}
const top = (m: Map<string, number>, k: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, hits]) => `${((100 * hits) / total).toFixed(1).padStart(5)}%  ${name}`)
    .join('\n');
// Inclusive time of the gateway's own functions (bench bundle or sources), each counted once per stack.
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const inclusive = new Map<string, number>();
const ownCode = (url: string) => url.includes('gw-bench') || (url.startsWith('file://') && !url.includes('node_modules'));
for (const n of profile.nodes) {
  const hits = n.hitCount ?? 0;
  if (!hits) continue;
  const seen = new Set<string>();
  for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (!ownCode(url)) continue;
    const fn = `${functionName || '(anonymous)'} ${url.split('/').pop()}:${lineNumber + 1}`;
    if (seen.has(fn)) continue;
    seen.add(fn);
    inclusive.set(fn, (inclusive.get(fn) ?? 0) + hits);
  }
}
// Sampled time per request by kind: what the process spends a request on, comparable between targets.
const kindOf = (url: string, fn: string): string => {
  if (!url) return fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)' ? fn : fn === 'writev' || fn === 'writeUtf8String' || fn === 'writeBuffer' ? 'socket writes (syscalls)' : 'native (other)';
  if (ownCode(url)) return 'own code';
  if (url.startsWith('node:_http') || url.startsWith('node:http')) return 'node:http';
  if (url.startsWith('node:internal/streams') || url.startsWith('node:stream') || url.startsWith('node:net') || url.startsWith('node:internal/stream_base')) return 'node streams and net';
  if (url.startsWith('node:')) return 'node (other)';
  return 'dependencies';
};
const sampleUs = (profile.endTime - profile.startTime) / total;
const byKind = new Map<string, number>();
for (const n of profile.nodes) {
  if (!n.hitCount) continue;
  const kind = kindOf(n.callFrame.url, n.callFrame.functionName);
  byKind.set(kind, (byKind.get(kind) ?? 0) + n.hitCount);
}
const busy = [...byKind.entries()].filter(([k]) => k !== '(idle)');
console.log(
  `\nSampled time per request by kind (us; ${requests} requests, idle left out):\n${busy
    .sort((a, b) => b[1] - a[1])
    .map(([k, hits]) => `${((hits * sampleUs) / requests).toFixed(1).padStart(7)}  ${k}`)
    .join('\n')}\n${((busy.reduce((t, [, h]) => t + h, 0) * sampleUs) / requests).toFixed(1).padStart(7)}  total`,
);
console.log(`\nOur functions by inclusive time:\n${top(inclusive, 40)}`);
console.log(`\nTop functions by self time (${total} samples):\n${top(byFn, 40)}`);
console.log(`\nBy file:\n${top(byFile, 30)}`);
console.log(`\nProfile: ${join(dir, file)}`);
