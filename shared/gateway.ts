import type { GatewayConfig } from './config/schema.ts';
import { readJsonBody } from './http/body.ts';
import { GatewayError, jsonResponse, toGatewayError } from './http/errors.ts';
import { CHAT_DOORS, errorDoorFor } from './formats/index.ts';
import type { FrontDoorCodec } from './formats/types.ts';
import { buildProviders } from './providers/index.ts';
import type { Provider } from './providers/types.ts';
import { RequestTrace, type LogSink, type RequestRecord } from './telemetry/record.ts';

export interface GatewayOptions {
  config: GatewayConfig;
  /** Where provider secrets are read from (process.env in the shells). */
  env: Record<string, string | undefined>;
  sinks?: LogSink[];
  /** Called when a sink throws; the request is not affected. */
  onSinkError?: (err: unknown) => void;
}

/** What the shell (local server or Lambda) lends to a request. */
export interface RequestExtras {
  /** Keep work alive after the response (log writes); the shell awaits it before it idles. */
  waitUntil(p: Promise<unknown>): void;
}

export interface LiveModel {
  id: string;
  provider: string;
  upstreamModel: string;
  live: boolean;
  notLiveReason?: string;
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
  private readonly byName: Map<string, LiveModel>;
  private readonly sinks: LogSink[];

  constructor(private readonly opts: GatewayOptions) {
    this.providers = buildProviders(opts.config, opts.env);
    this.models = Object.entries(opts.config.models).map(([id, m]) => {
      const p = this.providers.get(m.provider)!;
      return { id, provider: m.provider, upstreamModel: m.model, live: p.live, notLiveReason: p.notLiveReason };
    });
    this.byName = new Map(this.models.map((m) => [m.id, m]));
    this.sinks = opts.sinks ?? [];
  }

  async handle(request: Request, extras: RequestExtras): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.length > 1 && url.pathname.endsWith('/') ? url.pathname.slice(0, -1) : url.pathname;
    const incomingId = request.headers.get('x-request-id');
    const requestId = incomingId && REQUEST_ID.test(incomingId) ? incomingId : crypto.randomUUID();
    const trace = new RequestTrace(requestId, request, path, (r) => this.emit(r, extras));
    const baseHeaders: Record<string, string> = { 'x-request-id': requestId };

    try {
      const chatDoor = request.method === 'POST' ? CHAT_DOORS[path] : undefined;
      if (chatDoor) {
        trace.record.frontDoor = chatDoor.door;
        return await this.chat(chatDoor, request, trace, baseHeaders);
      }
      const route = `${request.method} ${path}`;
      switch (route) {
        case 'GET /v1/models':
          return this.done(trace, jsonResponse({ object: 'list', data: this.models.filter((m) => m.live).map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.provider })) }, 200, baseHeaders));
        case 'GET /health':
        case 'HEAD /health':
        case 'GET /':
        case 'HEAD /':
          return this.done(trace, jsonResponse({ status: 'ok', models: this.models.filter((m) => m.live).length }, 200, baseHeaders));
      }
      if (path.startsWith('/v1/models/') && (request.method === 'GET')) {
        const id = decodeURIComponent(path.slice('/v1/models/'.length));
        const m = this.byName.get(id);
        if (!m?.live) throw new GatewayError('not_found', `The model '${id}' does not exist`, { code: 'model_not_found', param: 'model' });
        return this.done(trace, jsonResponse({ id: m.id, object: 'model', created: 0, owned_by: m.provider }, 200, baseHeaders));
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
    const req = codec.parse(body, request);
    trace.record.model = req.model;
    trace.record.stream = req.stream;
    const model = this.byName.get(req.model);
    if (!model) throw new GatewayError('not_found', `The model '${req.model}' does not exist or you do not have access to it.`, { code: 'model_not_found', param: 'model' });
    const provider = this.providers.get(model.provider)!;
    if (!provider.live) throw new GatewayError('not_found', `The model '${req.model}' is configured but its provider "${provider.name}" is not enabled.`, { code: 'model_not_available', param: 'model' });
    trace.record.provider = provider.name;
    trace.record.upstreamModel = model.upstreamModel;

    const result = await provider.chat(req, {
      requestId: trace.record.requestId,
      signal: request.signal,
      frontDoor: codec.door,
      rawBody: body as Record<string, unknown>,
      headers: request.headers,
      upstreamModel: model.upstreamModel,
    });
    const meta = { created: Math.floor(Date.now() / 1000), headers: { ...headers, 'x-gateway-provider': provider.name, 'x-gateway-model': model.upstreamModel } };
    trace.record.status = 200;
    if (result.kind === 'passthrough') {
      trace.record.status = result.response.status;
      return codec.respondPassthrough(req, result.response, meta, trace);
    }
    // Pull the first event before answering, so a failure before any output is still a clean error response.
    const first = await result.events.next();
    return codec.respondFromEvents(req, first, result.events, meta, trace);
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
