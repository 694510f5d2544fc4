import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { periodId } from '../shared/policy/budgets.ts';
import { UsageReport } from '../shared/policy/usage-report.ts';
import { DynamoStore, daysOf, dynamoClient } from '../shared/store/dynamodb.ts';
import type { ReportRow, Store } from '../shared/store/types.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { ADMIN_TOKEN, eventually, startDynamo, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

/**
 * The FinOps view (issue #19 item 4): per team and model usage counters written with the batched
 * settlement, `GET /admin/report`, `npm run keys -- report` and the dashboard's budget table, checked
 * against the sums of the request log records, through the local server, the official OpenAI SDK
 * and a real DynamoDB API (dynalite).
 */

const run = promisify(execFile);
const hello = [{ role: 'user' as const, content: 'Hello gateway, how much does this cost?' }];

interface Sums {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  microUsd: number;
}

/** The log records' sums per `team|model` (a key without a team: `key:<id>|model`): the ground truth. */
function logSums(records: RequestRecord[]): Map<string, Sums> {
  const out = new Map<string, Sums>();
  for (const r of records) {
    if (!r.keyId || r.costUsd === undefined) continue;
    const id = `${r.team ?? `key:${r.keyId}`}|${r.model}`;
    const s = out.get(id) ?? { requests: 0, inputTokens: 0, outputTokens: 0, microUsd: 0 };
    s.requests++;
    s.inputTokens += r.inputTokens ?? 0;
    s.outputTokens += r.outputTokens ?? 0;
    s.microUsd += Math.round(r.costUsd * 1e6);
    out.set(id, s);
  }
  return out;
}

type ApiLine = { team: string | null; keyId: string | null; model: string; requests: number; inputTokens: number; outputTokens: number; tokens: number; costUsd: number };

function apiSums(rows: ApiLine[]): Map<string, Sums> {
  return new Map(rows.map((r) => [`${r.team ?? `key:${r.keyId}`}|${r.model}`, { requests: r.requests, inputTokens: r.inputTokens, outputTokens: r.outputTokens, microUsd: Math.round(r.costUsd * 1e6) }]));
}

describe('usage report: the store (dynalite) and the batched writer', () => {
  let dynamo: LocalDynamo;
  let store: Store;
  let writes = 0;
  before(async () => {
    const started = await startDynamo();
    dynamo = started.dynamo;
    // The real store, counting its report writes.
    store = new (class extends DynamoStore {
      override addReportUsage(...a: Parameters<Store['addReportUsage']>): Promise<void> {
        writes++;
        return super.addReportUsage(...a);
      }
    })({ client: dynamoClient(started.settings), tables: started.settings.tables });
  });
  after(async () => {
    store.close();
    await dynamo.close();
  });

  const row = (subject: string, model: string, n: number): ReportRow => ({ subject, model, requests: n, inputTokens: 10 * n, outputTokens: 5 * n, cacheReadTokens: n, cacheWriteTokens: 0, microUsd: 7 * n });

  test('a day reads back its rows; a month sums its days; other periods are empty; many rows and odd model names survive', async () => {
    const exp = Math.floor(Date.now() / 1000) + 86_400;
    // 100 rows in one call: more than one update's worth (the expression limit), all kept.
    const many = Array.from({ length: 100 }, (_, i) => row(`team:t${String(i).padStart(3, '0')}`, 'm', 1));
    await store.addReportUsage('2026-10-03', [row('team:a', 'gpt|4o', 2), row('key:abc', 'claude', 1), ...many], exp);
    await store.addReportUsage('2026-10-03', [row('team:a', 'gpt|4o', 3)], exp);
    await store.addReportUsage('2026-10-31', [row('team:a', 'gpt|4o', 4)], exp);
    await store.addReportUsage('2026-11-01', [row('team:a', 'gpt|4o', 100)], exp);

    const day = await store.usageReport('2026-10-03');
    assert.equal(day.length, 102);
    assert.deepEqual(day.find((r) => r.subject === 'team:a'), row('team:a', 'gpt|4o', 5));
    assert.deepEqual(day.find((r) => r.subject === 'key:abc'), row('key:abc', 'claude', 1));
    assert.deepEqual(day.find((r) => r.subject === 'team:t099'), row('team:t099', 'm', 1));
    const month = await store.usageReport('2026-10');
    assert.deepEqual(month.find((r) => r.subject === 'team:a'), row('team:a', 'gpt|4o', 9));
    assert.deepEqual(await store.usageReport('2026-09'), []);
    assert.deepEqual(daysOf('2028-02').at(-1), '2028-02-29');
    assert.equal(daysOf('2026-11').length, 30);
  });

  test('settlements are summed in memory: 300 requests over two teams, two models and a key make one store call per flush', async () => {
    writes = 0;
    const report = new UsageReport(store, 1000);
    const now = Date.parse('2026-08-15T10:00:00Z');
    const who = [{ team: 'red', keyId: 'k1' }, { team: 'blue', keyId: 'k2' }, { keyId: 'k3' }];
    for (let i = 0; i < 300; i++) report.add({ ...who[i % 3]!, model: i % 2 ? 'big' : 'small' }, { inputTokens: 3, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0 }, 11, now);
    assert.equal(writes, 0, 'nothing is written per request');
    await report.flush();
    assert.equal(writes, 1, 'one write for the day, whatever the teams and models');
    const rows = await store.usageReport('2026-08');
    assert.equal(rows.length, 6);
    assert.equal(rows.reduce((a, r) => a + r.requests, 0), 300);
    assert.deepEqual(rows.find((r) => r.subject === 'key:k3' && r.model === 'big'), { subject: 'key:k3', model: 'big', requests: 50, inputTokens: 150, outputTokens: 100, cacheReadTokens: 0, cacheWriteTokens: 0, microUsd: 550 });
    await report.flush();
    assert.equal(writes, 1, 'an empty flush writes nothing');
  });

  test('a failed write is reported and kept for the next flush (usage is not dropped)', async () => {
    let fail = true;
    const errors: unknown[] = [];
    const flaky = new Proxy(store, {
      get: (t, p) => (p === 'addReportUsage' ? (...a: Parameters<Store['addReportUsage']>) => (fail ? Promise.reject(new Error('store down')) : t.addReportUsage(...a)) : Reflect.get(t, p)),
    });
    const report = new UsageReport(flaky, 1000, (e) => errors.push(e));
    const now = Date.parse('2026-07-01T00:00:00Z');
    report.add({ team: 'retry', model: 'm' }, { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, 2, now);
    await report.flush();
    assert.equal(errors.length, 1);
    fail = false;
    report.add({ team: 'retry', model: 'm' }, { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, 2, now);
    await report.flush();
    assert.deepEqual((await store.usageReport('2026-07-01')).map((r) => [r.subject, r.requests, r.microUsd]), [['team:retry', 2, 4]]);
  });
});

describe('usage report end to end: /admin/report, npm run keys -- report and the dashboard add up to the logs', () => {
  let g: KeyedGateway;
  const keys: Record<string, { id: string; key: string }> = {};
  before(async () => {
    g = await startKeyedGateway();
    assert.equal((await g.admin('PUT', '/admin/teams/alpha', { budget: { usdPerDay: 2, usdPerMonth: 40, tokensPerDay: 1_000_000 } })).status, 201);
    assert.equal((await g.admin('PUT', '/admin/teams/idle', { budget: { usdPerMonth: 5 } })).status, 201);
    keys.a1 = await g.createKey({ name: 'alpha-1', team: 'alpha' });
    keys.a2 = await g.createKey({ name: 'alpha-2', team: 'alpha' });
    keys.b = await g.createKey({ name: 'beta-1', team: 'beta' });
    keys.solo = await g.createKey({ name: 'solo' });
    // Traffic: two teams (alpha over two keys), a key without a team, two models, streamed and not.
    const plan: [string, string, number, boolean][] = [
      ['a1', 'mock', 3, false],
      ['a2', 'mock', 2, true],
      ['a1', 'mock-2', 2, false],
      ['b', 'mock', 1, false],
      ['b', 'mock-2', 4, true],
      ['solo', 'mock-2', 2, false],
    ];
    let sent = 0;
    for (const [who, model, n, stream] of plan) {
      const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: keys[who]!.key, maxRetries: 0, timeout: 20_000 });
      for (let i = 0; i < n; i++, sent++) {
        const messages = [{ role: 'user' as const, content: `${hello[0]!.content} ${'word '.repeat(i + sent)}` }];
        if (stream) {
          const s = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
          for await (const _ of s);
        } else await client.chat.completions.create({ model, messages, max_tokens: 50 });
      }
    }
    // A refused request (model not configured) is not spend: its record has no cost.
    await assert.rejects(new OpenAI({ baseURL: `${g.url}/v1`, apiKey: keys.b!.key, maxRetries: 0 }).chat.completions.create({ model: 'nope', messages: hello }));
    await eventually(async () => g.sink.records.filter((r) => r.keyId && r.costUsd !== undefined).length === sent, 'all settled records');
  });
  after(() => g.close());

  test('GET /admin/report (month and day) equals the log records summed per team and model', async () => {
    const truth = logSums(g.sink.records);
    assert.equal(truth.size, 5, [...truth.keys()].join(', '));
    const month = periodId('m', g.clock.now());
    const m = await g.admin('GET', `/admin/report?period=${month}`);
    assert.equal(m.status, 200, JSON.stringify(m.json));
    assert.equal(m.json.kind, 'month');
    assert.equal(m.json.period, month);
    assert.deepEqual(apiSums(m.json.rows), truth);
    // Default: this month.
    assert.deepEqual((await g.admin('GET', '/admin/report')).json, m.json);
    const d = await g.admin('GET', `/admin/report?day=${periodId('d', g.clock.now())}`);
    assert.deepEqual(apiSums(d.json.rows), truth);
    const all = [...truth.values()];
    assert.equal(m.json.totals.requests, all.reduce((a, s) => a + s.requests, 0));
    assert.equal(Math.round(m.json.totals.costUsd * 1e6), all.reduce((a, s) => a + s.microUsd, 0));
    assert.equal(m.json.totals.tokens, all.reduce((a, s) => a + s.inputTokens + s.outputTokens, 0));
    assert.ok(m.json.totals.costUsd > 0);

    // Per team, against the team's budget for the period; a budgeted team with no spend is listed.
    const alpha = m.json.byTeam.find((t: { team: string }) => t.team === 'alpha');
    assert.equal(alpha.requests, 7);
    assert.equal(Math.round(alpha.costUsd * 1e6), truth.get('alpha|mock')!.microUsd + truth.get('alpha|mock-2')!.microUsd);
    assert.equal(alpha.budgetUsd, 40);
    assert.equal(d.json.byTeam.find((t: { team: string }) => t.team === 'alpha').budgetUsd, 2);
    assert.equal(d.json.byTeam.find((t: { team: string }) => t.team === 'alpha').budgetTokens, 1_000_000);
    assert.deepEqual(m.json.byTeam.find((t: { team: string }) => t.team === 'idle'), { team: 'idle', keyId: null, requests: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, tokens: 0, costUsd: 0, budgetUsd: 5, budgetTokens: null });
    assert.equal(m.json.byTeam.find((t: { keyId: string }) => t.keyId === keys.solo!.id).budgetUsd, null);
    // The team's budget counter (what admission checks) agrees with the report.
    const usage = (await g.admin('GET', '/admin/teams/alpha/usage')).json;
    assert.equal(usage.month.costUsd, alpha.costUsd);

    // Other months are empty; bad periods are refused in the admin API's JSON error format.
    assert.deepEqual((await g.admin('GET', '/admin/report?period=2001-01')).json.rows, []);
    for (const q of ['period=2026-13', 'day=2026-02-30', 'period=2026-11&day=2026-11-01', 'period=nov']) {
      const bad = await g.admin('GET', `/admin/report?${q}`);
      assert.equal(bad.status, 400, q);
      assert.equal(bad.json.error.code, 'invalid_value', q);
    }
    assert.equal((await g.admin('GET', '/admin/report', undefined, null)).status, 401);
    assert.equal((await g.admin('GET', '/admin/report', undefined, 'wrong-token')).status, 401);
    assert.equal((await g.admin('POST', '/admin/report', {})).status, 405);
  });

  test('npm run keys -- report prints the same table, with totals; --json prints the API answer', async () => {
    const env = { ...process.env, GATEWAY_URL: g.url, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN };
    const month = periodId('m', g.clock.now());
    const { stdout } = await run('npm', ['run', '--silent', 'keys', '--', 'report', '--month', month], { env, timeout: 60_000 });
    const lines = stdout.trim().split('\n');
    assert.equal(lines[0], `Usage report for the month ${month} (UTC)`);
    assert.match(lines[1]!, /^TEAM\s+MODEL\s+REQUESTS\s+INPUT TOKENS\s+OUTPUT TOKENS\s+SPEND USD$/);
    const parsed = new Map<string, Sums>();
    for (const l of lines.slice(2, -1)) {
      const [team, model, req, inp, out, usd] = l.trim().split(/\s+/);
      parsed.set(`${team}|${model}`, { requests: Number(req), inputTokens: Number(inp), outputTokens: Number(out), microUsd: Math.round(Number(usd) * 1e6) });
    }
    assert.deepEqual(parsed, logSums(g.sink.records));
    const [label, req, inp, out, usd] = lines.at(-1)!.trim().split(/\s+/);
    const all = [...parsed.values()];
    assert.equal(label, 'TOTAL');
    assert.equal(Number(req), all.reduce((a, s) => a + s.requests, 0));
    assert.equal(Number(inp), all.reduce((a, s) => a + s.inputTokens, 0));
    assert.equal(Number(out), all.reduce((a, s) => a + s.outputTokens, 0));
    assert.equal(Math.round(Number(usd) * 1e6), all.reduce((a, s) => a + s.microUsd, 0));

    const day = periodId('d', g.clock.now());
    const json = await run(process.execPath, ['--import', 'tsx', 'scripts/keys.ts', 'report', '--day', day, '--json'], { env, timeout: 60_000 });
    assert.deepEqual(JSON.parse(json.stdout), (await g.admin('GET', `/admin/report?day=${day}`)).json);
    const none = await run(process.execPath, ['--import', 'tsx', 'scripts/keys.ts', 'report', '--month', '2001-01'], { env, timeout: 60_000 });
    assert.match(none.stdout, /\(no usage\)\nTOTAL\s+0\s+0\s+0\s+0\.000000/);
    await assert.rejects(run(process.execPath, ['--import', 'tsx', 'scripts/keys.ts', 'report', '--month', '2026-11', '--day', '2026-11-01'], { env, timeout: 60_000 }), (e: { code?: number; stderr?: string }) => e.code === 1 && /--month or --day/.test(e.stderr ?? ''));
  });

  test('the local dashboard has a spend-against-budget table fed by /admin/report for today and this month', async () => {
    const res = await fetch(`${g.url}/admin/dashboard`);
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, /Spend per team against budget/);
    assert.match(html, /fetch\('report\?day='/);
    assert.match(html, /fetch\('report\?period='/);
    // What the page reads, with the same token (relative to /admin/dashboard).
    const day = periodId('d', g.clock.now());
    const r = await fetch(new URL(`report?day=${day}`, `${g.url}/admin/dashboard`), { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { byTeam: { team: string | null; costUsd: number; budgetUsd: number | null }[] };
    assert.ok(body.byTeam.some((t) => t.team === 'alpha' && t.budgetUsd === 2 && t.costUsd > 0));
  });
});
