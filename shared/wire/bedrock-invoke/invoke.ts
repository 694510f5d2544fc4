import { InvokeModelCommand, InvokeModelWithResponseStreamCommand, type BedrockRuntimeClient, type ResponseStream } from '@aws-sdk/client-bedrock-runtime';
import type { BedrockProviderConfig } from '../../config/schema.ts';
import { anthropicToBedrockBody } from './door.ts';
import { GatewayError } from '../../http/errors.ts';
import { encodeText } from '../../http/sse.ts';
import type { CallContext, ProviderResult } from '../../providers/types.ts';
import { SdkCall } from '../../providers/bedrock/call.ts';
import { webResponse } from '../../http/bytes.ts';

/**
 * Claude on Bedrock through InvokeModel / InvokeModelWithResponseStream, with the client's own
 * Anthropic body: used for the Bedrock-native door (`/bedrock/model/{id}/invoke...`), whose callers
 * already speak this body, so nothing is translated and nothing is lost (cache_control,
 * context_management, betas...). The answer is handed back as Anthropic Messages (JSON, or SSE
 * events built from the stream's `chunk`s, whose JSON is kept byte for byte) for the door to frame.
 */
export async function invokeAnthropic(client: BedrockRuntimeClient, provider: string, cfg: BedrockProviderConfig, stream: boolean, ctx: CallContext): Promise<ProviderResult> {
  const payload = new TextEncoder().encode(JSON.stringify(anthropicToBedrockBody(ctx.rawBody, ctx.headers)));
  const input = { modelId: ctx.upstreamModel, body: payload, contentType: 'application/json', accept: 'application/json' };
  const call = new SdkCall(provider, ctx.signal);

  if (!stream) {
    try {
      const res = await client.send(new InvokeModelCommand(input), { abortSignal: call.signal as never });
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (res.$metadata.requestId) headers['request-id'] = res.$metadata.requestId;
      return { kind: 'passthrough', response: webResponse(new Uint8Array(res.body), { status: 200, headers }) };
    } catch (err) {
      throw call.error(err);
    } finally {
      call.done();
    }
  }

  let upstream: AsyncIterator<ResponseStream>;
  let first: IteratorResult<ResponseStream>;
  let requestId: string | undefined;
  try {
    const res = await client.send(new InvokeModelWithResponseStreamCommand(input), { abortSignal: call.signal as never });
    if (!res.body) throw new GatewayError('upstream', `Provider "${provider}" (Amazon Bedrock) answered without a stream.`, { code: 'upstream_error' });
    requestId = res.$metadata.requestId;
    upstream = res.body[Symbol.asyncIterator]();
    // The first event in hand, so a stream that fails at once is a clean error (and can fail over).
    first = await upstream.next();
    throwIfException(first);
  } catch (err) {
    call.done();
    throw call.error(err);
  }

  let pending: IteratorResult<ResponseStream> | undefined = first;
  let finished = false;
  const end = () => {
    finished = true;
    call.done();
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        for (;;) {
          const r = pending ?? (await upstream.next());
          pending = undefined;
          if (r.done) {
            end();
            ctrl.close();
            return;
          }
          throwIfException(r);
          const bytes = r.value.chunk?.bytes;
          if (!bytes?.length) continue;
          const json = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
          ctrl.enqueue(encodeText(`event: ${eventType(json)}\ndata: ${json}\n\n`));
          return;
        }
      } catch (err) {
        end();
        // The door turns this into the stream's error event (an exception frame for Bedrock clients).
        ctrl.error(call.error(err, true));
      }
    },
    async cancel() {
      if (!finished) {
        call.abort();
        end();
      }
      await upstream.return?.().catch(() => {});
    },
  });
  const headers: Record<string, string> = { 'content-type': 'text/event-stream; charset=utf-8' };
  if (requestId) headers['request-id'] = requestId;
  return { kind: 'passthrough', response: webResponse(body, { status: 200, headers }) };
}

/** An exception member of the stream (when the SDK hands it over rather than throwing it). */
function throwIfException(r: IteratorResult<ResponseStream>): void {
  if (r.done) return;
  const v = r.value as unknown as Record<string, unknown>;
  if (v.chunk) return;
  const ex = v.internalServerException ?? v.modelStreamErrorException ?? v.modelTimeoutException ?? v.serviceUnavailableException ?? v.throttlingException ?? v.validationException;
  if (ex) throw ex;
}

/** The `type` of an Anthropic stream event's JSON: the SSE event name. */
function eventType(json: string): string {
  try {
    const t = (JSON.parse(json) as { type?: unknown }).type;
    if (typeof t === 'string' && /^[a-z_]+$/.test(t)) return t;
  } catch {
    // not JSON: passed on under a neutral name
  }
  return 'message';
}
