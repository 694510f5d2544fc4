import type { GatewayConfig } from '../config/schema.ts';
import { createDynamoStore, dynamoSettings } from '../store/lazy.ts';
import type { Store } from '../store/types.ts';
import { jsonLinesLogger, type GatewayLogger } from '../telemetry/logger.ts';
import { Policy } from './policy.ts';
import { createCallers } from '../auth/index.ts';
import { BudgetAlerts } from '../lazy.ts';

export { Policy, isPublicPath, type Access, type Principal } from './policy.ts';
export { modelAllowed } from './keys.ts';

/** Usage settlements are batched this long before one write per counter (see BudgetTracker). */
const USAGE_FLUSH_MS = 1000;

/**
 * The policy for a configuration, or undefined when keys are off (`auth` absent or
 * `auth.required: false`: the gateway is open). Without a given store it opens the DynamoDB tables
 * named by the configuration and environment (the Lambda path).
 */

export function createPolicy(config: GatewayConfig, env: Record<string, string | undefined>, store?: Store, now?: () => number, onError?: (err: unknown) => void, logger: GatewayLogger = jsonLinesLogger): Policy | undefined {
  if (!config.auth?.required) return undefined;
  const db = store ?? createDynamoStore(dynamoSettings(config.store, env));
  const report = onError ?? ((err: unknown) => logger.error('policy store error', { error: String((err as Error)?.message ?? err) }));
  // Budget alerts (shared/alerts) load with the first request whose budgets they may watch.
  const { thresholds } = config.budgetAlerts;
  const makeAlerts = async () => {
    const { BudgetAlerts: Alerts, createNotifiers } = await import('../entries/features.ts');
    return new Alerts(db, thresholds, createNotifiers(config.budgetAlerts, env, logger), report);
  };
  const alerts = thresholds.length ? new BudgetAlerts(makeAlerts, report) : undefined;
  return new Policy({
    store: db,
    now,
    callers: createCallers(config.auth),
    onError: report,
    alerts,
    settings: {
      cacheTtlSeconds: config.auth.cacheTtlSeconds,
      leaseRequests: config.limits.leaseRequests,
      leaseTokens: config.limits.leaseTokens,
      defaultMaxTokens: config.limits.defaultMaxTokens,
      budgetRefreshSeconds: config.limits.budgetRefreshSeconds,
      budgetStatus: config.limits.budgetStatus,
      pricing: config.pricing,
      usageFlushMs: USAGE_FLUSH_MS,
    },
  });
}
