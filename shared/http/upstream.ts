import { GatewayError } from './errors.ts';
import { upstreamFetch } from './node-fetch.ts';
import { upstreamTraceHeaders } from '../tracing/context.ts';

export interface UpstreamTimeouts {
  firstByteTimeoutMs: number;
  totalTimeoutMs: number;
}

/**
 * fetch() toward an upstream with a first-byte timeout and a whole-call timeout, tied to the
 * client's abort signal. Network failures and timeouts become GatewayErrors (502/504) whose
 * messages name the provider but never its URL credentials or key. The returned response's body
 * clears the whole-call timer when it ends.
 */
export async function fetchUpstream(
  provider: string,
  url: string,
  init: RequestInit,
  timeouts: UpstreamTimeouts,
  clientSignal: AbortSignal,
): Promise<Response> {
  const controller = new AbortController();
  let reason: 'first_byte' | 'total' | 'client' | undefined;
  const abort = (r: typeof reason) => {
    if (!reason) reason = r;
    controller.abort();
  };
  const onClientAbort = () => abort('client');
  if (clientSignal.aborted) abort('client');
  else clientSignal.addEventListener('abort', onClientAbort, { once: true });
  const firstByteTimer = setTimeout(abort, timeouts.firstByteTimeoutMs, 'first_byte');
  const totalTimer = setTimeout(abort, timeouts.totalTimeoutMs, 'total');
  const cleanup = () => {
    clearTimeout(firstByteTimer);
    clearTimeout(totalTimer);
    clientSignal.removeEventListener('abort', onClientAbort);
  };

  const bodyError = (err: unknown) =>
    reason === 'total'
      ? new GatewayError('timeout', `Provider "${provider}" did not finish within ${timeouts.totalTimeoutMs} ms.`, { code: 'upstream_timeout', cause: err })
      : new GatewayError('upstream', `The connection to provider "${provider}" failed mid-response: ${describeNetworkError(err)}.`, { code: 'upstream_stream_error', cause: err });

  let res: Response;
  const sent = init.body;
  // node:http for the bodies the providers send (strings, bytes), fetch() for anything else.
  const viaNode = sent === undefined || sent === null || typeof sent === 'string' || sent instanceof Uint8Array;
  try {
    res = viaNode
      ? await upstreamFetch(url, { method: init.method, headers: withTraceHeaders(init.headers), body: sent, signal: controller.signal, onBodyEnd: cleanup, bodyError })
      : await fetch(url, { ...init, headers: withTraceHeaders(init.headers), signal: controller.signal });
  } catch (err) {
    cleanup();
    if (reason === 'first_byte' || reason === 'total') {
      throw new GatewayError('timeout', `Provider "${provider}" did not answer within ${reason === 'first_byte' ? timeouts.firstByteTimeoutMs : timeouts.totalTimeoutMs} ms.`, { code: 'upstream_timeout', cause: err });
    }
    if (reason === 'client') {
      throw new GatewayError('invalid_request', 'The client closed the request.', { status: 499, code: 'client_closed', cause: err });
    }
    throw new GatewayError('upstream', `Could not reach provider "${provider}": ${describeNetworkError(err)}.`, { code: 'upstream_unreachable', cause: err });
  }
  clearTimeout(firstByteTimer);
  if (!res.body) {
    cleanup();
    return res;
  }
  // Its body already clears the timers when it ends and names its failures.
  if (viaNode) return res;
  // Clear the whole-call timer once the body is done, however it ends.
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          cleanup();
          ctrl.close();
        } else ctrl.enqueue(value);
      } catch (err) {
        cleanup();
        ctrl.error(bodyError(err));
      }
    },
    cancel(why) {
      cleanup();
      return reader.cancel(why);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/** The request's trace context as a new child span (`traceparent`, shared/tracing) on an upstream call. */
function withTraceHeaders(headers: HeadersInit | undefined): HeadersInit | undefined {
  const extra = upstreamTraceHeaders();
  if (!extra.traceparent) return headers;
  const out = new Headers(headers);
  for (const [k, v] of Object.entries(extra)) out.set(k, v);
  return out;
}

function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : 'network error';
}

/** Read at most `limit` bytes of a body as text (for upstream error bodies). */
export async function readTextBounded(res: Response, limit = 64 * 1024): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // A broken error body is still an error; use what arrived.
  } finally {
    reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}
