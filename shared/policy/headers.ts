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

/** Header names per dimension, in OpenAI's style and in Anthropic's. */
const NAMES = {
  openai: {
    requests: ['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests'],
    tokens: ['x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens'],
  },
  anthropic: {
    requests: ['anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset'],
    tokens: ['anthropic-ratelimit-tokens-limit', 'anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset'],
  },
} as const;

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
  const anthropic = door === 'anthropic-messages';
  const names = anthropic ? NAMES.anthropic : NAMES.openai;
  const put = ([limitName, remainingName, resetName]: readonly string[], limit: number, remaining: number, resetAt: number) => {
    h[limitName!] = String(limit);
    h[remainingName!] = String(Math.floor(remaining));
    h[resetName!] = anthropic ? rfc3339(resetAt) : openaiDuration(resetAt - now);
  };
  if (requests) put(names.requests, requests.rpm!, requests.remainingRequests!, requests.resetAt);
  if (tokens) put(names.tokens, tokens.tpm!, tokens.remainingTokens!, tokens.resetAt);
  if (budget.remainingUsd !== undefined) h['x-gateway-budget-remaining-usd'] = usd(budget.remainingUsd);
  if (budget.remainingTokens !== undefined) h['x-gateway-budget-remaining-tokens'] = String(Math.floor(budget.remainingTokens));
  return h;
}
