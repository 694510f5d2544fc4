import type { GatewayLogger } from '../telemetry/logger.ts';
import type { BudgetAlertsConfig } from './schema.ts';

/** Environment variable naming the SNS topic budget alerts go to (set by infra/constructs/alerts.ts). */
export const ALERT_TOPIC_ENV = 'GATEWAY_ALERT_TOPIC_ARN';

/** One crossed threshold of one budget: what every notifier sends. */
export interface BudgetAlert {
  /** `key:<id>` or `team:<name>`. */
  subject: string;
  /** Who, for people: `key "name"` or `team "name"`. */
  who: string;
  budget: 'usdPerDay' | 'usdPerMonth' | 'tokensPerDay' | 'tokensPerMonth';
  /** The threshold crossed, in percent of the limit. */
  thresholdPercent: number;
  /** Spent in the period so far (USD or tokens, as the budget counts). */
  spent: number;
  limit: number;
  unit: 'usd' | 'tokens';
  /** The period (`YYYY-MM-DD` or `YYYY-MM`, UTC) and when it ends (ISO). */
  period: string;
  periodEnd: string;
}

export interface Notifier {
  notify(alert: BudgetAlert): Promise<void>;
}

/** One line for people (log message, SNS subject, email). */
function alertSummary(a: BudgetAlert): string {
  const amount = (n: number) => (a.unit === 'usd' ? `$${n.toFixed(2)}` : `${n} tokens`);
  return `Budget alert: ${a.who} has spent ${amount(a.spent)} of its ${a.budget} budget of ${amount(a.limit)} (${a.thresholdPercent}% threshold crossed; the period ends ${a.periodEnd})`;
}

function logNotifier(log: GatewayLogger): Notifier {
  return { notify: async (a) => log.warn(alertSummary(a), { event: 'budget_alert', ...a }) };
}

/** POSTs each alert as JSON (`{"type":"budget_alert",...}`); a non-2xx answer is an error. */
export function webhookNotifier(url: string, timeoutMs = 5_000): Notifier {
  return {
    async notify(a) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'budget_alert', summary: alertSummary(a), ...a }), signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`budget alert webhook answered ${res.status}`);
    },
  };
}

/** What the SNS notifier needs of an SNS client (tests pass their own). */
export interface SnsSender {
  send(command: object): Promise<unknown>;
}

/** Publishes each alert to an SNS topic (email subscribers get the summary and the fields); the SDK is loaded on the first alert. */
export function snsNotifier(topicArn: string, client?: SnsSender): Notifier {
  let sns: Promise<{ client: SnsSender; Publish: typeof import('@aws-sdk/client-sns').PublishCommand }> | undefined;
  return {
    async notify(a) {
      sns ??= import('@aws-sdk/client-sns').then((m) => ({ client: client ?? new m.SNSClient({}), Publish: m.PublishCommand }));
      const { client: c, Publish } = await sns;
      const summary = alertSummary(a);
      await c.send(
        new Publish({
          TopicArn: topicArn,
          // SNS subjects are at most 100 characters.
          Subject: `Budget alert: ${a.who} at ${a.thresholdPercent}% of ${a.budget}`.slice(0, 100),
          Message: `${summary}\n\n${JSON.stringify(a, null, 2)}`,
          MessageAttributes: { subject: { DataType: 'String', StringValue: a.subject }, budget: { DataType: 'String', StringValue: a.budget } },
        }),
      );
    },
  };
}

/** The notifiers for a configuration: always the log line; the webhook when configured; SNS when the stack named a topic. */
export function createNotifiers(cfg: BudgetAlertsConfig, env: Record<string, string | undefined>, log: GatewayLogger): Notifier[] {
  const out = [logNotifier(log)];
  if (cfg.webhookUrl) out.push(webhookNotifier(cfg.webhookUrl));
  const topic = env[ALERT_TOPIC_ENV];
  if (topic) out.push(snsNotifier(topic));
  return out;
}
