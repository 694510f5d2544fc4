import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { parseConfig } from '../../shared/config/load.ts';
import { configSchema, type GatewayConfig } from '../../shared/config/schema.ts';
import type { Gateway } from '../../shared/gateway.ts';
import type { LogSink, RequestRecord } from '../../shared/telemetry/record.ts';
import { startLocalServer } from '../../local/server.ts';

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

export interface TestGatewayOptions {
  /** The mock upstream's base URL (with /v1) for the `openai` provider. */
  upstreamBaseUrl: string;
  /** Base URL where nothing listens, for an unreachable provider (optional). */
  deadBaseUrl?: string;
  maxBodyBytes?: number;
  /** wordDelayMs of the `mock` provider (default 1). */
  wordDelayMs?: number;
  /** wordDelayMs of the `mock-slow` provider (default 300). */
  slowWordDelayMs?: number;
}

export interface TestGateway {
  url: string;
  config: GatewayConfig;
  gateway: Gateway;
  /** Log records, in emission order (snapshots taken when the sink got them). */
  records: RequestRecord[];
  sink: MemorySink;
  recordsFor(requestId: string): RequestRecord[];
  /** Wait (bounded poll) for the record of a request. */
  waitForRecord(requestId: string, timeoutMs?: number): Promise<RequestRecord>;
  client(): OpenAI;
  close(): Promise<void>;
}

export function testConfig(opts: TestGatewayOptions): GatewayConfig {
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
  const raw: Record<string, unknown> = { server: { maxBodyBytes: opts.maxBodyBytes ?? 64 * 1024 }, providers, models, logging: { localDir: 'data/test-logs-unused' } };
  // Where the configuration has upstream retries, turn them off: each scripted upstream answer
  // is then the one the client gets, and no test waits on a backoff.
  if (HAS_ROUTING) raw.routing = { retry: { retries: 0 } };
  return parseConfig(raw, 'test configuration');
}

const HAS_ROUTING = 'routing' in ((configSchema as unknown as { shape?: Record<string, unknown> }).shape ?? {});

export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const config = testConfig(opts);
  const sink = new MemorySink();
  const srv = await startLocalServer({ config, env: { [UPSTREAM_KEY_ENV]: UPSTREAM_KEY }, port: 0, host: '127.0.0.1', sinks: [sink] });
  const recordsFor = (requestId: string) => sink.records.filter((r) => r.requestId === requestId);
  return {
    url: srv.url,
    config,
    gateway: srv.gateway,
    records: sink.records,
    sink,
    recordsFor,
    async waitForRecord(requestId, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = recordsFor(requestId)[0];
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no log record for request ${requestId} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    client: () => new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 }),
    close: () => srv.close(),
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
