import type { OpenAIProviderConfig } from '../../config/schema.ts';
import type { ChatRequest, FrontDoor } from '../../core/types.ts';
import { GatewayError, type ErrorKind } from '../../http/errors.ts';
import { fetchUpstream, readTextBounded, upstreamUrl } from '../../http/upstream.ts';
import type { CallContext, Provider, ProviderResult } from '../types.ts';
import type { EmbeddingContext, EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';
import { openaiEmbed } from './embeddings.ts';
import { toChatCompletionsBody } from '../../wire/openai-chat/body.ts';
import { chatCompletionEvents } from '../../wire/openai-chat/events.ts';

/**
 * OpenAI and OpenAI-compatible servers (vLLM, Ollama, LM Studio, ...).
 * - Chat Completions clients are passed through byte for byte, with only the model id and the
 *   credential replaced.
 * - Responses clients are passed through to `/responses` on `type: openai`; on
 *   `openai-compatible` (many such servers lack `/responses`) they are translated through Chat
 *   Completions like every other client.
 * - Every other client (Anthropic Messages, ...) is translated: the neutral request becomes a Chat
 *   Completions body (./chat-body.ts), and the answer, JSON or SSE, becomes neutral events
 *   (./chat-events.ts).
 */
export class OpenAIProvider implements Provider {
  /** Every wait in `chat` is an upstream call under the attempt's signal (fetchUpstream). */
  readonly honorsSignal = true;
  readonly type: string;
  readonly live: boolean;
  readonly notLiveReason?: string;
  private readonly baseUrl: string;
  private readonly authHeaders: Record<string, string>;

  constructor(
    readonly name: string,
    private readonly cfg: OpenAIProviderConfig,
    env: Record<string, string | undefined>,
  ) {
    this.type = cfg.type;
    this.baseUrl = cfg.baseUrl.replace(/\/+$/, '');
    const keyEnv = cfg.apiKeyEnv ?? (cfg.type === 'openai' ? 'OPENAI_API_KEY' : undefined);
    const key = keyEnv ? env[keyEnv] : undefined;
    if (cfg.type === 'openai' && !key) {
      this.live = false;
      this.notLiveReason = `set ${keyEnv} to enable it`;
    } else {
      this.live = true;
    }
    this.authHeaders = {
      'content-type': 'application/json',
      ...cfg.headers,
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    };
  }

  /** Which clients reach the upstream in their own API, untranslated. */
  passthrough(door: FrontDoor): boolean {
    return door === 'openai-chat' || (door === 'openai-responses' && this.type === 'openai');
  }

  async chat(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    if (ctx.frontDoor === 'openai-responses' && this.type === 'openai') return this.responsesPassthrough(req, ctx);
    if (ctx.frontDoor !== 'openai-chat') return this.translated(req, ctx);
    // A copy that gains a key (stream_options) is made with Object.assign: V8 gives a spread copy
    // a new map for every new key, most of a microsecond per request; a spread that only
    // replaces keys (model) is the cheaper copy.
    const body: Record<string, unknown> = req.stream ? Object.assign({}, ctx.rawBody) : { ...ctx.rawBody };
    body.model = ctx.upstreamModel;
    if (req.stream) {
      // Always ask for usage so the gateway can account for it; the front door hides the
      // extra usage chunk from clients that did not ask for it.
      const so = ctx.rawBody.stream_options;
      body.stream_options = so !== null && typeof so === 'object' ? Object.assign({}, so, { include_usage: true }) : { include_usage: true };
    }
    const res = await fetchUpstream(
      this.name,
      upstreamUrl(this.baseUrl, '/chat/completions'),
      {
        method: 'POST',
        headers: this.headersFor(req.stream, ctx.requestId),
        body: JSON.stringify(body),
      },
      ctx.signal,
    );
    if (!res.ok) throw await this.upstreamError(res);
    return { kind: 'passthrough', response: res };
  }

  /** `POST /v1/embeddings`: passed through to `${baseUrl}/embeddings` (see ./embeddings.ts). */
  embed(_req: EmbeddingRequest, ctx: EmbeddingContext): Promise<EmbeddingResult> {
    return openaiEmbed({ name: this.name, baseUrl: this.baseUrl, headers: this.authHeaders, upstreamError: (res) => this.upstreamError(res) }, ctx);
  }

  /** `POST {baseUrl}/responses` with the client's body, only the model replaced. */
  private async responsesPassthrough(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    const body: Record<string, unknown> = { ...ctx.rawBody, model: ctx.upstreamModel };
    const res = await this.post('/responses', body, req.stream, ctx);
    if (!res.ok) throw await this.upstreamError(res, 'openai-responses');
    return { kind: 'passthrough', response: res };
  }

  /** Any other client: through Chat Completions, answered with neutral events. */
  private async translated(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    const body = toChatCompletionsBody(req, ctx.upstreamModel, this.type === 'openai' ? 'openai' : 'openai-compatible');
    const res = await this.post('/chat/completions', body, req.stream, ctx);
    if (!res.ok) throw await this.upstreamError(res);
    const reasoning = req.thinking !== undefined && req.thinking.type !== 'disabled';
    return { kind: 'events', events: chatCompletionEvents(res, req.stream, this.name, ctx.upstreamModel, reasoning) };
  }

  /** The credential's headers and the call's (Object.assign: a spread with new keys costs V8 microseconds). */
  private headersFor(stream: boolean, requestId: string): Record<string, string> {
    return Object.assign({}, this.authHeaders, { accept: stream ? 'text/event-stream' : 'application/json', 'x-request-id': requestId });
  }

  private post(path: string, body: Record<string, unknown>, stream: boolean, ctx: CallContext): Promise<Response> {
    return fetchUpstream(
      this.name,
      upstreamUrl(this.baseUrl, path),
      {
        method: 'POST',
        headers: this.headersFor(stream, ctx.requestId),
        body: JSON.stringify(body),
      },
      ctx.signal,
    );
  }

  /**
   * Turn an upstream error response into a GatewayError, keeping its body (OpenAI's error shape)
   * for OpenAI clients; `format` says which OpenAI API answered.
   */
  private async upstreamError(res: Response, format: 'openai-chat' | 'openai-responses' = 'openai-chat'): Promise<GatewayError> {
    const text = await readTextBounded(res);
    let message: string | undefined;
    try {
      const parsed = JSON.parse(text) as { error?: { message?: unknown } };
      if (parsed && typeof parsed.error?.message === 'string') message = parsed.error.message;
    } catch {
      // not JSON: not passed through
    }
    const status = res.status;
    if (status === 401 || status === 403) {
      // The upstream refused the gateway's own credential; its message may quote part of the key.
      return new GatewayError('upstream', `Provider "${this.name}" rejected the gateway's credentials (HTTP ${status}).`, { status: 502, code: 'upstream_auth_failed' });
    }
    const kind: ErrorKind = status === 429 ? 'rate_limit' : status >= 500 ? 'upstream' : status === 404 ? 'not_found' : status === 413 ? 'request_too_large' : 'invalid_request';
    const retryAfter = res.headers.get('retry-after');
    return new GatewayError(kind, message ?? `Provider "${this.name}" answered HTTP ${status}.`, {
      status: message ? status : status >= 500 ? 502 : status,
      code: `upstream_${status}`,
      headers: retryAfter ? { 'retry-after': retryAfter } : {},
      upstreamBody: message ? { format, text } : undefined,
    });
  }
}
