import type { Socket } from 'node:dgram';
import { randomHex } from '../../shared/tracing/context.ts';
import type { Annotations, Span, SpanOptions, SpanRecorder } from '../../shared/tracing/spans.ts';

/**
 * X-Ray subsegments without the X-Ray SDK: each span is one subsegment document, sent on its own
 * over UDP to the X-Ray daemon (AWS_XRAY_DAEMON_ADDRESS, which the Lambda runtime sets) when it
 * closes, as the daemon protocol specifies: the header `{"format":"json","version":1}`, a newline,
 * then the document (`type: "subsegment"` with its `trace_id` and `parent_id`). Top-level spans
 * are children of the invocation's segment, which Lambda itself records: its trace id and id come
 * from `_X_AMZN_TRACE_ID`, set per invocation. An unsampled invocation (`Sampled=0`) sends nothing.
 *
 * This replaces the Powertools Tracer and aws-xray-sdk-core (about 120 KiB, with semver and
 * cls-hooked, loaded and initialized at every cold start); the spans' context already travels in
 * the core's AsyncLocalStorage (shared/tracing/spans.ts).
 */

const DAEMON_HEADER = '{"format":"json","version":1}\n';

/** X-Ray names: up to 200 of letters, digits, whitespace and `_ . : / % & # = + \ - @`. */
function xrayName(name: string): string {
  return name.replace(/[^\p{L}\p{N}\s_.:/%&#=+\\\-@]/gu, '_').slice(0, 200) || 'span';
}

/** Annotation keys: letters, digits and `_` only. */
function xrayKey(key: string): string {
  return key.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 500);
}

/** Epoch seconds with sub-millisecond precision, monotonic within the process. */
function nowSeconds(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

/**
 * A 64-bit segment id in hex, from the tracing's pooled random bytes: randomBytes(8) per span was a
 * system call each, several per invocation (measured: 0.1 ms of each invocation in bench/lambda-tail.ts).
 */
function newId(): string {
  return randomHex(8);
}

/** The invocation's trace (`Root=1-...;Parent=...;Sampled=1`), or undefined when unsampled or absent. */
export function invocationTrace(header: string | undefined): { traceId: string; parentId: string } | undefined {
  if (!header) return undefined;
  const parts: Record<string, string> = {};
  for (const p of header.split(';')) {
    const eq = p.indexOf('=');
    if (eq > 0) parts[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
  }
  if (parts.Sampled === '0' || !parts.Root || !parts.Parent) return undefined;
  return { traceId: parts.Root, parentId: parts.Parent };
}

/** The daemon's UDP address from AWS_XRAY_DAEMON_ADDRESS (`host:port`, or `tcp:h:p udp:h:p`). */
export function daemonAddress(value: string | undefined): { host: string; port: number } {
  const udp = (value ?? '').split(/\s+/).find((p) => p.startsWith('udp:'))?.slice(4) ?? (value ?? '').split(/\s+/).find((p) => p && !p.startsWith('tcp:'));
  const m = udp && /^(.*):(\d+)$/.exec(udp);
  return m ? { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) } : { host: '127.0.0.1', port: 2000 };
}

type Emit = (doc: Record<string, unknown>) => void;

/**
 * Sends documents to the daemon over one unref'd UDP socket, made on first use (node:dgram too:
 * a function without tracing, or before its first sampled request, does not load it).
 */
export function udpEmitter(address: { host: string; port: number }): Emit {
  let socket: Socket | undefined;
  return (doc) => {
    try {
      socket ??= process.getBuiltinModule('node:dgram').createSocket(address.host.includes(':') ? 'udp6' : 'udp4').on('error', () => {});
      socket.unref();
      socket.send(DAEMON_HEADER + JSON.stringify(doc), address.port, address.host, () => {});
    } catch {
      // tracing never fails a request
    }
  };
}

/**
 * One subsegment. It is sent only once it has been ended and all its children are closed (as the
 * SDK did), so a parent never reaches the daemon before a child still being released.
 */
class XraySpan implements Span {
  private open = 0;
  private ended = false;
  private closed = false;
  readonly id = newId();
  private readonly doc: Record<string, unknown>;
  private annotations?: Record<string, string | number | boolean>;

  constructor(
    private readonly emit: Emit,
    name: string,
    traceId: string,
    parentId: string,
    private readonly parent: XraySpan | undefined,
  ) {
    if (parent) parent.open++;
    this.doc = { type: 'subsegment', name: xrayName(name), id: this.id, trace_id: traceId, parent_id: parentId, start_time: nowSeconds() };
  }

  get traceId(): string {
    return this.doc.trace_id as string;
  }

  set(field: string, value: unknown): void {
    this.doc[field] = value;
  }

  annotate(annotations: Annotations): void {
    for (const [k, v] of Object.entries(annotations)) {
      if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) continue;
      (this.annotations ??= {})[xrayKey(k)] = typeof v === 'string' ? v.slice(0, 1000) : v;
      // An HTTP status also sets X-Ray's flags: 4xx error (429 also throttle), 5xx fault.
      if (k === 'status' && typeof v === 'number') {
        if (v === 429) this.doc.throttle = true;
        if (v >= 400 && v < 500) this.doc.error = true;
        else if (v >= 500) this.doc.fault = true;
      }
    }
  }

  fail(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    const cause = (this.doc.cause ??= { working_directory: process.cwd(), exceptions: [] }) as { exceptions: unknown[] };
    cause.exceptions.push({ id: newId(), message: e.message, type: e.name });
    // A failure is a fault; a client error (a gateway 4xx, an AWS API's 4xx such as a failed
    // condition check) is an error in X-Ray's terms, and 429 also a throttle.
    const x = err as { status?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
    const status = typeof x?.status === 'number' ? x.status : x?.$metadata?.httpStatusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      this.doc.error = true;
      if (status === 429) this.doc.throttle = true;
    } else this.doc.fault = true;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.closeWhenDone();
  }

  private closeWhenDone(): void {
    if (this.closed || !this.ended || this.open > 0) return;
    this.closed = true;
    this.doc.end_time = nowSeconds();
    if (this.annotations) this.doc.annotations = this.annotations;
    this.emit(this.doc);
    if (this.parent) {
      this.parent.open--;
      this.parent.closeWhenDone();
    }
  }
}

const NOOP_SPAN: Span = { annotate() {}, fail() {}, end() {} };

/**
 * Spans as X-Ray subsegments: top-level spans under the invocation's segment (read from
 * `_X_AMZN_TRACE_ID` when the span opens), nested spans under their parent span.
 */
export class XraySpanRecorder implements SpanRecorder {
  /** True until the first top-level span of this execution environment. */
  private coldStart = true;

  constructor(
    private readonly emit: Emit,
    private readonly serviceName?: string,
    private readonly traceHeader: () => string | undefined = () => process.env._X_AMZN_TRACE_ID,
  ) {}

  start(name: string, opts: SpanOptions = {}): Span {
    const parent = opts.parent instanceof XraySpan ? opts.parent : undefined;
    const invocation = parent ? undefined : invocationTrace(this.traceHeader());
    if (!parent && !invocation) return NOOP_SPAN;
    const span = new XraySpan(this.emit, name, parent?.traceId ?? invocation!.traceId, parent?.id ?? invocation!.parentId, parent);
    if (opts.namespace) span.set('namespace', opts.namespace);
    if (opts.metadata) {
      // An AWS call's operation (and table) go where X-Ray looks for them.
      if (opts.namespace === 'aws') span.set('aws', opts.metadata);
      else span.set('metadata', { gateway: opts.metadata });
    }
    // As Powertools' handler subsegment did: the service and whether this is a cold start.
    if (!parent) {
      span.annotate({ Service: this.serviceName, ColdStart: this.coldStart });
      this.coldStart = false;
    }
    if (opts.annotations) span.annotate(opts.annotations);
    return span;
  }
}

/**
 * Whether active tracing applies, as the Powertools Tracer decided: in Lambda (AWS_EXECUTION_ENV),
 * not under SAM local or the Amplify mock, unless POWERTOOLS_TRACE_ENABLED=false.
 */
export function tracingEnabled(env: Record<string, string | undefined>): boolean {
  if ((env.POWERTOOLS_TRACE_ENABLED ?? '').toLowerCase() === 'false') return false;
  return !!env.AWS_EXECUTION_ENV && env.AWS_EXECUTION_ENV !== 'AWS_Lambda_amplify-mock' && !env.AWS_SAM_LOCAL;
}

/** The X-Ray recorder when tracing is on (in Lambda, unless POWERTOOLS_TRACE_ENABLED=false). */
export function xraySpans(env: Record<string, string | undefined>, serviceName?: string): SpanRecorder | undefined {
  return tracingEnabled(env) ? new XraySpanRecorder(udpEmitter(daemonAddress(env.AWS_XRAY_DAEMON_ADDRESS)), serviceName) : undefined;
}
