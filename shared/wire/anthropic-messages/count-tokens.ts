import type { ChatRequest, ContentPart } from '../../core/types.ts';
import { readJsonBody } from '../../http/body.ts';
import { GatewayError, jsonResponse } from '../../http/errors.ts';
import type { CallRunner } from '../../routing/execute.ts';
import type { RoutePlan } from '../../routing/router.ts';
import type { RequestContext } from '../../core/context.ts';
import { parseAnthropicRequest } from './door.ts';
import { loadEncoder, TokenCounter } from '../../policy/tokenizer.ts';
import { utf8, webResponse } from '../../http/bytes.ts';
import { MAX_COUNT_ANSWER_BYTES, readAnswer } from '../../http/answer.ts';

/**
 * `POST /v1/messages/count_tokens` (Anthropic's token counting). When the model is served by a
 * provider that can count exactly (the `anthropic` provider asks Anthropic's own endpoint; the
 * `bedrock` provider asks Bedrock's CountTokens for Claude models), its answer is passed through,
 * marked `x-gateway-token-count: exact`. Otherwise the gateway answers
 * with an estimate, marked `x-gateway-token-count: estimate`: a BPE count of the text (cl100k_base,
 * from js-tiktoken; Claude's own tokenizer is not public, so real counts differ, typically by
 * 10-20%), plus fixed costs for images and tool definitions. Errors use Anthropic's shape.
 * The count's work is linear in the body and bounded (shared/policy/tokenizer.ts): a run of one
 * character no longer costs quadratic time, and the body is capped by `server.maxBodyBytes` (413).
 */

export interface CountTokensDeps {
  maxBodyBytes: number;
  /** The route plan of a model name (throws 404 when none, 403 for names the key may not use). */
  route(name: string): RoutePlan;
  /** Runs an upstream call through the attempt runner (fallback, retries, deadlines, spans, attempt log). */
  run: CallRunner;
}

/** What one image is counted as in an estimate: about the most an image costs Claude (~1.15 megapixels / 750). */
const IMAGE_TOKENS_ESTIMATE = 1600;
/** Tokens Anthropic adds for its tool-use system prompt when tools are given (its pricing docs: 346 for auto/none). */
const TOOLS_OVERHEAD_ESTIMATE = 346;
/** Per-message framing tokens. */
const MESSAGE_OVERHEAD = 3;

/** An estimate of the input tokens of a decoded Anthropic request. */
export async function estimateInputTokens(req: ChatRequest): Promise<number> {
  // Bounded work per request, linear in the body (see shared/policy/tokenizer.ts); text that looks
  // like a special token is counted as ordinary text.
  const counter = new TokenCounter(await loadEncoder());
  const count = (s: string) => counter.count(s);
  const parts = (ps: ContentPart[]) => ps.reduce((n, p) => n + (p.type === 'text' ? count(p.text) : IMAGE_TOKENS_ESTIMATE), 0);
  let n = count(req.system ?? '');
  for (const m of req.messages) {
    n += MESSAGE_OVERHEAD + parts(m.content);
    if (m.role === 'assistant') {
      for (const c of m.toolCalls ?? []) n += count(c.name) + count(c.arguments);
      for (const t of m.thinking ?? []) n += count(t.text ?? '');
    }
  }
  if (req.tools?.length) {
    n += TOOLS_OVERHEAD_ESTIMATE;
    for (const t of req.tools) n += count(t.name) + count(t.description ?? '') + count(JSON.stringify(t.parameters));
  }
  return Math.max(1, n);
}

export async function countTokens({ request, trace, headers }: RequestContext, deps: CountTokensDeps): Promise<Response> {
  const body = await readJsonBody(request, deps.maxBodyBytes);
  const req = parseAnthropicRequest(body, { requireMaxTokens: false });
  trace.record.model = req.model;
  const plan = deps.route(req.model);
  // Through the attempt runner: a target that cannot count upstream answers with an estimate (no
  // call); one that fails on the model's fallback triggers hands the count to the next target.
  const query = new URL(request.url).search;
  const { target, value: res } = await deps.run(plan, (t, ctx) =>
    t.provider.countTokens
      ? t.provider.countTokens(body as Record<string, unknown>, {
          requestId: trace.record.requestId,
          signal: ctx.signal,
          frontDoor: 'anthropic-messages',
          rawBody: body as Record<string, unknown>,
          headers: request.headers,
          upstreamModel: t.model,
          query,
        }).then(async (r) => r && { status: r.status, type: r.headers.get('content-type'), text: utf8(await readAnswer(r, t.provider.name, MAX_COUNT_ANSWER_BYTES)) })
      : Promise.resolve(undefined),
  );
  trace.record.provider = target.provider.name;
  trace.record.upstreamModel = target.model;
  const out = { ...headers, 'x-gateway-provider': target.provider.name, 'x-gateway-model': target.model };
  if (res) {
    trace.firstByte();
    trace.end(res.status);
    return webResponse(res.text, { status: res.status, headers: { 'content-type': res.type ?? 'application/json', ...out, 'x-gateway-token-count': 'exact' } });
  }

  const inputTokens = await estimateInputTokens(req);
  trace.end(200);
  return jsonResponse({ input_tokens: inputTokens }, 200, { ...out, 'x-gateway-token-count': 'estimate' });
}
