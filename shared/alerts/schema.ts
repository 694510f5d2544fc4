import { z } from 'zod';

/**
 * Budget alerts (docs/limits.md): thresholds in percent of every key and team budget; crossing one
 * sends one notification per budget period. Always a log line; SNS in AWS (email subscriptions from
 * `emails`); a webhook when `webhookUrl` is set.
 */
export const budgetAlertsSchema = z
  .object({
    /** Percentages of each budget, increasing; an empty list turns alerts off. */
    thresholds: z
      .array(z.number().gt(0).max(100))
      .max(10)
      .default([50, 80, 100])
      .refine((t) => t.every((v, i) => i === 0 || v > t[i - 1]!), 'thresholds must be strictly increasing'),
    /** Addresses subscribed to the alert topic by `cdk deploy` (each confirms by email). */
    emails: z.array(z.email()).default([]),
    /** An http(s) URL that receives each alert as a JSON POST. */
    webhookUrl: z.url({ protocol: /^https?$/ }).optional(),
  })
  .strict();

export type BudgetAlertsConfig = z.output<typeof budgetAlertsSchema>;
