import type { GatewayConfig } from '../../shared/config/schema.ts';
import { createDynamoStore, ensureTables, type DynamoSettings } from '../../shared/store/dynamodb.ts';
import type { DynamoStore } from '../../shared/store/dynamodb.ts';
import { startLocalDynamo, type LocalDynamo } from '../../local/dynamodb.ts';
import { MemorySink, startGateway, type StartedGateway } from './gateway.ts';

export const ADMIN_TOKEN = 'test-admin-token-5d1f0c2a9b';

/** A pinned, movable clock: the middle of a minute, so a rate-limit window never turns mid-test. */
export class TestClock {
  t = Math.floor(Date.now() / 60_000) * 60_000 + 30_000;
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface KeyedGatewayOptions {
  instances?: number;
  /** Extra top-level config (merged over the defaults). */
  config?: Record<string, unknown>;
  clock?: TestClock;
  /** An OpenAI-format mock upstream's base URL (with /v1), for an `openai` provider and model `gpt`. */
  upstreamBaseUrl?: string;
}

export interface KeyedGateway {
  /** The first instance's URL. */
  url: string;
  urls: string[];
  servers: StartedGateway[];
  sink: MemorySink;
  /** The one record of a response (asserts it names its request), waited for. */
  recordOf: StartedGateway['recordOf'];
  config: GatewayConfig;
  settings: DynamoSettings;
  clock: TestClock;
  /** One admin API call against the first instance. */
  admin(method: string, path: string, body?: unknown, token?: string | null): Promise<{ status: number; json: any; headers: Headers }>;
  createKey(body: Record<string, unknown>): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

/** A real DynamoDB API (dynalite, in memory) with the gateway's tables. */
export async function startDynamo(): Promise<{ dynamo: LocalDynamo; settings: DynamoSettings }> {
  const dynamo = await startLocalDynamo();
  const settings: DynamoSettings = { tables: { keys: 'test-keys', usage: 'test-usage' }, endpoint: dynamo.endpoint, region: 'local' };
  await ensureTables(settings);
  return { dynamo, settings };
}

/** One or more gateway instances (each with its own store client and caches) sharing one dynalite. */
export async function startKeyedGateway(opts: KeyedGatewayOptions = {}): Promise<KeyedGateway> {
  const { dynamo, settings } = await startDynamo();
  const clock = opts.clock ?? new TestClock();
  const providers: Record<string, unknown> = { mock: { type: 'mock', wordDelayMs: 0 } };
  const models: Record<string, unknown> = { mock: { provider: 'mock', model: 'mock-echo-1' }, 'mock-2': { provider: 'mock', model: 'mock-echo-2' } };
  const env: Record<string, string> = { GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN };
  if (opts.upstreamBaseUrl) {
    providers.openai = { type: 'openai', baseUrl: opts.upstreamBaseUrl, apiKeyEnv: 'TEST_UPSTREAM_KEY' };
    models.gpt = { provider: 'openai', model: 'gpt-4o-mini' };
    env.TEST_UPSTREAM_KEY = 'sk-upstream-test-0000000000000000';
  }
  const sink = new MemorySink();
  const stores: DynamoStore[] = [];
  const servers: StartedGateway[] = [];
  for (let i = 0; i < (opts.instances ?? 1); i++) {
    const store = createDynamoStore(settings);
    stores.push(store);
    servers.push(
      await startGateway({
        providers,
        models,
        config: {
          server: { maxBodyBytes: 64 * 1024 },
          auth: { required: true, cacheTtlSeconds: 5 },
          pricing: { 'mock-echo-1': { input: 2, output: 8 }, 'mock-echo-2': { input: 1, output: 1 } },
          ...opts.config,
        },
        env,
        sink,
        store,
        now: clock.now,
      }),
    );
  }
  const config = servers[0]!.config;
  const url = servers[0]!.url;
  const admin: KeyedGateway['admin'] = async (method, path, body, token = ADMIN_TOKEN) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
  };
  return {
    url,
    urls: servers.map((s) => s.url),
    servers,
    sink,
    recordOf: servers[0]!.recordOf,
    config,
    settings,
    clock,
    admin,
    async createKey(body) {
      const r = await admin('POST', '/admin/keys', body);
      if (r.status !== 201) throw new Error(`create key failed: ${r.status} ${JSON.stringify(r.json)}`);
      return { id: r.json.id, key: r.json.key };
    },
    async close() {
      await Promise.all(servers.map((s) => s.close()));
      for (const s of stores) s.close();
      await dynamo.close();
    },
  };
}

/** Wait (bounded poll) until `fn` returns a truthy value. */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A store whose `method` calls are counted through `onCall`; every call still goes to the real store. */
export function countCalls<S extends object>(real: S, method: keyof S & string, onCall: () => void): S {
  return new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === method && typeof v === 'function') {
        return (...args: unknown[]) => {
          onCall();
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** Dynalite with the gateway's tables and a store on it whose `method` calls are counted (close `dynamo` after). */
export async function startCountedStore(method: keyof DynamoStore & string, onCall: () => void): Promise<{ dynamo: LocalDynamo; store: DynamoStore }> {
  const { dynamo, settings } = await startDynamo();
  return { dynamo, store: countCalls(createDynamoStore(settings), method, onCall) };
}
