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

/**
 * A whole number's decimal text: below 2^31 as String() does it, above in two parts that each fit
 * in 31 bits (remaining token budgets run to 10^12: String() of such a double took the larger
 * share of this module's time in a profile). Anything else goes to String().
 */
export function intText(n: number): string {
  n = Math.floor(n);
  if (n < 2147483648 || !(n < 2 ** 53)) return String(n);
  const hi = Math.floor(n / 1e9);
  return String(hi) + String(n - hi * 1e9).padStart(9, '0');
}

/** The last value formatted by `once`: a reset time or a remaining budget repeats request after request. */
function once<T>(format: (v: T) => string): (v: T) => string {
  let last: T | undefined;
  let text = '';
  return (v) => {
    if (v !== last) {
      text = format(v);
      last = v;
    }
    return text;
  };
}

const rfc3339 = once((ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));
// A key's limits are the same request after request (one memo per dimension: they alternate).
const rpmText = once((rpm: number) => String(rpm));
const tpmText = once((tpm: number) => String(tpm));
const usd = once((remaining: number) => remaining.toFixed(6).replace(/\.?0+$/, '') || '0');

/**
 * Rate-limit and usage headers in the style of the caller's API: OpenAI's `x-ratelimit-*` (reset as
 * a duration) or Anthropic's `anthropic-ratelimit-*` (reset as an RFC 3339 time) on /v1/messages;
 * remaining budget as `x-gateway-budget-remaining-usd` / `-tokens` on both. Per dimension, the
 * status that binds tighter (less remaining) is shown.
 */
export function limitHeaders(door: FrontDoor | undefined, statuses: RateStatus[], budget: BudgetStatus, now: number): Record<string, string> {
  const h: Record<string, string> = {};
  let requests: RateStatus | undefined;
  let tokens: RateStatus | undefined;
  for (const s of statuses) {
    if (s.rpm !== undefined && s.remainingRequests !== undefined && (!requests || s.remainingRequests < requests.remainingRequests!)) requests = s;
    if (s.tpm !== undefined && s.remainingTokens !== undefined && (!tokens || s.remainingTokens < tokens.remainingTokens!)) tokens = s;
  }
  // Each header set under its literal name (named stores on one object shape: no keyed stores).
  if (door === 'anthropic-messages') {
    if (requests) {
      h['anthropic-ratelimit-requests-limit'] = rpmText(requests.rpm!);
      h['anthropic-ratelimit-requests-remaining'] = intText(requests.remainingRequests!);
      h['anthropic-ratelimit-requests-reset'] = rfc3339(requests.resetAt);
    }
    if (tokens) {
      h['anthropic-ratelimit-tokens-limit'] = tpmText(tokens.tpm!);
      h['anthropic-ratelimit-tokens-remaining'] = intText(tokens.remainingTokens!);
      h['anthropic-ratelimit-tokens-reset'] = rfc3339(tokens.resetAt);
    }
  } else {
    if (requests) {
      h['x-ratelimit-limit-requests'] = rpmText(requests.rpm!);
      h['x-ratelimit-remaining-requests'] = intText(requests.remainingRequests!);
      h['x-ratelimit-reset-requests'] = openaiDuration(requests.resetAt - now);
    }
    if (tokens) {
      h['x-ratelimit-limit-tokens'] = tpmText(tokens.tpm!);
      h['x-ratelimit-remaining-tokens'] = intText(tokens.remainingTokens!);
      h['x-ratelimit-reset-tokens'] = openaiDuration(tokens.resetAt - now);
    }
  }
  if (budget.remainingUsd !== undefined) h['x-gateway-budget-remaining-usd'] = usd(budget.remainingUsd);
  if (budget.remainingTokens !== undefined) h['x-gateway-budget-remaining-tokens'] = intText(budget.remainingTokens);
  return h;
}
