import type { GatewayConfig } from './config/schema.ts';
import { readJsonBody } from './http/body.ts';
import { clientSignalOf } from './http/bytes.ts';
import { WebHeaders } from './http/web.ts';
import type { ClientSignal } from './http/client-signal.ts';
import { withSseKeepAlive } from './http/keepalive.ts';
import { GatewayError, jsonResponse, toGatewayError } from './http/errors.ts';
import { CHAT_DOORS, errorDoorFor } from './formats/index.ts';
import { listModelsResponse, modelResponse } from './formats/models-list.ts';
import { buildProviders } from './providers/index.ts';
import { runAttempts, runCall, type CallRunner } from './routing/execute.ts';
import { emulatesChoices } from './emulate/choices.ts';
import { Router, type ResolvedTarget, type RoutePlan } from './routing/router.ts';
import type { Provider } from './providers/types.ts';
import { RequestTrace, type LogSink, type RequestRecord } from './telemetry/record.ts';
import { errorText, jsonLinesLogger, type GatewayLogger } from './telemetry/logger.ts';
import { createPolicy, isPublicPath, type Policy } from './policy/index.ts';
import { stripIamPrefix } from './auth/index.ts';
import type { Store } from './store/types.ts';
import { captureBodies, tapBody, tapEvents } from './telemetry/bodies.ts';
import { ownTraceparent, startTrace, type TraceContext } from './tracing/context.ts';
import { inSpan, requestAnnotations, withSpans, type Span, type SpanRecorder } from './tracing/spans.ts';
import { priceUnsettled } from './policy/pricing.ts';
import { localLogs, STATS_PATHS } from './telemetry/local-logs.ts';
// Loaded on first use (a chunk of their own in a bundle): the admin API, the stats pages, MCP, the
// optional features (guardrails, the response cache, stored Responses, `n` choices), embeddings and
// count_tokens (the chat doors too: shared/formats/index.ts).
import { countTokens, Guardrails, handleAdmin, handleEmbeddings, handleStatsRoute, loadResponseCache, McpGateway, runChoices, StatefulResponses } from './lazy.ts';
import type { ResponseCache, CacheHit } from './cache/index.ts';
import { passthroughEvents } from './cache/passthrough.ts';
import type { StreamEvent } from './core/types.ts';
import type { EncodeMeta, FrontDoorCodec } from './formats/types.ts';
import type { ChatContext, RequestContext, RequestExtras } from './core/context.ts';
import { RouteTable } from './routes.ts';

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
  /** Span recorder (X-Ray in Lambda, see shared/tracing/spans.ts); default: none. */
  spans?: SpanRecorder;  /** The core's own messages (unhandled errors, store and cache failures); default: JSON lines on stderr. */
  logger?: GatewayLogger;
}

export type { RequestExtras } from './core/context.ts';

/** The Bedrock-native doors, once loaded (see `Gateway.bedrock`). */
interface BedrockDoors {
  module: typeof import('./wire/bedrock-invoke/door.ts');
  index: import('./wire/bedrock-invoke/door.ts').BedrockModelIndex;
  invoke: FrontDoorCodec;
  converse: FrontDoorCodec;
}

export interface LiveModel {
  id: string;
  /** Where it routes, e.g. `openai/gpt-4o-mini` or `anthropic/claude-x -> bedrock/... (fallback)`. */
  route: string;
  live: boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The longest a call on the side of a request (the semantic cache's query vector) may wait on one target. */
const SIDE_CALL_MS = 15_000;
const NEVER = new AbortController().signal;

/**
 * A request the shell could not hand over as it came (a method fetch cannot carry, a request
 * target that is not a path, HTTP its parser refused): the core answers it in the route's error
 * format and logs it like any other request.
 */
export interface ShellReject {
  status: number;
  code: string;
  message: string;
  /** The method as sent (the web Request the core gets carries a stand-in). */
  method?: string;
  /** What to log as the path when the request URL has none worth routing. */
  path?: string;
}

/**
 * The path and the query string (with its `?`; '' when empty) of a web Request's URL, which is
 * already parsed and serialized (`scheme://authority/path?query#fragment`): sliced, not parsed again.
 */
function splitUrl(url: string): { pathname: string; query: string } {
  const from = url.indexOf('/', url.indexOf('//') + 2);
  if (from < 0) return { pathname: '/', query: '' };
  const hash = url.indexOf('#', from);
  const end = hash < 0 ? url.length : hash;
  const q = url.indexOf('?', from);
  if (q < 0 || q > end) return { pathname: url.slice(from, end), query: '' };
  return { pathname: url.slice(from, q), query: end - q > 1 ? url.slice(q, end) : '' };
}

/**
 * A request's chat context, as a literal of one shape (a spread of the request context with new keys
 * gets a new V8 map each time: most of a microsecond per request).
 */
function chatContext(c: RequestContext, codec: FrontDoorCodec, req: ChatContext['req'], plan: RoutePlan, guard: ChatContext['guard'], cachePlan: ChatContext['cachePlan']): ChatContext {
  return { request: c.request, path: c.path, query: c.query, params: c.params, trace: c.trace, headers: c.headers, extras: c.extras, codec, req, plan, guard, cachePlan };
}

/** The status's error kind (for rejects, which carry a status only). */
function kindOfStatus(status: number): GatewayError['kind'] {
  return status === 413 ? 'request_too_large' : status === 404 ? 'not_found' : status >= 500 ? 'internal' : 'invalid_request';
}

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
  /** Records emitted since the last flush (annotated on the log-export span). */
  private unflushed = 0;
  /** Keys, allow lists, rate limits and budgets; undefined when the gateway is open. */
  readonly policy: Policy | undefined;
  /** The Bedrock-native door (`/bedrock/model/{id}/invoke...`) and its model-id table. */
  private bedrockDoors?: Promise<BedrockDoors>;
  /** MCP tool servers at /mcp/<name> (shared/mcp). */
  readonly mcp: McpGateway;
  /** Response cache (shared/cache); undefined without a `cache` section, and until it is loaded (`ready`). */
  cache: ResponseCache | undefined;
  /** The response cache once its module is loaded (a `cache` section on). */
  private readonly cacheLoad?: Promise<ResponseCache>;
  /** Resolves when what the configuration turns on and the gateway loads at start is there (the response cache). */
  readonly ready: Promise<void>;
  /** Guardrails (shared/guardrails); undefined without a `guardrails` section. */
  readonly guardrails: Guardrails | undefined;
  private readonly log: GatewayLogger;
  /** Stored Responses conversations (shared/responses, docs/responses.md). */
  private readonly responses: StatefulResponses;

  constructor(private readonly opts: GatewayOptions) {
    const log = (this.log = opts.logger ?? jsonLinesLogger);
    this.policy = createPolicy(opts.config, opts.env, opts.store, opts.now, (err) => log.error('policy store error', { error: errorText(err) }), log);
    this.providers = buildProviders(opts.config, opts.env);
    this.router = new Router(opts.config, this.providers);
    this.models = Object.entries(opts.config.models).map(([id, m]) => ({
      id,
      route: m.groups.map((g) => g.targets.map((t) => `${t.provider}/${t.model}${g.targets.length > 1 ? ` (weight ${t.weight})` : ''}`).join(' + ')).join(' -> fallback '),
      live: m.groups.some((g) => g.targets.some((t) => this.providers.get(t.provider)!.live)),
    }));
    this.sinks = opts.sinks ?? [];
    this.mcp = new McpGateway(opts.config, opts.env, this.policy, log);
    this.responses = new StatefulResponses({ config: opts.config, env: opts.env, now: opts.now ?? Date.now, log });
    const { cache, guardrails } = opts.config;
    // The cache is loaded at once when it is on: every chat request asks it, and the first would wait.
    if (cache?.enabled) this.cacheLoad = loadResponseCache().then((m) => (this.cache = new m.ResponseCache(cache, opts.env, { now: opts.now, store: opts.config.store, onError: (err) => log.error('response cache error', { error: errorText(err) }), embed: (model, text, trace) => this.embedText(model, text, trace) })));
    this.ready = this.cacheLoad ? this.cacheLoad.then(() => undefined) : Promise.resolve();
    // A cache that fails to load fails the requests that need it (and `ready`, which the local
    // server awaits before it listens); it never surfaces as an unhandled rejection.
    this.cacheLoad?.catch(() => {});
    this.ready.catch(() => {});
    this.guardrails = guardrails ? new Guardrails(guardrails, opts.env) : undefined;
  }

  handle(request: Request, extras: RequestExtras): Promise<Response> {
    // `/iam/<route>` is `<route>` for the IAM caller the shell verified (shared/auth/iam.ts).
    if (this.opts.config.auth?.iam) request = stripIamPrefix(request, extras.iamPrincipal);
    // W3C trace context (with the Lambda invocation's X-Ray trace, when there is one); upstream
    // calls made under the request's signal send it on as child spans (shared/tracing).
    const tc = startTrace(request.headers, process.env._X_AMZN_TRACE_ID);
    const spans = this.opts.spans;
    if (!spans) return this.handleTraced(request, extras, tc);
    // One span per request (annotated from its log record when it ends); attempts and store calls nest in it.
    const span = spans.start('gateway');
    return withSpans(spans, span, () => this.handleTraced(request, extras, tc, span));
  }

  /**
   * Answer (in the route's error format) and log a request the shell refused before it could
   * become a web Request; `request` is the shell's stand-in (the path and headers it could keep).
   */
  reject(request: Request, extras: RequestExtras, reject: ShellReject): Promise<Response> {
    return this.handleTraced(request, extras, startTrace(request.headers, process.env._X_AMZN_TRACE_ID), undefined, reject);
  }

  /**
   * The whole API surface, matched in order (see shared/routes.ts): the model routes need a gateway
   * key (checked before the handler runs), `open` ones do not. A new route is one entry here.
   */
  private readonly routes = new RouteTable<RequestContext>([
    // The admin API and the stats pages (their own token or the shell's IAM caller; their own methods).
    { methods: '*', path: '/admin', open: true, handler: (c) => this.admin(c) },
    { methods: '*', path: '/admin/{rest+}', open: true, handler: (c) => this.admin(c) },
    // MCP tool servers: JSON-RPC answers, errors included; the key is checked by the MCP gateway.
    { methods: '*', path: '/mcp', open: true, handler: (c) => this.mcpRelay(c) },
    { methods: '*', path: '/mcp/{server+}', open: true, handler: (c) => this.mcpRelay(c) },
    { methods: ['GET', 'HEAD'], path: '/', open: true, handler: (c) => this.health(c) },
    { methods: ['GET', 'HEAD'], path: '/health', open: true, handler: (c) => this.health(c) },
    // Bedrock's control-plane listing: Claude Code asks for it first, without a key.
    { methods: ['GET'], path: '/bedrock/inference-profiles', open: true, handler: (c) => this.inferenceProfiles(c) },
    { methods: ['GET'], path: '/bedrock/inference-profiles/{id+}', open: true, handler: (c) => this.inferenceProfiles(c) },
    // The chat doors: /v1/chat/completions, /v1/responses, /v1/messages (shared/formats/index.ts),
    // each loaded by its first request.
    ...Object.entries(CHAT_DOORS).map(([path, door]) => ({
      methods: ['POST'],
      path,
      handler: (c: RequestContext) => (door.codec ? this.chatWithKeepAlive(c, door.codec) : door.get().then((codec) => this.chatWithKeepAlive(c, codec))),
    })),
    { methods: ['POST'], path: '/bedrock/model/{modelId+}/invoke', handler: async (c) => this.chat(c, (await this.bedrock()).invoke) },
    { methods: ['POST'], path: '/bedrock/model/{modelId+}/invoke-with-response-stream', handler: async (c) => this.chat(c, (await this.bedrock()).invoke) },
    { methods: ['POST'], path: '/bedrock/model/{modelId+}/converse', handler: async (c) => this.chat(c, (await this.bedrock()).converse) },
    { methods: ['POST'], path: '/bedrock/model/{modelId+}/converse-stream', handler: async (c) => this.chat(c, (await this.bedrock()).converse) },
    { methods: ['POST'], path: '/bedrock/model/{modelId+}/count-tokens', handler: (c) => this.bedrockCountTokens(c) },
    { methods: ['POST'], path: '/v1/embeddings', handler: (c) => this.embeddings(c) },
    { methods: ['POST'], path: '/v1/messages/count_tokens', handler: (c) => this.countTokens(c) },
    { methods: ['GET'], path: '/v1/models', handler: (c) => this.listModels(c) },
    { methods: ['GET'], path: '/v1/models/{id+}', handler: (c) => this.model(c) },
    // Stored Responses conversations (shared/responses, docs/responses.md).
    { methods: ['GET', 'DELETE'], path: '/v1/responses/{id}', handler: (c) => this.storedResponse(c) },
    { methods: ['GET'], path: '/v1/responses/{id}/input_items', handler: (c) => this.storedResponse(c) },
  ]);

  private async handleTraced(request: Request, extras: RequestExtras, tc: TraceContext, span?: Span, reject?: ShellReject): Promise<Response> {
    const { pathname, query } = splitUrl(request.url);
    const path = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
    const incomingId = request.headers.get('x-request-id');
    const requestId = incomingId && REQUEST_ID.test(incomingId) ? incomingId : crypto.randomUUID();
    const trace = new RequestTrace(requestId, request, reject?.path ?? path, (r) => this.emit(r, extras, span));
    if (reject?.method) trace.record.method = reject.method.slice(0, 32);
    if (this.opts.config.logging.bodies?.enabled) captureBodies(trace, this.opts.config.logging.bodies);
    const ctx: RequestContext = { request, path, query, params: {}, trace, headers: { 'x-request-id': requestId, traceparent: ownTraceparent(tc) }, extras };
    trace.context = tc;
    trace.record.traceId = tc.traceId;
    if (tc.xrayTraceId) trace.record.xrayTraceId = tc.xrayTraceId;

    try {
      if (reject) {
        const allow = reject.status === 405 ? this.routes.allowed(path) : undefined;
        throw new GatewayError(kindOfStatus(reject.status), reject.message, { status: reject.status, code: reject.code, headers: allow ? { allow } : undefined });
      }
      // A path whose percent-escapes do not decode (`/v1/models/%`) names no route: 400, before any handler decodes it.
      if (path.includes('%')) {
        try {
          decodeURIComponent(path);
        } catch {
          throw new GatewayError('invalid_request', 'The request path has a malformed percent-escape.', { code: 'invalid_path' });
        }
      }
      const hit = this.routes.match(request.method, path);
      // Every model route needs a key (401 in the caller's format), before its 404 or 405 too.
      if (this.policy && !(hit.route ? hit.route.open : isPublicPath(path))) {
        // A key cached on this instance is checked here and now: a promise only when the store is asked.
        const access = this.policy.authenticateNow(request, trace, extras);
        if (access instanceof Promise) await access;
      }
      if (hit.route) {
        ctx.params = hit.params;
        return await hit.route.handler(ctx);
      }
      if (hit.allow) throw new GatewayError('invalid_request', `Method ${request.method} is not allowed on ${path}; use ${hit.allow.replace(', ', ' or ')}.`, { status: 405, code: 'method_not_allowed', headers: { allow: hit.allow } });
      throw new GatewayError('not_found', `Unknown route: ${request.method} ${path}`, { code: 'unknown_route' });
    } catch (err) {
      const ge = toGatewayError(err);
      if (ge.kind === 'internal') this.log.error('unhandled error', { requestId, error: errorText(err, true) });
      trace.fail(ge.status === 499 ? 'client_closed' : 'error', ge);
      return this.done(trace, this.errorResponse(path, ge, ctx.headers, request));
    }
  }

  private async admin({ request, path, trace, extras }: RequestContext): Promise<Response> {
    const tokenEnv = this.opts.config.auth?.adminTokenEnv ?? 'GATEWAY_ADMIN_TOKEN';
    const adminToken = this.opts.env[tokenEnv];
    // The local server keeps a generated token in a file and says so (GATEWAY_ADMIN_TOKEN_FILE).
    const tokenFile = this.opts.env.GATEWAY_ADMIN_TOKEN_FILE;
    const adminTokenSource = tokenFile ? `the contents of ${tokenFile}, or set ${tokenEnv}` : `the value of ${tokenEnv}`;
    if (STATS_PATHS.has(path)) return this.done(trace, await handleStatsRoute(request, path, { adminToken, adminTokenSource, adminPrincipal: extras.adminPrincipal, now: this.opts.now, ...localLogs(this.sinks) }));
    return this.done(trace, await handleAdmin(request, path, { policy: this.policy, adminToken, adminTokenSource, adminPrincipal: extras.adminPrincipal, maxBodyBytes: this.opts.config.server.maxBodyBytes, now: this.opts.now }));
  }

  private async mcpRelay(ctx: RequestContext): Promise<Response> {
    // Its streams get keep-alives too.
    return withSseKeepAlive(await this.mcp.handle(ctx, (r) => this.emit(r, ctx.extras)), this.opts.config.server.sseKeepAliveMs);
  }

  private health({ trace, headers }: RequestContext): Response {
    return this.done(trace, jsonResponse({ status: 'ok', models: this.models.filter((m) => m.live).length }, 200, headers));
  }

  /**
   * The Bedrock-native doors (`/bedrock/model/{id}/invoke...`, `.../converse...`) and their model-id
   * table, loaded on the first /bedrock request (a chunk of their own in a bundle).
   */
  private bedrock(): Promise<BedrockDoors> {
    return (this.bedrockDoors ??= Promise.all([import('./entries/bedrock-invoke.ts'), import('./entries/bedrock-converse.ts')]).then(([inv, conv]) => {
      const index = new inv.BedrockModelIndex(this.opts.config);
      return { module: inv, index, invoke: inv.createBedrockInvokeDoor(index, { keepAliveMs: this.opts.config.server.sseKeepAliveMs }), converse: conv.createBedrockConverseDoor(index) };
    }));
  }

  private async inferenceProfiles({ request, trace, headers }: RequestContext): Promise<Response> {
    const region = Object.values(this.opts.config.providers).flatMap((p) => (p.type === 'bedrock' && p.region ? [p.region] : []))[0];
    const { module, index } = await this.bedrock();
    return this.done(trace, module.inferenceProfilesResponse(index, request, region ?? this.opts.env.AWS_REGION ?? 'us-east-1', headers));
  }

  private listModels({ request, trace, headers }: RequestContext): Response {
    if (this.policy) Object.assign(headers, this.policy.currentHeaders(trace, 'openai-chat'));
    return this.done(trace, listModelsResponse(request, this.router.listModels().filter((m) => this.policy?.allows(trace, m.id) ?? true), headers));
  }

  private model({ request, params, trace, headers }: RequestContext): Response {
    const id = params.id!;
    const m = this.router.listModels().find((x) => x.id === id);
    if (!m || !(this.policy?.allows(trace, id) ?? true)) throw new GatewayError('not_found', `The model '${id}' does not exist`, { code: 'model_not_found', param: 'model' });
    return this.done(trace, modelResponse(request, m, headers));
  }

  private embeddings(ctx: RequestContext): Promise<Response> {
    const { request, trace } = ctx;
    return handleEmbeddings(ctx, {
      maxBodyBytes: this.opts.config.server.maxBodyBytes,
      route: (name) => this.permittedPlan(trace, name),
      run: this.callRunner(trace, clientSignalOf(request)),
      admit: async (model, tokens) => (this.policy ? this.policy.admit(trace, { model, tokens }, 'openai-chat') : {}),
    });
  }

  private countTokens(ctx: RequestContext): Promise<Response> {
    const { request, trace } = ctx;
    trace.record.frontDoor = 'anthropic-messages';
    if (this.policy) Object.assign(ctx.headers, this.policy.currentHeaders(trace, 'anthropic-messages'));
    return countTokens(ctx, { maxBodyBytes: this.opts.config.server.maxBodyBytes, route: (name) => this.permittedPlan(trace, name), run: this.callRunner(trace, clientSignalOf(request)) });
  }

  private async bedrockCountTokens(ctx: RequestContext): Promise<Response> {
    const { request, trace } = ctx;
    trace.record.frontDoor = 'bedrock-invoke';
    const { module, index } = await this.bedrock();
    return module.handleBedrockCountTokens(ctx, { index, maxBodyBytes: this.opts.config.server.maxBodyBytes, route: (name) => this.permittedPlan(trace, name), run: this.callRunner(trace, clientSignalOf(request)) });
  }

  /** The route plan of a model name, once the key's allow list has let it through (403 otherwise). */
  private permittedPlan(trace: RequestTrace, name: string): RoutePlan {
    this.policy?.permit(trace, name);
    return this.router.resolve(name);
  }

  /** The attempt runner for one-shot upstream calls (embeddings, count_tokens), bound to this request. */
  private callRunner(trace: RequestTrace, signal: ClientSignal): CallRunner {
    return (plan, call, filter) => runCall(this.router, { plan, requestId: trace.record.requestId, signal, trace, filter }, call);
  }

  /** An error in the shape of the API the path belongs to (or that the caller speaks, on a shared route). */
  private errorResponse(path: string, err: GatewayError, headers: Record<string, string>, request: Request): Response {
    const res = errorDoorFor(path, request.headers).error(err);
    for (const [k, v] of Object.entries(err.headers)) if (!res.headers.has(k)) res.headers.set(k, v);
    for (const [k, v] of Object.entries(headers)) res.headers.set(k, v);
    return res;
  }

  /** End the trace for a response whose body is already complete. */
  private done(trace: RequestTrace, res: Response): Response {
    // Every answer names its request (the admin API builds its own responses).
    if (!res.headers.has('x-request-id')) {
      try {
        res.headers.set('x-request-id', trace.record.requestId);
      } catch {
        // immutable headers: leave them
      }
    }
    trace.end(res.status);
    return res;
  }

  /** `GET`/`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`. */
  private async storedResponse(ctx: RequestContext): Promise<Response> {
    ctx.trace.record.frontDoor = 'openai-responses';
    return this.done(ctx.trace, await this.responses.route(ctx.request, ctx.path, ctx.trace, ctx.headers));
  }

  /** A chat door of its own API: long silences in a stream get SSE comments, so idle timeouts on the way never cut it. */
  private async chatWithKeepAlive(ctx: RequestContext, codec: FrontDoorCodec): Promise<Response> {
    const { trace, extras } = ctx;
    // A Responses answer is kept (store) after the client has it; other doors pass untouched.
    const res = this.responses.capture(trace, await this.chat(ctx, codec), (p) => extras.waitUntil(p), () => trace.record.provider);
    return withSseKeepAlive(res, this.opts.config.server.sseKeepAliveMs);
  }

  private async chat(ctx: RequestContext, codec: FrontDoorCodec): Promise<Response> {
    const { request, trace, headers } = ctx;
    trace.record.frontDoor = codec.door;
    // InvokeModel's body is a blob: the AWS SDK sends it as application/octet-stream unless the caller names a type.
    const read = readJsonBody(request, this.opts.config.server.maxBodyBytes, codec.door === 'bedrock-invoke' ? { alsoAccept: ['application/octet-stream'] } : {});
    // A body the shell read whole is parsed at once (no promise to wait on).
    const raw = read instanceof Promise ? await read : read;
    trace.captureRequest?.(raw);
    // A door whose wire body differs from what the pipeline runs (Bedrock's InvokeModel) converts it first.
    const prepared = codec.prepare?.(raw, request);
    // A Responses conversation continued by previous_response_id is rebuilt from the stored one.
    const body = codec.door === 'openai-responses' ? await this.responses.prepare(raw, trace, (m) => this.permittedPlan(trace, m)) : (prepared?.body ?? raw);
    let req = codec.parse(body, request);
    trace.record.model = req.model;
    trace.record.stream = req.stream;
    // The key's allow list first: a key may not learn from a 404 how a model it may not use is served.
    const plan = this.permittedPlan(trace, req.model);
    // Guardrails on the prompt (400 guardrail_blocked; redaction, caps), before limits and the cache.
    let rawBody = body as Record<string, unknown>;
    let guard = this.guardrails ? await this.guardrails.checkInput(trace, req, rawBody, codec.door, request.signal) : undefined;
    if (guard) ({ req, rawBody } = guard);
    // Allow list (403), budgets and rate limits (429); usage settles when the trace ends.
    // Budgets reserve the worst case at the dearest target's price (settled to the real cost after).
    if (this.policy) {
      // Admitted from this instance's leases and views without a promise; one only when the store is asked.
      const limits = this.policy.admitChatNow(trace, req, codec.door, plan.targets);
      Object.assign(headers, limits instanceof Promise ? await limits : limits);
    }
    // Without keys (no policy) a request is priced for the log record here; with them every chat
    // request that got this far is keyed, and the policy prices it when it settles.
    if (!this.policy) trace.onEnd((r) => priceUnsettled(this.opts.config.pricing, r));
    // The response cache: a hit replays the stored answer in this door's format, with no upstream call.
    // `n` choices emulated by parallel calls (shared/emulate/choices.ts): not cached, guardrails per choice.
    const choices = emulatesChoices(req.n, plan, codec.door) ? req.n : undefined;
    const cachePlan = choices ? undefined : (this.cache ?? (this.cacheLoad && (await this.cacheLoad)))?.plan(trace, req, rawBody, plan, request.headers, guard?.profile);
    const hit = cachePlan && (await this.cache!.lookup(cachePlan, trace));
    if (hit) return this.replayCached(chatContext(ctx, codec, req, plan, guard, cachePlan), hit);
    if (cachePlan) headers['x-gateway-cache'] = 'miss';
    else if (trace.record.cacheStatus === 'bypass') headers['x-gateway-cache'] = 'bypass';

    const runInput = {
      plan,
      req,
      door: codec.door,
      rawBody,
      headers: prepared?.headers ?? request.headers,
      query: prepared ? '' : ctx.query,
      requestId: trace.record.requestId,
      signal: clientSignalOf(request),
      trace,
    };
    const served = choices
      ? await runChoices(this.router, runInput, choices, (s) => passthroughEvents(codec.door, s.response, s.target.provider.name, s.target.model), guard?.output)
      : await runAttempts(this.router, runInput);
    // Each choice went through the output guardrails already (runChoices).
    if (choices && guard) guard = { ...guard, output: undefined };
    const { provider, model } = served.target;
    trace.record.provider = provider.name;
    trace.record.upstreamModel = model;
    const meta = {
      created: Math.floor(Date.now() / 1000),
      // Object.assign, not `{ ...headers, more }`: V8 (node 20) gives an object spread followed by
      // new keys a new map each time, several microseconds a request.
      headers: Object.assign({}, headers, { 'x-gateway-provider': provider.name, 'x-gateway-model': model, 'x-gateway-attempts': String(trace.record.attempts ?? 1) }),
    };
    const servedBy = cachePlan && { provider: provider.name, model, door: codec.door };
    trace.record.status = 200;
    let first: IteratorResult<StreamEvent>;
    let events: AsyncIterator<StreamEvent>;
    if (served.kind === 'passthrough') {
      trace.record.status = served.response.status;
      // Output guardrails need the answer as events: a same-format answer is decoded for them.
      const decoded = guard?.output && served.response.status === 200 ? passthroughEvents(codec.door, served.response, provider.name, model) : undefined;
      if (!decoded) {
        const response = servedBy ? this.cache!.tapPassthrough(cachePlan!, served.response, servedBy, trace, ctx.extras) : served.response;
        return codec.respondPassthrough(req, tapBody(response, trace), meta, trace);
      }
      trace.record.status = 200;
      first = await decoded.next();
      events = decoded;
    } else ({ first, events } = served);
    // Only an answer from events needs the whole chat context.
    return this.answer(chatContext(ctx, codec, req, plan, guard, cachePlan), first, events, meta, servedBy);
  }

  /**
   * Encode an answer from events, through the output guardrails and, for an answer an upstream
   * just served (`servedBy`), the cache's copy when the request may be cached.
   */
  private async answer(chat: ChatContext, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, servedBy?: Parameters<ResponseCache['tapEvents']>[3]): Promise<Response> {
    const { codec, req, trace, guard, cachePlan } = chat;
    if (guard?.output) {
      const pending = first;
      let used = false;
      const inner = events;
      events = guard.output({
        next: () => (used ? inner.next() : ((used = true), Promise.resolve(pending))),
        return: (v?: unknown) => inner.return?.(v as never) ?? Promise.resolve({ done: true, value: undefined }),
      });
      first = await events.next();
    }
    if (cachePlan && servedBy) events = this.cache!.tapEvents(cachePlan, first, events, servedBy, trace, chat.extras);
    // Body logging (when on) sees the answer as the door gets it.
    events = tapEvents(first, events, trace);
    return codec.respondFromEvents(req, first, events, meta, trace);
  }

  /** Answer from the cache: the stored events, replayed in this door's format (streamed when asked). */
  private async replayCached(chat: ChatContext, hit: CacheHit): Promise<Response> {
    const r = chat.trace.record;
    r.cacheHit = true;
    r.cacheStatus = hit.semantic ? 'semantic_hit' : 'hit';
    r.provider = hit.entry.provider;
    r.upstreamModel = hit.entry.upstreamModel;
    r.attempts = 0;
    r.costUsd = 0;
    r.status = 200;
    const meta = {
      created: Math.floor(Date.now() / 1000),
      headers: Object.assign({}, chat.headers, { 'x-gateway-cache': 'hit', 'x-gateway-cache-age': String(hit.age), 'x-gateway-provider': hit.entry.provider, 'x-gateway-model': hit.entry.upstreamModel, 'x-gateway-attempts': '0' }),
    };
    if (hit.semantic) meta.headers['x-gateway-cache'] = 'semantic-hit';
    // The stored answer already went through this request's output guardrails: entries are keyed by
    // the guardrail profile (name + configuration hash), so it is replayed as stored, without
    // running them (and paying a Bedrock guardrail call) again.
    return this.answer(chatContext(chat, chat.codec, chat.req, chat.plan, undefined, chat.cachePlan), await hit.events.next(), hit.events, meta);
  }

  /** One embedding through the gateway's own providers (the semantic cache's query vectors). */
  private async embedText(model: string, text: string, trace: RequestTrace): Promise<number[]> {
    const plan = this.router.resolve(model);
    const canEmbed = (t: { provider: Provider }) => typeof t.provider.embed === 'function';
    if (!plan.groups.flat().some(canEmbed)) throw new GatewayError('invalid_request', `The model '${model}' cannot make embeddings.`, { code: 'model_not_supported' });
    // Through the attempt runner (fallback, deadlines, spans), on the side: the request's attempt log
    // is its chat call's, and each target's deadline is capped (the client's leaving does not stop it).
    const capped = (t: ResolvedTarget) => ({ ...t, timeouts: { ...t.timeouts, firstByteTimeoutMs: Math.min(t.timeouts.firstByteTimeoutMs, SIDE_CALL_MS), totalTimeoutMs: Math.min(t.timeouts.totalTimeoutMs, SIDE_CALL_MS) } });
    const sidePlan = { ...plan, groups: plan.groups.map((g) => g.map(capped)) };
    const { value: result } = await runCall(this.router, { plan: sidePlan, requestId: trace.record.requestId, signal: NEVER, context: trace.context, filter: canEmbed }, (t, ctx) =>
      t.provider.embed!(
        { model, input: [text], inputKind: 'text', encodingFormat: 'float' },
        { requestId: trace.record.requestId, signal: ctx.signal, upstreamModel: t.model, rawBody: { model: t.model, input: [text], encoding_format: 'float' }, headers: new WebHeaders() },
      ),
    );
    if (result.kind === 'vectors') return result.vectors[0]!;
    if (!result.response.ok) throw new GatewayError('upstream', `The embedding model '${model}' answered ${result.response.status}.`);
    const json = (await result.response.json()) as { data?: { embedding?: number[] }[] };
    const v = json.data?.[0]?.embedding;
    if (!Array.isArray(v)) throw new GatewayError('upstream', `The embedding model '${model}' sent no vector.`);
    return v;
  }

  private emit(record: RequestRecord, extras: RequestExtras, span?: Span): void {
    if (span) {
      span.annotate(requestAnnotations(record));
      span.end();
    }
    this.unflushed++;
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
    const records = this.unflushed;
    this.unflushed = 0;
    // Usage batched by the policy is written with the logs (its failures are reported by the policy).
    const flushAll = () => Promise.all([...this.sinks.map((s) => s.flush?.()), this.policy?.flush()]);
    const spans = this.opts.spans;
    if (!spans || records === 0) return void (await flushAll());
    // The log export (Firehose PutRecordBatch calls nest in it).
    await withSpans(spans, undefined, () => inSpan('log export', flushAll, { annotations: { records } }));
  }
}
