import { readAnswer } from './answer.ts';
import { BytesResponse, bodyReader, hasBody, ReaderResponse } from './bytes.ts';
import { GatewayError } from './errors.ts';
import { upstreamFetch } from './node-fetch.ts';
import { isHeaders, WebHeaders } from './web.ts';
import { webSignal, type CallSignal } from './client-signal.ts';
import { upstreamTraceHeaders } from '../tracing/context.ts';
import { joiner } from '../core/joiner.ts';

/**
 * fetch() toward an upstream under `signal`, the attempt's deadline (`shared/routing/deadline.ts`:
 * first byte, idle, total, the client's leaving), which names whatever an abort then throws.
 * This sets no timers of its own. Network failures become GatewayErrors (502) whose messages name
 * the provider but never its URL credentials or key; an error after an abort is passed on as it is
 * for the deadline to name.
 */
export function fetchUpstream(provider: string, url: string, init: RequestInit, signal: CallSignal): Promise<Response> {
  const bodyError = (err: unknown) =>
    signal.aborted ? err : new GatewayError('upstream', `The connection to provider "${provider}" failed mid-response: ${describeNetworkError(err)}.`, { code: 'upstream_stream_error', cause: err });
  const sent = init.body;
  // node:http for the bodies the providers send (strings, bytes), fetch() for anything else (only MCP's relay sends other bodies).
  if (sent === undefined || sent === null || typeof sent === 'string' || sent instanceof Uint8Array) {
    // No async layer of its own: the call's promise with only its failure renamed.
    const fail = (err: unknown) => Promise.reject(unreachable(provider, err, signal));
    try {
      return upstreamFetch(url, { method: init.method, headers: withTraceHeaders(init.headers, signal), body: sent, signal, bodyError }).catch(fail);
    } catch (err) {
      return fail(err);
    }
  }
  return viaFetch(provider, url, init, signal, bodyError);
}

/**
 * `base + path`, as the same string for the same pair: node-fetch.ts looks its target up by URL,
 * and a string built fresh for every call is hashed again for every lookup.
 */
export const upstreamUrl = joiner('');

/** A call whose failure before an answer is the provider's being unreachable (502), unless the call was aborted (the deadline names that). */
function unreachable(provider: string, err: unknown, signal: CallSignal): unknown {
  return signal.aborted ? err : new GatewayError('upstream', `Could not reach provider "${provider}": ${describeNetworkError(err)}.`, { code: 'upstream_unreachable', cause: err });
}

/** fetchUpstream through the global fetch(), for bodies node:http is not given (streams, forms). */
async function viaFetch(provider: string, url: string, init: RequestInit, signal: CallSignal, bodyError: (err: unknown) => unknown): Promise<Response> {
  try {
    const res = await fetch(url, { ...init, headers: withTraceHeaders(init.headers, signal), signal: webSignal(signal) });
    if (!res.body) return res;
    // Body failures named as node:http's are.
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        try {
          const { done, value } = await reader.read();
          if (done) ctrl.close();
          else ctrl.enqueue(value);
        } catch (err) {
          ctrl.error(bodyError(err));
        }
      },
      cancel: (why) => reader.cancel(why),
    });
    return new ReaderResponse(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  } catch (err) {
    throw unreachable(provider, err, signal);
  }
}

/**
 * An answer read whole (`readAnswer`) while the call is still under its deadline (a one-shot
 * call's answer that is passed on: its body would otherwise be read after the attempt has released it).
 */
export async function readWhole(res: Response, provider: string, limit?: number): Promise<Response> {
  return new BytesResponse(hasBody(res) ? await readAnswer(res, provider, limit) : null, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/** The trace of the call's signal as a new child span (`traceparent`, shared/tracing) on an upstream call. */
function withTraceHeaders(headers: HeadersInit | undefined, signal: CallSignal): HeadersInit | undefined {
  const extra = upstreamTraceHeaders(signal);
  if (!extra) return headers;
  // The providers' plain objects stay plain (no Headers object to build and take apart again).
  if (headers === undefined || (!isHeaders(headers) && !Array.isArray(headers))) return Object.assign({}, headers, extra);
  const out = new WebHeaders(headers);
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
  if (!hasBody(res)) return '';
  const reader = bodyReader(res);
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
