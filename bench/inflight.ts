import { createServer, request, Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(COMPLETION);
    };
    if (slow) held.push(answer);
    else answer();
  });
});
await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
const upUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
const which = process.argv[2] ?? 'ours-open';
const dir = join(process.cwd(), 'node_modules/.cache/snap', which);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const args = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`];
const t = which === 'floor' ? await startFloor(upUrl, args) : await startOurs(upUrl, { auth: which === 'ours', nodeArgs: args });
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const one = () =>
  new Promise<void>((resolve) => {
    const rq = request(`${t.target.url}${t.target.path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...t.target.headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    rq.end(CHAT_BODY);
  });
const snapshots = () => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
for (let i = 0; i < 20; i++) await Promise.all(Array.from({ length: 64 }, one));
/** One more snapshot, once the proxy has written it whole (its size unchanged for 0.5 s). */
const snap = async () => {
  const before = snapshots().length;
  process.kill(t.pids.server!, 'SIGUSR2');
  for (let waited = 0; snapshots().length <= before; waited += 100) {
    if (waited > 60_000) throw new Error('the proxy wrote no heap snapshot within 60 s');
    await sleep(100);
  }
  const file = join(dir, snapshots().sort().at(-1)!);
  for (let size = -1; size !== statSync(file).size; ) {
    size = statSync(file).size;
    await sleep(500);
  }
};
await snap();
slow = true;
const inflight = Array.from({ length: 64 }, one);
while (held.length < 64) await sleep(20);
await sleep(300);
await snap();
slow = false;
for (const h of held.splice(0)) h();
await Promise.all(inflight);
await t.stop();
up.close();
agent.destroy();

function agg(file: string) {
  // The snapshot's nodes are one flat array, node_fields.length numbers per node.
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const fields = s.snapshot.meta.node_fields as string[];
  const types = s.snapshot.meta.node_types[0] as string[];
  const [ti, ni, si] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const nodes = s.nodes as number[];
  const strings = s.strings as string[];
  const m = new Map<string, [count: number, bytes: number]>();
  for (let i = 0; i < nodes.length; i += fields.length) {
    const type = types[nodes[i + ti]!]!;
    // A string's name is its text, compiled code's its source: counted by kind only.
    const name = type.endsWith('string') ? '(string)' : type === 'code' || type === 'hidden' ? `(${type})` : strings[nodes[i + ni]!]!.slice(0, 60);
    const e = m.get(`${type}:${name}`) ?? [0, 0];
    e[0]++;
    e[1] += nodes[i + si]!;
    m.set(`${type}:${name}`, e);
  }
  return m;
}
const [idle, busy] = snapshots().sort();
const a = agg(join(dir, idle!));
const b = agg(join(dir, busy!));
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
