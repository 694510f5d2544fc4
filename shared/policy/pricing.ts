import type { Usage } from '../core/types.ts';
import type { RequestRecord } from '../telemetry/record.ts';
import { joiner } from '../core/joiner.ts';

/** USD per million tokens. Cache prices default to the input price when absent. */
export interface Price {
  input: number;
  output: number;
  cacheRead?: number;
  cacheWrite?: number;
}

/**
 * The price for what served a request: the table is keyed by model name, looked up first as
 * `provider/upstreamModel`, then the upstream model id, then the model name the client asked for
 * (the three names as arguments: no object per lookup on the hot path).
 */
export function priceOf(pricing: Record<string, Price>, provider: string | undefined, upstreamModel: string | undefined, model: string | undefined): Price | undefined {
  return (provider && upstreamModel && pricing[providerModel(provider, upstreamModel)]) || (upstreamModel && pricing[upstreamModel]) || (model && pricing[model]) || undefined;
}

const providerModel = joiner('/');

/**
 * Cost in micro-dollars (integer). `usage.inputTokens` includes cached tokens (see core/types.ts),
 * so the uncached part is what remains after the cache reads and writes.
 */
export function costMicroUsd(price: Price | undefined, usage: Usage): number {
  if (!price) return 0;
  const cr = usage.cacheReadTokens ?? 0;
  const cw = usage.cacheWriteTokens ?? 0;
  const uncached = Math.max(0, usage.inputTokens - cr - cw);
  // tokens x USD-per-million = micro-dollars
  const micro = uncached * price.input + cr * (price.cacheRead ?? price.input) + cw * (price.cacheWrite ?? price.input) + usage.outputTokens * price.output;
  return Math.round(micro);
}

/** What a finished request used and cost: what settles its budgets and rate limits. */
export interface FinishedCost {
  usage: { inputTokens: number; outputTokens: number; cacheReadTokens: number; cacheWriteTokens: number };
  microUsd: number;
}

const NOTHING = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };

/**
 * The one place a finished request is priced, from its log record, and the cost written into it
 * (`costUsd`). An answer from the gateway's response cache cost no upstream tokens: nothing.
 */
export function priceFinished(pricing: Record<string, Price>, r: RequestRecord): FinishedCost {
  const usage = r.cacheHit ? NOTHING : { inputTokens: r.inputTokens ?? 0, outputTokens: r.outputTokens ?? 0, cacheReadTokens: r.cacheReadTokens ?? 0, cacheWriteTokens: r.cacheWriteTokens ?? 0 };
  const microUsd = costMicroUsd(priceOf(pricing, r.provider, r.upstreamModel, r.model), usage);
  r.costUsd = microUsd / 1e6;
  return { usage, microUsd };
}

/** End hook pricing a request the policy did not settle (no key), when it reported usage and prices are configured. */
export function priceUnsettled(pricing: Record<string, Price>, r: RequestRecord): void {
  if (r.costUsd === undefined && r.inputTokens !== undefined && Object.keys(pricing).length) priceFinished(pricing, r);
}
