import type { FallbackTrigger } from '../config/schema.ts';
import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';
import { bodyReader, hasBody, headerOf, keepParsedJson, readNowOf, rebodied, type PullSource } from '../http/bytes.ts';
import { sleepUnlessLeft, type CallSignal, type ClientSignal } from '../http/client-signal.ts';
import { GatewayError, toGatewayError } from '../http/errors.ts';
import type { CallContext } from '../providers/types.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { spansOn, startSpan, type Span } from '../tracing/spans.ts';
import { traceCalls, type TraceContext } from '../tracing/context.ts';
import { answerFormatOf, brokenAnswer, checkJsonAnswer, SseChecker, type AnswerFormat } from '../wire/relay.ts';
import { SseSplitter } from '../http/sse.ts';
import { answerTooLarge, MAX_ANSWER_BYTES, MAX_ANSWER_CHARS } from '../http/answer.ts';
import type { AttemptTimeouts, ResolvedTarget, RoutePlan, Router } from './router.ts';
import { clientClosed, Deadline } from './deadline.ts';
import { structuredEvents, structuredRequest } from '../emulate/structured.ts';

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
  /** The client's leaving (the shell's cheap one, or a web Request's signal). */
  signal: ClientSignal;
  trace: RequestTrace;
  /** Where the attempt log goes, when not the trace's record (one of `n` emulated choices). */
  record?: AttemptRecord;
}

/**
 * Try the plan's targets in order until one starts answering. A target's failure before its first
 * byte (status in `fallbackOn`, timeout, connection error) is retried with backoff and jitter
 * (honouring Retry-After) and then handed to the next target; a client error (4xx) ends the
 * request at once. Once a target has produced its first byte, it is committed: later failures
 * reach the client as an error event in its own format.
 */
export function runAttempts(router: Router, input: RunInput): Promise<Served> {
  return runTargets(router, input.plan, input.record ?? input.trace.record, input.signal, router.order(input.plan), (target) => attemptOnce(target, input), servedStatus);
}

function servedStatus(served: Served): number {
  return served.kind === 'passthrough' ? served.response.status : 200;
}

/** What a one-shot upstream call (embeddings, count_tokens) is given: its target's deadline. */
export interface CallDeadline {
  requestId: string;
  /** The attempt's deadline (first byte, total; the client's abort), as one signal. */
  signal: CallSignal;
}

export interface RunCallInput {
  plan: RoutePlan;
  requestId: string;
  signal: ClientSignal;
  /** The request whose record gets the attempt log; absent for a call on the side (the semantic cache's query vector). */
  trace?: RequestTrace;
  /** The trace context the call's `traceparent` continues, when not `trace`'s (a call on the side). */
  context?: TraceContext;
  /** Only these targets can serve the call (e.g. those whose provider can embed); the rest are skipped. */
  filter?: (target: ResolvedTarget) => boolean;
}

/**
 * A one-shot upstream call (embeddings, count_tokens, the semantic cache's query vector) through
 * the same runner as a chat attempt: the plan's targets in order, retried and then handed to the
 * next target on the model's fallback triggers, each attempt under its target's deadline and in its
 * own span (`provider/model`), logged in the record's attempt log. The call's promise settling is
 * its first (and last) byte: a call reads what it needs of its answer before it settles.
 */
export async function runCall<T>(router: Router, input: RunCallInput, call: (target: ResolvedTarget, ctx: CallDeadline) => Promise<T>): Promise<{ target: ResolvedTarget; value: T }> {
  const order = router.order(input.plan).filter((t) => input.filter?.(t) ?? true);
  return runTargets(router, input.plan, input.trace?.record ?? {}, input.signal, order, async (target) => {
    const attempt = new Attempt(target.provider.name, target.model, target.timeouts, input.signal, input.context ?? input.trace?.context);
    try {
      const value = await attempt.race(call(target, { requestId: input.requestId, signal: attempt.signal }));
      attempt.started(200);
      attempt.end();
      return { target, value };
    } catch (err) {
      throw attempt.fail(err);
    }
  }, () => 200);
}

/**
 * One upstream exchange outside a route plan (an MCP server's answer, relayed as it comes): under
 * a deadline and in a span like an attempt, without retries or fallback. The answer's headers are
 * its first byte; its body is read under the idle and total limits, and the deadline is released
 * when the body ends (or fails, or the reader cancels it).
 */
export async function runExchange(
  name: string,
  timeouts: Pick<AttemptTimeouts, 'firstByteTimeoutMs' | 'totalTimeoutMs'> & { idleTimeoutMs?: number },
  clientSignal: ClientSignal,
  call: (signal: CallSignal) => Promise<Response>,
  context?: TraceContext,
): Promise<Response> {
  // Without an idle limit of its own, only the whole exchange's limit cuts a silent body.
  const attempt = new Attempt(name, undefined, { ...timeouts, idleTimeoutMs: timeouts.idleTimeoutMs ?? timeouts.totalTimeoutMs }, clientSignal, context);
  let res: Response;
  try {
    res = await attempt.race(call(attempt.signal));
  } catch (err) {
    throw attempt.fail(err);
  }
  attempt.started(res.status);
  if (!hasBody(res)) {
    attempt.end();
    return res;
  }
  return rebodied(res, watchedBody(bodyReader(res), [], attempt));
}

/** runCall bound to one request: what a front door's one-shot handler is given. */
export type CallRunner = <T>(plan: RoutePlan, call: (target: ResolvedTarget, ctx: CallDeadline) => Promise<T>, filter?: (target: ResolvedTarget) => boolean) => Promise<{ target: ResolvedTarget; value: T }>;

/** The fields of a request's record that the attempt loop fills. */
type AttemptRecord = Partial<Pick<RequestTrace['record'], 'attemptLog' | 'attempts' | 'fallbacks' | 'provider' | 'upstreamModel'>>;

/** The attempt loop shared by chat calls and one-shot calls: retries, fallback, cooldown, the attempt log. */
async function runTargets<T>(
  router: Router,
  plan: RoutePlan,
  record: AttemptRecord,
  signal: ClientSignal,
  order: ResolvedTarget[],
  attemptOnce: (target: ResolvedTarget) => Promise<T>,
  statusOf: (served: T) => number,
): Promise<T> {
  const log: AttemptLog[] = [];
  record.attemptLog = log;
  let lastError: GatewayError | undefined;
  for (let ti = 0; ti < order.length; ti++) {
    const target = order[ti]!;
    for (let attempt = 0; attempt <= plan.retry.retries; attempt++) {
      const t0 = performance.now();
      try {
        const served = await attemptOnce(target);
        log.push({ provider: target.provider.name, model: target.model, status: statusOf(served), latencyMs: ms(t0) });
        router.cooldown.success(target.key);
        record.attempts = log.length;
        record.fallbacks = ti;
        return served;
      } catch (err) {
        // The gateway's own failure (a body it cannot serialize, a bug) is not the upstream's: no
        // attempt, no retry, no fallback, no cooldown strike.
        const own = ownFailure(err);
        if (own) throw own;
        const ge = toGatewayError(err);
        log.push({ provider: target.provider.name, model: target.model, status: ge.status, errorCode: ge.code ?? ge.kind, latencyMs: ms(t0) });
        // Until a target serves, the record names the last one tried (so a failed request says where it failed).
        record.provider = target.provider.name;
        record.upstreamModel = target.model;
        record.attempts = log.length;
        record.fallbacks = ti;
        lastError = ge;
        const trigger = classify(ge);
        if (!trigger || !plan.fallbackOn.has(trigger) || signal.aborted) throw ge;
        router.cooldown.failure(target.key);
        if (attempt === plan.retry.retries) break;
        const delay = backoff(plan.retry, attempt, ge);
        if (delay === undefined) break; // Retry-After beyond our patience: move on to the next target
        try {
          await sleepUnlessLeft(delay, signal);
        } catch (err) {
          throw clientClosed(err);
        }
      }
    }
  }
  throw lastError ?? new GatewayError('upstream', 'No target could serve this request.');
}

/**
 * An error that did not come from the upstream, as the client should see it: a request nested too
 * deeply for the gateway to handle is the client's 400, anything else the gateway's own 500.
 */
function ownFailure(err: unknown): GatewayError | undefined {
  if (err instanceof GatewayError && err.kind !== 'internal') return undefined;
  const cause = err instanceof GatewayError ? err.cause : err;
  if (cause instanceof RangeError && /call stack/i.test(cause.message)) {
    return new GatewayError('invalid_request', 'The request is nested too deeply for the gateway to handle.', { code: 'nesting_too_deep', cause });
  }
  return err instanceof GatewayError ? err : new GatewayError('internal', 'The gateway failed to handle this request.', { cause: err });
}

/** Which fallback trigger an error is, if any. Client errors (4xx other than 429) are none. */
function classify(err: GatewayError): FallbackTrigger | undefined {
  if (err.status === 499 || err.kind === 'internal') return undefined;
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
 * One call to one target, with the target's resolved timeouts (target, else provider, else
 * defaults): until the first byte of the answer's body (the first event of a stream: headers are
 * not enough), between chunks once it has started, and for the whole call. Its span (named
 * `provider/model`) covers the whole call: from the request until the last byte of the answer
 * (or the failure), with the time to the first byte as an annotation.
 *
 * A same-format answer is checked before the attempt commits: a non-streamed one is read whole and
 * must be its API's JSON; a streamed one must open with a well-formed event of its API. A broken
 * answer is a failed attempt (a 502: retried, then handed to the next target).
 */
async function attemptOnce(target: ResolvedTarget, input: RunInput): Promise<Served> {
  const attempt = new Attempt(target.provider.name, target.model, target.timeouts, input.signal, input.trace.context);
  const { req: params, rawBody } = applyParams(target, input);
  // Structured output on a translated route: a forced tool (shared/emulate/structured.ts).
  const structured = params.responseFormat && !target.provider.passthrough?.(input.door) ? structuredRequest(params) : undefined;
  const req = structured?.req ?? params;
  // A request part the neutral model cannot carry can only reach a provider that passes the body through.
  const lost = req.untranslatable?.[0];
  if (lost && !target.provider.passthrough?.(input.door)) {
    attempt.end();
    throw new GatewayError('invalid_request', lost.message, { param: lost.param, code: 'unsupported_parameter' });
  }
  const ctx: CallContext = { requestId: input.requestId, signal: attempt.signal, frontDoor: input.door, rawBody, headers: input.headers, upstreamModel: target.model, query: input.query };
  try {
    // A provider whose every wait ends with the deadline's signal is not raced against it (a
    // promise and a turn of the microtask queue fewer per call; the abort's error is named by `fail`).
    const call = target.provider.chat(req, ctx);
    const result = await (target.provider.honorsSignal ? call : attempt.race(call));
    if (result.kind === 'events') {
      if (structured) result.events = structuredEvents(result.events, structured.tool);
      const first = await attempt.race(result.events.next()).catch((err) => {
        // Stop the provider's iterator without waiting on it (it may still be stuck on a silent upstream).
        void Promise.resolve(result.events.return?.()).catch(() => {});
        // Decoding the upstream's answer failed in a way its decoder did not name: the answer was broken.
        throw err instanceof GatewayError ? err : new GatewayError('upstream', `Provider "${target.provider.name}" sent an answer the gateway could not read.`, { code: 'upstream_bad_response', cause: err });
      });
      attempt.started(200);
      return { kind: 'events', target, first, events: guardEvents(result.events, attempt, target.provider.name, textChars(first)) };
    }
    const response = await prefetch(result.response, { format: answerFormatOf(input.door), stream: req.stream }, attempt);
    return { kind: 'passthrough', target, response };
  } catch (err) {
    throw attempt.fail(err);
  }
}

/**
 * One call to one upstream: its deadline (first byte, idle, total, the client's leaving: the only
 * timers on the way, provider code sets none) and its span, both ended once however the call ends.
 * A provider that ignores the signal still fails over: every wait on it is raced against the deadline.
 */
class Attempt {
  private readonly deadline: Deadline;
  /** Undefined without a span recorder (no name, options or annotations built for nothing). */
  private readonly span: Span | undefined;
  private readonly t0 = performance.now();
  private answered = false;

  /** `context`: the request's trace, which the call's `traceparent` continues (shared/tracing/context.ts). */
  constructor(provider: string, model: string | undefined, timeouts: AttemptTimeouts, clientSignal: ClientSignal, context: TraceContext | undefined) {
    if (spansOn()) this.span = startSpan(model === undefined ? provider : `${provider}/${model}`, { namespace: 'remote', annotations: model === undefined ? { provider } : { provider, model } });
    this.deadline = new Deadline(provider, timeouts, clientSignal);
    if (context) traceCalls(this.deadline.signal, context);
  }

  /** The deadline as one signal, for the upstream call. */
  get signal(): CallSignal {
    return this.deadline.signal;
  }

  /** `p`, or the deadline's error as soon as it fires. */
  race<T>(p: Promise<T>): Promise<T> {
    return this.deadline.race(p);
  }

  /** The next piece of an answer: waited for under the idle limit once the answer has started. */
  next<T>(p: Promise<T>): Promise<T> {
    return this.deadline.race(p, true);
  }

  /** The answer's body has started: the first-byte limit is over, the idle limit applies between its pieces. */
  bodyStarted(): void {
    this.deadline.gotFirstByte();
  }

  /** The answer is in hand (the attempt commits): noted on the span with the time to it. */
  started(status: number): void {
    this.deadline.gotFirstByte();
    this.answered = true;
    this.span?.annotate({ status, firstByteMs: ms(this.t0) });
  }

  /** The call failed: the error as the gateway names it (a timeout, the client's leaving, or itself), recorded on the span; the attempt ends. */
  fail(err: unknown): unknown {
    const e = this.deadline.error(err);
    if (!this.deadline.done) {
      if (this.span) {
        const ge = toGatewayError(e);
        if (!this.answered) this.span.annotate({ status: ge.status, errorCode: ge.code ?? ge.kind });
        this.span.fail(ge);
      }
      this.end();
    }
    return e;
  }

  /** The call is over: release the deadline, close the span (once). */
  end(): void {
    if (this.deadline.done) return;
    this.deadline.release();
    this.span?.end();
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

/** The text an event adds to the answer (content, tool arguments, thinking), in characters. */
function textChars(r: IteratorResult<StreamEvent>): number {
  if (r.done) return 0;
  const ev = r.value;
  return ev.type === 'text' || ev.type === 'tool_args' ? ev.delta.length : ev.type === 'thinking' ? (ev.delta?.length ?? 0) + (ev.signature?.length ?? 0) + (ev.redactedData?.length ?? 0) : 0;
}

/**
 * Wrap an event iterator so each wait is under the attempt's deadline and its end (or failure)
 * ends the attempt. An answer whose text passes MAX_ANSWER_CHARS is broken (`answerTooLarge`) and
 * the upstream is let go: the doors may hold a translated answer whole.
 */
function guardEvents(events: AsyncIterator<StreamEvent>, attempt: Attempt, provider: string, chars: number): AsyncIterator<StreamEvent> {
  return {
    async next() {
      try {
        const r = await attempt.next(events.next());
        if (r.done) attempt.end();
        else if ((chars += textChars(r)) > MAX_ANSWER_CHARS) throw answerTooLarge(provider, MAX_ANSWER_CHARS, 'characters of text');
        return r;
      } catch (err) {
        const e = attempt.fail(err);
        // The provider's iterator may still be waiting on a silent upstream: stop it.
        void Promise.resolve(events.return?.()).catch(() => {});
        throw e;
      }
    },
    async return(value?: unknown) {
      attempt.end();
      return (await events.return?.(value as never)) ?? { done: true, value: undefined };
    },
  };
}

/**
 * Read the start of a same-format answer before committing to it, so a target that sends headers
 * but then stalls or breaks can still fail over:
 * - non-streamed: the whole body (bounded), which must be its API's JSON;
 * - streamed: up to its first event with data, which must be an event of its API (and not an
 *   error event).
 * Then hand on a body that replays what was read, byte for byte, and continues with the rest as it
 * arrives (each read under the attempt's idle and total limits).
 */
async function prefetch(res: Response, opts: { format: AnswerFormat | undefined; stream: boolean }, attempt: Attempt): Promise<Response> {
  if (!hasBody(res)) {
    if (opts.format) throw brokenAnswer('The upstream answered without a body.');
    attempt.started(res.status);
    attempt.end();
    return res;
  }
  const reader = bodyReader(res);
  const held: Uint8Array[] = [];
  let ended = false;
  /** The parse of a whole JSON answer, checked here and handed on with it. */
  let parsed: unknown;
  const type = headerOf(res, 'content-type') ?? '';
  // Anthropic's door relays a JSON answer to a streaming request as JSON (as it always has).
  const jsonMode = !opts.stream || (opts.format === 'anthropic-messages' && type.includes('json') && !type.includes('event-stream'));
  try {
    if (!opts.format) {
      const r = await attempt.next(reader.read());
      if (r.done) ended = true;
      else held.push(r.value);
    } else if (jsonMode) {
      let size = 0;
      // What the socket already delivered is taken as it is (most answers are whole by now): only a wait races the deadline.
      const readNow = readNowOf(reader);
      // Bounded: a larger answer is relayed unchecked past MAX_ANSWER_BYTES.
      while (size <= MAX_ANSWER_BYTES) {
        const r = (!attempt.signal.aborted && readNow?.()) || (await attempt.next(reader.read()));
        if (r.done) {
          ended = true;
          break;
        }
        held.push(r.value);
        size += r.value.byteLength;
        // The body has started: from here the idle limit applies between its chunks.
        attempt.bodyStarted();
      }
      if (ended) {
        // One chunk, checked once (most answers come as one: not copied); its parse goes on with it.
        if (held.length > 1) held.splice(0, held.length, Buffer.concat(held));
        const checked = checkJsonAnswer(opts.format, held[0]!);
        if (typeof checked === 'string') throw brokenAnswer(checked);
        parsed = checked;
      }
    } else {
      const splitter = new SseSplitter();
      const checker = new SseChecker(opts.format);
      for (let seen = false; !seen; ) {
        const r = await attempt.next(reader.read());
        if (r.done) throw brokenAnswer('The upstream stream ended before its first event.', 'upstream_stream_truncated');
        held.push(r.value);
        for (const ev of splitter.push(r.value)) {
          const c = checker.check(ev);
          if (c.problem) throw brokenAnswer(c.problem);
          if (c.upstreamError) throw brokenAnswer(`The upstream stream failed at its start: ${c.upstreamError}`, 'upstream_stream_error');
          if (c.data) {
            seen = true;
            break;
          }
        }
      }
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
  attempt.started(res.status);
  // A body read whole goes on as its bytes, without a stream (shared/http/bytes.ts).
  if (ended) attempt.end();
  const out = rebodied(res, ended ? (held[0] ?? new Uint8Array(0)) : watchedBody(reader, held, attempt));
  if (parsed !== undefined) keepParsedJson(out, parsed);
  return out;
}

/**
 * An answer's body for the client: `held` (what was already read) replayed byte for byte, then
 * the rest as it arrives, each read under the attempt's idle and total limits; the attempt ends
 * with the body, however it ends.
 */
function watchedBody(reader: ReadableStreamDefaultReader<Uint8Array>, held: Uint8Array[], attempt: Attempt): PullSource {
  let i = 0;
  let ended = false;
  const over = { done: true, value: undefined } as const;
  const upstreamNow = readNowOf(reader);
  /** A read that needs no wait: what was held, the end, or what the upstream socket already delivered (not once the deadline has aborted). */
  const readNow = (): ReadableStreamReadResult<Uint8Array> | undefined => {
    if (i < held.length) return { done: false, value: held[i++]! };
    if (ended) return over;
    const r = attempt.signal.aborted ? undefined : upstreamNow?.();
    if (r?.done) {
      ended = true;
      attempt.end();
    }
    return r;
  };
  /** A read that waits on the upstream, under the idle and total limits. */
  const wait = async (): Promise<ReadableStreamReadResult<Uint8Array>> => {
    try {
      const r = await attempt.next(reader.read());
      if (r.done) {
        ended = true;
        attempt.end();
      }
      return r;
    } catch (err) {
      ended = true;
      const e = attempt.fail(err);
      reader.cancel().catch(() => {});
      throw e;
    }
  };
  return {
    readNow,
    read() {
      const r = readNow();
      return r ? Promise.resolve(r) : wait();
    },
    cancel(why) {
      if (!ended) attempt.end();
      ended = true;
      return reader.cancel(why);
    },
  };
}
