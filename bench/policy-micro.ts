import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startLocalDynamo } from '../local/dynamodb.ts';
import type { ChatRequest } from '../shared/core/types.ts';
import { newKey } from '../shared/policy/keys.ts';
import { createPolicy } from '../shared/policy/index.ts';
import { createDynamoStore, dynamoSettings, ensureTables } from '../shared/store/dynamodb.ts';
import { RequestTrace } from '../shared/telemetry/record.ts';
import { BENCH_MODEL, BENCH_UPSTREAM_MODEL, benchConfig } from './gateway-server.ts';
import { BENCH_KEY_LIMITS } from './targets.ts';

/**
 * `npx tsx bench/policy-micro.ts`: the policy's cost per request, in process. The policy is built as
 * the benchmark's gateway builds it (bench/gateway-server.ts: its config, a dynalite store, the key
 * limits of bench/targets.ts), a key is warmed, then N requests (POLICY_N, default 20,000) go
 * through authenticate -> admitChat -> usage and trace end (settlement), one at a time, in
 * POLICY_ROUNDS rounds (default 5). Prints the CPU per request (process.cpuUsage, background store
 * writes included) of the fastest and the median round, the wall time per step, and the store
 * calls per request. Run under `node --import tsx --cpu-prof bench/policy-micro.ts`
 * for a profile. POLICY_STEPS=0 skips the per-step clocks (the total alone). No AsyncLocalStorage is entered:
 * the gateway keeps none on the request path (docs/tracing.md).
 */

const N = Number(process.env.POLICY_N ?? 20_000);
const WARM = Math.min(2_000, N);
const steps = process.env.POLICY_STEPS !== '0';

const dynamo = await startLocalDynamo();
const logDir = mkdtempSync(join(tmpdir(), 'gw-policy-micro-'));
const config = benchConfig('http://127.0.0.1:1', logDir, dynamo.endpoint);
const settings = dynamoSettings(config.store, {});
await ensureTables(settings);
const store = createDynamoStore(settings);

// Store calls, counted at the store's interface (what the hot path asks of DynamoDB).
let storeCalls = 0;
for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(store)) as (keyof typeof store)[]) {
  const fn = store[name];
  if (typeof fn !== 'function' || fn === store.constructor) continue;
  (store as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
    storeCalls++;
    return (fn as (...a: unknown[]) => unknown).apply(store, args);
  };
}

const policy = createPolicy(config, {}, store, undefined, (err) => console.error('policy error', err))!;
const k = newKey();
const at = new Date().toISOString();
await store.createKey({ id: k.id, hash: k.hash, name: 'bench', ...BENCH_KEY_LIMITS, createdAt: at, updatedAt: at, metadata: {}, version: 1 });

const request = new Request('http://gateway.local/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' } });
const chat: ChatRequest = {
  model: BENCH_MODEL,
  system: 'You are terse.',
  messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello.' }] }],
  maxTokens: 16,
  stream: false,
  includeUsage: false,
};
const targets = [{ provider: 'upstream', model: BENCH_UPSTREAM_MODEL }];
const pending = new Set<Promise<unknown>>();
const extras = {
  waitUntil(p: Promise<unknown>) {
    pending.add(p);
    p.finally(() => pending.delete(p));
  },
};
let emitted = 0;
const emit = () => void emitted++;

const time = { trace: 0, authenticate: 0, admitChat: 0, end: 0 };
async function one(i: number, clocks: boolean): Promise<void> {
  let t = clocks ? performance.now() : 0;
  const lap = (step: keyof typeof time) => {
    if (!clocks) return;
    const n = performance.now();
    time[step] += n - t;
    t = n;
  };
  const trace = new RequestTrace(`r${i}`, request, '/v1/chat/completions', emit);
  trace.record.model = BENCH_MODEL;
  trace.record.provider = 'upstream';
  trace.record.upstreamModel = BENCH_UPSTREAM_MODEL;
  lap('trace');
  await policy.authenticate(request, trace, extras);
  lap('authenticate');
  const headers = await policy.admitChat(trace, chat, 'openai-chat', targets);
  if (!headers['x-ratelimit-remaining-requests']) throw new Error('no rate-limit headers');
  lap('admitChat');
  trace.usage({ inputTokens: 20, outputTokens: 9 });
  trace.end(200);
  lap('end');
}

async function run(n: number, clocks: boolean): Promise<void> {
  for (let i = 0; i < n; i++) await one(i, clocks);
}

// Warm: the key read, the leases, the budget view, JIT.
await run(WARM, false);
await Promise.all(pending);
await policy.flush();

// ROUNDS rounds of N: the fastest round is the figure least disturbed by other work on the machine.
const ROUNDS = Number(process.env.POLICY_ROUNDS ?? 5);
const cpus: number[] = [];
const walls: number[] = [];
let calls = 0;
for (let round = 0; round < ROUNDS; round++) {
  for (const f of Object.keys(time) as (keyof typeof time)[]) time[f] = 0;
  storeCalls = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(N, steps);
  walls.push(performance.now() - t0);
  await Promise.all(pending);
  await policy.flush();
  const cpu = process.cpuUsage(cpu0);
  cpus.push(cpu.user + cpu.system);
  calls += storeCalls;
}

const us = (ms: number) => ((ms * 1000) / N).toFixed(2);
const perReq = (xs: number[]) => xs.map((x) => x / N).sort((a, b) => a - b);
const cpu = perReq(cpus);
const wall = perReq(walls.map((ms) => ms * 1000));
console.log(
  `policy micro: ${ROUNDS} x ${N} requests, cpu min ${cpu[0]!.toFixed(2)} median ${cpu[cpu.length >> 1]!.toFixed(2)} us/req (store writes included), wall min ${wall[0]!.toFixed(2)} us/req, ${(calls / (N * ROUNDS)).toFixed(4)} store calls/req`,
);
if (steps) console.log(`per step in the last round (wall, us/req): trace ${us(time.trace)}  authenticate ${us(time.authenticate)}  admitChat ${us(time.admitChat)}  end+settle ${us(time.end)}`);
if (emitted !== N * ROUNDS + WARM) throw new Error(`expected ${N * ROUNDS + WARM} records, got ${emitted}`);

store.close();
await dynamo.close();
rmSync(logDir, { recursive: true, force: true });
