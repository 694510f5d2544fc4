import type { BudgetAlerts as BudgetAlertsImpl } from './alerts/budget-alerts.ts';
import type { FrontDoorCodec } from './formats/types.ts';
import type { GuardedRequest, Guardrails as GuardrailsImpl } from './guardrails/index.ts';
import type { McpGateway as McpGatewayImpl } from './mcp/gateway.ts';
import type { ResponsesHost, StatefulResponses as StatefulResponsesImpl } from './responses/index.ts';

/**
 * Code a request may not need, loaded by `import()` on first use: in a bundle (infra/bundling.ts,
 * code splitting) each is a chunk of its own that a cold start does not read or compile. The
 * gateway imports these stand-ins instead of the modules; they behave the same once loaded.
 */

/** The admin API (keys, teams; zod for its bodies): only `/admin/*` requests. */
export async function handleAdmin(...args: Parameters<typeof import('./admin/api.ts').handleAdmin>): Promise<Response> {
  return (await import('./entries/admin.ts')).handleAdmin(...args);
}

/** `/admin/stats` and `/admin/dashboard` (the local logs' summary and its HTML page). */
export async function handleStatsRoute(...args: Parameters<typeof import('./telemetry/admin-stats.ts').handleStatsRoute>): Promise<Response> {
  return (await import('./entries/stats.ts')).handleStatsRoute(...args);
}

/** `n` choices emulated by parallel calls (shared/emulate/parallel.ts): only requests with `n > 1` on a translated route. */
export async function runChoices(...args: Parameters<typeof import('./entries/features.ts').runChoices>): ReturnType<typeof import('./entries/features.ts').runChoices> {
  return (await import('./entries/features.ts')).runChoices(...args);
}

/** The response cache's module (shared/cache), loaded when a `cache` section is on (see `Gateway.ready`). */
export const loadResponseCache = () => import('./entries/features.ts');

/** `/v1/embeddings` (shared/wire/embeddings/door.ts): only embeddings requests. */
export async function handleEmbeddings(...args: Parameters<typeof import('./entries/embeddings.ts').handleEmbeddings>): Promise<Response> {
  return (await import('./entries/embeddings.ts')).handleEmbeddings(...args);
}

/** `/v1/messages/count_tokens` (shared/wire/anthropic-messages/count-tokens.ts), with the Anthropic door it parses by. */
export async function countTokens(...args: Parameters<typeof import('./entries/anthropic-messages.ts').countTokens>): Promise<Response> {
  return (await import('./entries/anthropic-messages.ts')).countTokens(...args);
}

/** An implementation made on first use: `get()` imports its module and makes it, once; `made` is it once there. */
class OnFirstUse<T> {
  private making?: Promise<T>;
  protected made?: T;

  constructor(private readonly make: () => Promise<T>) {}

  protected get(): Promise<T> {
    return (this.making ??= this.make().then((m) => (this.made = m)));
  }
}

/**
 * A chat front door (shared/formats/index.ts), loaded by the first request to its path: `codec`
 * once it is there (a request then takes it without waiting), `get()` loads it.
 */
export class LazyDoor extends OnFirstUse<FrontDoorCodec> {
  get codec(): FrontDoorCodec | undefined {
    return this.made;
  }

  override get(): Promise<FrontDoorCodec> {
    return super.get();
  }
}

/** The MCP gateway (shared/mcp), made on the first `/mcp` request with the arguments given here. */
export class McpGateway extends OnFirstUse<McpGatewayImpl> {
  constructor(...args: ConstructorParameters<typeof McpGatewayImpl>) {
    super(() => import('./entries/mcp.ts').then((m) => new m.McpGateway(...args)));
  }

  async handle(...args: Parameters<McpGatewayImpl['handle']>): ReturnType<McpGatewayImpl['handle']> {
    return (await this.get()).handle(...args);
  }
}

/** Guardrails (shared/guardrails), compiled on the first request that a `guardrails` section applies to. */
export class Guardrails extends OnFirstUse<GuardrailsImpl> {
  constructor(...args: ConstructorParameters<typeof GuardrailsImpl>) {
    super(() => import('./entries/features.ts').then((m) => new m.Guardrails(...args)));
  }

  async checkInput(...args: Parameters<GuardrailsImpl['checkInput']>): Promise<GuardedRequest> {
    return (await this.get()).checkInput(...args);
  }
}

/**
 * Stored Responses (shared/responses), loaded by the first Responses request that needs it: one
 * that asks for a stored conversation (`previous_response_id`, `store: true`), any request while
 * they are kept (`responses.enabled` with body logging), or `/v1/responses/{id}`. Until then an
 * answer has nothing to capture (only `prepare` notes what to store).
 */
export class StatefulResponses extends OnFirstUse<StatefulResponsesImpl> {
  private readonly kept: boolean;

  constructor(host: ResponsesHost) {
    super(() => import('./entries/features.ts').then((m) => new m.StatefulResponses(host)));
    this.kept = host.config.responses.enabled && !!host.config.logging.bodies?.enabled;
  }

  async prepare(...args: Parameters<StatefulResponsesImpl['prepare']>): Promise<unknown> {
    const body = args[0] as { previous_response_id?: unknown; store?: unknown } | null;
    // Nothing kept and nothing asked of the store: the body goes on as it is (as the module would leave it).
    if (!this.made && !this.kept && (typeof body !== 'object' || body === null || (typeof body.previous_response_id !== 'string' && body.store !== true))) return body;
    return (await this.get()).prepare(...args);
  }

  capture(...args: Parameters<StatefulResponsesImpl['capture']>): Response {
    return this.made ? this.made.capture(...args) : args[1];
  }

  async route(...args: Parameters<StatefulResponsesImpl['route']>): Promise<Response> {
    return (await this.get()).route(...args);
  }
}

/**
 * Budget alerts (shared/alerts), loaded with the first settled request that a threshold may apply
 * to. Counters watched before it is there are handed over when it is made, before any totals it
 * observes (a usage write lands after its request was watched).
 */
export class BudgetAlerts extends OnFirstUse<BudgetAlertsImpl> {
  private queued: Parameters<BudgetAlertsImpl['watch']>[] = [];

  constructor(
    make: () => Promise<BudgetAlertsImpl>,
    private readonly onError: (err: unknown) => void,
  ) {
    super(() =>
      make().then((alerts) => {
        for (const args of this.queued) alerts.watch(...args);
        this.queued = [];
        return alerts;
      }),
    );
  }

  watch(...args: Parameters<BudgetAlertsImpl['watch']>): void {
    if (this.made) return this.made.watch(...args);
    this.queued.push(args);
    this.get().catch(this.onError);
  }

  observe(...args: Parameters<BudgetAlertsImpl['observe']>): ReturnType<BudgetAlertsImpl['observe']> {
    return this.made ? this.made.observe(...args) : this.get().then((a) => a.observe(...args));
  }
}
