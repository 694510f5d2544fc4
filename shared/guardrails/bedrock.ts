import type { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { GatewayError } from '../http/errors.ts';
import type { BedrockGuardrailConfig } from './schema.ts';

/**
 * Amazon Bedrock Guardrails through the ApplyGuardrail API: the prompt (source INPUT) or the
 * answer (source OUTPUT) is assessed by a guardrail defined in the AWS account, whatever provider
 * serves the model. An intervention (`GUARDRAIL_INTERVENED`) blocks; a failure to reach the service
 * fails closed with a 502 rather than letting unchecked text through.
 */
export class BedrockGuardrail {
  private client?: BedrockRuntimeClient;

  constructor(
    private readonly cfg: BedrockGuardrailConfig,
    private readonly env: Record<string, string | undefined>,
  ) {}

  /** The SDK and its client, loaded and built on the first assessment (a cold start does not read it); a failed load is tried again. */
  private loaded?: Promise<{ client: BedrockRuntimeClient; sdk: typeof import('@aws-sdk/client-bedrock-runtime') }>;
  private sdk(): Promise<{ client: BedrockRuntimeClient; sdk: typeof import('@aws-sdk/client-bedrock-runtime') }> {
    this.loaded ??= Promise.all([import('@aws-sdk/client-bedrock-runtime'), import('@smithy/node-http-handler')]).then(
      ([sdk, { NodeHttpHandler }]) => {
        this.client = new sdk.BedrockRuntimeClient({
          region: this.cfg.region ?? this.env.AWS_REGION ?? this.env.AWS_DEFAULT_REGION ?? 'us-east-1',
          ...(this.cfg.endpoint ? { endpoint: this.cfg.endpoint } : {}),
          maxAttempts: 2,
          requestHandler: new NodeHttpHandler({ connectionTimeout: 5_000, requestTimeout: 15_000 }),
        });
        return { client: this.client, sdk };
      },
      (err) => {
        this.loaded = undefined;
        throw err;
      },
    );
    return this.loaded;
  }

  applies(where: 'input' | 'output'): boolean {
    return this.cfg.on.includes(where);
  }

  /** Assess `text`; resolves to the intervention reason when the guardrail intervened, else undefined. */
  async assess(text: string, where: 'input' | 'output', signal?: AbortSignal): Promise<string | undefined> {
    if (!text) return undefined;
    try {
      const { client, sdk } = await this.sdk();
      const out = await client.send(
        new sdk.ApplyGuardrailCommand({
          guardrailIdentifier: this.cfg.guardrailIdentifier,
          guardrailVersion: this.cfg.guardrailVersion,
          source: where === 'input' ? 'INPUT' : 'OUTPUT',
          content: [{ text: { text } }],
        }),
        { abortSignal: signal as never },
      );
      if (out.action !== 'GUARDRAIL_INTERVENED') return undefined;
      return out.actionReason?.slice(0, 200) || 'intervened';
    } catch (err) {
      throw new GatewayError('upstream', 'The content check (Amazon Bedrock Guardrails) could not be completed.', { code: 'guardrail_unavailable', cause: err });
    }
  }

  close(): void {
    this.client?.destroy();
  }
}
