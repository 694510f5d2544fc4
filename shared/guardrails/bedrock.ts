import { ApplyGuardrailCommand, BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
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

  private get sdk(): BedrockRuntimeClient {
    this.client ??= new BedrockRuntimeClient({
      region: this.cfg.region ?? this.env.AWS_REGION ?? this.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(this.cfg.endpoint ? { endpoint: this.cfg.endpoint } : {}),
      maxAttempts: 2,
      requestHandler: new NodeHttpHandler({ connectionTimeout: 5_000, requestTimeout: 15_000 }),
    });
    return this.client;
  }

  applies(where: 'input' | 'output'): boolean {
    return this.cfg.on.includes(where);
  }

  /** Assess `text`; resolves to the intervention reason when the guardrail intervened, else undefined. */
  async assess(text: string, where: 'input' | 'output', signal?: AbortSignal): Promise<string | undefined> {
    if (!text) return undefined;
    try {
      const out = await this.sdk.send(
        new ApplyGuardrailCommand({
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
