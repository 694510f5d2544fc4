import type { BedrockProviderConfig } from '../../config/schema.ts';
import type { EmbeddingContext, EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';
import type { ChatRequest, FrontDoor } from '../../core/types.ts';
import type { CallContext, Provider, ProviderResult } from '../types.ts';
import type { BedrockProvider as BedrockProviderImpl } from './index.ts';

/**
 * The Bedrock provider as the gateway builds it: what is known without a call (live, region, the
 * pass-through rule) here, and the provider itself (./index.ts, with the AWS SDK's Bedrock Runtime
 * client) loaded by `import()` on its first call, so a cold start that does not call Bedrock never
 * reads the SDK (a chunk of its own in a bundle). test/bundle.test.ts checks that both agree.
 */
export class BedrockProvider implements Provider {
  readonly type = 'bedrock';
  readonly live: boolean;
  readonly notLiveReason?: string;
  readonly region?: string;
  private impl?: Promise<BedrockProviderImpl>;

  constructor(
    readonly name: string,
    private readonly cfg: BedrockProviderConfig,
    private readonly env: Record<string, string | undefined>,
  ) {
    this.region = cfg.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
    if (this.region) this.live = true;
    else {
      this.live = false;
      this.notLiveReason = 'set `region` in its configuration, or AWS_REGION, to enable it';
    }
  }

  /** The provider with the SDK, loaded and made once. */
  provider(): Promise<BedrockProviderImpl> {
    this.impl ??= import('../../entries/bedrock.ts').then((m) => new m.BedrockProvider(this.name, this.cfg, this.env));
    return this.impl;
  }

  passthrough(door: FrontDoor): boolean {
    return bedrockPassthrough(door, this.cfg);
  }

  async chat(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    return (await this.provider()).chat(req, ctx);
  }

  async embed(req: EmbeddingRequest, ctx: EmbeddingContext): Promise<EmbeddingResult> {
    return (await this.provider()).embed(req, ctx);
  }

  async countTokens(body: Record<string, unknown>, ctx: CallContext): Promise<Response | undefined> {
    return (await this.provider()).countTokens(body, ctx);
  }

  async countBedrockTokens(input: Parameters<BedrockProviderImpl['countBedrockTokens']>[0], ctx: CallContext): Promise<number | undefined> {
    return (await this.provider()).countBedrockTokens(input, ctx);
  }
}

/**
 * Bedrock-native clients (InvokeModel with a Claude body) are passed through to Claude models;
 * with `messagesViaInvokeModel`, so are Anthropic Messages requests. Converse clients get their
 * own body sent to Converse, for every model (./converse-passthrough.ts). Here, not in ./index.ts,
 * so the stand-in answers it without loading the SDK.
 */
export function bedrockPassthrough(door: FrontDoor, cfg: BedrockProviderConfig): boolean {
  return door === 'bedrock-invoke' || door === 'bedrock-converse' || (door === 'anthropic-messages' && cfg.messagesViaInvokeModel);
}
