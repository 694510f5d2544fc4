import type { EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';

/**
 * Deterministic embeddings with no account: a hashed bag of words. Each lower-cased word (or
 * token id) adds +1 or -1 to one of `dimensions` slots chosen by its FNV-1a hash, and the vector
 * is scaled to unit length. Texts that share words point the same way; the same text always gives
 * the same vector. One token per word.
 */
const MOCK_EMBEDDING_DIMENSIONS = 256;

export function mockEmbed(req: EmbeddingRequest): EmbeddingResult {
  const dims = req.dimensions ?? MOCK_EMBEDDING_DIMENSIONS;
  let tokens = 0;
  const vectors = req.input.map((item) => {
    const words = typeof item === 'string' ? (item.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) : item.map((t) => `#${t}`);
    tokens += Math.max(1, words.length);
    return hashedBagOfWords(words, dims);
  });
  return { kind: 'vectors', vectors, inputTokens: tokens };
}

function hashedBagOfWords(words: string[], dims: number): number[] {
  const v = new Array<number>(dims).fill(0);
  for (const w of words) {
    const h = fnv1a(w);
    v[h % dims]! += h & 0x80000000 ? -1 : 1;
  }
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return norm > 0 ? v.map((x) => x / norm) : v;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
