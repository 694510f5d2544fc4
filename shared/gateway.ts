import type { GatewayConfig } from './config/schema.ts';
import { readJsonBody } from './http/body.ts';
import { GatewayError, jsonResponse, toGatewayError } from './http/errors.ts';
import { CHAT_DOORS, errorDoorFor } from './formats/index.ts';
import { handleEmbeddings } from './formats/openai-embeddings.ts';
import { countTokens } from './formats/anthropic-count-tokens.ts';
import type { FrontDoorCodec } from './formats/types.ts';
import { buildProviders } from './providers/index.ts';
import { runAttempts } from './routing/execute.ts';
import { Router } from './routing/router.ts';
import type { Provider } from './providers/types.ts';
import { RequestTrace, type LogSink, type RequestRecord } from './telemetry/record.ts';
import { handleAdmin } from './admin/api.ts';
import { createPolicy, isPublicPath, type Policy } from './policy/index.ts';
import type { Store } from './store/types.ts';
import { captureBodies } from './telemetry/bodies.ts';
import { handleStatsRoute, localLogs, STATS_PATHS } from './telemetry/admin-stats.ts';

export interface GatewayOptions {
  config: GatewayConfig;
  /** Where provider secrets are read from (process.env in the shells). */
  env: Record<string, string | undefined>;
  sinks?: LogSink[];
  /** Called when a sink throws; the request is not affected. */
  onSinkError?: (err: unknown) => void;
  /** Keys and usage counters (when `auth.required`); default: the DynamoDB tables from config/env. */
  store?: Store;
  /** Clock for rate-limit and budget windows (epoch ms); tests pin it. */
  now?: () => number;
}

/** What the shell (local server or Lambda) lends to a request. */
export interface RequestExtras {
  /** Keep work alive after the response (log writes); the shell awaits it before it idles. */
  waitUntil(p: Promise<unknown>): void;
  /**
   * The caller of an /admin/ route as already authorized by the shell (in AWS: the IAM caller ARN
   * API Gateway verified with SigV4, `requestContext.identity.userArn`). Never set from a header.
   */
  adminPrincipal?: string;
}

export interface LiveModel {
  id: string;
  /** Where it routes, e.g. `openai/gpt-4o-mini` or `anthropic/claude-x -> bedrock/... (fallback)`. */
  route: string;
  live: boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The gateway core: a function from a web Request to a web Response, the same in Lambda and
 * locally. It parses the front door's format, resolves the model, calls the provider, and streams
 * the answer back, with one log record per request however it ends.
 */
export class Gateway {
  readonly providers: Map<string, Provider>;
  readonly models: LiveModel[];
  readonly router: Router;
  private readonly sinks: LogSink[];
  /** Keys, allow lists, rate limits and budgets; undefined when the gateway is open. */
  readonly policy: Policy | undefined;

  constructor(private readonly opts: GatewayOptions) {
    this.policy = createPolicy(opts.config, opts.env, opts.store, opts.now);
    this.providers = buildProviders(opts.config, opts.env);
    this.router = new Router(opts.config, this.providers);
    this.models = Object.entries(opts.config.models).map(([id, m]) => ({
      id,
      route: m.groups.map((g) => g.targets.map((t) => `${t.provider}/${t.model}${g.targets.length > 1 ? ` (weight ${t.weight})` : ''}`).join(' + ')).join(' -> fallback '),
      live: m.groups.some((g) => g.targets.some((t) => this.providers.get(t.provider)!.live)),
    }));
    this.sinks = opts.sinks ?? [];
  }

  async handle(request: Request, extras: RequestExtras): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.length > 1 && url.pathname.endsWith('/') ? url.pathname.slice(0, -1) : url.pathname;
    const incomingId = request.headers.get('x-request-id');
    const requestId = incomingId && REQUEST_ID.test(incomingId) ? incomingId : crypto.randomUUID();
    const trace = new RequestTrace(requestId, request, path, (r) => this.emit(r, extras));
    if (this.opts.config.logging.bodies?.enabled) captureBodies(trace, this.opts.config.logging.bodies);
    const baseHeaders: Record<string, string> = { 'x-request-id': requestId };

    try {
      if (path === '/admin' || path.startsWith('/admin/')) {
        const adminToken = this.opts.env[this.opts.config.auth?.adminTokenEnv ?? 'GATEWAY_ADMIN_TOKEN'];
        if (STATS_PATHS.has(path)) return this.done(trace, await handleStatsRoute(request, path, { adminToken, adminPrincipal: extras.adminPrincipal, now: this.opts.now, ...localLogs(this.sinks) }));
        return this.done(trace, await handleAdmin(request, path, { policy: this.policy, adminToken, adminPrincipal: extras.adminPrincipal, maxBodyBytes: this.opts.config.server.maxBodyBytes, now: this.opts.now }));
      }
      // Every model route needs a key (401 in the caller's format); liveness does not.
      if (this.policy && !isPublicPath(path)) await this.policy.authenticate(request, trace, extras);
      const chatDoor = request.method === 'POST' ? CHAT_DOORS[path] : undefined;
      if (chatDoor) {
        trace.record.frontDoor = chatDoor.door;
        return await this.chat(chatDoor, request, trace, baseHeaders);
      }
      const route = `${request.method} ${path}`;
      switch (route) {
        case 'POST /v1/embeddings':
          return await handleEmbeddings(request, trace, baseHeaders, {
            maxBodyBytes: this.opts.config.server.maxBodyBytes,
            resolve: (name) => (this.policy?.permit(trace, name), this.router.order(this.router.resolve(name))).map((t) => ({ provider: t.provider, model: t.model })),
          });
        case 'POST /v1/messages/count_tokens':
          trace.record.frontDoor = 'anthropic-messages';
          return await countTokens(request, trace, baseHeaders, {
            maxBodyBytes: this.opts.config.server.maxBodyBytes,
            resolve: (name) => (this.policy?.permit(trace, name), this.router.order(this.router.resolve(name))).map((t) => ({ provider: t.provider, model: t.model })),
          });
        case 'GET /v1/models':
          return this.done(trace, jsonResponse({ object: 'list', data: this.router.listModels().filter((m) => this.policy?.allows(trace, m.id) ?? true).map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.ownedBy })) }, 200, baseHeaders));
        case 'GET /health':
        case 'HEAD /health':
        case 'GET /':
        case 'HEAD /':
          return this.done(trace, jsonResponse({ status: 'ok', models: this.models.filter((m) => m.live).length }, 200, baseHeaders));
      }
      if (path.startsWith('/v1/models/') && (request.method === 'GET')) {
        const id = decodeURIComponent(path.slice('/v1/models/'.length));
        const m = this.router.listModels().find((x) => x.id === id);
        if (!m || !(this.policy?.allows(trace, id) ?? true)) throw new GatewayError('not_found', `The model '${id}' does not exist`, { code: 'model_not_found', param: 'model' });
        return this.done(trace, jsonResponse({ id: m.id, object: 'model', created: 0, owned_by: m.ownedBy }, 200, baseHeaders));
      }
      if (CHAT_DOORS[path]) throw new GatewayError('invalid_request', `Method ${request.method} is not allowed on ${path}; use POST.`, { status: 405, code: 'method_not_allowed' });
      throw new GatewayError('not_found', `Unknown route: ${request.method} ${path}`, { code: 'unknown_route' });
    } catch (err) {
      const ge = toGatewayError(err);
      if (ge.kind === 'internal') console.error(JSON.stringify({ level: 'ERROR', requestId, message: 'unhandled error', error: String((err as Error)?.stack ?? err) }));
      trace.fail(ge.status === 499 ? 'client_closed' : 'error', ge);
      const res = this.errorResponse(path, ge, baseHeaders);
      return this.done(trace, res);
    }
  }

  /** An error in the shape of the API the path belongs to. */
  private errorResponse(path: string, err: GatewayError, headers: Record<string, string>): Response {
    const res = errorDoorFor(path).error(err);
    for (const [k, v] of Object.entries(headers)) res.headers.set(k, v);
    return res;
  }

  /** End the trace for a response whose body is already complete. */
  private done(trace: RequestTrace, res: Response): Response {
    trace.end(res.status);
    return res;
  }

  private async chat(codec: FrontDoorCodec, request: Request, trace: RequestTrace, headers: Record<string, string>): Promise<Response> {
    const body = await readJsonBody(request, this.opts.config.server.maxBodyBytes);
    trace.captureRequest?.(body);
    const req = codec.parse(body, request);
    trace.record.model = req.model;
    trace.record.stream = req.stream;
    const plan = this.router.resolve(req.model);
    // Allow list (403), budgets and rate limits (429); usage settles when the trace ends.
    if (this.policy) Object.assign(headers, await this.policy.admitChat(trace, req, codec.door));

    const served = await runAttempts(this.router, {
      plan,
      req,
      door: codec.door,
      rawBody: body as Record<string, unknown>,
      headers: request.headers,
      query: new URL(request.url).search,
      requestId: trace.record.requestId,
      signal: request.signal,
      trace,
    });
    const { provider, model } = served.target;
    trace.record.provider = provider.name;
    trace.record.upstreamModel = model;
    const meta = {
      created: Math.floor(Date.now() / 1000),
      headers: { ...headers, 'x-gateway-provider': provider.name, 'x-gateway-model': model, 'x-gateway-attempts': String(trace.record.attempts ?? 1) },
    };
    trace.record.status = 200;
    if (served.kind === 'passthrough') {
      trace.record.status = served.response.status;
      return codec.respondPassthrough(req, served.response, meta, trace);
    }
    return codec.respondFromEvents(req, served.first, served.events, meta, trace);
  }

  private emit(record: RequestRecord, extras: RequestExtras): void {
    for (const sink of this.sinks) {
      try {
        const p = sink.write(record);
        if (p) extras.waitUntil(p.catch((e) => this.opts.onSinkError?.(e)));
      } catch (err) {
        this.opts.onSinkError?.(err);
      }
    }
  }

  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.flush?.()));
  }
}
