import type { FrontDoor } from '../core/types.ts';
import type { RoutePlan } from '../routing/router.ts';

/**
 * `n > 1` on translated routes (docs/translation.md): N calls of the same request in parallel, each
 * through the attempt runner (its own retries and fallback before its first byte, its own metered
 * attempts in the request's one log record), merged into one answer whose events carry their
 * choice's index. Usage is summed and reported once, at the end. Once the answer has started, a
 * choice that fails ends the whole answer with an error, as a single call's failure does. The
 * calls and the merge are in parallel.ts, loaded by the first such request (shared/lazy.ts).
 */

/** The most choices one request may ask for (OpenAI's own limit). */
export const MAX_CHOICES = 128;

/** True when `n` must be emulated: more than one choice, and some target of the route translates. */
export function emulatesChoices(n: number | undefined, plan: RoutePlan, door: FrontDoor): n is number {
  return (n ?? 1) > 1 && plan.groups.flat().some((t) => !t.provider.passthrough?.(door));
}
