import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PublishCommand } from '@aws-sdk/client-sns';
import { BudgetAlerts } from '../shared/alerts/budget-alerts.ts';
import { ALERT_TOPIC_ENV, createNotifiers, snsNotifier, webhookNotifier, type BudgetAlert } from '../shared/alerts/notifiers.ts';
import { ConfigError, parseConfig } from '../shared/config/load.ts';
import { periodEnd, periodId, usageCounterId } from '../shared/policy/budgets.ts';
import { createDynamoStore, type DynamoStore } from '../shared/store/dynamodb.ts';
import { ZERO_TOTALS } from '../shared/store/types.ts';
import { eventually, startDynamo, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

/**
 * Budget alerts (issue #19 item 3): thresholds of each key and team budget (default 50, 80, 100%),
 * one notification per subject, budget, period and threshold, claimed with a conditional put in
 * DynamoDB (dynalite here) so that many requests and instances crossing a threshold at once send one.
 */

const ALERT: BudgetAlert = {
  subject: 'key:abc',
  who: 'key "ci"',
  budget: 'usdPerDay',
  thresholdPercent: 80,
  spent: 8.5,
  limit: 10,
  unit: 'usd',
  period: '2026-11-30',
  periodEnd: '2026-12-01T00:00:00.000Z',
};

/** A loopback webhook receiver keeping every JSON body it is posted. */
async function startReceiver(status = 204): Promise<{ url: string; bodies: any[]; requests: IncomingMessage[]; close(): Promise<void> }> {
  const bodies: any[] = [];
  const requests: IncomingMessage[] = [];
  const server: Server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      requests.push(req);
      bodies.push(JSON.parse(text));
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies, requests, close: () => new Promise((r) => server.close(() => r())) };
}

const minimal = (budgetAlerts?: unknown) => ({ providers: { m: { type: 'mock' } }, models: {}, ...(budgetAlerts === undefined ? {} : { budgetAlerts }) });

function configIssues(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues;
  }
  assert.fail('the configuration was accepted');
}

describe('budget alerts: configuration', () => {
  test('defaults: 50, 80 and 100%, no email, no webhook', () => {
    assert.deepEqual(parseConfig(minimal()).budgetAlerts, { thresholds: [50, 80, 100], emails: [] });
    const set = parseConfig(minimal({ thresholds: [75, 90], emails: ['finops@example.com'], webhookUrl: 'https://hooks.example.com/budget' })).budgetAlerts;
    assert.deepEqual(set, { thresholds: [75, 90], emails: ['finops@example.com'], webhookUrl: 'https://hooks.example.com/budget' });
  });

  test('refuses thresholds out of (0, 100] or not increasing, a bad email and a non-http webhook, naming the field', () => {
    assert.ok(configIssues(minimal({ thresholds: [80, 50] })).some((i) => i.startsWith('budgetAlerts.thresholds: ') && /increasing/.test(i)));
    assert.ok(configIssues(minimal({ thresholds: [0] })).some((i) => i.startsWith('budgetAlerts.thresholds.0: ')));
    assert.ok(configIssues(minimal({ thresholds: [50, 150] })).some((i) => i.startsWith('budgetAlerts.thresholds.1: ')));
    assert.ok(configIssues(minimal({ emails: ['not-an-address'] })).some((i) => i.startsWith('budgetAlerts.emails.0: ')));
    assert.ok(configIssues(minimal({ webhookUrl: 'ftp://example.com/x' })).some((i) => i.startsWith('budgetAlerts.webhookUrl: ')));
    assert.ok(configIssues(minimal({ thresholds: [50], sms: '+1' })).some((i) => i.startsWith('budgetAlerts')));
  });

  test('notifiers: the log line always, the webhook when configured, SNS when the stack named a topic', () => {
    const cfg = parseConfig(minimal({ webhookUrl: 'http://127.0.0.1:9/x' })).budgetAlerts;
    assert.equal(createNotifiers(parseConfig(minimal()).budgetAlerts, {}, { warn() {}, error() {} }).length, 1);
    assert.equal(createNotifiers(cfg, {}, { warn() {}, error() {} }).length, 2);
    assert.equal(createNotifiers(cfg, { [ALERT_TOPIC_ENV]: 'arn:aws:sns:eu-west-1:123456789012:alerts' }, { warn() {}, error() {} }).length, 3);
  });
});

describe('budget alerts: notifiers', () => {
  test('SNS: one PublishCommand to the topic, with who, which budget, spent, limit and period end', async () => {
    const sent: unknown[] = [];
    const topic = 'arn:aws:sns:eu-west-1:123456789012:llm-gateway-budget-alerts';
    await snsNotifier(topic, { send: async (c) => void sent.push(c) }).notify(ALERT);
    assert.equal(sent.length, 1);
    const cmd = sent[0];
    assert.ok(cmd instanceof PublishCommand, 'the command is the SDK PublishCommand');
    assert.equal(cmd.input.TopicArn, topic);
    assert.equal(cmd.input.Subject, 'Budget alert: key "ci" at 80% of usdPerDay');
    assert.ok(cmd.input.Subject!.length <= 100);
    assert.match(cmd.input.Message!, /^Budget alert: key "ci" has spent \$8\.50 of its usdPerDay budget of \$10\.00 \(80% threshold crossed; the period ends 2026-12-01T00:00:00\.000Z\)/);
    assert.deepEqual(JSON.parse(cmd.input.Message!.slice(cmd.input.Message!.indexOf('{'))), ALERT);
    assert.equal(cmd.input.MessageAttributes?.subject?.StringValue, 'key:abc');
  });

  test('SNS subject stays within 100 characters for a long name', async () => {
    const sent: PublishCommand[] = [];
    await snsNotifier('arn:aws:sns:eu-west-1:123456789012:t', { send: async (c) => void sent.push(c as PublishCommand) }).notify({ ...ALERT, who: `team "${'x'.repeat(200)}"` });
    assert.equal(sent[0]!.input.Subject!.length, 100);
  });

  test('webhook: a JSON POST to a loopback receiver; a non-2xx answer is an error', async () => {
    const ok = await startReceiver();
    const failing = await startReceiver(500);
    try {
      await webhookNotifier(ok.url).notify(ALERT);
      assert.equal(ok.requests[0]!.method, 'POST');
      assert.equal(ok.requests[0]!.headers['content-type'], 'application/json');
      assert.deepEqual(ok.bodies[0], { type: 'budget_alert', summary: ok.bodies[0].summary, ...ALERT });
      assert.match(ok.bodies[0].summary, /key "ci" has spent \$8\.50/);
      await assert.rejects(webhookNotifier(failing.url).notify(ALERT), /answered 500/);
    } finally {
      await ok.close();
      await failing.close();
    }
  });
});

describe('budget alerts: exactly once across instances (dynalite)', () => {
  let dynamo: Awaited<ReturnType<typeof startDynamo>>;
  const stores: DynamoStore[] = [];
  before(async () => {
    dynamo = await startDynamo();
  });
  after(async () => {
    for (const s of stores) s.close();
    await dynamo.dynamo.close();
  });

  test('five instances seeing the same totals 100 times at once send one alert per threshold reached', async () => {
    const now = Date.parse('2026-11-30T12:00:00Z');
    const sent: BudgetAlert[] = [];
    const instances = Array.from({ length: 5 }, () => {
      const store = createDynamoStore(dynamo.settings);
      stores.push(store);
      const alerts = new BudgetAlerts(store, [50, 80, 100], [{ notify: async (a) => void sent.push(a) }], (err) => assert.fail(String(err)));
      alerts.watch([{ subject: 'team:platform', label: 'team "platform"', budget: { usdPerDay: 10, tokensPerMonth: 1_000_000 } }], now);
      return alerts;
    });
    const dayCounter = usageCounterId('team:platform', 'd', now);
    // $8.50 spent: 50% and 80% of the daily budget reached, 100% not.
    const totals = { ...ZERO_TOTALS, requests: 100, microUsd: 8_500_000, tokens: 600_000 };
    await Promise.all(Array.from({ length: 100 }, (_, i) => instances[i % 5]!.observe(dayCounter, totals)));
    assert.deepEqual(sent.map((a) => a.thresholdPercent).sort(), [50, 80]);
    const eighty = sent.find((a) => a.thresholdPercent === 80)!;
    assert.deepEqual(eighty, { subject: 'team:platform', who: 'team "platform"', budget: 'usdPerDay', thresholdPercent: 80, spent: 8.5, limit: 10, unit: 'usd', period: periodId('d', now), periodEnd: new Date(periodEnd('d', now)).toISOString() });

    // The month counter crosses 50% of the token budget: its own alert; the day's are not sent again.
    const monthCounter = usageCounterId('team:platform', 'm', now);
    await Promise.all(instances.map((a) => a.observe(monthCounter, { ...totals, tokens: 600_000 })));
    await Promise.all(instances.map((a) => a.observe(dayCounter, { ...totals, microUsd: 9_000_000 })));
    assert.deepEqual(sent.map((a) => `${a.budget} ${a.thresholdPercent}`).sort(), ['tokensPerMonth 50', 'usdPerDay 50', 'usdPerDay 80']);
    // The claims are DynamoDB items that expire (TTL) after the period.
    const claim = await stores[0]!.claim(`alert:team:platform:usdPerDay:${periodId('d', now)}:80`, 0);
    assert.equal(claim, false, 'the 80% alert is claimed in the table');
  });
});

describe('budget alerts through the real gateway: 100 concurrent requests crossing 80%', () => {
  let g: KeyedGateway;
  let hook: Awaited<ReturnType<typeof startReceiver>>;
  before(async () => {
    hook = await startReceiver();
    // mock-echo-1: 10 output tokens at $1700 per million = $0.017 a request (see budget-concurrency).
    g = await startKeyedGateway({
      instances: 2,
      config: { pricing: { 'mock-echo-1': { input: 0, output: 1700 } }, limits: { budgetRefreshSeconds: 0 }, budgetAlerts: { webhookUrl: hook.url } },
    });
  });
  after(async () => {
    await g.close();
    await hook.close();
  });

  test('a $2 daily budget, 100 requests at once on two instances ($1.70, 85%): one 50% and one 80% alert, none at 100%', async () => {
    const { id, key } = await g.createKey({ name: 'alerted', budget: { usdPerDay: 2 } });
    const statuses = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const res = await fetch(`${g.urls[i % 2]}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'mock', max_tokens: 10, messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten eleven' }] }),
        });
        await res.text();
        return res.status;
      }),
    );
    assert.deepEqual([...new Set(statuses)], [200]);
    await eventually(async () => (await g.admin('GET', `/admin/keys/${id}/usage`)).json.day.requests === 100, 'settlement');
    // Every usage write (and the alert checks it carries) has landed once both instances have flushed.
    await Promise.all(g.servers.map((s) => s.gateway.policy!.flush()));
    const mine = () => hook.bodies.filter((b) => b.subject === `key:${id}`);
    await eventually(async () => mine().length >= 2, 'the alerts');
    assert.deepEqual(mine().map((b) => b.thresholdPercent).sort(), [50, 80]);
    const eighty = mine().find((b) => b.thresholdPercent === 80);
    assert.equal(eighty.who, 'key "alerted"');
    assert.equal(eighty.budget, 'usdPerDay');
    assert.equal(eighty.limit, 2);
    assert.ok(eighty.spent >= 1.6 && eighty.spent <= 1.7 + 1e-9, `spent ${eighty.spent}`);
    assert.equal(eighty.periodEnd, new Date(periodEnd('d', g.clock.now())).toISOString());

    // More spend in the same period sends no repeat: 10 more requests reach $1.87 (93.5%).
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${g.urls[i % 2]}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mock', max_tokens: 10, messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten eleven' }] }),
      });
      assert.equal(res.status, 200);
      await res.text();
    }
    await eventually(async () => (await g.admin('GET', `/admin/keys/${id}/usage`)).json.day.requests === 110, 'settlement');
    await Promise.all(g.servers.map((s) => s.gateway.policy!.flush()));
    assert.deepEqual(mine().map((b) => b.thresholdPercent).sort(), [50, 80]);
  });
});
