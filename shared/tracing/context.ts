import { nodeCrypto } from '../node-crypto.ts';
import { LazySignal, type ClientSignal } from '../http/client-signal.ts';

/**
 * W3C Trace Context for one request (https://www.w3.org/TR/trace-context/).
 *
 * The gateway is one span of the caller's trace: it keeps the caller's trace id (from an incoming
 * `traceparent`), or starts a trace, or (in Lambda with X-Ray active tracing and no incoming
 * `traceparent`) takes the trace id from the X-Ray root so both views line up. Each upstream call
 * gets its own child span id under the same trace id. The context travels explicitly: the request's
 * trace (`RequestTrace.context`) is given to each upstream attempt, which names it on the abort
 * signal the call already takes (`traceCalls`: a field of the attempt's LazySignal); `fetchUpstream`
 * and the Bedrock client read it from the signal they are given (no AsyncLocalStorage, so no async
 * hooks on the request path).
 */
export interface TraceContext {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** The gateway's own span id for this request (16 hex digits). */
  spanId: string;
  /** The caller's span id, when it sent a valid `traceparent`. */
  parentSpanId?: string;
  /** Trace flags (2 hex digits; `01` = sampled). */
  flags: string;
  /** The caller's `tracestate`, forwarded unchanged. */
  tracestate?: string;
  /** The X-Ray trace id (`1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy`) when running under X-Ray. */
  xrayTraceId?: string;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
const XRAY_ROOT = /(?:^|;)\s*Root=1-([0-9a-f]{8})-([0-9a-f]{24})\s*(?:;|$)/i;

/** The parts of a valid `traceparent` header, or undefined (invalid headers are ignored, per spec). */
export function parseTraceparent(value: string | null | undefined): { traceId: string; parentId: string; flags: string } | undefined {
  if (!value) return undefined;
  const m = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === 'ff') return undefined;
  // Version 00 has exactly four fields; later versions may append more, which we ignore.
  if (version === '00' && rest) return undefined;
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  return { traceId: traceId!, parentId: parentId!, flags: flags! };
}

/** The X-Ray root trace id from an `_X_AMZN_TRACE_ID` / `X-Amzn-Trace-Id` value. */
export function xrayRoot(value: string | undefined): { id: string; w3cTraceId: string } | undefined {
  if (!value) return undefined;
  const m = XRAY_ROOT.exec(value);
  if (!m) return undefined;
  const [time, rand] = [m[1]!.toLowerCase(), m[2]!.toLowerCase()];
  return { id: `1-${time}-${rand}`, w3cTraceId: time + rand };
}

/**
 * Random hex from a pooled buffer: one randomFillSync per 4 KiB of ids instead of one per id (for
 * trace ids, which are made only when the caller sent none, and X-Ray's segment ids).
 */
const POOL = Buffer.allocUnsafe(4096);
let poolAt = POOL.length;

export function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) {
    nodeCrypto().randomFillSync(POOL);
    poolAt = 0;
  }
  const id = POOL.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return id;
}

/**
 * Span ids: a random 32-bit prefix, drawn again every 2^32 ids, and a counter. Unique within the
 * process (and, by the prefix, across processes in practice) and never all zeros (the prefix is
 * never `00000000`); the counter's eight hex digits come from a table per byte (no random draw,
 * no number-to-hex conversion per id).
 */
let spanPrefix = '';
let spanCounter = 0x1_0000_0000;
const HEX_BYTE = Array.from({ length: 256 }, (_, i) => (i < 16 ? '0' : '') + i.toString(16));

export function newSpanId(): string {
  if (spanCounter > 0xffff_ffff) {
    do spanPrefix = randomHex(4);
    while (spanPrefix === '00000000');
    spanCounter = 0;
  }
  const c = spanCounter++;
  return spanPrefix + HEX_BYTE[c >>> 24]! + HEX_BYTE[(c >>> 16) & 255]! + HEX_BYTE[(c >>> 8) & 255]! + HEX_BYTE[c & 255]!;
}

function newTraceId(): string {
  for (;;) {
    const id = randomHex(16);
    if (id !== ZERO_TRACE) return id;
  }
}

/**
 * The trace context of an incoming request. `xrayTraceHeader` is the Lambda runtime's
 * `_X_AMZN_TRACE_ID` for this invocation (absent locally).
 */
export function startTrace(headers: Headers, xrayTraceHeader?: string): TraceContext {
  const incoming = parseTraceparent(headers.get('traceparent'));
  const xray = xrayRoot(xrayTraceHeader);
  const tracestate = incoming ? headers.get('tracestate')?.slice(0, 512) || undefined : undefined;
  return {
    traceId: incoming?.traceId ?? xray?.w3cTraceId ?? newTraceId(),
    spanId: newSpanId(),
    parentSpanId: incoming?.parentId,
    flags: incoming?.flags ?? '01',
    tracestate,
    xrayTraceId: xray?.id,
  };
}

/** `traceparent` naming the gateway's own span (sent back to the caller). */
export function ownTraceparent(tc: TraceContext): string {
  return `00-${tc.traceId}-${tc.spanId}-${tc.flags}`;
}

/** Headers for one upstream call: a new child span under the request's trace. */
export function childTraceHeaders(tc: TraceContext): Record<string, string> {
  const h: Record<string, string> = { traceparent: `00-${tc.traceId}-${newSpanId()}-${tc.flags}` };
  if (tc.tracestate) h.tracestate = tc.tracestate;
  return h;
}

/** The trace each upstream call belongs to, by the web abort signal the call is given. */
const calls = new WeakMap<AbortSignal, TraceContext>();

/** The trace of calls under `signal`: a LazySignal (the attempt's deadline) carries it, a web AbortSignal is looked up. */
function traceOf(signal: ClientSignal): TraceContext | undefined {
  return signal instanceof LazySignal ? signal.trace : calls.get(signal as AbortSignal);
}

/** Upstream calls made under `signal` (an attempt's deadline) belong to the trace `tc`. */
export function traceCalls(signal: ClientSignal, tc: TraceContext): void {
  if (signal instanceof LazySignal) signal.trace = tc;
  else calls.set(signal as AbortSignal, tc);
}

/** A call under `child` (a signal that follows `parent`) belongs to `parent`'s trace, if it has one. */
export function inheritTrace(child: AbortSignal, parent: ClientSignal): void {
  const tc = traceOf(parent);
  if (tc) calls.set(child, tc);
}

/** Trace headers for an upstream call made under `signal` (undefined when the signal names no trace). */
export function upstreamTraceHeaders(signal: ClientSignal | undefined): Record<string, string> | undefined {
  const tc = signal && traceOf(signal);
  return tc && childTraceHeaders(tc);
}

/** The bit of an AWS SDK v3 client this needs (its middleware stack). */
interface SdkClient {
  middlewareStack: {
    add(
      mw: (next: (args: { request: unknown }) => Promise<unknown>, context: { __smithy_context?: { abortSignal?: AbortSignal } }) => (args: { request: unknown }) => Promise<unknown>,
      opts: { step: 'build'; name: string },
    ): void;
  };
}

/**
 * Give an AWS SDK client (Bedrock Runtime) the request's `traceparent` on every call, as a new
 * child span; added at the build step, so it is signed with the rest of the request. The trace is
 * the one of the call's `abortSignal` (see `traceCalls`), which the SDK keeps in its context.
 */
export function withTraceparent<T extends object>(client: T): T {
  (client as unknown as SdkClient).middlewareStack.add(
    (next, context) => async (args) => {
      const extra = upstreamTraceHeaders(context.__smithy_context?.abortSignal);
      const req = args.request as { headers?: Record<string, string> } | undefined;
      if (extra && req?.headers) Object.assign(req.headers, extra);
      return next(args);
    },
    { step: 'build', name: 'gatewayTraceparent' },
  );
  return client;
}
