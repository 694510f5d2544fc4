import type { FallbackTrigger, GatewayConfig, TargetConfig } from '../config/schema.ts';
import { GatewayError } from '../http/errors.ts';
import type { Provider } from '../providers/types.ts';
import { Cooldown } from './cooldown.ts';

/** The timeouts of one attempt on a target, resolved once: the target's value, else its provider's, else the defaults. */
export interface AttemptTimeouts {
  /** Until the first byte of the answer's body (the first event of a stream), headers are not enough. */
  firstByteTimeoutMs: number;
  /** The whole call, body included. */
  totalTimeoutMs: number;
  /** Silence between two chunks once the answer has started. */
  idleTimeoutMs: number;
}

export const DEFAULT_TIMEOUTS: AttemptTimeouts = { firstByteTimeoutMs: 60_000, totalTimeoutMs: 600_000, idleTimeoutMs: 120_000 };

export interface ResolvedTarget {
  provider: Provider;
  /** Model id sent upstream. */
  model: string;
  /** `provider/model`: the target's identity for cooldown and logs. */
  key: string;
  config: TargetConfig;
  timeouts: AttemptTimeouts;
}

export interface RetryPolicy {
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface RoutePlan {
  /** The name the client asked for. */
  name: string;
  /** True when the client named `provider/model` instead of an alias. */
  direct: boolean;
  groups: ResolvedTarget[][];
  /** Every target of `groups` as names (what a budget prices a request at), made once per plan. */
  targets: readonly { provider: string; model: string }[];
  retry: RetryPolicy;
  fallbackOn: ReadonlySet<FallbackTrigger>;
}

export interface ListedModel {
  id: string;
  ownedBy: string;
}

/**
 * Resolves the model a client names into a plan: ordered groups of weighted targets, with the
 * retry and fallback policy of the alias. Also decides, per request, the order in which targets
 * are tried: within a group by weighted random draw without replacement, cooling-down targets
 * last; then the next group.
 */
export class Router {
  readonly cooldown: Cooldown;
  private readonly plans = new Map<string, RoutePlan>();

  constructor(
    private readonly config: GatewayConfig,
    private readonly providers: Map<string, Provider>,
    private readonly random: () => number = Math.random,
  ) {
    this.cooldown = new Cooldown(config.routing.cooldown);
    for (const [name, m] of Object.entries(config.models)) {
      const groups = m.groups.map((g) => g.targets.map((t) => this.target(t)));
      this.plans.set(name, { name, direct: false, groups, targets: namesOf(groups), retry: m.retry ?? config.routing.retry, fallbackOn: new Set(m.fallbackOn ?? config.routing.fallbackOn) });
    }
  }

  private target(t: TargetConfig): ResolvedTarget {
    const p = (this.config.providers[t.provider] ?? {}) as Partial<AttemptTimeouts>;
    const pick = (k: keyof AttemptTimeouts) => t[k] ?? p[k] ?? DEFAULT_TIMEOUTS[k];
    const timeouts = { firstByteTimeoutMs: pick('firstByteTimeoutMs'), totalTimeoutMs: pick('totalTimeoutMs'), idleTimeoutMs: pick('idleTimeoutMs') };
    return { provider: this.providers.get(t.provider)!, model: t.model, key: `${t.provider}/${t.model}`, config: t, timeouts };
  }

  /** The plan for a model name, keeping only targets whose provider is live. 404 when none can serve. */
  resolve(name: string): RoutePlan {
    const plan = this.plans.get(name) ?? this.direct(name);
    if (!plan) throw new GatewayError('not_found', `The model '${name}' does not exist or you do not have access to it.`, { code: 'model_not_found', param: 'model' });
    if (allLive(plan)) return plan;
    const groups = plan.groups.map((g) => g.filter((t) => t.provider.live)).filter((g) => g.length > 0);
    if (!groups.length) {
      const names = [...new Set(plan.groups.flat().map((t) => t.provider.name))].join(', ');
      throw new GatewayError('not_found', `The model '${name}' is configured but its provider (${names}) is not enabled.`, { code: 'model_not_available', param: 'model' });
    }
    // Not all live (else returned above): some target was filtered out, so the plan changes.
    return { ...plan, groups, targets: namesOf(groups) };
  }

  private direct(name: string): RoutePlan | undefined {
    if (!this.config.routing.directTargets) return undefined;
    const slash = name.indexOf('/');
    if (slash <= 0 || slash === name.length - 1) return undefined;
    const providerName = name.slice(0, slash);
    const provider = this.providers.get(providerName);
    if (!provider) return undefined;
    const groups = [[this.target({ provider: providerName, model: name.slice(slash + 1), weight: 1 })]];
    return {
      name,
      direct: true,
      groups,
      targets: namesOf(groups),
      retry: this.config.routing.retry,
      fallbackOn: new Set(this.config.routing.fallbackOn),
    };
  }

  /** The order to try targets in for one request. */
  order(plan: RoutePlan): ResolvedTarget[] {
    // Group by group, healthy targets first (weighted order within each group); cooling targets are
    // still tried when nothing healthy is left, in the same order: better a likely failure than none.
    const healthy: ResolvedTarget[] = [];
    let cooling: ResolvedTarget[] | undefined;
    for (const group of plan.groups) {
      if (group.length === 1) {
        if (this.cooldown.isCooling(group[0]!.key)) (cooling ??= []).push(group[0]!);
        else healthy.push(group[0]!);
        continue;
      }
      const h: ResolvedTarget[] = [];
      const c: ResolvedTarget[] = [];
      for (const t of group) (this.cooldown.isCooling(t.key) ? c : h).push(t);
      healthy.push(...this.weightedShuffle(h));
      if (c.length) (cooling ??= []).push(...this.weightedShuffle(c));
    }
    return cooling ? healthy.concat(cooling) : healthy;
  }

  private weightedShuffle(targets: ResolvedTarget[]): ResolvedTarget[] {
    if (targets.length <= 1) return targets;
    const pool = [...targets];
    const out: ResolvedTarget[] = [];
    while (pool.length) {
      const total = pool.reduce((n, t) => n + t.config.weight, 0);
      let r = this.random() * total;
      let i = 0;
      for (; i < pool.length - 1; i++) {
        r -= pool[i]!.config.weight;
        if (r < 0) break;
      }
      out.push(pool.splice(i, 1)[0]!);
    }
    return out;
  }

  /** Aliases a client may call now (at least one target's provider is live). */
  listModels(): ListedModel[] {
    const out: ListedModel[] = [];
    for (const plan of this.plans.values()) {
      const live = plan.groups.flat().find((t) => t.provider.live);
      if (live) out.push({ id: plan.name, ownedBy: live.provider.name });
    }
    return out;
  }
}

function namesOf(groups: ResolvedTarget[][]): { provider: string; model: string }[] {
  return groups.flat().map((t) => ({ provider: t.provider.name, model: t.model }));
}

/** Whether every target of a plan has a live provider (the plan then serves as it is). */
function allLive(plan: RoutePlan): boolean {
  for (const group of plan.groups) for (const t of group) if (!t.provider.live) return false;
  return true;
}
