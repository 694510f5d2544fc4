import { createServer, request, Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startFloor, startOurs } from './targets.ts';
import { CHAT_BODY } from './load.ts';

/**
 * `npx tsx bench/inflight.ts [floor|ours-open|ours]`: what a proxy keeps alive for each request
 * while it waits on its upstream, the objects a young-generation collection under load must copy.
 * 64 requests are held at an upstream of this script's own (after 1,280 answered ones for warm-up);
 * the proxy writes a heap snapshot (`--heapsnapshot-signal`, a full collection first) before and
 * while they wait; the difference, per request, by object type and constructor. Then the held
 * requests are answered and everything stops. Snapshots go to node_modules/.cache/snap/ (deleted).
 */

let slow = false;
const held: (() => void)[] = [];
const COMPLETION = JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello!' }, finish_reason: 'stop' }], usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } });
const up = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const answer = () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(COMPLETION); };
    if (slow) held.push(answer); else answer();
  });
});
await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
const upUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
const which = process.argv[2] ?? 'ours-open';
const dir = join(process.cwd(), 'node_modules/.cache/snap', which);
rmSync(dir, { recursive: true, force: true }); mkdirSync(dir, { recursive: true });
const args = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`];
const t = which === 'floor' ? await startFloor(upUrl, args) : await startOurs(upUrl, { auth: which === 'ours', nodeArgs: args });
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const one = () => new Promise<void>((resolve) => {
  const rq = request(`${t.target.url}${t.target.path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...t.target.headers } }, (res) => { res.resume(); res.on('end', () => resolve()); });
  rq.end(CHAT_BODY);
});
for (let i = 0; i < 20; i++) await Promise.all(Array.from({ length: 64 }, one));
const snap = async () => {
  const before = readdirSync(dir).length;
  process.kill(t.pids.server!, 'SIGUSR2');
  for (let i = 0; i < 600 && readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).length <= before; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1500));
};
await snap();
slow = true;
const inflight = Array.from({ length: 64 }, one);
while (held.length < 64) await new Promise((r) => setTimeout(r, 20));
await new Promise((r) => setTimeout(r, 300));
await snap();
slow = false;
for (const h of held.splice(0)) h();
await Promise.all(inflight);
await t.stop(); up.close(); agent.destroy();

function agg(file: string) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const f = s.snapshot.meta.node_fields as string[]; const types = s.snapshot.meta.node_types[0] as string[];
  const nf = f.length, ti = f.indexOf('type'), ni = f.indexOf('name'), si = f.indexOf('self_size');
  const m = new Map<string, [number, number]>();
  const nodes = s.nodes as number[]; const strings = s.strings as string[];
  for (let i = 0; i < nodes.length; i += nf) {
    const type = types[nodes[i + ti]!]!; let name = strings[nodes[i + ni]!]!;
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '(string)';
    if (type === 'code' || type === 'hidden') name = `(${type})`;
    const k = `${type}:${name.slice(0, 60)}`; const e = m.get(k) ?? [0, 0]; e[0]++; e[1] += nodes[i + si]!; m.set(k, e);
  }
  return m;
}
const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).sort();
const a = agg(join(dir, files[0]!)), b = agg(join(dir, files[1]!));
const diff: [string, number, number][] = [];
for (const [k, [c, sz]] of b) {
  const [c0, s0] = a.get(k) ?? [0, 0];
  diff.push([k, (c - c0) / 64, (sz - s0) / 64]);
}
// Compiled code and V8's own bookkeeping vary between two snapshots whatever the requests do.
const counted = diff.filter(([k, c, sz]) => sz > 0 && c >= 0.5 && !k.startsWith('code:') && !k.startsWith('hidden:') && !k.includes('system / DescriptorArray') && !k.includes('system / TransitionArray'));
const total = counted.reduce((x, [, , sz]) => x + sz, 0);
console.log(`${which}: about ${Math.round(total)} bytes live per request in flight (${counted.length} kinds of object, each at least one per two requests)`);
for (const [k, c, sz] of counted.sort((x, y) => y[2] - x[2]).slice(0, 25)) console.log(`${String(Math.round(sz)).padStart(7)} B ${c.toFixed(1).padStart(6)} x  ${k}`);
rmSync(dir, { recursive: true, force: true });
