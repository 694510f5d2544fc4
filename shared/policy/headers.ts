import type { FrontDoor } from '../core/types.ts';
import type { BudgetStatus } from './budgets.ts';
import type { RateStatus } from './rate-limits.ts';

/** OpenAI's duration style for reset headers: `1s`, `6m0s`, `120ms`. */
export function openaiDuration(ms: number): string {
  ms = Math.max(0, Math.ceil(ms));
  if (ms < 1000) return `${ms}ms`;
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  if (m < 60) return `${m}m${rest}s`;
  return `${Math.floor(m / 60)}h${m % 60}m${rest}s`;
}

/** The status that binds tighter (less remaining), per dimension. */
export function tightest(statuses: RateStatus[]): { requests?: { limit: number; remaining: number; resetAt: number }; tokens?: { limit: number; remaining: number; resetAt: number } } {
  const out: ReturnType<typeof tightest> = {};
  for (const s of statuses) {
    if (s.rpm !== undefined && s.remainingRequests !== undefined && (!out.requests || s.remainingRequests < out.requests.remaining)) {
      out.requests = { limit: s.rpm, remaining: s.remainingRequests, resetAt: s.resetAt };
    }
    if (s.tpm !== undefined && s.remainingTokens !== undefined && (!out.tokens || s.remainingTokens < out.tokens.remaining)) {
      out.tokens = { limit: s.tpm, remaining: s.remainingTokens, resetAt: s.resetAt };
    }
  }
  return out;
}

/**
 * Rate-limit and usage headers in the style of the caller's API: OpenAI's `x-ratelimit-*` (reset as
 * a duration) or Anthropic's `anthropic-ratelimit-*` (reset as an RFC 3339 time) on /v1/messages;
 * remaining budget as `x-gateway-budget-remaining-usd` / `-tokens` on both.
 */
export function limitHeaders(door: FrontDoor | undefined, statuses: RateStatus[], budget: BudgetStatus, now: number): Record<string, string> {
  const h: Record<string, string> = {};
  const t = tightest(statuses);
  const anthropic = door === 'anthropic-messages';
  for (const [dim, v] of [['requests', t.requests], ['tokens', t.tokens]] as const) {
    if (!v) continue;
    if (anthropic) {
      h[`anthropic-ratelimit-${dim}-limit`] = String(v.limit);
      h[`anthropic-ratelimit-${dim}-remaining`] = String(Math.floor(v.remaining));
      h[`anthropic-ratelimit-${dim}-reset`] = new Date(v.resetAt).toISOString().replace(/\.\d{3}Z$/, 'Z');
    } else {
      h[`x-ratelimit-limit-${dim}`] = String(v.limit);
      h[`x-ratelimit-remaining-${dim}`] = String(Math.floor(v.remaining));
      h[`x-ratelimit-reset-${dim}`] = openaiDuration(v.resetAt - now);
    }
  }
  if (budget.remainingUsd !== undefined) h['x-gateway-budget-remaining-usd'] = budget.remainingUsd.toFixed(6).replace(/\.?0+$/, '') || '0';
  if (budget.remainingTokens !== undefined) h['x-gateway-budget-remaining-tokens'] = String(Math.floor(budget.remainingTokens));
  return h;
}
