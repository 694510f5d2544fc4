import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoad } from './load.ts';
import { CLIENT_CORE, pinSelf } from './procs.ts';
import { STREAM_BODY } from './streaming.ts';
import { startOurs, startUpstream } from './targets.ts';

/**
 * `npx tsx bench/profile.ts`: our gateway (child process, `node --cpu-prof`) under the concurrent
 * load of `npm run bench` for BENCH_DURATION seconds (default 10), then the profile's top functions
 * by self time and the time per source file. The .cpuprofile stays in bench/results/profiles/
 * (open it in Chrome DevTools or speedscope). BENCH_STREAM=1 profiles streaming requests instead;
 * BENCH_AUTH=0 profiles the gateway without keys (no store). Also printed: the inclusive time of
 * the gateway's own functions (where a request's time goes, callees included).
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

const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: '8' });
try {
  const ours = await startOurs(up.url, { auth: process.env.BENCH_AUTH !== '0', nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  try {
    const target = process.env.BENCH_STREAM === '1' ? { ...ours.target, body: STREAM_BODY } : ours.target;
    await runLoad(target, { name: 'concurrent', connections }, 2);
    const r = await runLoad(target, { name: 'concurrent', connections }, durationS, ours.pids);
    console.log(`load: ${r.rps} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${r.non2xx} non-2xx, cpu ${r.cpuUsPerReq} us/req (store ${r.storeCpuUsPerReq ?? '-'})`);
  } finally {
    await ours.stop();
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
console.log(`\nOur functions by inclusive time:\n${top(inclusive, 40)}`);
console.log(`\nTop functions by self time (${total} samples):\n${top(byFn, 40)}`);
console.log(`\nBy file:\n${top(byFile, 30)}`);
console.log(`\nProfile: ${join(dir, file)}`);
