import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalServer } from '../local/server.ts';
import { benchConfig, BENCH_MODEL } from './gateway-server.ts';

/**
 * The gateway's CPU per small non-streaming chat completion, in one process: a loopback upstream,
 * the local server (open, file logs) and a keep-alive client, BYTES_N requests at BYTES_CONC at a
 * time. The same load straight at the upstream is measured first; the difference is the gateway's
 * own CPU per request (client and upstream cost the same in both). Rounds alternate to average
 * out a shared machine's noise. Usage: npx tsx bench/bytes-micro.ts
 *
 * BYTES_STREAM=1: streamed completions one at a time instead; prints the p50 time from the
 * upstream's write of the first event to the client's read of it, direct and through the gateway.
 */

const N = Number(process.env.BYTES_N ?? 6000);
const CONC = Number(process.env.BYTES_CONC ?? 64);
const ROUNDS = Number(process.env.BYTES_ROUNDS ?? 3);

const ANSWER = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-micro',
    object: 'chat.completion',
    created: 1_764_000_000,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 },
  }),
);
const BODY = JSON.stringify({ model: BENCH_MODEL, messages: [{ role: 'user', content: 'Hello' }] });

const STREAM = process.env.BYTES_STREAM === '1';
const event = (choices: unknown[]) => `data: ${JSON.stringify({ id: 'chatcmpl-micro', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini-2024-07-18', choices })}\n\n`;
/** When the upstream wrote the first event of the answer in flight (one at a time in stream mode). */
let firstWritten = 0n;

const upstream = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (!STREAM) return res.writeHead(200, { 'content-type': 'application/json', 'content-length': ANSWER.length }).end(ANSWER);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    setTimeout(() => {
      firstWritten = process.hrtime.bigint();
      res.write(event([{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }]));
      setTimeout(() => res.end(event([{ index: 0, delta: {}, finish_reason: 'stop' }]) + 'data: [DONE]\n\n'), 2);
    }, 2);
  });
});
upstream.keepAliveTimeout = 65_000;
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
const logDir = mkdtempSync(join(tmpdir(), 'bytes-micro-'));
const gw = await startLocalServer({ config: benchConfig(upstreamUrl, logDir), env: {}, port: 0 });

const agent = new Agent({ keepAlive: true, maxSockets: CONC });

/** One request; resolves with the first body chunk's delay after the upstream's first event (stream mode). */
function one(base: string, path: string, body = BODY): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
      let first = 0;
      res.on('data', () => {
        if (!first) first = Number(process.hrtime.bigint() - firstWritten) / 1e6;
      });
      res.on('end', () => resolve(first));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function run(base: string, path: string, n: number): Promise<number> {
  let left = n;
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      while (left-- > 0) await one(base, path);
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / n;
}

if (STREAM) {
  const body = JSON.stringify({ model: BENCH_MODEL, stream: true, messages: [{ role: 'user', content: 'Hello' }] });
  const p50 = async (base: string, n: number) => {
    const xs: number[] = [];
    for (let i = 0; i < n; i++) xs.push(await one(base, '/v1/chat/completions', body));
    return xs.sort((a, b) => a - b)[Math.floor(n / 2)]!;
  };
  await p50(gw.url, 300);
  for (let i = 0; i < ROUNDS; i++) {
    const d = await p50(upstreamUrl, 500);
    const t = await p50(gw.url, 500);
    console.log(`first event p50: direct ${d.toFixed(3)} ms, through ${t.toFixed(3)} ms, added ${(t - d).toFixed(3)} ms`);
  }
  await gw.close();
  agent.destroy();
  upstream.close();
  rmSync(logDir, { recursive: true, force: true });
  process.exit(0);
}
await run(upstreamUrl, '/v1/chat/completions', 1000);
await run(gw.url, '/v1/chat/completions', 5000);
const direct: number[] = [];
const through: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  direct.push(await run(upstreamUrl, '/v1/chat/completions', N));
  through.push(await run(gw.url, '/v1/chat/completions', N));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`direct  ${direct.map((x) => x.toFixed(0)).join(' ')} us/req (median ${median(direct).toFixed(0)})`);
console.log(`through ${through.map((x) => x.toFixed(0)).join(' ')} us/req (median ${median(through).toFixed(0)})`);
console.log(`gateway's own CPU: ${(median(through) - median(direct)).toFixed(0)} us/req at ${CONC} connections`);
await gw.close();
agent.destroy();
upstream.close();
rmSync(logDir, { recursive: true, force: true });
