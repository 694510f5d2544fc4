import { spawn } from 'node:child_process';
import { runLoad } from './load.ts';
import { CLIENT_CORE, pinSelf } from './procs.ts';
import { startFloor, startOurs, startUpstream, startWorkFloor } from './targets.ts';

/**
 * `npx tsx bench/syscalls.ts`: system calls per request of each proxy under the concurrent load of
 * `npm run bench` (strace -c attached to the server process for BENCH_DURATION seconds, default 5).
 * Needs strace; prints the calls per request by name, for the floor, the work floor and ours.
 */
const durationS = Number(process.env.BENCH_DURATION ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
pinSelf(CLIENT_CORE);
const up = await startUpstream({ BENCH_STREAM_GAP_MS: '0', BENCH_STREAM_CHUNKS: '8' });
try {
  for (const which of (process.env.BENCH_TARGETS ?? 'floor,work-floor,ours-open,ours').split(',')) {
    const proxy = which === 'floor' ? await startFloor(up.url) : which === 'work-floor' ? await startWorkFloor(up.url) : await startOurs(up.url, { auth: which === 'ours' });
    try {
      await runLoad(proxy.target, { name: 'concurrent', connections }, 2);
      const st = spawn('strace', ['-c', '-f', '-p', String(proxy.pids.server)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let out = '';
      st.stderr.on('data', (c: Buffer) => (out += c));
      await new Promise((r) => setTimeout(r, 300));
      const r = await runLoad(proxy.target, { name: 'concurrent', connections }, durationS);
      st.kill('SIGINT');
      await new Promise((r) => st.on('close', r));
      const rows = out
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((c) => c.length >= 5 && /^\d/.test(c[0]!) && c.at(-1) !== 'total');
      const per = rows.map((c) => ({ name: c.at(-1)!, calls: Number(c[3]) / r.requests })).filter((x) => x.calls >= 0.05).sort((a, b) => b.calls - a.calls);
      const total = per.reduce((s, x) => s + x.calls, 0);
      console.log(`${which}: ${r.requests} requests, ${total.toFixed(1)} syscalls/req: ${per.map((x) => `${x.name} ${x.calls.toFixed(2)}`).join(', ')}`);
    } finally {
      await proxy.stop();
    }
  }
} finally {
  await up.stop();
}
