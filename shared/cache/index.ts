import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';
import { GatewayError } from '../http/errors.ts';
import type { RoutePlan } from '../routing/router.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { createDynamoCache, MemoryCacheBackend, type CacheBackend } from './backend.ts';
import { cacheKey, compactEvents, decodeEntry, encodeEntry, replayEvents, requestKeyMaterial, type CacheEntry } from './entry.ts';
import { passthroughEvents } from './passthrough.ts';
import type { CacheConfig, CacheModelConfig } from './schema.ts';
import { SemanticIndex } from './semantic.ts';
import { webResponse } from '../http/bytes.ts';

export type { CacheConfig } from './schema.ts';

/** Request header: `no-cache` (do not serve from the cache; store the fresh answer), `no-store` (neither), `force` (cache even above the temperature bound). */
export const CACHE_HEADER = 'x-gateway-cache';
/** Request header: seconds the answer may be served from the cache (capped by `cache.maxTtlSeconds`). */
export const CACHE_TTL_HEADER = 'x-gateway-cache-ttl';

/** What happened with the cache for one request (the log record's `cacheStatus`). */
export type CacheStatus = 'hit' | 'semantic_hit' | 'miss' | 'stored' | 'too_large' | 'bypass' | 'error';

/** The values `x-gateway-cache` may take on a request. */
const CACHE_DIRECTIVES = ['no-cache', 'no-store', 'force'] as const;

/**
 * The cache request headers, checked: a value the gateway does not know is a 400 naming the header
 * and what it accepts (rather than being ignored, which hides the client's mistake).
 */
function cacheHeaders(headers: Headers, maxTtlSeconds: number): { directive: string; ttlSeconds?: number } {
  const raw = headers.get(CACHE_HEADER);
  const directive = (raw ?? '').trim().toLowerCase();
  // An empty value counts as no header.
  if (directive && !(CACHE_DIRECTIVES as readonly string[]).includes(directive)) {
    throw new GatewayError('invalid_request', `Invalid ${CACHE_HEADER} header ${JSON.stringify((raw ?? "").slice(0, 64))}: use one of ${CACHE_DIRECTIVES.join(', ')}.`, { code: 'invalid_cache_header', param: CACHE_HEADER });
  }
  const ttl = headers.get(CACHE_TTL_HEADER);
  if (ttl === null || !ttl.trim()) return { directive };
  if (!/^\s*\d{1,9}\s*$/.test(ttl) || Number(ttl) < 1) {
    throw new GatewayError('invalid_request', `Invalid ${CACHE_TTL_HEADER} header ${JSON.stringify(ttl.slice(0, 64))}: use a whole number of seconds from 1 (values above ${maxTtlSeconds} are capped to it).`, {
      code: 'invalid_cache_header',
      param: CACHE_TTL_HEADER,
    });
  }
  return { directive, ttlSeconds: Math.min(Number(ttl), maxTtlSeconds) };
}

/** Counters since start (per instance), for tests, the admin page and logs. */
export interface CacheStats {
  hits: number;
  semanticHits: number;
  misses: number;
  stored: number;
  tooLarge: number;
  bypassed: number;
  errors: number;
}

/** The cache's decision for one request. */
export interface CachePlan {
  key: string;
  namespace: string;
  ttlSeconds: number;
  lookup: boolean;
  model: CacheModelConfig;
  /** Prompt text for a semantic lookup (when the model has one). */
  semanticText?: string;
}

/** A stored answer, ready to replay. */
export interface CacheHit {
  entry: CacheEntry;
  events: AsyncIterator<StreamEvent>;
  semantic: boolean;
  /** Seconds since it was stored. */
  age: number;
}

export interface WaitUntil {
  waitUntil(p: Promise<unknown>): void;
}

/** Embeds a text with the configured embedding model (through the gateway's own providers). */
export type Embedder = (model: string, text: string, trace: RequestTrace) => Promise<number[]>;

/**
 * The response cache: decides per request whether the cache applies, looks answers up, replays
 * them, and stores fresh answers once the client has them (from the events the front door
 * encodes, or from the bytes of a same-format answer as they stream past; never by holding the
 * client's stream back). Failures of the cache never fail a request: they count as errors and
 * the request goes upstream.
 */
export class ResponseCache {
  readonly stats: CacheStats = { hits: 0, semanticHits: 0, misses: 0, stored: 0, tooLarge: 0, bypassed: 0, errors: 0 };
  readonly backend: CacheBackend;
  private readonly semantic: SemanticIndex;

  constructor(
    readonly cfg: CacheConfig,
    env: Record<string, string | undefined>,
    opts: { backend?: CacheBackend; now?: () => number; embed?: Embedder; onError?: (err: unknown) => void; store?: { region?: string; endpoint?: string } } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? ((err) => console.error(JSON.stringify({ level: 'ERROR', message: 'response cache error', error: String((err as Error)?.message ?? err) })));
    this.backend = opts.backend ?? (cfg.backend === 'memory' ? new MemoryCacheBackend(1000, this.now) : createDynamoCache(cfg, env, this.now, opts.store));
    this.semantic = new SemanticIndex(this.backend, this.now, opts.embed);
  }

  private readonly now: () => number;
  private readonly onError: (err: unknown) => void;

  /** The model's cache settings, when the cache applies to it. */
  private modelConfig(name: string): CacheModelConfig | undefined {
    return this.cfg.models[name] ?? this.cfg.models['*'];
  }

  /**
   * Decide for one request: undefined when the cache does not apply (model not opted in, or a
   * bypass, which the record notes); otherwise the key and whether to look up.
   */
  plan(trace: RequestTrace, req: ChatRequest, rawBody: Record<string, unknown>, plan: RoutePlan, headers: Headers, guardProfile?: string): CachePlan | undefined {
    if (!this.cfg.enabled) return undefined;
    // Bad cache headers are refused whether or not this model is cached (400 in the caller's format).
    const { directive, ttlSeconds: ttlAsked } = cacheHeaders(headers, this.cfg.maxTtlSeconds);
    const model = this.modelConfig(req.model);
    if (!model) return undefined;
    const bypass = () => {
      trace.record.cacheStatus = 'bypass';
      this.stats.bypassed++;
      return undefined;
    };
    if (directive === 'no-store') return bypass();
    const force = directive === 'force' || model.force;
    const maxTemp = model.maxTemperature ?? this.cfg.maxTemperature;
    if ((req.temperature ?? 1) > maxTemp && !force) return bypass();
    // Several choices (`n`) cannot be replayed from one answer.
    if (typeof rawBody.n === 'number' && rawBody.n > 1) return bypass();
    const ttlSeconds = ttlAsked ?? model.ttlSeconds ?? this.cfg.ttlSeconds;
    const namespace = this.namespace(trace);
    if (directive === 'no-cache') trace.record.cacheStatus = 'miss';
    // The answer is stored as the client got it, after the output guardrails: entries are keyed by
    // the alias and the guardrail profile (name + configuration hash) as well as the targets, so an
    // answer never crosses to an alias or a key with other guardrails (see docs/cache.md).
    const route = `${plan.name}|${guardProfile ?? '-'}|${plan.groups.map((g) => g.map((t) => t.key).join('+')).join('>')}`;
    return {
      key: cacheKey(namespace, requestKeyMaterial(req, rawBody, route)),
      namespace,
      ttlSeconds,
      lookup: directive !== 'no-cache',
      model,
      semanticText: model.semantic ? semanticText(req, route) : undefined,
    };
  }

  private namespace(trace: RequestTrace): string {
    const { team, keyId } = trace.record;
    switch (this.cfg.namespace) {
      case 'global':
        return 'global';
      case 'key':
        return keyId ? `key:${keyId}` : 'global';
      case 'team':
        return team ? `team:${team}` : keyId ? `key:${keyId}` : 'global';
    }
  }

  /** Look the answer up (exact, then semantic when configured). Never throws. */
  async lookup(cp: CachePlan, trace: RequestTrace): Promise<CacheHit | undefined> {
    if (!cp.lookup) return undefined;
    try {
      let item = await this.backend.get(cp.key);
      let semantic = false;
      if (!item && cp.model.semantic && cp.semanticText !== undefined) {
        const found = await this.semantic.find(cp, trace);
        if (found) {
          item = found;
          semantic = true;
        }
      }
      const entry = item && decodeEntry(item.body);
      if (!entry) {
        this.stats.misses++;
        trace.record.cacheStatus = 'miss';
        return undefined;
      }
      const events = entry.events ?? (await collectRaw(entry));
      this.stats.hits++;
      if (semantic) this.stats.semanticHits++;
      return { entry, events: replayEvents(events), semantic, age: Math.max(0, Math.floor(this.now() / 1000) - entry.storedAt) };
    } catch (err) {
      this.stats.errors++;
      trace.record.cacheStatus = 'error';
      this.onError(err);
      return undefined;
    }
  }

  /**
   * Keep a copy of a translated answer's events as they pass to the front door, and store them
   * when the request ends well. The copy is bounded: an answer that grows past what an item could
   * hold stops being copied and is counted as too large.
   */
  tapEvents(cp: CachePlan, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, served: { provider: string; model: string; door: FrontDoor }, trace: RequestTrace, extras: WaitUntil): AsyncIterator<StreamEvent> {
    const kept: StreamEvent[] = [];
    let size = 0;
    let over = false;
    let complete = false;
    const limit = this.rawLimit();
    const keep = (r: IteratorResult<StreamEvent>) => {
      if (r.done) {
        complete = true;
        return;
      }
      if (over) return;
      const ev = r.value;
      size += ev.type === 'text' || ev.type === 'tool_args' ? ev.delta.length : ev.type === 'thinking' ? (ev.delta?.length ?? 0) + (ev.signature?.length ?? 0) + (ev.redactedData?.length ?? 0) : 32;
      if (size > limit) {
        over = true;
        kept.length = 0;
      } else kept.push(ev);
    };
    keep(first);
    trace.onEnd((record) => {
      if (!complete || record.outcome !== 'ok' || record.status !== 200) return;
      if (over) return this.tooLarge(record);
      this.store(cp, { v: 1, provider: served.provider, upstreamModel: served.model, door: served.door, storedAt: Math.floor(this.now() / 1000), events: compactEvents(kept) }, trace, extras);
    });
    return {
      async next() {
        const r = await events.next();
        keep(r);
        return r;
      },
      return: async (value?: unknown) => (await events.return?.(value as never)) ?? { done: true, value: undefined },
    };
  }

  /**
   * The same for a same-format answer passed through: the bytes are copied (bounded) as they flow
   * to the client and stored as they came; replay decodes them into events.
   */
  tapPassthrough(cp: CachePlan, upstream: Response, served: { provider: string; model: string; door: FrontDoor }, trace: RequestTrace, extras: WaitUntil): Response {
    if (upstream.status !== 200 || !upstream.body) return upstream;
    const chunks: Uint8Array[] = [];
    let size = 0;
    let over = false;
    let complete = false;
    const limit = this.rawLimit();
    const tap = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctrl) {
        ctrl.enqueue(chunk);
        if (over) return;
        size += chunk.byteLength;
        if (size > limit) {
          over = true;
          chunks.length = 0;
        } else chunks.push(chunk.slice());
      },
      flush() {
        complete = true;
      },
    });
    const contentType = upstream.headers.get('content-type') ?? 'application/json';
    trace.onEnd((record) => {
      if (!complete || record.outcome !== 'ok' || record.status !== 200) return;
      if (over) return this.tooLarge(record);
      const text = Buffer.concat(chunks).toString('utf8');
      this.store(cp, { v: 1, provider: served.provider, upstreamModel: served.model, door: served.door, storedAt: Math.floor(this.now() / 1000), raw: { contentType, text } }, trace, extras);
    });
    return webResponse(upstream.body.pipeThrough(tap), { status: upstream.status, statusText: upstream.statusText, headers: upstream.headers });
  }

  /** Uncompressed bytes worth copying: text compresses well, but past this an item cannot fit. */
  private rawLimit(): number {
    return this.cfg.maxItemBytes * 12;
  }

  private tooLarge(record: { cacheStatus?: string }): void {
    this.stats.tooLarge++;
    record.cacheStatus = 'too_large';
  }

  /** Compress now (the record says what happened), write in the background. */
  private store(cp: CachePlan, entry: CacheEntry, trace: RequestTrace, extras: WaitUntil): void {
    const body = encodeEntry(entry);
    if (body.byteLength > this.cfg.maxItemBytes) return this.tooLarge(trace.record);
    trace.record.cacheStatus = 'stored';
    const expiresAt = Math.floor(this.now() / 1000) + cp.ttlSeconds;
    const write = async () => {
      await this.backend.put(cp.key, { body, expiresAt });
      if (cp.model.semantic && cp.semanticText !== undefined) await this.semantic.add(cp, trace, expiresAt);
      this.stats.stored++;
    };
    extras.waitUntil(
      write().catch((err) => {
        this.stats.errors++;
        this.onError(err);
      }),
    );
  }

  close(): void {
    this.backend.close();
  }
}

/** The text a semantic lookup embeds: the route, the system prompt and the conversation's text. */
function semanticText(req: ChatRequest, route: string): string {
  const parts: string[] = [];
  if (req.system) parts.push(`system: ${req.system}`);
  for (const m of req.messages) {
    const text = m.content.map((p) => (p.type === 'text' ? p.text : '')).join('');
    parts.push(`${m.role}: ${text}`);
  }
  return `${route}\n${parts.join('\n')}`;
}

async function collectRaw(entry: CacheEntry): Promise<StreamEvent[]> {
  const res = webResponse(entry.raw!.text, { headers: { 'content-type': entry.raw!.contentType } });
  const it = passthroughEvents(entry.door, res, entry.provider, entry.upstreamModel);
  if (!it) throw new Error(`cannot decode a stored answer of ${entry.door}`);
  const out: StreamEvent[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) out.push(r.value);
  return compactEvents(out);
}
