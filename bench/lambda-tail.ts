import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { BENCH_KEY_LIMITS } from './targets.ts';
import { percentile, round3 } from './load.ts';

/**
 * Lambda billed time after the response body ends: the real Lambda entry (functions/gateway.ts)
 * under a stand-in of the streaming runtime (the `awslambda` global as test/helpers/awslambda.ts
 * installs it), invoked one request at a time. Per invocation it times when the response stream
 * finished (the client has every byte) and when the handler's promise settled (Lambda bills until
 * then): the difference is the work done after the body (usage settlement, the log export to
 * Firehose, the X-Ray log-export span). Keys, rate limits and budgets on, in the benchmark's
 * dynalite (BENCH_DYNAMO_ENDPOINT, its own process); upstream: the benchmark's mock
 * (BENCH_UPSTREAM); Firehose: a loopback stand-in in this process; X-Ray on (UDP to a local socket).
 *
 * Run by bench/run.ts as a child (`node --import tsx bench/lambda-tail.ts`); writes its result as
 * JSON to BENCH_LAMBDA_OUT.
 */

export interface LambdaTailResult {
  mode: 'non-streaming' | 'streaming';
  invocations: number;
  /** ms from the response stream's end to the handler's promise settling (billed, the client already done). */
  tailP50Ms: number;
  tailP99Ms: number;
  /** ms from invocation to the response stream's end. */
  responseP50Ms: number;
  /** tail / whole invocation, at the medians. */
  tailShare: number;
  firehoseCalls: number;
}

type Invoke = (event: APIGatewayProxyEvent, stream: Writable, context: unknown) => Promise<void>;

async function main(): Promise<void> {
  const upstream = process.env.BENCH_UPSTREAM!;
  const endpoint = process.env.BENCH_DYNAMO_ENDPOINT!;
  const n = Number(process.env.BENCH_LAMBDA_INVOCATIONS ?? 60);
  const out = process.env.BENCH_LAMBDA_OUT!;

  // The Firehose stand-in and the X-Ray "daemon" (which only receives).
  const { startMockFirehose } = await import('../test/helpers/mock-firehose.ts');
  const firehose = await startMockFirehose();
  const daemon = createSocket('udp4').on('message', () => {});
  await new Promise<void>((r) => daemon.bind(0, '127.0.0.1', r));

  const { createDynamoStore, ensureTables } = await import('../shared/store/dynamodb.ts');
  const settings = { tables: { keys: 'lambda-bench-keys', usage: 'lambda-bench-usage' }, endpoint, region: 'local' };
  await ensureTables(settings);
  const store = createDynamoStore(settings);
  const { newKey } = await import('../shared/policy/keys.ts');
  const k = newKey();
  const now = new Date().toISOString();
  await store.createKey({ id: k.id, hash: k.hash, name: 'lambda-bench', team: 'bench', ...BENCH_KEY_LIMITS, createdAt: now, updatedAt: now, metadata: {}, version: 1 });

  const { BENCH_MODEL, BENCH_UPSTREAM_MODEL } = await import('./gateway-server.ts');
  Object.assign(process.env, {
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
    AWS_LAMBDA_FUNCTION_NAME: 'llm-gateway-bench',
    AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${(daemon.address() as AddressInfo).port}`,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDLAMBDABENCH',
    AWS_SECRET_ACCESS_KEY: 'lambda-bench-secret',
    POWERTOOLS_SERVICE_NAME: 'llm-gateway-bench',
    POWERTOOLS_LOG_LEVEL: 'WARN',
    POWERTOOLS_METRICS_DISABLED: 'true',
    LOG_STREAM_NAME: 'bench-request-logs',
    AWS_ENDPOINT_URL_FIREHOSE: firehose.endpoint,
    GATEWAY_KEYS_TABLE: settings.tables.keys,
    GATEWAY_USAGE_TABLE: settings.tables.usage,
    DYNAMODB_ENDPOINT: endpoint,
    GATEWAY_CONFIG_JSON: JSON.stringify({
      providers: { upstream: { type: 'openai-compatible', baseUrl: `${upstream}/v1` } },
      models: { [BENCH_MODEL]: { provider: 'upstream', model: BENCH_UPSTREAM_MODEL } },
      pricing: { [BENCH_UPSTREAM_MODEL]: { input: 0.15, output: 0.6 } },
      auth: { required: true },
    }),
  });
  const { installAwsLambdaGlobal } = await import('../test/helpers/awslambda.ts');
  installAwsLambdaGlobal();
  const { handler } = (await import('../functions/gateway.ts')) as unknown as { handler: Invoke };

  const base: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('../test/fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));
  const event = (stream: boolean): APIGatewayProxyEvent => {
    const ev = structuredClone(base);
    const headers: Record<string, string> = { ...(ev.headers as Record<string, string>), Authorization: `Bearer ${k.key}` };
    ev.headers = headers;
    ev.multiValueHeaders = Object.fromEntries(Object.entries(headers).map(([h, v]) => [h, [v]]));
    ev.body = JSON.stringify({ model: BENCH_MODEL, stream, messages: [{ role: 'user', content: 'Say hello.' }] });
    return ev;
  };

  const results: LambdaTailResult[] = [];
  for (const mode of ['non-streaming', 'streaming'] as const) {
    const tails: number[] = [];
    const responses: number[] = [];
    const calls0 = firehose.calls.length;
    for (let i = -5; i < n; i++) {
      let finished = 0;
      const sink = new Writable({ write: (_c, _e, cb) => cb() });
      Object.assign(sink, { setContentType() {} });
      sink.on('finish', () => (finished = performance.now()));
      process.env._X_AMZN_TRACE_ID = `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=1`;
      const t0 = performance.now();
      await handler(event(mode === 'streaming'), sink, { awsRequestId: `bench-${mode}-${i}`, functionName: 'llm-gateway-bench', getRemainingTimeInMillis: () => 60_000 });
      const t1 = performance.now();
      if (!finished) throw new Error('the response stream did not finish');
      if (i < 0) continue; // warm-up
      tails.push(t1 - finished);
      responses.push(finished - t0);
    }
    const sorted = (a: number[]) => Float64Array.from(a).sort();
    const tail = sorted(tails);
    const resp = sorted(responses);
    const tailP50 = percentile(tail, 50);
    const respP50 = percentile(resp, 50);
    results.push({
      mode,
      invocations: n,
      tailP50Ms: round3(tailP50),
      tailP99Ms: round3(percentile(tail, 99)),
      responseP50Ms: round3(respP50),
      tailShare: round3(tailP50 / (tailP50 + respP50)),
      firehoseCalls: firehose.calls.length - calls0,
    });
  }
  writeFileSync(out, JSON.stringify(results));
  daemon.close();
  await firehose.close();
  store.close();
  process.exit(0);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
