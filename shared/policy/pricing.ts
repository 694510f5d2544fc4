import type { Usage } from '../core/types.ts';

/** USD per million tokens. Cache prices default to the input price when absent. */
export interface Price {
  input: number;
  output: number;
  cacheRead?: number;
  cacheWrite?: number;
}

/**
 * The price for what served a request: the table is keyed by model name, looked up first as
 * `provider/upstreamModel`, then the upstream model id, then the model name the client asked for.
 */
export function priceFor(pricing: Record<string, Price>, served: { provider?: string; upstreamModel?: string; model?: string }): Price | undefined {
  const candidates = [served.provider && served.upstreamModel ? `${served.provider}/${served.upstreamModel}` : undefined, served.upstreamModel, served.model];
  for (const c of candidates) if (c && pricing[c]) return pricing[c];
  return undefined;
}

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
