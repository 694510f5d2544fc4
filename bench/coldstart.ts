import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import type { Metafile } from 'esbuild';
import { LAMBDA_NODE_TARGET, LAMBDA_RUNTIME_ENV, startFootprint } from '../infra/bundling.ts';
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
 * stays: the pipeline uses it without a cache), stored Responses, `n` choices, budget alerts.
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
];

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
}

/** The awslambda stand-in (as test/helpers/awslambda.ts), then a timed import. */
const PROBE = `
globalThis.awslambda = {
  streamifyResponse(fn) { fn[Symbol.for('aws.lambda.runtime.handler.streaming')] = 'response'; return fn; },
  HttpResponseStream: { from(stream, prelude) { stream.setContentType('application/vnd.awslambda.http-integration-response'); stream.write(Buffer.from(JSON.stringify(prelude))); stream.write(Buffer.alloc(8)); return stream; } },
};
const c0 = process.cpuUsage();
const t0 = performance.now();
const mod = await import(process.env.BENCH_BUNDLE_URL);
const t1 = performance.now();
const c = process.cpuUsage(c0);
if (typeof mod.handler !== 'function') throw new Error('no handler export');
process.stdout.write(JSON.stringify({ importMs: t1 - t0, processMs: t1, cpuMs: (c.user + c.system) / 1000 }));
`;

interface Probe {
  importMs: number;
  processMs: number;
  cpuMs: number;
}

function probe(file: string, sourceMaps: boolean): Probe {
  const args = [...(sourceMaps ? ['--enable-source-maps'] : []), '--input-type=module', '-e', PROBE];
  const r = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    env: {
      ...LAMBDA_RUNTIME_ENV,
      PATH: process.env.PATH,
      BENCH_BUNDLE_URL: pathToFileURL(resolve(file)).href,
      AWS_REGION: 'eu-west-1',
      AWS_LAMBDA_FUNCTION_NAME: 'llm-gateway-bench',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1024',
      POWERTOOLS_SERVICE_NAME: 'llm-gateway',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    },
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
          notNeededAtStart: NOT_AT_START.flatMap((n) => {
            const hit = start.inputs.find((i) => n.pattern.test(i));
            return hit ? [`${n.what} (${hit})`] : [];
          }),
          sourceMapsAtStart: /--enable-source-maps/.test(LAMBDA_RUNTIME_ENV.NODE_OPTIONS ?? ''),
        }),
      });
    }
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
