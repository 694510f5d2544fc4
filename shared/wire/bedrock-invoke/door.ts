import { EventStreamCodec, type MessageHeaders } from '@smithy/eventstream-codec';
import type { RequestContext } from '../../core/context.ts';
import type { Provider } from '../../providers/types.ts';
import type { GatewayConfig } from '../../config/schema.ts';
import type { ChatRequest, StreamEvent } from '../../core/types.ts';
import { GatewayError, jsonResponse } from '../../http/errors.ts';
import { withSseKeepAlive } from '../../http/keepalive.ts';
import { framedResponse } from '../stream.ts';
import { eventData, SseSplitter } from '../../http/sse.ts';
import type { RequestTrace } from '../../telemetry/record.ts';
import { readJsonBody } from '../../http/body.ts';
import type { CallRunner } from '../../routing/execute.ts';
import type { RoutePlan } from '../../routing/router.ts';
import { estimateInputTokens } from '../anthropic-messages/count-tokens.ts';
import { parseConverseRequest } from '../bedrock-converse/door.ts';
import { parseAnthropicRequest, respondFromEvents as anthropicFromEvents, respondPassthrough as anthropicPassthrough } from '../anthropic-messages/door.ts';
import { AnthropicUsage, DEFAULT_ANTHROPIC_VERSION, eventName, readErrorEvent } from '../anthropic-messages/wire.ts';
import { isObject, type Json } from '../common.ts';
import { bedrockErrorResponse } from './errors.ts';
import type { EncodeMeta, FrontDoorCodec } from '../../formats/types.ts';
import { webResponse } from '../../http/bytes.ts';
import { MAX_COUNT_ANSWER_BYTES, readAnswerJson } from '../../http/answer.ts';
import { WebHeaders } from '../../http/web.ts';

/**
 * The Bedrock-native front door: Amazon Bedrock Runtime's InvokeModel API with an Anthropic
 * (Claude) body, on `/bedrock`, so clients built for Bedrock (Claude Code with
 * `CLAUDE_CODE_USE_BEDROCK=1`, the AWS SDKs, the Anthropic Bedrock SDK) can use the gateway as
 * their Bedrock endpoint:
 * - `POST /bedrock/model/{modelId}/invoke`: JSON in, the Anthropic message JSON out;
 * - `POST /bedrock/model/{modelId}/invoke-with-response-stream`: JSON in, AWS event-stream frames
 *   out (`application/vnd.amazon.eventstream`), one `chunk` event per Anthropic stream event with
 *   the event's JSON base64-encoded in `bytes`, as Bedrock sends them;
 * - errors as Bedrock sends them: the status, `x-amzn-errortype`, and `{"message": ...}`;
 *   failures mid-stream as `:message-type: exception` frames.
 *
 * The body is Anthropic's Messages body with `anthropic_version` (and optionally `anthropic_beta`)
 * instead of the `anthropic-version` / `anthropic-beta` headers, no `model` (it is in the path) and
 * no `stream` (the path says). The gateway turns it into an Anthropic Messages request (betas into
 * the `anthropic-beta` header), so the request runs the same pipeline as `/v1/messages`: keys,
 * limits, routing with fallback, logging. A Claude model on a `bedrock` provider is then called
 * with InvokeModel(WithResponseStream) and the client's body as it came; an `anthropic` provider
 * gets it as a Messages request; other providers are translated.
 *
 * The model id in the path (raw `:` or `%3A`) is resolved by BedrockModelIndex. In long silences
 * the stream carries Anthropic `ping` events, so idle timeouts on the way (API Gateway) never cut it.
 */

export type BedrockOperation = 'invoke' | 'invoke-with-response-stream' | 'converse' | 'converse-stream' | 'count-tokens';

/** The anthropic_version Bedrock accepts for Claude. */
const BEDROCK_ANTHROPIC_VERSION = 'bedrock-2023-05-31';

const MODEL_PATH = /^\/bedrock\/model\/(.+)\/(invoke|invoke-with-response-stream|converse|converse-stream|count-tokens)\/?$/;

/** The model id and operation of a `/bedrock/model/{modelId}/{operation}` path, or undefined. */
export function parseBedrockPath(path: string): { modelId: string; operation: BedrockOperation } | undefined {
  const m = MODEL_PATH.exec(path);
  if (!m) return undefined;
  let modelId = m[1]!;
  try {
    modelId = decodeURIComponent(modelId);
  } catch {
    // not percent-encoded after all: keep it as it came
  }
  return { modelId, operation: m[2] as BedrockOperation };
}

/** Cross-region inference profile prefixes (`us.anthropic...`, `global.anthropic...`). */
const GEO_PREFIX = /^(?:us|us-gov|eu|apac|jp|au|ca|global)\./;

/** The bare model id: the last part of an ARN, without a cross-region prefix. */
function looseId(id: string): string {
  return id.slice(id.lastIndexOf('/') + 1).replace(GEO_PREFIX, '');
}

/**
 * Anthropic's own name for a Claude model on Bedrock (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`
 * -> `claude-sonnet-4-5-20250929`), or undefined for other models.
 */
export function anthropicModelName(bedrockId: string): string | undefined {
  const m = /^anthropic\.(claude-[a-z0-9.-]+?)(?:-v\d+(?::\d+)?)?$/.exec(looseId(bedrockId));
  return m?.[1];
}

/**
 * Which configured model (alias) a Bedrock model id in a `/bedrock/model/{id}/...` path means, in
 * this order:
 * 1. `bedrockApi.models` in the configuration (Bedrock id -> configured name), exact, then ignoring
 *    the cross-region prefix (`us.`/`eu.`/`global.`...);
 * 2. a configured model of that name (clients can send the alias itself, e.g. ANTHROPIC_MODEL=claude);
 * 3. the first configured model with a `bedrock` target of that id (exact, then ignoring the prefix),
 *    so `us.anthropic.claude-sonnet-4-5-20250929-v1:0` reaches the alias that serves it, with its fallbacks;
 * 4. the first configured model named like the Claude model, or with an `anthropic` target of it
 *    (`claude-sonnet-4-5-20250929`, or without its date: `claude-sonnet-4-5`).
 * Anything else is unknown (Bedrock's ValidationException).
 */
export class BedrockModelIndex {
  private readonly exact = new Map<string, string>();
  private readonly loose = new Map<string, string>();
  private readonly claude = new Map<string, string>();
  /** Bedrock model ids the gateway serves, for the inference-profile listing. */
  readonly bedrockIds: string[] = [];
  /** Configured model name -> the Claude model id on Bedrock it serves first, if any. */
  private readonly claudeIdOf = new Map<string, string>();

  constructor(config: Pick<GatewayConfig, 'models' | 'providers'> & { bedrockApi?: { models?: Record<string, string> } }) {
    const setOnce = (map: Map<string, string>, k: string, v: string) => {
      if (!map.has(k)) map.set(k, v);
    };
    const ids = new Set<string>();
    for (const [id, name] of Object.entries(config.bedrockApi?.models ?? {})) {
      setOnce(this.exact, id, name);
      setOnce(this.loose, looseId(id), name);
      ids.add(id);
    }
    for (const name of Object.keys(config.models)) setOnce(this.exact, name, name);
    for (const [name, model] of Object.entries(config.models)) {
      for (const t of model.groups.flatMap((g) => g.targets)) {
        const type = config.providers[t.provider]?.type;
        if (type === 'bedrock') {
          setOnce(this.exact, t.model, name);
          setOnce(this.loose, looseId(t.model), name);
          if (anthropicModelName(t.model)) {
            ids.add(t.model);
            setOnce(this.claudeIdOf, name, t.model);
          }
        } else if (type === 'anthropic') {
          setOnce(this.claude, t.model, name);
        }
      }
    }
    for (const name of Object.keys(config.models)) setOnce(this.claude, name, name);
    this.bedrockIds = [...ids];
  }

  /** The Claude model on Bedrock a model id (as resolve() takes it) stands for, if known. */
  claudeModelFor(modelId: string): string | undefined {
    if (anthropicModelName(modelId)) return modelId;
    const name = this.resolve(modelId);
    return name ? this.claudeIdOf.get(name) : undefined;
  }

  resolve(modelId: string): string | undefined {
    const hit = this.exact.get(modelId) ?? this.loose.get(looseId(modelId));
    if (hit) return hit;
    const claude = anthropicModelName(modelId);
    if (!claude) return undefined;
    return this.claude.get(claude) ?? this.claude.get(claude.replace(/-\d{8}$/, ''));
  }
}

function validation(message: string): GatewayError {
  return new GatewayError('invalid_request', message, { code: 'bedrock_validation' });
}

/** The ValidationException Bedrock answers for a model id it does not know. */
export function unknownModelError(modelId: string): GatewayError {
  return new GatewayError('invalid_request', 'The provided model identifier is invalid.', { code: 'model_not_found', param: 'modelId', cause: modelId });
}

/**
 * The Bedrock request as the Anthropic Messages request the pipeline runs: the body with `model`
 * (the configured name) and `stream` set and the Bedrock-only keys removed; headers with
 * `anthropic-version` and the body's `anthropic_beta` as `anthropic-beta`.
 */
function bedrockToAnthropic(body: unknown, request: Request, model: string, stream: boolean): { body: Json; headers: Headers } {
  if (!isObject(body)) throw validation('Malformed input request: the body must be a JSON object, please reformat your input and try again.');
  const { anthropic_version: version, anthropic_beta: beta, model: _model, stream: _stream, ...rest } = body;
  if (version !== undefined && typeof version !== 'string') throw validation('Malformed input request: #/anthropic_version: expected type: String, please reformat your input and try again.');
  let betas: string[] = [];
  if (beta !== undefined && beta !== null) {
    if (!Array.isArray(beta) || !beta.every((b) => typeof b === 'string')) throw validation('Malformed input request: #/anthropic_beta: expected type: JSONArray of strings, please reformat your input and try again.');
    betas = beta as string[];
  }
  const headers = new WebHeaders(request.headers);
  headers.set('anthropic-version', DEFAULT_ANTHROPIC_VERSION);
  if (betas.length) headers.set('anthropic-beta', betas.join(','));
  else headers.delete('anthropic-beta');
  return { body: { ...rest, model, stream }, headers };
}

/**
 * The body for Bedrock's InvokeModel from the pipeline's Anthropic form (see bedrockToAnthropic):
 * `anthropic_version` and `anthropic_beta` (from the `anthropic-beta` header) back in, `model` and
 * `stream` out; everything else as the client sent it.
 */
export function anthropicToBedrockBody(rawBody: Json, headers: Headers): Json {
  const { model: _model, stream: _stream, ...rest } = rawBody;
  const out: Json = { anthropic_version: BEDROCK_ANTHROPIC_VERSION };
  const beta = headers.get('anthropic-beta');
  const betas = beta ? beta.split(',').map((b) => b.trim()).filter(Boolean) : [];
  if (betas.length) out.anthropic_beta = betas;
  return Object.assign(out, rest);
}

// ---------------------------------------------------------------------------------------------
// Answers: Anthropic stream events as event-stream `chunk` frames.

const codec = new EventStreamCodec(
  (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
  (text) => new Uint8Array(Buffer.from(text, 'utf8')),
);

export const EVENTSTREAM_CONTENT_TYPE = 'application/vnd.amazon.eventstream';

/** One `chunk` event frame carrying an Anthropic stream event's JSON text. */
function chunkFrame(json: string): Uint8Array {
  const headers: MessageHeaders = {
    ':event-type': { type: 'string', value: 'chunk' },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'event' },
  };
  return codec.encode({ headers, body: Buffer.from(JSON.stringify({ bytes: Buffer.from(json, 'utf8').toString('base64') }), 'utf8') });
}

/** An exception frame (`:message-type: exception`), e.g. `throttlingException`. */
export function exceptionFrame(exceptionType: string, message: string): Uint8Array {
  const headers: MessageHeaders = {
    ':exception-type': { type: 'string', value: exceptionType },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'exception' },
  };
  return codec.encode({ headers, body: Buffer.from(JSON.stringify({ message }), 'utf8') });
}

/** The stream exception (InvokeModelWithResponseStream's ResponseStream members) for an Anthropic error type. */
function streamExceptionFor(anthropicType: string | undefined): string {
  switch (anthropicType) {
    case 'invalid_request_error':
    case 'request_too_large':
      return 'validationException';
    case 'rate_limit_error':
      return 'throttlingException';
    case 'overloaded_error':
      return 'serviceUnavailableException';
    case 'timeout_error':
      return 'modelTimeoutException';
    case 'api_error':
      return 'modelStreamErrorException';
    default:
      return 'internalServerException';
  }
}

const PING = '{"type":"ping"}';

/**
 * Re-frame an Anthropic SSE stream (the pipeline's answer) as Bedrock's event stream. Each event's
 * JSON goes out unchanged as one `chunk`; an `event: error` becomes an exception frame. When the
 * upstream was not Bedrock, `message_stop` gets the `amazon-bedrock-invocationMetrics` Bedrock adds.
 */
function toEventStream(sse: Response, headers: Record<string, string>): Response {
  const reader = sse.body!.getReader();
  const splitter = new SseSplitter();
  const t0 = performance.now();
  let firstByteMs: number | undefined;
  /** Anthropic's own counts (input without cached tokens), as Bedrock's invocation metrics give them. */
  const usage = new AnthropicUsage();

  const frameOf = (event: string): Uint8Array | undefined => {
    const name = eventName(event);
    const data = eventData(event);
    // A keep-alive comment in a long silence: Bedrock clients get a `ping` event (Anthropic's own keep-alive).
    if (data === undefined) return event.startsWith(':') ? chunkFrame(PING) : undefined;
    if (name === 'error') {
      const e = readErrorEvent(data);
      return exceptionFrame(streamExceptionFor(e.type), e.message ?? 'The model stream failed.');
    }
    firstByteMs ??= Math.round(performance.now() - t0);
    if (name === 'message_start' || name === 'message_delta' || name === 'message_stop') {
      try {
        const ev = JSON.parse(data) as Json;
        usage.read(name === 'message_start' ? (isObject(ev.message) ? ev.message.usage : undefined) : ev.usage);
        if (name === 'message_stop' && !('amazon-bedrock-invocationMetrics' in ev)) {
          ev['amazon-bedrock-invocationMetrics'] = { inputTokenCount: usage.input ?? 0, outputTokenCount: usage.output ?? 0, invocationLatency: Math.round(performance.now() - t0), firstByteLatency: firstByteMs };
          return chunkFrame(JSON.stringify(ev));
        }
      } catch {
        // not JSON: passed on as it is
      }
    }
    return chunkFrame(data);
  };

  return framedResponse(
    {
      async next() {
        for (;;) {
          const r = await reader.read();
          if (r.done) {
            const rest = splitter.end();
            return rest.trim() ? frameOf(rest) : undefined;
          }
          const frames = splitter.push(r.value).map(frameOf).filter((f): f is Uint8Array => !!f);
          if (frames.length) return frames.length === 1 ? frames[0]! : Buffer.concat(frames);
        }
      },
      fail: () => exceptionFrame('modelStreamErrorException', 'The model stream failed.'),
      release: (why) => reader.cancel(why),
    },
    // The pipeline's own stream keeps the trace.
    undefined,
    { status: 200, headers: { ...headers, 'content-type': EVENTSTREAM_CONTENT_TYPE, 'x-amzn-bedrock-content-type': 'application/json' } },
  );
}

/** Headers of the pipeline's Anthropic answer worth keeping, plus Bedrock's request id header. */
function answerHeaders(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k === 'content-type' || k === 'content-length' || k === 'cache-control' || k === 'x-accel-buffering') return;
    out[k] = v;
  });
  const id = res.headers.get('x-request-id');
  if (id) out['x-amzn-requestid'] = id;
  return out;
}

function asBedrock(req: ChatRequest, res: Response, keepAliveMs: number): Response {
  if (!req.stream) return webResponse(res.body, { status: res.status, headers: { ...answerHeaders(res), 'content-type': 'application/json' } });
  return toEventStream(withSseKeepAlive(res, keepAliveMs), answerHeaders(res));
}

/** The codec without a model index (errors only); the gateway builds the full door with createBedrockInvokeDoor. */
/**
 * The door for one configuration. `prepare` resolves the path's model id and turns the body into
 * the Anthropic form the pipeline runs (the gateway calls it before `parse`).
 */
export function createBedrockInvokeDoor(index: BedrockModelIndex, opts: { keepAliveMs?: number } = {}): FrontDoorCodec {
  const keepAliveMs = opts.keepAliveMs ?? 0;
  return {
    door: 'bedrock-invoke',
    prepare(body: unknown, request: Request) {
      const route = parseBedrockPath(new URL(request.url).pathname);
      if (!route || (route.operation !== 'invoke' && route.operation !== 'invoke-with-response-stream')) {
        throw new GatewayError('not_found', `Unknown Bedrock operation: ${request.method} ${new URL(request.url).pathname}`, { code: 'unknown_route' });
      }
      const model = index.resolve(route.modelId);
      if (!model) throw unknownModelError(route.modelId);
      return bedrockToAnthropic(body, request, model, route.operation === 'invoke-with-response-stream');
    },
    parse: (body) => parseAnthropicRequest(body),
    error: bedrockErrorResponse,
    async respondFromEvents(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response> {
      return asBedrock(req, await anthropicFromEvents(req, first, events, meta, trace), keepAliveMs);
    },
    respondPassthrough(req: ChatRequest, upstream: Response, meta: EncodeMeta, trace: RequestTrace): Response {
      return asBedrock(req, anthropicPassthrough(req, upstream, meta, trace), keepAliveMs);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The control-plane listing Claude Code asks for first.

/**
 * `GET /bedrock/inference-profiles` (Bedrock's ListInferenceProfiles): the Claude model ids the
 * gateway serves on this door, as system-defined inference profiles. Answered without a key (Claude
 * Code sends none on this call); it names model ids only, nothing about keys or upstreams.
 */
export function inferenceProfilesResponse(index: BedrockModelIndex, request: Request, region: string, headers: Record<string, string>): Response {
  const url = new URL(request.url);
  const type = url.searchParams.get('type');
  const path = url.pathname.replace(/\/+$/, '');
  const summaries = type && type !== 'SYSTEM_DEFINED' ? [] : index.bedrockIds.map((id) => profileSummary(id, region));
  if (path !== '/bedrock/inference-profiles') {
    const id = decodeURIComponent(path.slice('/bedrock/inference-profiles/'.length));
    // A configured model name (ANTHROPIC_MODEL=<alias>): Claude Code looks its profile up too.
    const alias = !type || type === 'SYSTEM_DEFINED' ? index.resolve(id) : undefined;
    const found = summaries.find((s) => s.inferenceProfileId === id || s.inferenceProfileArn === id) ?? (alias ? profileSummary(id, region, index.claudeModelFor(id)) : undefined);
    if (!found) return jsonResponse({ message: `Inference profile ${id} not found.` }, 404, { ...headers, 'x-amzn-errortype': 'ResourceNotFoundException' });
    return jsonResponse(found, 200, headers);
  }
  return jsonResponse({ inferenceProfileSummaries: summaries }, 200, headers);
}

function profileSummary(id: string, region: string, underlying?: string) {
  const base = looseId(underlying ?? id);
  const name = anthropicModelName(id) ?? base;
  return {
    inferenceProfileId: id,
    inferenceProfileName: `${name} (via the gateway)`,
    inferenceProfileArn: `arn:aws:bedrock:${region}::inference-profile/${id}`,
    description: `Served by the LLM gateway as ${id}.`,
    models: [{ modelArn: `arn:aws:bedrock:${region}::foundation-model/${base}` }],
    status: 'ACTIVE',
    type: 'SYSTEM_DEFINED',
    createdAt: '2025-01-01T00:00:00Z',
    updatedAt: '2025-01-01T00:00:00Z',
  };
}

// ---------------------------------------------------------------------------------------------
// CountTokens: `POST /bedrock/model/{modelId}/count-tokens` (Claude Code's `/context` on Bedrock).

export interface BedrockCountDeps {
  index: BedrockModelIndex;
  maxBodyBytes: number;
  /** The route plan of a configured model, once the key's allow list let it through. */
  route(name: string): RoutePlan;
  /** Runs an upstream call through the attempt runner (fallback, retries, deadlines, spans, attempt log). */
  run: CallRunner;
}

function decodeBase64Json(text: string, param: string): unknown {
  let decoded: string;
  try {
    decoded = Buffer.from(text, 'base64').toString('utf8');
    return JSON.parse(decoded) as unknown;
  } catch {
    throw validation(`Malformed input request: ${param} must be the base64 of an InvokeModel JSON body, please reformat your input and try again.`);
  }
}

/**
 * Bedrock Runtime's CountTokens for the model in the path. The input is an InvokeModel body
 * (`input.invokeModel.body`, base64 of a Claude body) or a Converse request (`input.converse`).
 * Answered as Bedrock does, `{"inputTokens": n}`, marked `x-gateway-token-count`:
 * - `exact` from a `bedrock` target (Bedrock's own CountTokens, with the input as sent: Claude
 *   models) or, for an InvokeModel body, an `anthropic` target (Anthropic's count_tokens);
 * - `estimate` otherwise (and when Bedrock declines to count), as `/v1/messages/count_tokens` does.
 */
export async function handleBedrockCountTokens({ request, trace, headers }: RequestContext, deps: BedrockCountDeps): Promise<Response> {
  const url = new URL(request.url);
  const route = parseBedrockPath(url.pathname);
  if (!route || route.operation !== 'count-tokens') throw new GatewayError('not_found', `Unknown Bedrock operation: ${request.method} ${url.pathname}`, { code: 'unknown_route' });
  const model = deps.index.resolve(route.modelId);
  if (!model) throw unknownModelError(route.modelId);
  trace.record.model = model;
  const raw = await readJsonBody(request, deps.maxBodyBytes);
  const input = isObject(raw) ? raw.input : undefined;
  if (!isObject(input)) throw validation('Malformed input request: #/input: required key [input] not found, please reformat your input and try again.');
  const invoke = isObject(input.invokeModel) ? input.invokeModel : undefined;
  const converse = isObject(input.converse) ? input.converse : undefined;
  if (!!invoke === !!converse) throw validation('Malformed input request: #/input must hold exactly one of invokeModel or converse, please reformat your input and try again.');

  let req: ChatRequest;
  let anthropic: { body: Json; headers: Headers } | undefined;
  let native: { invokeModel: { body: Uint8Array } } | { converse: Json };
  if (invoke) {
    if (typeof invoke.body !== 'string') throw validation('Malformed input request: #/input/invokeModel/body: expected type: String, please reformat your input and try again.');
    const body = decodeBase64Json(invoke.body, '#/input/invokeModel/body');
    anthropic = bedrockToAnthropic(body, request, model, false);
    req = parseAnthropicRequest(anthropic.body, { requireMaxTokens: false });
    native = { invokeModel: { body: new Uint8Array(Buffer.from(invoke.body, 'base64')) } };
  } else {
    req = parseConverseRequest({ ...converse }, model, false);
    native = { converse: converse! };
  }
  // Through the attempt runner: a target that cannot count answers with an estimate (no call); one
  // that fails on the model's fallback triggers hands the count to the next target.
  const { target, value: exact } = await deps.run(deps.route(model), async (t, c): Promise<number | undefined> => {
    const ctx = {
      requestId: trace.record.requestId,
      signal: c.signal,
      frontDoor: 'bedrock-invoke' as const,
      rawBody: anthropic?.body ?? {},
      headers: anthropic?.headers ?? request.headers,
      upstreamModel: t.model,
      query: '',
    };
    if (t.provider.countBedrockTokens) return t.provider.countBedrockTokens(native, ctx);
    if (anthropic && t.provider.countTokens && t.provider.type === 'anthropic') {
      // Anthropic's count_tokens takes neither max_tokens nor stream.
      const { max_tokens: _m, stream: _s, ...body } = anthropic.body;
      const res = await t.provider.countTokens(body, { ...ctx, frontDoor: 'anthropic-messages', rawBody: body });
      if (res?.ok) {
        const json = (await readAnswerJson(res, t.provider.name, MAX_COUNT_ANSWER_BYTES).catch(() => undefined)) as { input_tokens?: unknown } | undefined;
        if (typeof json?.input_tokens === 'number') return json.input_tokens;
      }
    }
    return undefined;
  });
  trace.record.provider = target.provider.name;
  trace.record.upstreamModel = target.model;
  const out = { ...headers, 'x-gateway-provider': target.provider.name, 'x-gateway-model': target.model };
  if (exact !== undefined) {
    trace.end(200);
    return jsonResponse({ inputTokens: exact }, 200, { ...out, 'x-gateway-token-count': 'exact' });
  }
  const inputTokens = await estimateInputTokens(req);
  trace.end(200);
  return jsonResponse({ inputTokens }, 200, { ...out, 'x-gateway-token-count': 'estimate' });
}
