import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, type ConverseStreamOutput } from '@aws-sdk/client-bedrock-runtime';
import type { BedrockProviderConfig } from '../../config/schema.ts';
import type { EmbeddingContext, EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';
import type { ChatRequest, FrontDoor, StreamEvent } from '../../core/types.ts';
import { GatewayError } from '../../http/errors.ts';
import type { CallContext, Provider, ProviderResult } from '../types.ts';
import { SdkCall } from './call.ts';
import { eventsFromResponse, isAnthropicModel, StreamDecoder, toConverseInput } from '../../wire/bedrock-converse/converse.ts';
import { invokeAnthropic } from '../../wire/bedrock-invoke/invoke.ts';
import { converseAsSentCommand } from './converse-passthrough.ts';
import { bedrockEmbed } from '../../wire/embeddings/bedrock.ts';
import { bedrockCountNative, bedrockCountTokens } from './count-tokens.ts';
import { withTraceparent } from '../../tracing/context.ts';
import { bedrockPassthrough } from './lazy.ts';
import { BoundedHttpHandler } from './bounded-handler.ts';

/**
 * Amazon Bedrock through @aws-sdk/client-bedrock-runtime: chat over Converse / ConverseStream
 * (one request shape for every Bedrock model), embeddings over InvokeModel (Titan, Cohere).
 *
 * Credentials come from the SDK's default provider chain and resolve lazily on the first call, so
 * the provider is always live; a missing or refused credential surfaces as a 502 on the call.
 * The client speaks HTTP/1.1 with keep-alive (NodeHttpHandler) rather than the SDK's HTTP/2
 * default, with each answer's body bounded before the SDK reads it (./bounded-handler.ts), retries nothing itself (retries and fallback belong to the gateway's routing), and
 * every call carries an abort signal tied to the client's connection and to the provider's
 * timeouts.
 */
export class BedrockProvider implements Provider {
  readonly type = 'bedrock';
  readonly live: boolean;
  readonly notLiveReason?: string;
  readonly region?: string;
  private clientInstance?: BedrockRuntimeClient;

  constructor(
    readonly name: string,
    private readonly cfg: BedrockProviderConfig,
    env: Record<string, string | undefined>,
  ) {
    this.region = cfg.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
    if (this.region) this.live = true;
    else {
      this.live = false;
      this.notLiveReason = 'set `region` in its configuration, or AWS_REGION, to enable it';
    }
  }

  /** The SDK client, made on first use (credentials are looked up by the SDK when it signs). */
  get client(): BedrockRuntimeClient {
    this.clientInstance ??= withTraceparent(
      new BedrockRuntimeClient({
        region: this.region,
        ...(this.cfg.endpoint ? { endpoint: this.cfg.endpoint } : {}),
        maxAttempts: 1,
        requestHandler: new BoundedHttpHandler({ connectionTimeout: Math.min(this.cfg.firstByteTimeoutMs, 30_000) }),
      }),
    );
    return this.clientInstance;
  }

  passthrough(door: FrontDoor): boolean {
    return bedrockPassthrough(door, this.cfg);
  }

  async chat(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    const asSent = ctx.frontDoor === 'bedrock-converse';
    if (!asSent && this.passthrough(ctx.frontDoor)) {
      if (isAnthropicModel(ctx.upstreamModel)) return invokeAnthropic(this.client, this.name, this.cfg, req.stream, ctx);
      // Another model family: translated over Converse, which cannot carry everything.
      const lost = req.untranslatable?.[0];
      if (lost) throw new GatewayError('invalid_request', lost.message, { param: lost.param, code: 'unsupported_parameter' });
    }
    // The answer is decoded either way (the Converse door encodes it again).
    const command = asSent ? converseAsSentCommand(req, ctx) : undefined;
    const input = asSent ? undefined : toConverseInput(req, ctx.upstreamModel, this.name);
    const call = new SdkCall(this.name, ctx.signal);
    if (!req.stream) {
      try {
        const res = await this.client.send((command as ConverseCommand | undefined) ?? new ConverseCommand(input!), { abortSignal: call.signal as never });
        if (!Array.isArray(res.output?.message?.content)) throw new GatewayError('upstream', `Provider "${this.name}" (Amazon Bedrock) answered without a message.`, { code: 'upstream_bad_response' });
        const id = res.$metadata.requestId ?? ctx.requestId;
        return { kind: 'events', events: toAsync(eventsFromResponse(res, id, ctx.upstreamModel)) };
      } catch (err) {
        throw call.error(err);
      } finally {
        call.done();
      }
    }

    let upstream: AsyncIterator<ConverseStreamOutput>;
    let id: string;
    let first: IteratorResult<ConverseStreamOutput>;
    try {
      const res = await this.client.send((command as ConverseStreamCommand | undefined) ?? new ConverseStreamCommand(input!), { abortSignal: call.signal as never });
      if (!res.stream) throw new GatewayError('upstream', `Provider "${this.name}" (Amazon Bedrock) answered without a stream.`, { code: 'upstream_error' });
      id = res.$metadata.requestId ?? ctx.requestId;
      upstream = res.stream[Symbol.asyncIterator]();
      // Read the first frame here, so a stream that fails at once is still a clean error response.
      first = await upstream.next();
    } catch (err) {
      call.done();
      throw call.error(err);
    }
    return { kind: 'events', events: this.streamEvents(upstream, first, id, ctx.upstreamModel, call) };
  }

  private async *streamEvents(upstream: AsyncIterator<ConverseStreamOutput>, first: IteratorResult<ConverseStreamOutput>, id: string, model: string, call: SdkCall): AsyncGenerator<StreamEvent> {
    const decoder = new StreamDecoder();
    let finished = false;
    try {
      yield { type: 'start', id, model };
      for (let r = first; !r.done; r = await upstream.next()) yield* decoder.decode(r.value);
      finished = true;
    } catch (err) {
      finished = true;
      throw call.error(err, true);
    } finally {
      if (!finished) {
        // The consumer stopped early (the client went away): cancel the SDK call.
        call.abort();
        await upstream.return?.().catch(() => {});
      }
      call.done();
    }
    if (!decoder.stopped) {
      throw new GatewayError('upstream', `The stream from provider "${this.name}" (Amazon Bedrock) ended before the message was complete.`, { code: 'upstream_stream_truncated' });
    }
  }

  embed(req: EmbeddingRequest, ctx: EmbeddingContext): Promise<EmbeddingResult> {
    return bedrockEmbed(this.client, this.name, this.cfg, req, ctx);
  }

  /** Bedrock's CountTokens with the client's own input (Claude models; see ./count-tokens.ts). */
  countBedrockTokens(input: { invokeModel: { body: Uint8Array } } | { converse: Record<string, unknown> }, ctx: CallContext): Promise<number | undefined> {
    return bedrockCountNative(this.client, this.name, this.cfg, input, ctx);
  }

  /** Exact counts from Bedrock's CountTokens for Claude models; an estimate otherwise (see ./count-tokens.ts). */
  countTokens(body: Record<string, unknown>, ctx: CallContext): Promise<Response | undefined> {
    return bedrockCountTokens(this.client, this.name, this.cfg, body, ctx);
  }
}

async function* toAsync<T>(it: Iterable<T>): AsyncGenerator<T> {
  yield* it;
}
