import { setTimeout as sleep } from 'node:timers/promises';
import type { FallbackTrigger } from '../config/schema.ts';
import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';
import { GatewayError, toGatewayError } from '../http/errors.ts';
import type { CallContext } from '../providers/types.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { startSpan } from '../tracing/spans.ts';
import type { ResolvedTarget, RoutePlan, Router } from './router.ts';

/** A provider's answer, with its first piece already in hand (so the call can still fail over). */
export type Served =
  | { kind: 'events'; target: ResolvedTarget; first: IteratorResult<StreamEvent>; events: AsyncIterator<StreamEvent> }
  | { kind: 'passthrough'; target: ResolvedTarget; response: Response };

export interface AttemptLog {
  provider: string;
  model: string;
  status: number;
  errorCode?: string;
  latencyMs: number;
}

export interface RunInput {
  plan: RoutePlan;
  req: ChatRequest;
  door: FrontDoor;
  rawBody: Record<string, unknown>;
  headers: Headers;
  /** The client's query string (with its `?`), for same-format pass-through (`?beta=true`). */
  query?: string;
  requestId: string;
  signal: AbortSignal;
  trace: RequestTrace;
}

/**
 * Try the plan's targets in order until one starts answering. A target's failure before its first
 * byte (status in `fallbackOn`, timeout, connection error) is retried with backoff and jitter
 * (honouring Retry-After) and then handed to the next target; a client error (4xx) ends the
 * request at once. Once a target has produced its first byte, it is committed: later failures
 * reach the client as an error event in its own format.
 */
export async function runAttempts(router: Router, input: RunInput): Promise<Served> {
  const { plan, trace } = input;
  const order = router.order(plan);
  const log: AttemptLog[] = [];
  trace.record.attemptLog = log;
  let lastError: GatewayError | undefined;
  for (let ti = 0; ti < order.length; ti++) {
    const target = order[ti]!;
    for (let attempt = 0; attempt <= plan.retry.retries; attempt++) {
      const t0 = performance.now();
      try {
        const served = await attemptOnce(target, input);
        log.push({ provider: target.provider.name, model: target.model, status: served.kind === 'passthrough' ? served.response.status : 200, latencyMs: ms(t0) });
        router.cooldown.success(target.key);
        trace.record.attempts = log.length;
        trace.record.fallbacks = ti;
        return served;
      } catch (err) {
        const ge = toGatewayError(err);
        log.push({ provider: target.provider.name, model: target.model, status: ge.status, errorCode: ge.code ?? ge.kind, latencyMs: ms(t0) });
        // Until a target serves, the record names the last one tried (so a failed request says where it failed).
        trace.record.provider = target.provider.name;
        trace.record.upstreamModel = target.model;
        trace.record.attempts = log.length;
        trace.record.fallbacks = ti;
        lastError = ge;
        const trigger = classify(ge);
        if (!trigger || !plan.fallbackOn.has(trigger) || input.signal.aborted) throw ge;
        router.cooldown.failure(target.key);
        if (attempt === plan.retry.retries) break;
        const delay = backoff(plan.retry, attempt, ge);
        if (delay === undefined) break; // Retry-After beyond our patience: move on to the next target
        try {
          await sleep(delay, undefined, { signal: input.signal });
        } catch {
          throw new GatewayError('invalid_request', 'The client closed the request.', { status: 499, code: 'client_closed' });
        }
      }
    }
  }
  throw lastError ?? new GatewayError('upstream', 'No target could serve this request.');
}

/** Which fallback trigger an error is, if any. Client errors (4xx other than 429) are none. */
export function classify(err: GatewayError): FallbackTrigger | undefined {
  if (err.status === 499) return undefined;
  if (err.status === 429) return '429';
  if (err.kind === 'timeout' || err.status === 504) return 'timeout';
  if (err.code === 'upstream_unreachable') return 'connection';
  if (err.status >= 500) return '5xx';
  return undefined;
}

function backoff(policy: { baseDelayMs: number; maxDelayMs: number }, attempt: number, err: GatewayError): number | undefined {
  const ra = err.headers['retry-after'];
  if (ra !== undefined) {
    const secs = Number(ra);
    const wait = Number.isFinite(secs) ? secs * 1000 : Date.parse(ra) - Date.now();
    if (Number.isFinite(wait)) return wait > policy.maxDelayMs ? undefined : Math.max(0, wait);
  }
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.random() * cap; // full jitter
}

function ms(t0: number): number {
  return Math.round((performance.now() - t0) * 100) / 100;
}

/**
 * One call to one target, with the target's own first-byte and whole-call timeouts. Its span
 * (named `provider/model`) covers the whole call: from the request until the last byte of the
 * answer (or the failure), with the time to the first byte as an annotation.
 */
async function attemptOnce(target: ResolvedTarget, input: RunInput): Promise<Served> {
  const { firstByteTimeoutMs, totalTimeoutMs } = target.config;
  const t0 = performance.now();
  const span = startSpan(`${target.provider.name}/${target.model}`, { namespace: 'remote', annotations: { provider: target.provider.name, model: target.model } });
  const controller = new AbortController();
  let timedOut: 'first_byte' | 'total' | undefined;
  const onClient = () => controller.abort(input.signal.reason);
  if (input.signal.aborted) controller.abort(input.signal.reason);
  else input.signal.addEventListener('abort', onClient, { once: true });
  const fire = (why: 'first_byte' | 'total') => {
    timedOut ??= why;
    controller.abort(new GatewayError('timeout', `Provider "${target.provider.name}" did not answer within ${why === 'first_byte' ? firstByteTimeoutMs : totalTimeoutMs} ms.`, { code: 'upstream_timeout' }));
  };
  const firstTimer = firstByteTimeoutMs ? setTimeout(fire, firstByteTimeoutMs, 'first_byte') : undefined;
  const totalTimer = totalTimeoutMs ? setTimeout(fire, totalTimeoutMs, 'total') : undefined;
  const release = (midStreamError?: unknown) => {
    clearTimeout(firstTimer);
    clearTimeout(totalTimer);
    input.signal.removeEventListener('abort', onClient);
    if (midStreamError !== undefined) span.fail(toGatewayError(asTimeout(midStreamError)));
    span.end();
  };
  const asTimeout = (err: unknown): unknown =>
    !timedOut && input.signal.aborted
      ? new GatewayError('invalid_request', 'The client closed the request.', { status: 499, code: 'client_closed', cause: err })
      : timedOut ? new GatewayError('timeout', `Provider "${target.provider.name}" did not ${timedOut === 'first_byte' ? 'answer' : 'finish'} within ${timedOut === 'first_byte' ? firstByteTimeoutMs : totalTimeoutMs} ms.`, { code: 'upstream_timeout', cause: err }) : err;

  const { req, rawBody } = applyParams(target, input);
  // A request part the neutral model cannot carry can only reach a provider that passes the body through.
  const lost = req.untranslatable?.[0];
  if (lost && !target.provider.passthrough?.(input.door)) {
    release();
    throw new GatewayError('invalid_request', lost.message, { param: lost.param, code: 'unsupported_parameter' });
  }
  const ctx: CallContext = {
    requestId: input.requestId,
    signal: controller.signal,
    frontDoor: input.door,
    rawBody,
    headers: input.headers,
    upstreamModel: target.model,
    query: input.query,
  };
  // Races the provider against our first-byte timer, so a provider that ignores the signal still fails over.
  const timeoutRace = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(asTimeout(controller.signal.reason)), { once: true }));
  timeoutRace.catch(() => {});
  try {
    const result = await Promise.race([target.provider.chat(req, ctx), timeoutRace]);
    if (result.kind === 'events') {
      const first = await Promise.race([result.events.next(), timeoutRace]).catch(async (err) => {
        await result.events.return?.().catch(() => {});
        throw err;
      });
      clearTimeout(firstTimer);
      span.annotate({ status: 200, firstByteMs: ms(t0) });
      return { kind: 'events', target, first, events: guardEvents(result.events, release, asTimeout) };
    }
    const response = await prefetch(result.response, timeoutRace, release, asTimeout);
    clearTimeout(firstTimer);
    span.annotate({ status: response.status, firstByteMs: ms(t0) });
    return { kind: 'passthrough', target, response };
  } catch (err) {
    const e = asTimeout(err);
    const ge = toGatewayError(e);
    span.annotate({ status: ge.status, errorCode: ge.code ?? ge.kind });
    span.fail(ge);
    release();
    throw e;
  }
}

/** Target parameter overrides, applied to the neutral request and to a pass-through body alike. */
function applyParams(target: ResolvedTarget, input: RunInput): { req: ChatRequest; rawBody: Record<string, unknown> } {
  const p = target.config.params;
  if (!p) return { req: input.req, rawBody: input.rawBody };
  const req = { ...input.req };
  const rawBody = { ...input.rawBody };
  const maxKey = input.door === 'openai-responses' ? 'max_output_tokens' : input.door === 'openai-chat' && 'max_completion_tokens' in rawBody ? 'max_completion_tokens' : 'max_tokens';
  if (p.temperature !== undefined) (req.temperature = p.temperature), (rawBody.temperature = p.temperature);
  if (p.top_p !== undefined) (req.topP = p.top_p), (rawBody.top_p = p.top_p);
  if (p.max_tokens !== undefined) (req.maxTokens = p.max_tokens), (rawBody[maxKey] = p.max_tokens);
  return { req, rawBody };
}

/** Wrap an event iterator so its end (or failure) releases the attempt's timers and names timeouts. */
function guardEvents(events: AsyncIterator<StreamEvent>, release: (err?: unknown) => void, asTimeout: (e: unknown) => unknown): AsyncIterator<StreamEvent> {
  return {
    async next() {
      try {
        const r = await events.next();
        if (r.done) release();
        return r;
      } catch (err) {
        release(err);
        throw asTimeout(err);
      }
    },
    async return(value?: unknown) {
      release();
      return (await events.return?.(value as never)) ?? { done: true, value: undefined };
    },
  };
}

/**
 * Read a pass-through response's first body chunk before committing to it, so a target that sends
 * headers but then stalls or breaks can still fail over; then hand on a body that starts with
 * that chunk and continues with the rest as it arrives.
 */
async function prefetch(res: Response, timeoutRace: Promise<never>, release: (err?: unknown) => void, asTimeout: (e: unknown) => unknown): Promise<Response> {
  if (!res.body) {
    release();
    return res;
  }
  const reader = res.body.getReader();
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    first = await Promise.race([reader.read(), timeoutRace]);
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
  let pending: ReadableStreamReadResult<Uint8Array> | undefined = first;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        const r = pending ?? (await reader.read());
        pending = undefined;
        if (r.done) {
          release();
          ctrl.close();
        } else ctrl.enqueue(r.value);
      } catch (err) {
        release(err);
        ctrl.error(asTimeout(err));
      }
    },
    cancel(why) {
      release();
      return reader.cancel(why);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}
