import { z } from 'zod';

/**
 * The `cache` section of the configuration: an exact-match response cache (DynamoDB, or memory for
 * a single local process), opt-in per model alias. See docs/cache.md.
 */

const ttl = z.number().int().min(1).max(30 * 24 * 3600);

export const semanticCacheSchema = z
  .object({
    /** Model name (alias) of an embedding model, called through the gateway's own embeddings path. */
    embeddingModel: z.string().min(1),
    /** Cosine similarity at or above which a stored answer is served. */
    threshold: z.number().min(0.5).max(1).default(0.95),
    /** LSH bands (independent bucket lookups per request) and hyperplanes per band. */
    bands: z.number().int().min(1).max(16).default(4),
    bitsPerBand: z.number().int().min(4).max(24).default(12),
    /** Entries kept per bucket item (oldest dropped first). */
    bucketSize: z.number().int().min(1).max(32).default(8),
  })
  .strict();

export const cacheModelSchema = z
  .object({
    /** Seconds an answer stays servable (overrides `cache.ttlSeconds`). */
    ttlSeconds: ttl.optional(),
    /** Overrides `cache.maxTemperature` for this model. */
    maxTemperature: z.number().min(0).max(2).optional(),
    /** Cache even above the temperature bound (as if every request sent `x-gateway-cache: force`). */
    force: z.boolean().default(false),
    /** Semantic lookup for this model, after an exact miss. */
    semantic: semanticCacheSchema.optional(),
  })
  .strict();

export const cacheSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** `dynamodb` (shared by every instance) or `memory` (one process; local use and tests). */
    backend: z.enum(['dynamodb', 'memory']).default('dynamodb'),
    /** Table name (env GATEWAY_CACHE_TABLE wins), partition key `pk`, TTL attribute `expiresAt`. */
    table: z.string().min(3).max(255).default('llm-gateway-cache'),
    /** Whose answers a request may be served: the key's team (falling back to the key), the key, or everyone. */
    namespace: z.enum(['team', 'key', 'global']).default('team'),
    ttlSeconds: ttl.default(3600),
    /** Upper bound for the `x-gateway-cache-ttl` request header. */
    maxTtlSeconds: ttl.default(7 * 24 * 3600),
    /** Requests with a higher temperature are not cached unless forced. Absent temperature counts as 1. */
    maxTemperature: z.number().min(0).max(2).default(0.3),
    /** Largest compressed entry stored; larger answers are skipped and counted (DynamoDB items stop at 400 KB). */
    maxItemBytes: z.number().int().min(1024).max(390 * 1024).default(350 * 1024),
    /** Model names (aliases or `provider/model`) that use the cache; `*` for all. */
    models: z.record(z.string().min(1), cacheModelSchema).default({}),
  })
  .strict();

export type CacheConfig = z.output<typeof cacheSchema>;
export type CacheModelConfig = z.output<typeof cacheModelSchema>;
export type SemanticCacheConfig = z.output<typeof semanticCacheSchema>;
