import { createHash } from 'node:crypto';
import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';

/**
 * Cache keys and entries. The key is a SHA-256 over a canonical JSON of everything that changes
 * the answer: the route (its targets), the neutral request (system, messages, tools, sampling and
 * length parameters) and any field of the client's body the neutral request does not carry (e.g.
 * `response_format`, `seed`), inside a namespace. The entry is the answer as neutral events, so it
 * replays in any of the three APIs, streamed or not; it is stored brotli-compressed.
 */

/** Body fields that the neutral request carries, or that do not change the answer. */
const CARRIED = new Set([
  'model', 'stream', 'stream_options', 'messages', 'system', 'tools', 'tool_choice', 'max_tokens', 'max_completion_tokens', 'max_output_tokens',
  'temperature', 'top_p', 'top_k', 'stop', 'stop_sequences', 'user', 'metadata', 'input', 'instructions', 'thinking', 'store',
]);

/** Body fields that only choose the route or the answer's framing (with untranslatable parts, the rest keys the entry). */
const ROUTING_ONLY = new Set(['model', 'modelId', 'stream', 'stream_options']);

/** JSON with object keys sorted, so equal values always give equal text. */
export function canonicalJson(v: unknown): string {
  if (v === undefined) return 'null';
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v as object).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

export function requestKeyMaterial(req: ChatRequest, rawBody: Record<string, unknown>, route: string): Record<string, unknown> {
  const extras: Record<string, unknown> = {};
  // Parts the neutral request could not carry (an unknown role, content part or tool, passed
  // through as sent) are only in the client's body: then every field but the model and streaming
  // options keys the entry as sent, so two requests that differ there never share an answer.
  const asSent = !!req.untranslatable?.length;
  for (const [k, v] of Object.entries(rawBody)) if (asSent ? !ROUTING_ONLY.has(k) : !CARRIED.has(k)) extras[k] = v;
  return {
    route,
    system: req.system,
    messages: req.messages,
    tools: req.tools,
    toolChoice: req.toolChoice,
    parallelToolCalls: req.parallelToolCalls,
    maxTokens: req.maxTokens,
    temperature: req.temperature,
    topP: req.topP,
    topK: req.topK,
    stop: req.stop,
    thinking: req.thinking,
    untranslatable: req.untranslatable?.map((u) => u.param),
    extras,
  };
}

export function cacheKey(namespace: string, material: Record<string, unknown>): string {
  const h = createHash('sha256').update(canonicalJson(material)).digest('base64url');
  return `c1#${namespace}#${h}`;
}

export interface CacheEntry {
  v: 1;
  /** What served the answer first. */
  provider: string;
  upstreamModel: string;
  /** The API the answer was first given in (for the record only: replay works in every API). */
  door: FrontDoor;
  /** Epoch seconds the answer was stored. */
  storedAt: number;
  /** The answer as neutral events (translated routes)... */
  events?: StreamEvent[];
  /** ...or the upstream's own bytes (same-format routes), decoded into events when replayed. */
  raw?: { contentType: string; text: string };
}

/** Join adjacent text (and tool-argument) deltas: the entry keeps content, not chunking. */
export function compactEvents(events: StreamEvent[]): StreamEvent[] {
  const out: StreamEvent[] = [];
  for (const ev of events) {
    const last = out[out.length - 1];
    if (ev.type === 'text' && last?.type === 'text') out[out.length - 1] = { type: 'text', delta: last.delta + ev.delta };
    else if (ev.type === 'tool_args' && last?.type === 'tool_args' && last.index === ev.index) out[out.length - 1] = { ...last, delta: last.delta + ev.delta };
    else if (ev.type === 'thinking' && ev.delta !== undefined && last?.type === 'thinking' && last.delta !== undefined && !last.signature && !last.redactedData) out[out.length - 1] = { type: 'thinking', delta: last.delta + ev.delta };
    else out.push(ev);
  }
  return out;
}

export function encodeEntry(e: CacheEntry): Uint8Array {
  const zlib = process.getBuiltinModule('node:zlib'); // not at import: only a cache needs it
  return zlib.brotliCompressSync(Buffer.from(JSON.stringify(e)), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } });
}

export function decodeEntry(b: Uint8Array): CacheEntry | undefined {
  try {
    const e = JSON.parse(process.getBuiltinModule('node:zlib').brotliDecompressSync(b).toString('utf8')) as CacheEntry;
    return e && e.v === 1 && (Array.isArray(e.events) || typeof e.raw?.text === 'string') ? e : undefined;
  } catch {
    return undefined;
  }
}

/** Replay pieces: text is cut into chunks so a streamed replay looks like a stream. */
const REPLAY_CHUNK = 96;

export function replayEvents(events: StreamEvent[]): AsyncIterator<StreamEvent> {
  const out: StreamEvent[] = [];
  for (const ev of events) {
    if ((ev.type === 'text' || ev.type === 'tool_args') && ev.delta.length > REPLAY_CHUNK) {
      for (let i = 0; i < ev.delta.length; ) {
        let end = Math.min(ev.delta.length, i + REPLAY_CHUNK);
        // never split a surrogate pair between two chunks
        if (end < ev.delta.length && /[\uD800-\uDBFF]/.test(ev.delta[end - 1]!)) end++;
        out.push({ ...ev, delta: ev.delta.slice(i, end) });
        i = end;
      }
    } else out.push(ev);
  }
  let i = 0;
  return {
    next: async () => (i < out.length ? { done: false, value: out[i++]! } : { done: true, value: undefined }),
    return: async () => {
      i = out.length;
      return { done: true, value: undefined };
    },
  };
}
