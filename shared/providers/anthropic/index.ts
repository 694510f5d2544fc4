import type { AnthropicProviderConfig } from '../../config/schema.ts';
import type { ChatRequest, FrontDoor } from '../../core/types.ts';
import { DEFAULT_ANTHROPIC_VERSION } from '../../wire/anthropic-messages/wire.ts';
import { isObject } from '../../wire/common.ts';
import { GatewayError, type ErrorKind } from '../../http/errors.ts';
import { fetchUpstream, readTextBounded, upstreamUrl } from '../../http/upstream.ts';
import type { CallContext, Provider, ProviderResult } from '../types.ts';
import { decodeAnthropicMessage, decodeAnthropicStream, toAnthropicBody } from '../../wire/anthropic-messages/translate.ts';

/**
 * Doors whose requests reach the pipeline as Anthropic Messages bodies: `/v1/messages`, and
 * Bedrock's InvokeModel with a Claude body (converted to Messages form by its door, betas in the
 * `anthropic-beta` header).
 */
function speaksAnthropic(door: FrontDoor): boolean {
  return door === 'anthropic-messages' || door === 'bedrock-invoke';
}

/** Client headers every Anthropic upstream gets (Claude Code's session and sub-agent ids). */
const FORWARDED_CLIENT_HEADERS = ['x-claude-code-session-id', 'x-claude-code-agent-id'];

/**
 * Anthropic's Messages API (api.anthropic.com, or a server that speaks it at `baseUrl`, without
 * `/v1`). Anthropic Messages clients are passed through: the body unchanged but for `model`, the
 * client's `anthropic-version` / `anthropic-beta` headers and query string kept, the credential
 * replaced by the gateway's own `x-api-key`. Other clients are translated.
 */
export class AnthropicProvider implements Provider {
  /** Every wait in `chat` is an upstream call under the attempt's signal (fetchUpstream). */
  readonly honorsSignal = true;
  readonly type = 'anthropic';
  readonly live: boolean;
  readonly notLiveReason?: string;
  private readonly baseUrl: string;
  private readonly key?: string;

  constructor(
    readonly name: string,
    private readonly cfg: AnthropicProviderConfig,
    env: Record<string, string | undefined>,
  ) {
    this.baseUrl = cfg.baseUrl.replace(/\/+$/, '');
    this.key = env[cfg.apiKeyEnv] || undefined;
    this.live = !!this.key;
    if (!this.live) this.notLiveReason = `set ${cfg.apiKeyEnv} to enable it`;
  }

  passthrough(door: FrontDoor): boolean {
    return speaksAnthropic(door);
  }

  /**
   * Headers for the upstream: the configured extras; from an Anthropic client, its `anthropic-*`
   * headers (version, betas, and any others, unknown ones included); Claude Code's session and
   * agent ids; then the gateway's key.
   */
  private headers(ctx: CallContext | undefined, stream: boolean): Record<string, string> {
    // Object.assign, not a spread: keys added to a spread copy cost V8 (node 20) a new map each time.
    const h: Record<string, string> = Object.assign({}, this.cfg.headers);
    const sameFormat = !!ctx && speaksAnthropic(ctx.frontDoor);
    if (ctx && sameFormat) {
      ctx.headers.forEach((v, k) => {
        if (k.startsWith('anthropic-') && k !== 'anthropic-version' && k !== 'anthropic-beta' && v) h[k] = v;
      });
    }
    for (const k of FORWARDED_CLIENT_HEADERS) {
      const v = ctx?.headers.get(k);
      if (v) h[k] = v;
    }
    const version = sameFormat ? ctx!.headers.get('anthropic-version') : null;
    h['anthropic-version'] = version || h['anthropic-version'] || DEFAULT_ANTHROPIC_VERSION;
    const beta = sameFormat ? ctx!.headers.get('anthropic-beta') : null;
    if (beta) h['anthropic-beta'] = h['anthropic-beta'] ? `${h['anthropic-beta']},${beta}` : beta;
    h['content-type'] = 'application/json';
    h.accept = stream ? 'text/event-stream' : 'application/json';
    // The client's own credential (x-api-key or Authorization) never goes upstream: only ours.
    delete h.authorization;
    h['x-api-key'] = this.key ?? '';
    return h;
  }

  async chat(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    if (speaksAnthropic(ctx.frontDoor)) {
      const body = { ...ctx.rawBody, model: ctx.upstreamModel };
      const res = await this.post(`/v1/messages${ctx.query ?? ''}`, body, ctx, req.stream);
      if (!res.ok) throw await this.upstreamError(res, true);
      return { kind: 'passthrough', response: res };
    }
    const body = toAnthropicBody(req, ctx.upstreamModel, this.cfg.defaultMaxTokens);
    const res = await this.post('/v1/messages', body, ctx, req.stream);
    if (!res.ok) throw await this.upstreamError(res, false);
    const type = res.headers.get('content-type') ?? '';
    const events = req.stream && !type.includes('json') ? decodeAnthropicStream(res, this.name) : decodeAnthropicMessage(res, this.name);
    return { kind: 'events', events };
  }

  /** Exact count from Anthropic's own `/v1/messages/count_tokens`, passed through. */
  async countTokens(body: Record<string, unknown>, ctx: CallContext): Promise<Response> {
    const res = await this.post(`/v1/messages/count_tokens${ctx.query ?? ''}`, { ...body, model: ctx.upstreamModel }, { ...ctx, frontDoor: 'anthropic-messages' }, false);
    if (!res.ok) throw await this.upstreamError(res, true);
    return res;
  }

  private post(path: string, body: unknown, ctx: CallContext, stream: boolean): Promise<Response> {
    return fetchUpstream(this.name, upstreamUrl(this.baseUrl, path), { method: 'POST', headers: this.headers(ctx, stream), body: JSON.stringify(body) }, ctx.signal);
  }

  /**
   * An upstream error response as a GatewayError. Anthropic's own error bodies are kept, with
   * their status, for Anthropic clients (who match on the wording); a 401/403 means the upstream
   * refused the gateway's credential and becomes a 502 that says so and nothing more.
   */
  private async upstreamError(res: Response, sameFormat: boolean): Promise<GatewayError> {
    const text = await readTextBounded(res);
    const status = res.status;
    if (status === 401 || status === 403) {
      return new GatewayError('upstream', `Provider "${this.name}" rejected the gateway's credentials (HTTP ${status}).`, { status: 502, code: 'upstream_auth_failed' });
    }
    let message: string | undefined;
    let type: string | undefined;
    try {
      const parsed = JSON.parse(text) as { error?: unknown };
      if (isObject(parsed.error) && typeof parsed.error.message === 'string') {
        message = parsed.error.message;
        type = typeof parsed.error.type === 'string' ? parsed.error.type : undefined;
      }
    } catch {
      // not JSON (a proxy's page): not passed on
    }
    const kind: ErrorKind =
      status === 429 ? 'rate_limit' : status === 529 ? 'overloaded' : status === 504 ? 'timeout' : status >= 500 ? 'upstream' : status === 404 ? 'not_found' : status === 413 ? 'request_too_large' : 'invalid_request';
    // For clients of other APIs: 4xx as they are, 529 as 503, other 5xx as 502 (504 stays).
    const clientStatus = status === 529 ? 503 : status === 504 ? 504 : status >= 500 ? 502 : status;
    const headers: Record<string, string> = {};
    for (const h of ['retry-after', 'retry-after-ms', 'x-should-retry', 'request-id']) {
      const v = res.headers.get(h);
      if (v) headers[h] = v;
    }
    return new GatewayError(kind, message ?? `Provider "${this.name}" answered HTTP ${status}.`, {
      status: clientStatus,
      code: type ? `upstream_${type}` : `upstream_${status}`,
      headers,
      upstreamBody: message && sameFormat ? { format: 'anthropic-messages', text, status } : undefined,
    });
  }
}
