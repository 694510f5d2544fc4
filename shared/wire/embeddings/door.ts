import { float32Base64, type EmbeddingRequest, type EmbeddingResult } from '../../core/embeddings.ts';
import type { RequestContext } from '../../core/context.ts';
import { readJsonBody } from '../../http/body.ts';
import { GatewayError, jsonResponse } from '../../http/errors.ts';
import type { CallRunner } from '../../routing/execute.ts';
import type { ResolvedTarget, RoutePlan } from '../../routing/router.ts';
import type { RequestTrace } from '../../telemetry/record.ts';
import { bad, isObject, type Json } from '../common.ts';
import { relayJson } from '../relay.ts';
import { webResponse } from '../../http/bytes.ts';

/**
 * OpenAI Embeddings: `POST /v1/embeddings`. OpenAI and OpenAI-compatible upstreams get the
 * client's body (model id and credential replaced) and their answer passes through; other
 * providers (Bedrock Titan/Cohere, the mock) answer with vectors that are encoded here in
 * OpenAI's shape, as floats or as base64 of little-endian float32. Errors use OpenAI's shape
 * (the gateway renders thrown GatewayErrors for this path with the OpenAI front door).
 */

/** OpenAI's limit on the number of inputs in one request. */
const MAX_EMBEDDING_INPUTS = 2048;

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t) && (t as number) >= 0);
}

/** Decode and check an embeddings request body. */
function parseEmbeddingRequest(body: unknown): EmbeddingRequest {
  if (!isObject(body)) throw bad('The request body must be a JSON object.');
  if (typeof body.model !== 'string' || !body.model) throw bad('you must provide a model parameter', 'model');
  const raw = body.input;
  let input: string[] | number[][];
  let inputKind: EmbeddingRequest['inputKind'];
  if (typeof raw === 'string') {
    input = [raw];
    inputKind = 'text';
  } else if (Array.isArray(raw) && raw.length > 0 && raw.every((s) => typeof s === 'string')) {
    input = raw as string[];
    inputKind = 'text';
  } else if (isTokenArray(raw)) {
    input = [raw];
    inputKind = 'tokens';
  } else if (Array.isArray(raw) && raw.length > 0 && raw.every(isTokenArray)) {
    input = raw as number[][];
    inputKind = 'tokens';
  } else {
    throw bad("'input' must be a non-empty string, an array of strings, an array of token ids, or an array of token-id arrays.", 'input');
  }
  if (input.length > MAX_EMBEDDING_INPUTS) throw bad(`'input' may hold at most ${MAX_EMBEDDING_INPUTS} items; it has ${input.length}.`, 'input');
  if (inputKind === 'text') {
    const empty = (input as string[]).findIndex((s) => s.length === 0);
    if (empty >= 0) throw bad(`'input${typeof raw === 'string' ? '' : `[${empty}]`}' must not be an empty string.`, 'input');
  }
  const ef = body.encoding_format;
  if (ef !== undefined && ef !== null && ef !== 'float' && ef !== 'base64') throw bad("'encoding_format' must be 'float' or 'base64'.", 'encoding_format');
  const dims = body.dimensions;
  if (dims !== undefined && dims !== null && (!Number.isInteger(dims) || (dims as number) < 1 || (dims as number) > 16_384)) {
    throw bad("'dimensions' must be an integer between 1 and 16384.", 'dimensions');
  }
  if (body.user !== undefined && body.user !== null && typeof body.user !== 'string') throw bad("'user' must be a string.", 'user');
  return {
    model: body.model,
    input,
    inputKind,
    encodingFormat: ef === 'base64' ? 'base64' : 'float',
    dimensions: typeof dims === 'number' ? dims : undefined,
    user: typeof body.user === 'string' ? body.user : undefined,
  };
}

export interface EmbeddingsDeps {
  maxBodyBytes: number;
  /** The route plan of a model name (throws 404 for unknown names, 403 for names the key may not use). */
  route(model: string): RoutePlan;
  /** Runs an upstream call through the attempt runner (fallback, retries, deadlines, spans, attempt log). */
  run: CallRunner;
  /**
   * Rate limits and budgets before the upstream call (throws 429), given an estimate of the input
   * tokens; returns the rate-limit headers for the response.
   */
  admit?(model: string, estimatedTokens: number): Promise<Record<string, string>>;
}

/** About four characters a token for text, the array length for token input. */
function estimateEmbeddingTokens(req: Pick<EmbeddingRequest, 'input' | 'inputKind'>): number {
  let n = 0;
  for (const x of req.input) n += typeof x === 'string' ? Math.ceil(x.length / 4) + 1 : x.length;
  return n;
}

/**
 * Serve one `POST /v1/embeddings` request. Fills the log record (model, provider, usage,
 * status) and ends the trace when the response body is complete; thrown errors are for the
 * gateway to render and log.
 */
export async function handleEmbeddings({ request, trace, headers }: RequestContext, deps: EmbeddingsDeps): Promise<Response> {
  const body = (await readJsonBody(request, deps.maxBodyBytes)) as Json;
  const req = parseEmbeddingRequest(body);
  trace.record.model = req.model;
  trace.record.stream = false;
  const plan = deps.route(req.model);
  const canEmbed = (t: ResolvedTarget) => typeof t.provider.embed === 'function';
  if (!plan.groups.flat().some(canEmbed)) {
    const names = [...new Set(plan.groups.flat().map((t) => t.provider.name))].join(', ');
    throw new GatewayError('invalid_request', `The model '${req.model}' cannot make embeddings: its provider (${names}) has no embeddings API in the gateway.`, { param: 'model', code: 'model_not_supported' });
  }
  if (deps.admit) Object.assign(headers, await deps.admit(req.model, estimateEmbeddingTokens(req)));
  // Through the attempt runner: each target in its own span, under its deadline, falling back on
  // the model's triggers until one answers (an answer's headers are its first byte).
  const { target, value: result } = await deps.run(
    plan,
    (t, ctx) => t.provider.embed!(req, { requestId: trace.record.requestId, signal: ctx.signal, upstreamModel: t.model, rawBody: body, headers: request.headers }),
    canEmbed,
  );
  const { provider, model } = target;
  trace.record.provider = provider.name;
  trace.record.upstreamModel = model;
  const outHeaders = { ...headers, 'x-gateway-provider': provider.name, 'x-gateway-model': model };

  if (result.kind === 'vectors') {
    if (result.vectors.length !== req.input.length) throw new GatewayError('upstream', `Provider "${provider.name}" returned ${result.vectors.length} embeddings for ${req.input.length} inputs.`, { code: 'upstream_bad_response' });
    const data = result.vectors.map((v, index) => ({ object: 'embedding', index, embedding: req.encodingFormat === 'base64' ? float32Base64(v) : v }));
    const usage = { prompt_tokens: result.inputTokens, total_tokens: result.inputTokens };
    trace.usage({ inputTokens: result.inputTokens, outputTokens: 0 });
    trace.firstByte();
    trace.end(200);
    return jsonResponse({ object: 'list', data, model, usage }, 200, outHeaders);
  }
  return passthrough(result.response, outHeaders, trace);
}

/** Pass an OpenAI-compatible upstream's answer on as it arrives, reading its usage at the end. */
function passthrough(upstream: Response, headers: Record<string, string>, trace: RequestTrace): Response {
  trace.record.status = upstream.status;
  const outHeaders = { ...headers, 'content-type': upstream.headers.get('content-type') ?? 'application/json' };
  if (!upstream.body) {
    trace.end(upstream.status);
    return webResponse(null, { status: upstream.status, headers: outHeaders });
  }
  return relayJson(upstream, trace, { status: upstream.status, headers: outHeaders }, (json) => {
    const u = json.usage;
    if (isObject(u) && typeof u.prompt_tokens === 'number') trace.usage({ inputTokens: u.prompt_tokens, outputTokens: 0 });
  });
}
