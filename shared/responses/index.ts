import type { GatewayConfig } from '../config/schema.ts';
import { GatewayError, jsonResponse } from '../http/errors.ts';
import { eventData, SseSplitter } from '../http/sse.ts';
import type { RoutePlan } from '../routing/router.ts';
import { compileRedactions, redact } from '../telemetry/bodies.ts';
import { errorText, type GatewayLogger } from '../telemetry/logger.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { conversationOf, inputItems, listInputItems } from './conversation.ts';
import { createResponseStore, ResponseStore, type StoredResponse } from './store.ts';
import { statefulEcho } from '../wire/openai-responses/door.ts';
import { webResponse } from '../http/bytes.ts';

type Json = Record<string, unknown>;

/** What a Responses request leaves for the capture of its answer. */
interface Pending {
  owner: string;
  /** The whole conversation this response answers (earlier turns flattened, then the new input). */
  items: Json[];
  previousId: string | null;
  /** The route's providers that speak the Responses API themselves: an answer from one carries that upstream's own id. */
  openai: Set<string>;
}

export interface ResponsesHost {
  config: GatewayConfig;
  env: Record<string, string | undefined>;
  now: () => number;
  log: GatewayLogger;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Largest answer body read on the side to capture it (the answer itself is relayed whatever its size). */
const MAX_CAPTURE_BYTES = 8 * 1024 * 1024;

/**
 * Stateful OpenAI Responses on every provider (docs/responses.md): `store` keeps the answer and
 * its conversation, `previous_response_id` rebuilds the conversation for whatever provider the
 * model routes to, and `GET`/`DELETE /v1/responses/{id}` and `.../input_items` read them back.
 * Conversations are request bodies: they are kept only when `logging.bodies.enabled` is on.
 */
export class StatefulResponses {
  /** Undefined when nothing may be kept (the section is off, or body logging is). */
  private readonly store: ResponseStore | undefined;
  private readonly pending = new WeakMap<RequestTrace, Pending>();
  private readonly redactions: RegExp[];
  /** Writes still in flight on this instance: a follow-up that comes at once waits for its turn's. */
  private readonly writing = new Map<string, Promise<void>>();

  constructor(private readonly host: ResponsesHost) {
    const { responses, logging, store } = host.config;
    this.store = responses.enabled && logging.bodies?.enabled ? createResponseStore(store, host.env, host.now) : undefined;
    this.redactions = compileRedactions(logging.bodies?.redact ?? []);
  }

  private owner(trace: RequestTrace): string {
    return trace.record.keyId ?? 'anonymous';
  }

  private notKept(param: 'store' | 'previous_response_id', model: string): GatewayError {
    const what = param === 'store' ? "'store': true" : "'previous_response_id'";
    const why = this.host.config.responses.enabled ? 'body logging is off (logging.bodies.enabled: false), and conversations are bodies' : 'stored responses are off (responses.enabled: false)';
    return new GatewayError(
      'invalid_request',
      `${what}: this gateway keeps no Responses conversations because ${why}. Model '${model}' is served by a provider other than OpenAI's own Responses API, so send the whole conversation in 'input' (and 'store': false), or ask the operator to turn it on.`,
      { param, code: 'unsupported_parameter' },
    );
  }

  /**
   * Before the Responses door parses a body: expand `previous_response_id` into the stored
   * conversation (or leave it for an OpenAI upstream that issued it), and note what to store.
   * `planFor` is the model's route (after the key's allow list).
   */
  async prepare(body: unknown, trace: RequestTrace, planFor: (model: string) => RoutePlan): Promise<unknown> {
    if (!isObject(body) || typeof body.model !== 'string' || !body.model) return body;
    const prevId = body.previous_response_id;
    const wantsStore = body.store !== false;
    const explicit = typeof prevId === 'string' || body.store === true;
    if (!this.store && !explicit) return body;
    const plan = planFor(body.model);
    const targets = plan.groups.flat();
    // Every target speaks the Responses API itself (OpenAI): it keeps its own state.
    const openai = new Set(targets.filter((t) => t.provider.passthrough?.('openai-responses') === true).map((t) => t.provider.name));
    const openaiOnly = targets.every((t) => openai.has(t.provider.name));
    if (!this.store) {
      if (openaiOnly) return body;
      throw this.notKept(typeof prevId === 'string' ? 'previous_response_id' : 'store', body.model);
    }
    const previousId = typeof prevId === 'string' ? prevId : null;
    const note = (items: Json[]): void => {
      if (wantsStore) this.pending.set(trace, { owner: this.owner(trace), items, previousId, openai });
    };
    let earlier: Json[] = [];
    if (previousId) {
      const found = await this.read(previousId, trace);
      if (found === 'foreign' || (found === undefined && !openaiOnly)) {
        throw new GatewayError('not_found', `Previous response with id '${previousId}' not found.`, { param: 'previous_response_id', code: 'previous_response_not_found' });
      }
      // Unknown here but every target is OpenAI: its own id, passed through untouched.
      if (found === undefined) {
        note(inputItems(body.input));
        return body;
      }
      const rec = found.mine;
      earlier = conversationOf(rec);
      // An id that OpenAI issued, toward OpenAI again: untouched (it has the state, reasoning included).
      if (rec.upstreamId && openaiOnly && targets.some((t) => t.provider.name === rec.provider)) {
        note([...earlier, ...inputItems(body.input)]);
        return body;
      }
    }
    const items = [...earlier, ...inputItems(body.input)];
    note(items);
    // `instructions` are not inherited (OpenAI's rule): only this request's own apply.
    const { previous_response_id: _, ...rest } = body;
    const out = previousId ? { ...rest, input: items } : body;
    // The translated Response says what happened to it: stored, and continuing which response.
    statefulEcho.set(out, { store: wantsStore, previousResponseId: previousId });
    return out;
  }

  private async read(id: string, trace: RequestTrace): Promise<{ mine: StoredResponse } | 'foreign' | undefined> {
    try {
      const found = await this.store!.get(id, this.owner(trace));
      const inFlight = found === undefined ? this.writing.get(id) : undefined;
      if (!inFlight) return found;
      await inFlight;
      return await this.store!.get(id, this.owner(trace));
    } catch (err) {
      this.host.log.error('response store error', { error: errorText(err) });
      throw new GatewayError('overloaded', 'The stored responses cannot be read right now; retry shortly.', { code: 'response_store_unavailable' });
    }
  }

  /**
   * After the door answered: read the finished Response on the side (the JSON body, or the
   * terminal event of a stream) and store it once the client has all its bytes.
   */
  capture(trace: RequestTrace, res: Response, waitUntil: (p: Promise<unknown>) => void, provider: () => string | undefined): Response {
    const pending = this.pending.get(trace);
    if (!pending || !this.store || res.status !== 200 || !res.body) return res;
    const sse = (res.headers.get('content-type') ?? '').includes('text/event-stream');
    const reader = res.body.getReader();
    const splitter = new SseSplitter();
    const chunks: Uint8Array[] = [];
    let size = 0;
    let final: Json | undefined;
    let unreadable = false;
    const finish = () => {
      if (!sse && size <= MAX_CAPTURE_BYTES) {
        try {
          final = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json;
        } catch {
          final = undefined;
        }
      }
      if (isObject(final) && final.object === 'response' && typeof final.id === 'string' && (final.status === 'completed' || final.status === 'incomplete')) {
        const id = final.id;
        const write = this.keep(final, pending, provider() ?? '').finally(() => this.writing.delete(id));
        this.writing.set(id, write);
        waitUntil(write);
      }
    };
    const body = new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        const r = await reader.read();
        if (r.done) {
          ctrl.close();
          finish();
          return;
        }
        if (sse && !unreadable) {
          let events: string[];
          try {
            events = splitter.push(r.value);
          } catch {
            // An event too large to read: the client still gets every byte, nothing is stored.
            unreadable = true;
            events = [];
          }
          for (const ev of events) {
            const data = eventData(ev);
            if (!data || !/"response\.(completed|incomplete)"/.test(data.slice(0, 80))) continue;
            try {
              const parsed = JSON.parse(data) as Json;
              if (isObject(parsed.response)) final = parsed.response;
            } catch {
              // not an event the gateway can read: nothing to store
            }
          }
        } else if ((size += r.value.byteLength) <= MAX_CAPTURE_BYTES) chunks.push(r.value);
        ctrl.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return webResponse(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  }

  /** Store a finished response (redacted like logged bodies); failures are logged, never the client's. */
  private async keep(response: Json, p: Pending, provider: string): Promise<void> {
    const id = response.id as string;
    const rec: StoredResponse = {
      id,
      owner: p.owner,
      response: this.redacted({ ...response, store: true, previous_response_id: p.previousId }),
      items: this.redacted(p.items),
      provider,
      upstreamId: p.openai.has(provider),
      expiresAt: Math.floor(this.host.now() / 1000) + this.host.config.responses.ttlDays * 86_400,
    };
    const body = ResponseStore.encode(rec, this.host.config.responses.maxItemBytes);
    if (!(body instanceof Uint8Array)) {
      this.host.log.warn('response not stored: its compressed conversation exceeds responses.maxItemBytes', { responseId: id, bytes: body.tooLarge, maxItemBytes: this.host.config.responses.maxItemBytes });
      return;
    }
    try {
      if (!(await this.store!.put(rec, body))) this.host.log.warn('response not stored: its id belongs to another key', { responseId: id });
    } catch (err) {
      this.host.log.error('response store error', { responseId: id, error: errorText(err) });
    }
  }

  private redacted<T>(v: T): T {
    if (typeof v === 'string') return redact(v, this.redactions) as T;
    if (Array.isArray(v)) return v.map((x) => this.redacted(x)) as T;
    if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.redacted(x)])) as T;
    return v;
  }

  /** `GET`/`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`. */
  async route(request: Request, path: string, trace: RequestTrace, headers: Record<string, string>): Promise<Response> {
    const m = /^\/v1\/responses\/([^/]+)(\/input_items)?$/.exec(path);
    if (!m) throw new GatewayError('not_found', `Unknown route: ${request.method} ${path}`, { code: 'unknown_route' });
    const id = decodeURIComponent(m[1]!);
    const allow = m[2] ? 'GET' : 'GET, DELETE';
    if (!allow.split(', ').includes(request.method)) {
      throw new GatewayError('invalid_request', `Method ${request.method} is not allowed on ${path}; use ${allow.replace(', ', ' or ')}.`, { status: 405, code: 'method_not_allowed', headers: { allow } });
    }
    const missing = () => new GatewayError('not_found', `Response with id '${id}' not found.`, { param: 'response_id', code: 'response_not_found' });
    if (!this.store) throw missing();
    if (request.method === 'DELETE') {
      let deleted: boolean;
      try {
        deleted = await this.store.delete(id, this.owner(trace));
      } catch (err) {
        this.host.log.error('response store error', { error: errorText(err) });
        throw new GatewayError('overloaded', 'The stored responses cannot be changed right now; retry shortly.', { code: 'response_store_unavailable' });
      }
      if (!deleted) throw missing();
      return jsonResponse({ id, object: 'response', deleted: true }, 200, headers);
    }
    const found = await this.read(id, trace);
    if (!found || found === 'foreign') throw missing();
    if (!m[2]) return jsonResponse(found.mine.response, 200, headers);
    return jsonResponse(listInputItems(found.mine, new URL(request.url).searchParams), 200, headers);
  }
}
