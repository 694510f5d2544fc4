import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Span hooks: the core marks the parts of a request worth timing (the request itself, each
 * upstream attempt, store round trips, the log export) without knowing who records them. The
 * Lambda shell plugs in an X-Ray recorder (functions/lib/xray.ts); locally nothing is installed
 * and every hook is a no-op.
 *
 * With a recorder, the recorder and the span currently open travel with the request in
 * AsyncLocalStorage, so concurrent requests never share a parent and deep code (the DynamoDB
 * client) needs no parameter. The storage is made by the first `withSpans`: without a recorder
 * (the local server, a Lambda without X-Ray) there is none, and no async hooks are enabled.
 */

/** Indexed key/value pairs (X-Ray annotations): keys are letters, digits and `_`. */
export type Annotations = Record<string, string | number | boolean | undefined>;

export interface SpanOptions {
  /** Open under this span; default: the span current in the async context, else the recorder's root. */
  parent?: Span;
  annotations?: Annotations;
  /** Not indexed; for detail (an AWS call's operation and table, say). */
  metadata?: Record<string, unknown>;
  /** `remote`: a call to another service; `aws`: a call to an AWS API. */
  namespace?: 'remote' | 'aws';
}

export interface Span {
  annotate(annotations: Annotations): void;
  /** Record an error on the span (it still has to be ended). */
  fail(err: unknown): void;
  /** Close the span; idempotent. */
  end(): void;
}

export interface SpanRecorder {
  start(name: string, opts?: SpanOptions): Span;
}

const NOOP_SPAN: Span = { annotate() {}, fail() {}, end() {} };

/** Records nothing (the local server and tests without tracing). */
export const NO_SPANS: SpanRecorder = { start: () => NOOP_SPAN };

interface Scope {
  recorder: SpanRecorder;
  span?: Span;
}

let scope: AsyncLocalStorage<Scope> | undefined;

/** Run `fn` with `recorder` installed and `span` (if any) as the parent of the spans it opens. */
export function withSpans<T>(recorder: SpanRecorder, span: Span | undefined, fn: () => T): T {
  return (scope ??= new AsyncLocalStorage<Scope>()).run({ recorder, span }, fn);
}

/** Whether a recorder is installed for the current request (spans worth building annotations for). */
export function spansOn(): boolean {
  return scope?.getStore() !== undefined;
}

/** Open a span in the current context (a no-op span when no recorder is installed). */
export function startSpan(name: string, opts: SpanOptions = {}): Span {
  const s = scope?.getStore();
  if (!s) return NOOP_SPAN;
  return s.recorder.start(name, { ...opts, parent: opts.parent ?? s.span });
}

/** Run `fn` inside a new span (ended when `fn` settles; a rejection is recorded on it). */
export async function inSpan<T>(name: string, fn: () => Promise<T>, opts: SpanOptions = {}): Promise<T> {
  const s = scope?.getStore();
  if (!s) return fn();
  const span = s.recorder.start(name, { ...opts, parent: opts.parent ?? s.span });
  try {
    return await scope!.run({ recorder: s.recorder, span }, fn);
  } catch (err) {
    span.fail(err);
    throw err;
  } finally {
    span.end();
  }
}

/** The bit of an AWS SDK v3 client this needs: its middleware stack. */
interface SdkClient {
  middlewareStack: {
    add(
      mw: (next: (args: { input: unknown }) => Promise<unknown>, context: { commandName?: string }) => (args: { input: unknown }) => Promise<unknown>,
      opts: { step: 'initialize'; name: string },
    ): void;
  };
}

/**
 * Give every call of an AWS SDK v3 client a span (named after the service, e.g. `DynamoDB`, with
 * the operation and table as metadata), SDK retries included. Free when no recorder is installed.
 */
export function spanAwsCalls<T extends object>(client: T, service: string): T {
  (client as unknown as SdkClient).middlewareStack.add(
    (next, context) => async (args) => {
      if (!scope?.getStore()) return next(args);
      const operation = context.commandName?.replace(/Command$/, '');
      const input = args.input as { TableName?: string; DeliveryStreamName?: string } | undefined;
      const metadata: Record<string, unknown> = { operation };
      if (input?.TableName) metadata.table_name = input.TableName;
      if (input?.DeliveryStreamName) metadata.delivery_stream = input.DeliveryStreamName;
      return inSpan(service, () => next(args), { namespace: 'aws', metadata });
    },
    { step: 'initialize', name: 'gatewaySpans' },
  );
  return client;
}

/** The request-level annotations, from the finished log record. */
export function requestAnnotations(r: {
  requestId: string;
  keyId?: string;
  team?: string;
  model?: string;
  provider?: string;
  upstreamModel?: string;
  cacheStatus?: string;
  status: number;
  outcome: string;
  frontDoor?: string;
}): Annotations {
  return {
    requestId: r.requestId,
    keyId: r.keyId,
    team: r.team,
    model: r.model,
    provider: r.provider,
    upstreamModel: r.upstreamModel,
    cacheStatus: r.cacheStatus,
    frontDoor: r.frontDoor,
    status: r.status,
    outcome: r.outcome,
  };
}
