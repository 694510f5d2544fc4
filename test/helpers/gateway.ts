import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { parseConfig } from '../../shared/config/load.ts';
import { configSchema, type GatewayConfig } from '../../shared/config/schema.ts';
import { Gateway } from '../../shared/gateway.ts';
import type { LogSink, RequestRecord } from '../../shared/telemetry/record.ts';
import type { Store } from '../../shared/store/types.ts';
import { startLocalServer } from '../../local/server.ts';
import { startMockOpenAI, type MockOpenAI } from './mock-openai.ts';

/** The upstream credential the gateway holds (and the only one the upstream may see). */
export const UPSTREAM_KEY = 'sk-upstream-TESTKEY-7f3c9a1e5b2d48c6';
/** What clients send; the gateway must never forward it. */
export const CLIENT_KEY = 'sk-client-CLIENTKEY-0a1b2c3d';
export const UPSTREAM_KEY_ENV = 'TEST_UPSTREAM_OPENAI_KEY';

/** Upstream model ids the gateway's model names map to (different on purpose). */
export const UPSTREAM_MODEL = 'gpt-4o-mini-2024-07-18';

/** A LogSink that keeps records in memory: a snapshot taken at write time, and the object it was handed. */
export class MemorySink implements LogSink {
  readonly records: RequestRecord[] = [];
  readonly received: RequestRecord[] = [];
  write(record: RequestRecord): void {
    this.received.push(record);
    this.records.push(structuredClone(record));
  }
}

/** What a test gateway is made of: the config sections and what the shell would lend it. */
export interface GatewaySetup {
  providers: Record<string, unknown>;
  models: Record<string, unknown>;
  /** Further top-level sections (server, auth, cache, guardrails, routing, pricing, logging, mcp...); `logging` defaults to an unused local dir. */
  config?: Record<string, unknown>;
  /** The gateway's environment (provider keys, admin token); default: none. */
  env?: Record<string, string | undefined>;
  /** The in-memory sink that collects records (pass one to share it between instances); default: a new one. */
  sink?: MemorySink;
  /** Log sinks beside the memory sink (file, Firehose...). */
  sinks?: LogSink[];
  /** Keys and usage store (auth on dynalite, see helpers/keys.ts); the caller closes it. */
  store?: Store;
  now?: () => number;
  /** No socket: `fetch` calls gateway.handle() directly and `url` is a placeholder origin. */
  inProcess?: boolean;
  /** Names the configuration in parse errors. */
  label?: string;
}

export interface StartedGateway {
  /** Base URL (no trailing slash); in process a placeholder only `fetch` understands. */
  url: string;
  config: GatewayConfig;
  gateway: Gateway;
  /** Log records, in emission order (snapshots taken when the sink got them). */
  records: RequestRecord[];
  sink: MemorySink;
  recordsFor(requestId: string): RequestRecord[];
  /** Wait (bounded poll) for the record of a request. */
  waitForRecord(requestId: string, timeoutMs?: number): Promise<RequestRecord>;
  /** The one record of a response (asserts it names its request), waited for. */
  recordOf(res: Response | string | null | undefined): Promise<RequestRecord>;
  /** Wait (bounded poll) for the first record the predicate accepts. */
  awaitRecord(predicate: (r: RequestRecord) => boolean, what?: string, timeoutMs?: number): Promise<RequestRecord>;
  /** A request to the gateway: over loopback HTTP, or in process through gateway.handle(). */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

/** Parse a test configuration: the given sections over a default unused log dir. */
export function buildConfig(setup: Pick<GatewaySetup, 'providers' | 'models' | 'config' | 'label'>): GatewayConfig {
  return parseConfig({ providers: setup.providers, models: setup.models, logging: { localDir: 'data/test-logs-unused' }, ...setup.config }, setup.label ?? 'test configuration');
}

/** Config with upstream retries off (where the schema has them): each scripted upstream answer is the one the client gets. */
export function noRetries(config: Record<string, unknown> = {}): Record<string, unknown> {
  return HAS_ROUTING ? { routing: { retry: { retries: 0 } }, ...config } : config;
}

const IN_PROCESS_ORIGIN = 'http://gateway.in-process';

/** Start a gateway with the given providers and models, on a loopback port or in process, logging into memory. */
export async function startGateway(setup: GatewaySetup): Promise<StartedGateway> {
  const config = buildConfig(setup);
  const sink = setup.sink ?? new MemorySink();
  const sinks = [sink, ...(setup.sinks ?? [])];
  const env = setup.env ?? {};
  let url: string;
  let gateway: Gateway;
  let fetchFn: StartedGateway['fetch'];
  let close: () => Promise<void>;
  if (setup.inProcess) {
    gateway = new Gateway({ config, env, sinks, store: setup.store, now: setup.now, onSinkError: (err) => console.error(`log sink failed: ${(err as Error).message}`) });
    const pending = new Set<Promise<unknown>>();
    const extras = { waitUntil: (p: Promise<unknown>) => void pending.add(p.catch(() => undefined)) };
    url = IN_PROCESS_ORIGIN;
    fetchFn = (path, init) => gateway.handle(new Request(`${IN_PROCESS_ORIGIN}${path}`, init), extras);
    close = async () => {
      await Promise.allSettled([...pending]);
      await gateway.flush();
    };
  } else {
    const srv = await startLocalServer({ config, env, port: 0, host: '127.0.0.1', sinks, store: setup.store, now: setup.now });
    ({ url, gateway } = srv);
    fetchFn = (path, init) => fetch(`${srv.url}${path}`, init);
    close = () => srv.close();
  }
  await gateway.ready; // what the configuration turns on, loaded (shared/lazy.ts)
  const records = sink.records;
  const awaitRecordHere: StartedGateway['awaitRecord'] = (predicate, what, timeoutMs) => awaitRecord(records, predicate, what, timeoutMs);
  return {
    url,
    config,
    gateway,
    records,
    sink,
    recordsFor: (requestId) => records.filter((r) => r.requestId === requestId),
    waitForRecord: (requestId, timeoutMs) => awaitRecordHere((r) => r.requestId === requestId, `request ${requestId}`, timeoutMs),
    recordOf: (res) => recordIn(records, res),
    awaitRecord: awaitRecordHere,
    fetch: fetchFn,
    close,
  };
}

/** Wait (bounded poll) for the first record the predicate accepts. */
export async function awaitRecord(records: readonly RequestRecord[], predicate: (r: RequestRecord) => boolean, what = 'a matching request', timeoutMs = 5_000): Promise<RequestRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = records.find(predicate);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no log record for ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The record of a response or request id, waited for; asserts the response named its request. */
export function recordIn(records: readonly RequestRecord[], res: Response | string | null | undefined): Promise<RequestRecord> {
  // A Response (undici's from a socket, or the core's own in process: not an instanceof Response), or an id.
  const id = typeof res === 'object' && res !== null ? res.headers.get('x-request-id') : res;
  assert.ok(id, 'the response has an x-request-id');
  return awaitRecord(records, (r) => r.requestId === id, id);
}

export interface TestGatewayOptions {
  /** The mock upstream's base URL (with /v1) for the `openai` provider; absent: startTestGateway starts a mock OpenAI upstream of its own. */
  upstreamBaseUrl?: string;
  /** Base URL where nothing listens, for an unreachable provider (optional). */
  deadBaseUrl?: string;
  maxBodyBytes?: number;
  /** wordDelayMs of the `mock` provider (default 1). */
  wordDelayMs?: number;
  /** wordDelayMs of the `mock-slow` provider (default 300). */
  slowWordDelayMs?: number;
}

export interface TestGateway extends StartedGateway {
  client(): OpenAI;
  /** The mock OpenAI upstream the gateway started itself (when no upstreamBaseUrl was given); closed with it. */
  upstream?: MockOpenAI;
}

/** The standard setup: mock providers, an `openai` provider on a mock upstream, one that is off, optionally one that is down. */
export function testSetup(opts: TestGatewayOptions & { upstreamBaseUrl: string }): GatewaySetup {
  const providers: Record<string, unknown> = {
    mock: { type: 'mock', wordDelayMs: opts.wordDelayMs ?? 1 },
    'mock-slow': { type: 'mock', wordDelayMs: opts.slowWordDelayMs ?? 300 },
    openai: { type: 'openai', baseUrl: opts.upstreamBaseUrl, apiKeyEnv: UPSTREAM_KEY_ENV, firstByteTimeoutMs: 10_000, totalTimeoutMs: 30_000 },
    // Configured but off: its key variable is not in the env the gateway gets.
    'openai-nokey': { type: 'openai', baseUrl: opts.upstreamBaseUrl, apiKeyEnv: 'TEST_KEY_THAT_IS_NOT_SET' },
  };
  const models: Record<string, unknown> = {
    mock: { provider: 'mock', model: 'mock-echo-1' },
    'mock-slow': { provider: 'mock-slow', model: 'mock-echo-slow' },
    'gpt-4o-mini': { provider: 'openai', model: UPSTREAM_MODEL },
    'gpt-off': { provider: 'openai-nokey', model: 'gpt-4o' },
  };
  if (opts.deadBaseUrl) {
    providers['openai-down'] = { type: 'openai-compatible', baseUrl: opts.deadBaseUrl, firstByteTimeoutMs: 5_000 };
    models['down'] = { provider: 'openai-down', model: 'llama-down' };
  }
  return { providers, models, config: noRetries({ server: { maxBodyBytes: opts.maxBodyBytes ?? 64 * 1024 } }), env: { [UPSTREAM_KEY_ENV]: UPSTREAM_KEY } };
}

export function testConfig(opts: TestGatewayOptions & { upstreamBaseUrl: string }): GatewayConfig {
  return buildConfig(testSetup(opts));
}

const HAS_ROUTING = 'routing' in ((configSchema as unknown as { shape?: Record<string, unknown> }).shape ?? {});

/** An OpenAI SDK client for a gateway (the client key, no retries). */
export function openaiClient(baseUrl: string): OpenAI {
  return new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
}

export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const upstream = opts.upstreamBaseUrl ? undefined : await startMockOpenAI();
  const gw = await startGateway(testSetup({ ...opts, upstreamBaseUrl: opts.upstreamBaseUrl ?? upstream!.baseUrl }));
  return {
    ...gw,
    upstream,
    client: () => openaiClient(gw.url),
    async close() {
      await gw.close();
      await upstream?.close();
    },
  };
}

export interface CollectedStream {
  chunks: ChatCompletionChunk[];
  content: string;
  finishReason: string | null;
  usage: ChatCompletionChunk['usage'] | undefined;
  toolCalls: { id: string; name: string; arguments: string }[];
}

/** Read an SDK chat stream to its end, assembling text and tool calls the way a client does. */
export async function collectStream(stream: AsyncIterable<ChatCompletionChunk>): Promise<CollectedStream> {
  const out: CollectedStream = { chunks: [], content: '', finishReason: null, usage: undefined, toolCalls: [] };
  for await (const chunk of stream) addChunk(out, chunk);
  return out;
}

export function addChunk(out: CollectedStream, chunk: ChatCompletionChunk): void {
  out.chunks.push(chunk);
  if (chunk.usage) out.usage = chunk.usage;
  for (const choice of chunk.choices) {
    if (choice.delta.content) out.content += choice.delta.content;
    if (choice.finish_reason) out.finishReason = choice.finish_reason;
    for (const tc of choice.delta.tool_calls ?? []) {
      const cur = (out.toolCalls[tc.index] ??= { id: '', name: '', arguments: '' });
      if (tc.id) cur.id = tc.id;
      if (tc.function?.name) cur.name += tc.function.name;
      if (tc.function?.arguments) cur.arguments += tc.function.arguments;
    }
  }
}

export function emptyCollected(): CollectedStream {
  return { chunks: [], content: '', finishReason: null, usage: undefined, toolCalls: [] };
}

/** Throws when a client-visible error body carries a stack trace or a credential. */
export function assertCleanErrorText(text: string): void {
  const problems: string[] = [];
  if (text.includes(UPSTREAM_KEY) || text.includes(UPSTREAM_KEY.slice(0, 12))) problems.push('the upstream key');
  if (text.includes(CLIENT_KEY)) problems.push('the client key');
  if (/\n\s+at\s/.test(text) || /\bat [\w.<>]+ \(/.test(text)) problems.push('a stack trace');
  if (/node:internal|\.ts:\d+|file:\/\//.test(text)) problems.push('source locations');
  if (problems.length) throw new Error(`error body exposes ${problems.join(', ')}: ${text}`);
}
