import { InvokeModelCommand, type BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import type { BedrockProviderConfig } from '../../config/schema.ts';
import type { EmbeddingContext, EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';
import { GatewayError } from '../../http/errors.ts';
import { SdkCall } from '../../providers/bedrock/call.ts';
import { unsupported } from '../common.ts';

/**
 * Embeddings on Bedrock through InvokeModel, in each model family's own body:
 * - Amazon Titan Text Embeddings v2 (`amazon.titan-embed-text-v2:0`): one text per call,
 *   `{inputText, dimensions, normalize}`; dimensions 256, 512 or 1024 (default 1024).
 * - Amazon Titan Text Embeddings v1 (`amazon.titan-embed-text-v1`): `{inputText}`, 1536 dims.
 * - Cohere Embed v3 (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`): up to 96 texts
 *   per call, `{texts, input_type: 'search_document', embedding_types: ['float']}`, 1024 dims.
 * - Cohere Embed v4 (`cohere.embed-v4:0`): as v3, plus `output_dimension` (256/512/1024/1536).
 * Token-id inputs are refused (Bedrock models take text only).
 */

type Family = 'titan-v2' | 'titan-v1' | 'cohere-v3' | 'cohere-v4';

function familyOf(modelId: string): Family | undefined {
  const id = modelId.toLowerCase();
  if (id.includes('amazon.titan-embed-text-v2')) return 'titan-v2';
  if (id.includes('amazon.titan-embed-text-v1') || id.includes('amazon.titan-embed-g1-text')) return 'titan-v1';
  if (id.includes('cohere.embed-v4')) return 'cohere-v4';
  if (id.includes('cohere.embed-english-v3') || id.includes('cohere.embed-multilingual-v3')) return 'cohere-v3';
  return undefined;
}

const TITAN_V2_DIMS = [256, 512, 1024];
const COHERE_V4_DIMS = [256, 512, 1024, 1536];
const COHERE_BATCH = 96;
const TITAN_CONCURRENCY = 8;

export async function bedrockEmbed(client: BedrockRuntimeClient, provider: string, cfg: BedrockProviderConfig, req: EmbeddingRequest, ctx: EmbeddingContext): Promise<EmbeddingResult> {
  const modelId = ctx.upstreamModel;
  const family = familyOf(modelId);
  if (!family) {
    throw new GatewayError('invalid_request', `The model '${req.model}' (Bedrock '${modelId}') is not an embeddings model the gateway can call; use Amazon Titan Text Embeddings (amazon.titan-embed-text-v2:0) or Cohere Embed (cohere.embed-english-v3, cohere.embed-multilingual-v3, cohere.embed-v4:0).`, { param: 'model', code: 'model_not_supported' });
  }
  if (req.inputKind === 'tokens') throw unsupported(`Amazon Bedrock embedding models take text, not token ids: send 'input' as a string or an array of strings.`, 'input');
  const texts = req.input as string[];
  const dims = req.dimensions;
  if (dims !== undefined) {
    if (family === 'titan-v2' && !TITAN_V2_DIMS.includes(dims)) throw unsupported(`'dimensions' must be one of ${TITAN_V2_DIMS.join(', ')} for ${modelId}.`, 'dimensions');
    if (family === 'cohere-v4' && !COHERE_V4_DIMS.includes(dims)) throw unsupported(`'dimensions' must be one of ${COHERE_V4_DIMS.join(', ')} for ${modelId}.`, 'dimensions');
    if (family === 'titan-v1' && dims !== 1536) throw unsupported(`${modelId} only makes 1536-dimension vectors; omit 'dimensions'.`, 'dimensions');
    if (family === 'cohere-v3' && dims !== 1024) throw unsupported(`${modelId} only makes 1024-dimension vectors; omit 'dimensions'.`, 'dimensions');
  }

  const call = new SdkCall(provider, ctx.signal);
  try {
    if (family === 'titan-v1' || family === 'titan-v2') {
      const vectors: number[][] = new Array(texts.length);
      let tokens = 0;
      let next = 0;
      const worker = async () => {
        try {
          await work();
        } catch (err) {
          next = texts.length; // the call fails as a whole: start no more requests
          throw err;
        }
      };
      const work = async () => {
        while (next < texts.length) {
          const i = next++;
          const body: Record<string, unknown> = { inputText: texts[i] };
          if (family === 'titan-v2') {
            if (dims !== undefined) body.dimensions = dims;
            body.normalize = true;
          }
          const { json, inputTokens } = await invokeJson(client, modelId, body, call);
          const emb = (json as { embedding?: unknown }).embedding;
          if (!isVector(emb)) throw malformed(provider, modelId);
          vectors[i] = emb;
          const count = (json as { inputTextTokenCount?: unknown }).inputTextTokenCount;
          tokens += typeof count === 'number' ? count : (inputTokens ?? 0);
        }
      };
      await Promise.all(Array.from({ length: Math.min(TITAN_CONCURRENCY, texts.length) }, worker));
      return { kind: 'vectors', vectors, inputTokens: tokens };
    }

    const vectors: number[][] = [];
    let tokens = 0;
    for (let start = 0; start < texts.length; start += COHERE_BATCH) {
      const batch = texts.slice(start, start + COHERE_BATCH);
      const body: Record<string, unknown> = { texts: batch, input_type: 'search_document', embedding_types: ['float'] };
      if (family === 'cohere-v4' && dims !== undefined) body.output_dimension = dims;
      const { json, inputTokens } = await invokeJson(client, modelId, body, call);
      const raw = (json as { embeddings?: unknown }).embeddings;
      // With embedding_types the vectors are under `float`; without, `embeddings` is the list.
      const list = Array.isArray(raw) ? raw : (raw as { float?: unknown } | undefined)?.float;
      if (!Array.isArray(list) || list.length !== batch.length || !list.every(isVector)) throw malformed(provider, modelId);
      vectors.push(...(list as number[][]));
      tokens += inputTokens ?? batch.reduce((n, t) => n + (t.match(/\S+/g)?.length ?? 0), 0);
    }
    return { kind: 'vectors', vectors, inputTokens: tokens };
  } finally {
    call.done();
  }
}

function isVector(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && typeof v[0] === 'number';
}

function malformed(provider: string, modelId: string): GatewayError {
  return new GatewayError('upstream', `Provider "${provider}" (Amazon Bedrock, ${modelId}) answered without the expected embeddings.`, { code: 'upstream_bad_response' });
}

/** One InvokeModel call with a JSON body; also reads Bedrock's input token count header. */
async function invokeJson(client: BedrockRuntimeClient, modelId: string, body: unknown, call: SdkCall): Promise<{ json: unknown; inputTokens?: number }> {
  const cmd = new InvokeModelCommand({ modelId, contentType: 'application/json', accept: 'application/json', body: new TextEncoder().encode(JSON.stringify(body)) });
  let tokenHeader: string | undefined;
  cmd.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      const headers = (out.response as { headers?: Record<string, string> } | undefined)?.headers;
      tokenHeader = headers?.['x-amzn-bedrock-input-token-count'];
      return out;
    },
    { step: 'deserialize', name: 'gatewayInputTokenCount' },
  );
  let text: string;
  try {
    const res = await client.send(cmd, { abortSignal: call.signal as never });
    text = new TextDecoder().decode(res.body);
  } catch (err) {
    throw call.error(err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new GatewayError('upstream', `Amazon Bedrock (${modelId}) answered with a body that is not JSON.`, { code: 'upstream_bad_response' });
  }
  const n = tokenHeader !== undefined ? Number(tokenHeader) : NaN;
  return { json, inputTokens: Number.isFinite(n) ? n : undefined };
}
