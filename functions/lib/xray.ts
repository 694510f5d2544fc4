import type { Tracer } from '@aws-lambda-powertools/tracer';
import type { Annotations, Span, SpanOptions, SpanRecorder } from '../../shared/tracing/spans.ts';

type XraySegment = NonNullable<ReturnType<Tracer['getSegment']>>;
type XraySubsegment = ReturnType<XraySegment['addNewSubsegment']>;

/** X-Ray names: up to 200 of letters, digits, whitespace and `_ . : / % & # = + \ - @`. */
function xrayName(name: string): string {
  return name.replace(/[^\p{L}\p{N}\s_.:/%&#=+\\\-@]/gu, '_').slice(0, 200) || 'span';
}

/** Annotation keys: letters, digits and `_` only. */
function xrayKey(key: string): string {
  return key.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 500);
}

/**
 * One X-Ray subsegment. It is closed only once it has been ended and all its children are closed:
 * the SDK sends a closed subsegment as soon as it has no open children, so a parent closed before a
 * child (a request span ending while its upstream stream is still being released) would otherwise
 * never be sent.
 */
class XraySpan implements Span {
  private open = 0;
  private ended = false;
  private closed = false;

  constructor(
    readonly sub: XraySubsegment,
    private readonly parent: XraySpan | undefined,
  ) {
    if (parent) parent.open++;
  }

  annotate(annotations: Annotations): void {
    for (const [k, v] of Object.entries(annotations)) {
      if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) continue;
      this.sub.addAnnotation(xrayKey(k), typeof v === 'string' ? v.slice(0, 1000) : v);
      // An HTTP status also sets X-Ray's flags: 4xx error (429 also throttle), 5xx fault.
      if (k === 'status' && typeof v === 'number') {
        if (v === 429) this.sub.addThrottleFlag();
        if (v >= 400 && v < 500) this.sub.addErrorFlag();
        else if (v >= 500) this.sub.addFaultFlag();
      }
    }
  }

  fail(err: unknown): void {
    this.sub.addError(err instanceof Error ? err : String(err));
    // addError marks a fault; a client error (a gateway 4xx, an AWS API's 4xx such as a failed
    // condition check) is an error in X-Ray's terms, and 429 also a throttle.
    const e = err as { status?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
    const status = typeof e?.status === 'number' ? e.status : e?.$metadata?.httpStatusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      delete (this.sub as { fault?: boolean }).fault;
      this.sub.addErrorFlag();
      if (status === 429) this.sub.addThrottleFlag();
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.closeWhenDone();
  }

  private closeWhenDone(): void {
    if (this.closed || !this.ended || this.open > 0) return;
    this.closed = true;
    this.sub.close();
    if (this.parent) {
      this.parent.open--;
      this.parent.closeWhenDone();
    }
  }
}

/**
 * Spans as X-Ray subsegments, through the Powertools tracer: top-level spans open under the
 * invocation's segment (the Lambda facade segment, whose trace id and parent the runtime sets per
 * invocation), nested spans under their parent span's subsegment. Each subsegment is sent to the
 * X-Ray daemon (AWS_XRAY_DAEMON_ADDRESS) when it closes.
 */
export class XraySpanRecorder implements SpanRecorder {
  /** True until the first top-level span of this execution environment. */
  private coldStart = true;

  constructor(
    private readonly tracer: Tracer,
    private readonly serviceName?: string,
  ) {}

  start(name: string, opts: SpanOptions = {}): Span {
    const parent = opts.parent instanceof XraySpan ? opts.parent : undefined;
    const base = parent?.sub ?? this.tracer.getSegment();
    if (!base) return { annotate() {}, fail() {}, end() {} };
    const sub = base.addNewSubsegment(xrayName(name));
    if (opts.namespace) sub.namespace = opts.namespace;
    if (opts.metadata) {
      // An AWS call's operation (and table) go where X-Ray looks for them.
      if (opts.namespace === 'aws') sub.addAttribute('aws', opts.metadata);
      else for (const [k, v] of Object.entries(opts.metadata)) sub.addMetadata(k, v, 'gateway');
    }
    const span = new XraySpan(sub, parent);
    // As Powertools' handler subsegment does: the service and whether this is a cold start.
    if (!parent) {
      span.annotate({ Service: this.serviceName, ColdStart: this.coldStart });
      this.coldStart = false;
    }
    if (opts.annotations) span.annotate(opts.annotations);
    return span;
  }
}

/** The X-Ray recorder when tracing is on (in Lambda, unless POWERTOOLS_TRACE_ENABLED=false). */
export function xraySpans(tracer: Tracer, serviceName?: string): SpanRecorder | undefined {
  return tracer.isTracingEnabled() ? new XraySpanRecorder(tracer, serviceName) : undefined;
}
