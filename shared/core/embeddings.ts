/**
 * The gateway's neutral model of an embeddings call (`POST /v1/embeddings`). The front door
 * decodes OpenAI's embeddings body into an EmbeddingRequest; a provider answers with vectors (or,
 * when the upstream speaks OpenAI's API itself, with its HTTP response to pass through).
 */
import type { CallSignal } from '../http/client-signal.ts';

export interface EmbeddingRequest {
  /** The model name the client asked for. */
  model: string;
  /** Texts to embed, in order, or token-id arrays when `inputKind` is 'tokens'. */
  input: string[] | number[][];
  inputKind: 'text' | 'tokens';
  /** How the client wants vectors encoded: floats, or base64 of little-endian float32. */
  encodingFormat: 'float' | 'base64';
  /** Requested vector length, where the model supports choosing one. */
  dimensions?: number;
  user?: string;
}

export interface EmbeddingContext {
  requestId: string;
  /** Aborts when the client goes away. */
  signal: CallSignal;
  /** Model id to send upstream. */
  upstreamModel: string;
  /** The client's body as parsed JSON, for pass-through to OpenAI-compatible upstreams. */
  rawBody: Record<string, unknown>;
  headers: Headers;
}

export type EmbeddingResult =
  | { kind: 'vectors'; vectors: number[][]; inputTokens: number }
  | { kind: 'passthrough'; response: Response };

/** Little-endian float32 bytes of a vector, base64-encoded (OpenAI's `encoding_format: base64`). */
export function float32Base64(vector: number[]): string {
  const buf = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buf.writeFloatLE(vector[i]!, i * 4);
  return buf.toString('base64');
}
