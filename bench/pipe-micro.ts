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
 * Requests are made as the local shell makes them (a ShellRequest with its body's bytes; a real web
 * Request with BENCH_WEB_REQUEST=1). BENCH_COUNT=1 prints counts instead of timings (see below).
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
const WEB_REQUEST = process.env.BENCH_WEB_REQUEST === '1';
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
const bodyBytes = Buffer.from(body);
const extras = { waitUntil() {} };

/** A gateway built from the sources under `root` (this tree, or BENCH_AGAINST's). */
interface Under {
  handle(req: Request, extras: { waitUntil(p: Promise<unknown>): void }): Promise<Response>;
  flush(): Promise<void>;
  /** The request as the local shell hands it over (a ShellRequest with its body bytes), or a real web Request (BENCH_WEB_REQUEST=1). */
  request(): Request;
  /** Read an answer to its end as the local shell does: whole bytes as they are, else the body's reader. */
  read(res: Response): Promise<void>;
}
async function gatewayFrom(root: string): Promise<Under> {
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
  const gw = new Gateway({ config, env: {}, sinks: [new FileLogSink(logDir)], logger: { error() {}, warn() {}, info() {} } as never });
  const { ShellRequest, rawToHeaders, bodyReader, responseBytes } = (await import(join(root, 'shared/http/bytes.ts'))) as typeof import('../shared/http/bytes.ts');
  const url = 'http://gateway.local/v1/chat/completions';
  const rawHeaders = ['Host', '127.0.0.1', 'Content-Type', 'application/json', 'User-Agent', 'pipe-micro', 'Content-Length', String(bodyBytes.byteLength)];
  const request = WEB_REQUEST
    ? () => new Request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': 'pipe-micro' }, body })
    : () => new ShellRequest(url, { method: 'POST', headers: rawToHeaders(rawHeaders), bytes: bodyBytes }) as unknown as Request;
  const read = async (res: Response) => {
    if (responseBytes(res)) return;
    const reader = bodyReader(res);
    while (!(await reader.read()).done);
  };
  return { handle: (req, extras) => gw.handle(req, extras), flush: () => gw.flush(), request, read };
}

const here = resolve(import.meta.dirname, '..');
const against = process.env.BENCH_AGAINST ? resolve(process.env.BENCH_AGAINST) : undefined;
const gateways = [await gatewayFrom(here), ...(against ? [await gatewayFrom(against)] : [])];
let gateway = gateways[0]!;

async function one(): Promise<void> {
  const res = await gateway.handle(gateway.request(), extras);
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  await gateway.read(res);
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
if (process.env.BENCH_COUNT === '1') {
  // Counts instead of timings (steady on a shared machine): promises created per request (every
  // async function call, await on a non-promise, `new Promise`, `.then`), in this process (the
  // loopback upstream's few included), and young-generation collections per 1,000 requests (run
  // node with `--min-semi-space-size=16 --max-semi-space-size=16` to make that a byte count).
  const { createHook } = await import('node:async_hooks');
  const { PerformanceObserver } = await import('node:perf_hooks');
  for (let g = 0; g < gateways.length; g++) {
    gateway = gateways[g]!;
    let promises = 0;
    const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && promises++) }).enable();
    await run(N);
    hook.disable();
    let minor = 0;
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === 1) minor++;
    });
    obs.observe({ entryTypes: ['gc'] });
    await run(N);
    await new Promise((r) => setImmediate(r));
    obs.disconnect();
    console.log(`${g === 0 ? 'this tree' : against}: ${(promises / N).toFixed(2)} promises/req, ${((minor * 1000) / N).toFixed(2)} scavenges per 1000 req`);
  }
  for (const g of gateways) await g.flush();
  upstream.close();
  rmSync(logDir, { recursive: true, force: true });
  process.exit(0);
}
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
  const wallRatios = walls[0]!.map((w, i) => w / walls[1]![i]!);
  console.log(`${label}: cpu us/req this tree ${fmt(cpus[0]!)}; ${against} ${fmt(cpus[1]!)}; this/that per round ${ratios.map((r) => r.toFixed(3)).join(' ')} (median ${median(ratios).toFixed(3)})`);
  console.log(`${label}: wall us/req this tree ${fmt(walls[0]!)}; ${against} ${fmt(walls[1]!)}; this/that per round ${wallRatios.map((r) => r.toFixed(3)).join(' ')} (median ${median(wallRatios).toFixed(3)})`);
} else console.log(`${label}: cpu us/req ${fmt(cpus[0]!)}; wall us/req ${fmt(walls[0]!)}`);
for (const g of gateways) await g.flush();
upstream.close();
rmSync(logDir, { recursive: true, force: true });
