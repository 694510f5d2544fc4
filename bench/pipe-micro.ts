import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolve } from 'node:path';

/**
 * The pipeline's own cost per request (issue #17), in process: N chat requests (real web Requests)
 * through `gateway.handle()`, C at a time, each answer read to its end, with request logging to
 * NDJSON files as the local server does. Prints CPU and wall microseconds per request.
 *
 * BENCH_UPSTREAM=loopback (default): an `openai-compatible` provider on an in-process node:http
 * upstream (same-format pass-through, as `npm run bench` runs it; the upstream's CPU is counted
 * too). BENCH_UPSTREAM=mock: the built-in mock provider (translated events, no socket).
 * BENCH_N requests per round (default 20000), BENCH_ROUNDS (default 5; the minimum and the median
 * are printed), BENCH_C at a time (default 64), BENCH_STREAM=1 for streamed answers.
 * Profile it with `node --cpu-prof --import tsx bench/pipe-micro.ts`.
 *
 * BENCH_AGAINST=<another checkout> (e.g. a `git worktree add --detach` of the base commit, with
 * node_modules): the same rounds alternate between that tree's gateway and this one's, in one
 * process, so a shared machine's drift falls on both alike; prints both and their ratio per round.
 */

const N = Number(process.env.BENCH_N ?? 20_000);
const C = Number(process.env.BENCH_C ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STREAM = process.env.BENCH_STREAM === '1';
const MOCK = process.env.BENCH_UPSTREAM === 'mock';
const MODEL = 'gpt-4o-mini-2024-07-18';

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-micro',
  object: 'chat.completion',
  created: 1_764_000_000,
  model: MODEL,
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 },
});
const chunk = (choices: unknown[], usage?: unknown) => `data: ${JSON.stringify({ id: 'chatcmpl-micro', object: 'chat.completion.chunk', created: 1_764_000_000, model: MODEL, choices, ...(usage ? { usage } : {}) })}\n\n`;
const STREAM_BODY =
  chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]) +
  ['Hello!', ' How', ' can', ' I', ' help?'].map((t) => chunk([{ index: 0, delta: { content: t }, finish_reason: null }])).join('') +
  chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]) +
  chunk([], { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14 }) +
  'data: [DONE]\n\n';

const upstream = createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c));
  req.on('end', () => {
    const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
    res.writeHead(200, { 'content-type': stream ? 'text/event-stream' : 'application/json' });
    res.end(stream ? STREAM_BODY : COMPLETION);
  });
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;

const logDir = mkdtempSync(join(tmpdir(), 'pipe-micro-'));
const body = JSON.stringify({ model: 'gpt-4o-mini', stream: STREAM, messages: [{ role: 'user', content: 'Say hello in five words.' }] });
const extras = { waitUntil() {} };

/** A gateway built from the sources under `root` (this tree, or BENCH_AGAINST's). */
async function gatewayFrom(root: string): Promise<{ handle(req: Request, extras: { waitUntil(p: Promise<unknown>): void }): Promise<Response>; flush(): Promise<void> }> {
  const { parseConfig } = (await import(join(root, 'shared/config/load.ts'))) as typeof import('../shared/config/load.ts');
  const { Gateway } = (await import(join(root, 'shared/gateway.ts'))) as typeof import('../shared/gateway.ts');
  const { FileLogSink } = (await import(join(root, 'shared/telemetry/file-sink.ts'))) as typeof import('../shared/telemetry/file-sink.ts');
  const config = parseConfig(
    {
      providers: MOCK ? { upstream: { type: 'mock' } } : { upstream: { type: 'openai-compatible', baseUrl: upstreamUrl } },
      models: { 'gpt-4o-mini': { provider: 'upstream', model: MODEL } },
      logging: { localDir: logDir },
      pricing: { [MODEL]: { input: 0.15, output: 0.6 } },
    },
    'pipe-micro configuration',
  );
  return new Gateway({ config, env: {}, sinks: [new FileLogSink(logDir)], logger: { error() {}, warn() {}, info() {} } as never });
}

const here = resolve(import.meta.dirname, '..');
const against = process.env.BENCH_AGAINST ? resolve(process.env.BENCH_AGAINST) : undefined;
const gateways = [await gatewayFrom(here), ...(against ? [await gatewayFrom(against)] : [])];
let gateway = gateways[0]!;

async function one(): Promise<void> {
  const req = new Request('http://gateway.local/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': 'pipe-micro' }, body });
  const res = await gateway.handle(req, extras);
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
}

async function run(n: number): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (left-- > 0) await one();
    }),
  );
}

for (gateway of gateways) await run(Math.min(2000, N)); // warm up
// Several rounds: on a shared machine the least disturbed round (the minimum) is the figure to compare.
const cpus: number[][] = gateways.map(() => []);
const walls: number[][] = gateways.map(() => []);
for (let round = 0; round < ROUNDS; round++) {
  // With BENCH_AGAINST, the two gateways take turns, the first one alternating round by round.
  for (let k = 0; k < gateways.length; k++) {
    const g = (k + round) % gateways.length;
    gateway = gateways[g]!;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await run(N);
    walls[g]!.push(((performance.now() - t0) * 1000) / N);
    const cpu = process.cpuUsage(cpu0);
    cpus[g]!.push((cpu.user + cpu.system) / N);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const fmt = (xs: number[]) => `min ${Math.min(...xs).toFixed(1)} median ${median(xs).toFixed(1)}`;
const label = `pipe-micro ${MOCK ? 'mock' : 'loopback'} ${STREAM ? 'stream' : 'json'} N=${N} C=${C} x${ROUNDS}`;
if (against) {
  const ratios = cpus[0]!.map((c, i) => c / cpus[1]![i]!);
  console.log(`${label}: cpu us/req this tree ${fmt(cpus[0]!)}; ${against} ${fmt(cpus[1]!)}; this/that per round ${ratios.map((r) => r.toFixed(3)).join(' ')} (median ${median(ratios).toFixed(3)})`);
} else console.log(`${label}: cpu us/req ${fmt(cpus[0]!)}; wall us/req ${fmt(walls[0]!)}`);
for (const g of gateways) await g.flush();
upstream.close();
rmSync(logDir, { recursive: true, force: true });
