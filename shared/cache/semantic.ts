import { createHash } from 'node:crypto';
import type { RequestTrace } from '../telemetry/record.ts';
import type { CacheBackend, CacheItem } from './backend.ts';
import type { CachePlan, Embedder } from './index.ts';

/**
 * Semantic lookup with random-hyperplane LSH (SimHash). The prompt's embedding is reduced to
 * `bands` signatures of `bitsPerBand` bits each (the signs of its dot products with fixed
 * pseudo-random Gaussian hyperplanes); each signature names one bucket item in the cache table.
 * A lookup reads the `bands` buckets in one BatchGetItem, compares the query with the few vectors
 * held there (at most bands x bucketSize, by cosine similarity), and serves the exact entry of the
 * best one at or above the threshold. Cost per lookup is constant: it does not grow with the cache.
 *
 * Limits: a near neighbour is found only if it shares at least one band signature (probability
 * grows with similarity: with 12 bits a band, two vectors at cosine 0.95 share a given band about
 * 28% of the time, so 4 bands find it about 73% of the time); a bucket keeps only its newest
 * `bucketSize` entries; concurrent writes to one bucket are last-writer-wins (an entry can be lost,
 * never corrupted). Vectors are kept as float32.
 */
export class SemanticIndex {
  private readonly planes = new Map<string, Float32Array[]>();
  /** The query vector of a request, kept from lookup for the write that may follow. */
  private readonly vectors = new WeakMap<RequestTrace, number[]>();

  constructor(
    private readonly backend: CacheBackend,
    private readonly now: () => number,
    private readonly embedder?: Embedder,
  ) {}

  private async vector(cp: CachePlan, trace: RequestTrace): Promise<number[] | undefined> {
    const have = this.vectors.get(trace);
    if (have) return have;
    if (!this.embedder || !cp.model.semantic) return undefined;
    const v = normalize(await this.embedder(cp.model.semantic.embeddingModel, cp.semanticText!, trace));
    this.vectors.set(trace, v);
    return v;
  }

  /** Hyperplanes for one band and dimension: deterministic, so every instance draws the same. */
  private hyperplanes(band: number, bits: number, dims: number): Float32Array[] {
    const id = `${band}:${bits}:${dims}`;
    let ps = this.planes.get(id);
    if (!ps) {
      ps = [];
      for (let b = 0; b < bits; b++) ps.push(gaussianVector(`lsh:${band}:${b}`, dims));
      this.planes.set(id, ps);
    }
    return ps;
  }

  private buckets(cp: CachePlan, v: number[]): string[] {
    const s = cp.model.semantic!;
    const space = createHash('sha256').update(`${cp.namespace}\n${s.embeddingModel}\n${cp.semanticText!.split('\n', 1)[0]}`).digest('base64url').slice(0, 22);
    const out: string[] = [];
    for (let band = 0; band < s.bands; band++) {
      let sig = 0;
      this.hyperplanes(band, s.bitsPerBand, v.length).forEach((p, i) => {
        let dot = 0;
        for (let d = 0; d < v.length; d++) dot += v[d]! * p[d]!;
        if (dot >= 0) sig |= 1 << i;
      });
      out.push(`s1#${space}#${band}#${sig.toString(16)}`);
    }
    return out;
  }

  /** The best stored answer at or above the threshold, if any. */
  async find(cp: CachePlan, trace: RequestTrace): Promise<CacheItem | undefined> {
    const v = await this.vector(cp, trace);
    if (!v) return undefined;
    const buckets = await this.backend.getMany(this.buckets(cp, v));
    const nowS = Math.floor(this.now() / 1000);
    let best: { key: string; score: number } | undefined;
    for (const item of buckets.values()) {
      for (const e of readBucket(item)) {
        if (e.exp <= nowS || e.key === cp.key) continue;
        const score = dot(v, e.vec);
        if (score >= cp.model.semantic!.threshold && (!best || score > best.score)) best = { key: e.key, score };
      }
    }
    if (!best) return undefined;
    return this.backend.get(best.key);
  }

  /** File a stored answer under the request's buckets. */
  async add(cp: CachePlan, trace: RequestTrace, expiresAt: number): Promise<void> {
    const v = await this.vector(cp, trace);
    if (!v) return;
    const pks = this.buckets(cp, v);
    const current = await this.backend.getMany(pks);
    const nowS = Math.floor(this.now() / 1000);
    const vec = Array.from(new Float32Array(v));
    await Promise.all(
      pks.map((pk) => {
        const item = current.get(pk);
        const entries = (item ? readBucket(item) : []).filter((e) => e.exp > nowS && e.key !== cp.key);
        entries.push({ key: cp.key, exp: expiresAt, vec });
        const kept = entries.slice(-cp.model.semantic!.bucketSize);
        const exp = Math.max(...kept.map((e) => e.exp));
        return this.backend.put(pk, { body: process.getBuiltinModule('node:zlib').brotliCompressSync(Buffer.from(JSON.stringify(kept.map((e) => ({ k: e.key, x: e.exp, v: toBase64(e.vec) }))))), expiresAt: exp });
      }),
    );
  }
}

interface BucketEntry {
  key: string;
  exp: number;
  vec: number[];
}

function readBucket(item: CacheItem): BucketEntry[] {
  try {
    const raw = JSON.parse(process.getBuiltinModule('node:zlib').brotliDecompressSync(item.body).toString('utf8')) as { k: string; x: number; v: string }[];
    return raw.map((r) => ({ key: r.k, exp: r.x, vec: fromBase64(r.v) }));
  } catch {
    return [];
  }
}

function toBase64(v: number[]): string {
  return Buffer.from(new Float32Array(v).buffer).toString('base64');
}

function fromBase64(s: string): number[] {
  const b = Buffer.from(s, 'base64');
  return Array.from(new Float32Array(b.buffer, b.byteOffset, Math.floor(b.byteLength / 4)));
}

function normalize(v: number[]): number[] {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n) || 1;
  return v.map((x) => x / n);
}

function dot(a: number[], b: number[]): number {
  if (a.length !== b.length) return -1;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** A Gaussian vector from a seed (SHA-256 counter stream -> uniforms -> Box-Muller). */
function gaussianVector(seed: string, dims: number): Float32Array {
  const out = new Float32Array(dims);
  let block = 0;
  let buf = Buffer.alloc(0);
  let off = 0;
  const uniform = () => {
    if (off + 4 > buf.length) {
      buf = createHash('sha256').update(`${seed}:${block++}`).digest();
      off = 0;
    }
    const u = (buf.readUInt32LE(off) + 1) / 4294967297;
    off += 4;
    return u;
  };
  for (let i = 0; i < dims; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const t = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(t);
    if (i + 1 < dims) out[i + 1] = r * Math.sin(t);
  }
  return out;
}
