import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { loadConfigFile } from '../shared/config/load.ts';
import { GatewayStack } from '../infra/stack.ts';
import { LOG_COLUMNS, LOG_PARTITION_KEYS } from '../shared/telemetry/schema.ts';
import { METRIC_DIMENSIONS, METRIC_NAMESPACE, METRICS } from '../shared/telemetry/metrics.ts';

/**
 * The FinOps view in the stack (issue #19 item 4): the Athena saved query for spend per team and
 * model over a month, and the dashboard's per-team widgets, on what the code really emits (the
 * `Team` metric dimension, the log schema's columns).
 */

const context = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')).context as Record<string, unknown>;
const app = new App({ context: { ...context, 'aws:cdk:bundling-stacks': [] } });
const stack = new GatewayStack(app, 'FinOpsTest', { config: loadConfigFile('gateway.config.yaml'), env: { account: '123456789012', region: 'us-east-1' } });
const template = Template.fromStack(stack);

describe('FinOps view in the CDK stack', () => {
  it('saves an Athena query of requests, tokens and spend per team (or key) and model for the current month, on real columns of the Glue table', () => {
    const found = template.findResources('AWS::Athena::NamedQuery', { Properties: { Name: 'Spend by team and model (this month)' } });
    const [q] = Object.values(found) as Array<{ Properties: { QueryString: string; Database: string; WorkGroup: unknown } }>;
    assert.ok(q, 'the saved query exists');
    const sql = q.Properties.QueryString;
    // Grouped per team (a key without a team under its id) and model; only settled, keyed requests.
    assert.match(sql, /GROUP BY coalesce\(team, concat\('key:', keyid\)\), model/);
    assert.match(sql, /count\(\*\) AS requests/);
    for (const col of ['inputtokens', 'outputtokens', 'costusd', 'cachereadtokens', 'keyid', 'team', 'model', 'dt']) assert.match(sql, new RegExp(`\\b${col}\\b`));
    const known = new Set([...LOG_COLUMNS.map((c) => c.name.toLowerCase()), ...LOG_PARTITION_KEYS.map((k) => k.name)]);
    for (const col of ['inputtokens', 'outputtokens', 'costusd', 'cachereadtokens', 'keyid', 'team', 'model', 'dt']) assert.ok(known.has(col), `${col} is a column or partition`);
    // One UTC month, bounded on the `dt` partition (so Athena reads only that month's objects).
    assert.match(sql, /dt >= date_format\(date_trunc\('month', current_date\), '%Y-%m-%d'\) AND dt < date_format\(date_add\('month', 1, date_trunc\('month', current_date\)\), '%Y-%m-%d'\)/);
    assert.match(sql, /costusd IS NOT NULL/);
    template.hasResourceProperties('AWS::Athena::NamedQuery', { Name: 'Spend by team and model (this month)', Database: Match.anyValue(), WorkGroup: Match.anyValue() });
  });

  it('the dashboard charts cost, tokens and requests per team per day from the Team dimension the gateway emits', () => {
    const dash = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0] as { Properties: { DashboardBody: { 'Fn::Join': [string, unknown[]] } } };
    // The body is JSON with tokens (the region) inside strings: put a placeholder there and read it.
    const body = JSON.parse(dash.Properties.DashboardBody['Fn::Join'][1].map((p) => (typeof p === 'string' ? p : 'TOKEN')).join('')) as {
      widgets: Array<{ properties: { title?: string; period?: number; metrics?: Array<Array<{ expression?: string; label?: string }>> } }>;
    };
    const widget = (title: string) => body.widgets.find((w) => w.properties.title === title)?.properties;
    const expressions = (title: string) => (widget(title)?.metrics ?? []).map((m) => m[0]!.expression);
    const search = (metric: string) => `SEARCH('{${METRIC_NAMESPACE},${METRIC_DIMENSIONS.service},${METRIC_DIMENSIONS.team}} MetricName="${metric}" ${METRIC_DIMENSIONS.service}="llm-gateway"', 'Sum', 86400)`;
    assert.deepEqual(expressions('Cost (USD) by team, per day'), [search(METRICS.costUsd)]);
    assert.deepEqual(expressions('Tokens by team, per day'), [search(METRICS.inputTokens), search(METRICS.outputTokens)]);
    assert.deepEqual(expressions('Requests by team, per day'), [search(METRICS.requests)]);
    assert.equal(widget('Cost (USD) by team, per day')!.period, 86_400);
  });
});
