import type { EmbeddingContext, EmbeddingResult } from '../../core/embeddings.ts';
import type { GatewayError } from '../../http/errors.ts';
import { MAX_EMBEDDINGS_ANSWER_BYTES } from '../../http/answer.ts';
import { fetchUpstream, readWhole } from '../../http/upstream.ts';


export interface OpenAIEmbeddingTarget {
  name: string;
  /** Base URL without a trailing slash, e.g. https://api.openai.com/v1. */
  baseUrl: string;
  /** content-type, the upstream credential, configured extra headers. */
  headers: Record<string, string>;
  /** Turns an upstream error response into the error for the client. */
  upstreamError(res: Response): Promise<GatewayError>;
}

/**
 * `POST {baseUrl}/embeddings` on OpenAI or an OpenAI-compatible server: the client's own body
 * (input, encoding_format, dimensions, user, ...) with only the model id and the credential
 * replaced; the upstream's answer passes through.
 */
export async function openaiEmbed(target: OpenAIEmbeddingTarget, ctx: EmbeddingContext): Promise<EmbeddingResult> {
  const body = { ...ctx.rawBody, model: ctx.upstreamModel };
  const res = await fetchUpstream(
    target.name,
    `${target.baseUrl}/embeddings`,
    {
      method: 'POST',
      headers: Object.assign({}, target.headers, { accept: 'application/json', 'x-request-id': ctx.requestId }),
      body: JSON.stringify(body),
    },
    ctx.signal,
  );
  if (!res.ok) throw await target.upstreamError(res);
  // Read inside the call, under its deadline (a stalled body times out and can fail over).
  return { kind: 'passthrough', response: await readWhole(res, target.name, MAX_EMBEDDINGS_ANSWER_BYTES) };
}
