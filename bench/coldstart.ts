import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import type { Metafile } from 'esbuild';
import { buildLambdaSync, LAMBDA_NODE_TARGET, LAMBDA_RUNTIME_ENV, startFootprint } from '../infra/bundling.ts';
import { parseConfig } from '../shared/config/load.ts';
import { median, round3 } from './load.ts';

/**
 * Cold start of the Lambda bundles: `npm run build` writes dist/<name>/index.mjs (plus the chunks
 * it loads on demand, and dist/<name>.meta.json, esbuild's metafile); each is imported in a fresh
 * Node process (with a stand-in `awslambda` global installed first, as the Lambda runtime provides
 * one) with the environment the functions get (LAMBDA_RUNTIME_ENV), several times, against a
 * baseline bundle built from an empty streaming handler. Also measured with --enable-source-maps,
 * which the stack used to set (Node then reads and parses each file's source map while loading it).
 * From the metafile: the bytes a cold start loads (the entry and its static imports, transitively)
 * and any module there that a request does not need (NOT_AT_START).
 */

/**
 * Modules a cold start must not load: the config schema (zod) and YAML parser (the configuration
 * is embedded, validated at synth), the admin API and stats pages, MCP, the Bedrock SDK (loaded by
 * the first Bedrock call), js-tiktoken's ranks (the first count_tokens estimate), the DynamoDB store
 * and the SDK (commands, client, HTTP handler, credential chain: the first store call, see
 * shared/store/lazy.ts), and the optional features, loaded on first use when their section is on
 * (shared/lazy.ts, shared/entries/features.ts): guardrails, the response cache (its pass-through decoder
 * stays: the pipeline uses it without a cache), stored Responses, `n` choices, budget alerts; the
 * chat doors (each loaded by its path's first request; their errors stay: shared/formats/index.ts),
 * the embeddings and count_tokens doors, and the Powertools Logger (its first log line).
 */
export const NOT_AT_START: ReadonlyArray<{ what: string; pattern: RegExp }> = [
  { what: 'zod (config schema)', pattern: /node_modules\/zod\// },
  { what: 'yaml', pattern: /node_modules\/yaml\// },
  { what: 'config schema and loader', pattern: /^shared\/config\// },
  { what: 'admin API', pattern: /^shared\/admin\/|^shared\/telemetry\/admin-stats\.ts$/ },
  { what: 'MCP gateway', pattern: /^shared\/mcp\/(?!path\.ts)/ },
  { what: 'Bedrock SDK', pattern: /node_modules\/@aws-sdk\/client-bedrock-runtime\// },
  { what: 'Bedrock provider', pattern: /^shared\/providers\/bedrock\/(?!lazy\.ts)/ },
  { what: 'js-tiktoken', pattern: /node_modules\/js-tiktoken\// },
  { what: 'DynamoDB store', pattern: /^shared\/store\/dynamodb\.ts$/ },
  { what: 'guardrails', pattern: /^shared\/guardrails\// },
  { what: 'response cache', pattern: /^shared\/cache\/(?!passthrough\.ts$)/ },
  { what: 'stored Responses', pattern: /^shared\/responses\// },
  { what: '`n` choices emulation', pattern: /^shared\/emulate\/parallel\.ts$/ },
  { what: 'budget alerts', pattern: /^shared\/alerts\// },
  { what: 'DynamoDB SDK (commands, client, @smithy)', pattern: /node_modules\/@aws-sdk\/(client-dynamodb|credential-provider-node)\/|node_modules\/@smithy\// },
  { what: 'chat doors', pattern: /^shared\/wire\/(openai-chat|openai-responses|anthropic-messages)\/door\.ts$/ },
  { what: 'embeddings and count_tokens doors', pattern: /^shared\/wire\/(embeddings\/door|anthropic-messages\/count-tokens)\.ts$/ },
  { what: 'Powertools Logger', pattern: /node_modules\/@aws-lambda-powertools\/logger\// },
];

/**
 * Node built-ins a cold start must not load (the probe's `process.moduleLoadList`): the web streams
 * (@middy/core imports them for an `instanceof`; functions/lib/stream-web.ts) and node:console (the
 * Powertools Logger's, loaded with it on the first log line: functions/lib/lazy-logger.ts).
 */
export const BUILTINS_NOT_AT_START: ReadonlyArray<{ what: string; module: string }> = [
  { what: 'web streams (node:stream/web)', module: 'NativeModule stream/web' },
  { what: 'node:console (Powertools Logger)', module: 'NativeModule console' },
];

/** One measured first request: the import and then that request, in a fresh process. */
export interface FirstRequestResult {
  request: string;
  /** Median ms of the import and of the first request: from the invocation to the response's end, and to the handler's promise (billed). */
  importMs: number;
  firstMs: number;
  settledMs: number;
  /** Median CPU ms (all threads) of the import, of the first request (to its response's end, and settled), and of the import and the response. */
  importCpuMs: number;
  firstCpuMs: number;
  settledCpuMs: number;
  totalCpuMs: number;
}

export interface ColdStartResult {
  bundle: string;
  file: string;
  /** All JS of the bundle (entry and chunks; not the lazy modules shipped beside it), and its source maps. */
  sizeKiB: number;
  mapKiB: number;
  runs: number;
  /** Median ms to `await import()` the bundle, measured inside the fresh process. */
  importMs: number;
  /** Median CPU time (all threads of the process: V8 compiles and collects in the background) of that import: steadier than wall time on a busy machine. */
  importCpuMs: number;
  importMsSourceMaps: number;
  /** Median ms from process start to the bundle loaded (Node's own boot included). */
  processMs: number;
  baseline: boolean;
  /** From the metafile: JS bytes (KiB) and files a cold start loads, and those loaded only on demand. */
  startKiB?: number;
  startFiles?: number;
  lazyKiB?: number;
  /** NOT_AT_START entries found in what a cold start loads (with the first matching module). */
  notNeededAtStart?: string[];
  /** Whether the functions' environment turns on --enable-source-maps (maps parsed at start). */
  sourceMapsAtStart?: boolean;
  /** Node built-ins the import loaded that the empty handler's did not. */
  builtinsAtStart?: string[];
  /** The gateway bundle's first requests (built with a configuration whose upstreams are loopback mocks). */
  firstRequests?: FirstRequestResult[];
}

/** The awslambda stand-in (as test/helpers/awslambda.ts). */
const AWSLAMBDA = `
globalThis.awslambda = {
  streamifyResponse(fn) { fn[Symbol.for('aws.lambda.runtime.handler.streaming')] = 'response'; return fn; },
  HttpResponseStream: { from(stream, prelude) { stream.setContentType('application/vnd.awslambda.http-integration-response'); stream.write(Buffer.from(JSON.stringify(prelude))); stream.write(Buffer.alloc(8)); return stream; } },
};
`;

/** The stand-in, then a timed import. */
const PROBE = `${AWSLAMBDA}
const loaded = new Set(process.moduleLoadList);
const c0 = process.cpuUsage();
const t0 = performance.now();
const mod = await import(process.env.BENCH_BUNDLE_URL);
const t1 = performance.now();
const c = process.cpuUsage(c0);
if (typeof mod.handler !== 'function') throw new Error('no handler export');
const builtins = process.moduleLoadList.filter((m) => !loaded.has(m) && m.startsWith('NativeModule ') && !m.startsWith('NativeModule internal/'));
process.stdout.write(JSON.stringify({ importMs: t1 - t0, processMs: t1, cpuMs: (c.user + c.system) / 1000, builtins }));
`;

interface Probe {
  importMs: number;
  processMs: number;
  cpuMs: number;
  builtins: string[];
}

/** The functions' environment (as the bench's Lambda sees it), the bundle to import, and `extra`. */
export function probeEnv(file: string, extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    ...LAMBDA_RUNTIME_ENV,
    PATH: process.env.PATH,
    BENCH_BUNDLE_URL: pathToFileURL(resolve(file)).href,
    AWS_REGION: 'eu-west-1',
    AWS_LAMBDA_FUNCTION_NAME: 'llm-gateway-bench',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1024',
    POWERTOOLS_SERVICE_NAME: 'llm-gateway',
    POWERTOOLS_LOG_LEVEL: 'INFO',
    ...extra,
  };
}

function probe(file: string, sourceMaps: boolean): Probe {
  const args = [...(sourceMaps ? ['--enable-source-maps'] : []), '--input-type=module', '-e', PROBE];
  const r = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    env: probeEnv(file),
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`importing ${file} failed: ${r.stderr.slice(-1000)}`);
  return JSON.parse(r.stdout) as Probe;
}

/**
 * The empty handler's banner: the one the bundles had when the goal (6x the empty handler) was set,
 * which imported node:module. The bundles' own banner no longer does (infra/bundling.ts); the
 * yardstick stays what it was, so the ratio moves only with what the gateway bundle itself loads.
 */
const BASELINE_BANNER = "import { createRequire as __gwCreateRequire } from 'node:module'; const require = __gwCreateRequire(import.meta.url);";

async function baselineBundle(dir: string): Promise<string> {
  const entry = join(dir, 'empty.mjs');
  writeFileSync(entry, 'export const handler = awslambda.streamifyResponse(async (_event, stream) => { stream.end(); });\n');
  const outfile = join(dir, 'empty', 'index.mjs');
  await build({ entryPoints: [entry], outfile, bundle: true, platform: 'node', target: LAMBDA_NODE_TARGET, format: 'esm', minify: true, sourcemap: true, legalComments: 'none', banner: { js: BASELINE_BANNER }, logLevel: 'warning' });
  return outfile;
}

/** The stand-in, a timed import, then one timed invocation: to the response's end (what the client waits for) and to the handler's promise (what Lambda bills: the log line and flush after it). */
export const FIRST_PROBE = `${AWSLAMBDA}
const cpu = (c) => (c.user + c.system) / 1000;
const c0 = process.cpuUsage();
const t0 = performance.now();
const { handler } = await import(process.env.BENCH_BUNDLE_URL);
const t1 = performance.now();
const c1 = process.cpuUsage();
const { Writable } = await import('node:stream');
const chunks = [];
let tEnd, cEnd;
const stream = new Writable({ write(c, _e, cb) { chunks.push(Buffer.from(c)); cb(); }, final(cb) { tEnd = performance.now(); cEnd = process.cpuUsage(); cb(); } });
stream.setContentType = () => {};
await handler(JSON.parse(process.env.BENCH_EVENT), stream, { awsRequestId: 'first', functionName: 'llm-gateway-bench', getRemainingTimeInMillis: () => 60000 });
const t2 = performance.now();
const c2 = process.cpuUsage();
const text = Buffer.concat(chunks).toString('utf8');
if (!text.startsWith('{"statusCode":200')) throw new Error('first request failed: ' + text.slice(0, 500));
process.stdout.write('RESULT' + JSON.stringify({ importMs: t1 - t0, firstMs: tEnd - t1, settledMs: t2 - t1, importCpuMs: cpu(c1) - cpu(c0), firstCpuMs: cpu(cEnd) - cpu(c1), settledCpuMs: cpu(c2) - cpu(c1) }));
`;

type FirstProbe = Omit<FirstRequestResult, 'request' | 'totalCpuMs'>;

/** The typical first requests: a Chat Completion through an OpenAI provider, an Anthropic message through an Anthropic one. */
export const FIRST_REQUESTS: { request: string; path: string; headers: Record<string, string>; body: unknown }[] = [
  { request: 'chat completion (openai)', path: '/v1/chat/completions', headers: {}, body: { model: 'gpt', messages: [{ role: 'user', content: 'hello' }] } },
  { request: 'Anthropic message (anthropic)', path: '/v1/messages', headers: { 'anthropic-version': '2023-06-01' }, body: { model: 'claude', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] } },
];

/**
 * A loopback upstream answering both APIs, and Firehose's PutRecordBatch (the deployed functions
 * send their records there: LOG_STREAM_NAME), in this process (the probes are spawned asynchronously).
 */
export async function startFirstRequestUpstream(): Promise<{ url: string; close: () => Promise<void> }> {
  const openai = JSON.stringify({ id: 'chatcmpl-cold', object: 'chat.completion', created: 1_764_000_000, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello!' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } });
  const anthropic = JSON.stringify({ id: 'msg_cold', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'Hello!' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 5, output_tokens: 2 } });
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers['x-amz-target'] === 'Firehose_20150804.PutRecordBatch') {
        const records = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Records?: unknown[] }).Records ?? [];
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify({ FailedPutCount: 0, Encrypted: false, RequestResponses: records.map((_, i) => ({ RecordId: `cold-${i}` })) }));
      } else res.writeHead(200, { 'content-type': 'application/json' }).end(req.url?.endsWith('/messages') ? anthropic : openai);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(() => r())) };
}

export function firstProbe(file: string, event: unknown, upstream: string): Promise<FirstProbe> {
  const env = { BENCH_EVENT: JSON.stringify(event), OPENAI_API_KEY: 'sk-cold', ANTHROPIC_API_KEY: 'sk-ant-cold' };
  // As deployed: the records go to Firehose (infra/constructs/log-export.ts sets LOG_STREAM_NAME).
  Object.assign(env, { LOG_STREAM_NAME: 'cold-start-logs', AWS_ENDPOINT_URL_FIREHOSE: upstream, AWS_ACCESS_KEY_ID: 'AKIDCOLDSTART', AWS_SECRET_ACCESS_KEY: 'cold-start-secret' });
  const child = spawn(process.execPath, ['--input-type=module', '-e', FIRST_PROBE], { env: probeEnv(file, env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolveProbe, reject) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      // Log lines (and EMF metrics) precede the result on stdout.
      if (code === 0) resolveProbe(JSON.parse(out.slice(out.lastIndexOf('RESULT') + 6)) as FirstProbe);
      else reject(new Error(`the first-request probe failed (${code}): ${err.slice(-1000)}`));
    }),
  );
}

/**
 * The import and the first request of each kind, in fresh processes (taken in turn), on a gateway
 * bundle built like the others but with its providers at a loopback upstream (records to a loopback
 * Firehose, as deployed) and no keys: what the
 * first invocation of a cold start costs beyond the import (the chunks that request loads, its
 * first run of the code), so a cut of the import that only moves work to it shows.
 */
async function measureFirstRequests(dir: string, runs: number): Promise<FirstRequestResult[]> {
  const upstream = await startFirstRequestUpstream();
  try {
    const config = parseConfig({
      providers: { openai: { type: 'openai', baseUrl: `${upstream.url}/v1`, apiKeyEnv: 'OPENAI_API_KEY' }, anthropic: { type: 'anthropic', baseUrl: upstream.url, apiKeyEnv: 'ANTHROPIC_API_KEY' } },
      models: { gpt: { provider: 'openai', model: 'gpt-4o-mini' }, claude: { provider: 'anthropic', model: 'claude-sonnet-4-5' } },
      auth: { required: false },
    });
    buildLambdaSync('functions/gateway.ts', join(dir, 'first'), config);
    const file = join(dir, 'first', 'index.mjs');
    const events = FIRST_REQUESTS.map((r) => ({ path: r.path, httpMethod: 'POST', headers: { 'content-type': 'application/json', host: 'gateway.example', ...r.headers }, body: JSON.stringify(r.body), isBase64Encoded: false, requestContext: { identity: {} } }));
    const probes = FIRST_REQUESTS.map((): FirstProbe[] => []);
    for (let i = 0; i < runs; i++) for (const [k, event] of events.entries()) probes[k]!.push(await firstProbe(file, event, upstream.url));
    return FIRST_REQUESTS.map((r, k) => {
      const p = probes[k]!;
      const m = (f: (x: FirstProbe) => number) => round3(median(p.map(f)));
      return { request: r.request, importMs: m((x) => x.importMs), firstMs: m((x) => x.firstMs), settledMs: m((x) => x.settledMs), importCpuMs: m((x) => x.importCpuMs), firstCpuMs: m((x) => x.firstCpuMs), settledCpuMs: m((x) => x.settledCpuMs), totalCpuMs: m((x) => x.importCpuMs + x.firstCpuMs) };
    });
  } finally {
    await upstream.close();
  }
}

export async function measureColdStart(runs: number, log: (s: string) => void): Promise<ColdStartResult[]> {
  log('  npm run build ...');
  const b = spawnSync('npm', ['run', '--silent', 'build'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (b.status !== 0) throw new Error(`npm run build failed:\n${b.stdout}\n${b.stderr}`);
  const tmp = mkdtempSync(join(tmpdir(), 'gw-bench-cold-'));
  try {
    const files: { bundle: string; file: string; baseline: boolean }[] = [{ bundle: 'empty handler (baseline)', file: await baselineBundle(tmp), baseline: true }];
    for (const name of readdirSync('dist').sort()) {
      const file = join('dist', name, 'index.mjs');
      if (existsSync(file)) files.push({ bundle: name, file, baseline: false });
    }
    // Round-robin: run i of every bundle, then run i+1. The machine's speed drifts over seconds, and
    // the ratio to the empty handler means something only when both were measured in the same state.
    const plainRuns = files.map((): Probe[] => []);
    const mapRuns = files.map((): number[] => []);
    for (const f of files) probe(f.file, false); // warm the file cache once
    for (let i = 0; i < runs; i++) {
      files.forEach((f, k) => {
        plainRuns[k]!.push(probe(f.file, false));
        mapRuns[k]!.push(probe(f.file, true).importMs);
      });
    }
    const out: ColdStartResult[] = [];
    for (const [k, f] of files.entries()) {
      const plain = plainRuns[k]!;
      const maps = mapRuns[k]!;
      const meta = join('dist', `${f.bundle}.meta.json`);
      const metafile = !f.baseline && existsSync(meta) ? (JSON.parse(readFileSync(meta, 'utf8')) as Metafile) : undefined;
      const start = metafile && startFootprint(metafile, 'index.mjs');
      const outputs = metafile ? Object.keys(metafile.outputs) : [f.file, `${f.file}.map`];
      const bytes = (files: string[]) => files.filter((o) => existsSync(o)).reduce((n, o) => n + statSync(o).size, 0);
      out.push({
        bundle: f.bundle,
        file: f.baseline ? '(temporary)' : f.file,
        sizeKiB: round1(bytes(outputs.filter((o) => !o.endsWith('.map'))) / 1024),
        mapKiB: round1(bytes(outputs.filter((o) => o.endsWith('.map'))) / 1024),
        runs,
        importMs: round3(median(plain.map((p) => p.importMs))),
        importCpuMs: round3(median(plain.map((p) => p.cpuMs))),
        importMsSourceMaps: round3(median(maps)),
        processMs: round3(median(plain.map((p) => p.processMs))),
        baseline: f.baseline,
        ...(start && {
          startKiB: round1(start.bytes / 1024),
          startFiles: start.files.length,
          lazyKiB: round1(start.lazyBytes / 1024),
          notNeededAtStart: [
            ...NOT_AT_START.flatMap((n) => {
              const hit = start.inputs.find((i) => n.pattern.test(i));
              return hit ? [`${n.what} (${hit})`] : [];
            }),
            ...BUILTINS_NOT_AT_START.filter((b) => plain.some((p) => p.builtins.includes(b.module))).map((b) => b.what),
          ],
          sourceMapsAtStart: /--enable-source-maps/.test(LAMBDA_RUNTIME_ENV.NODE_OPTIONS ?? ''),
          builtinsAtStart: plain[0]!.builtins.filter((m) => !plainRuns[0]![0]!.builtins.includes(m)).map((m) => m.slice('NativeModule '.length)),
        }),
      });
    }
    const gateway = out.find((r) => r.bundle === 'gateway');
    if (gateway && process.env.BENCH_COLD_FIRST !== '0') {
      log('  the first requests (import, then one request, in fresh processes) ...');
      gateway.firstRequests = await measureFirstRequests(tmp, runs);
      log('Cold start, first invocation (gateway bundle, loopback upstreams and Firehose, no keys): median ms and CPU ms');
      const f = (x: number) => x.toFixed(3).padStart(8);
      for (const r of gateway.firstRequests) log(`  ${r.request.padEnd(30)} import ${f(r.importMs)}, first response ${f(r.firstMs)} (settled ${f(r.settledMs)}); CPU import ${f(r.importCpuMs)} + first response ${f(r.firstCpuMs)} = ${f(r.totalCpuMs)} (settled ${f(r.settledCpuMs)})`);
      log(`  built-ins the gateway's import loads beyond the empty handler's: ${gateway.builtinsAtStart?.join(', ')}`);
    }
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
