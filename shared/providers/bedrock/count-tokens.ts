import { CountTokensCommand, type BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import type { BedrockProviderConfig } from '../../config/schema.ts';
import { parseAnthropicRequest } from '../../wire/anthropic-messages/door.ts';
import { jsonResponse } from '../../http/errors.ts';
import type { CallContext } from '../types.ts';
import { SdkCall } from './call.ts';
import { isAnthropicModel, toConverseInput } from '../../wire/bedrock-converse/converse.ts';

/**
 * Exact input-token counts for `POST /v1/messages/count_tokens` from Bedrock's CountTokens API,
 * which counts for Claude models. The Anthropic body is translated the way a chat call would be
 * (Converse: messages, system, tools, Claude's extra fields), so the count is that of the request
 * the gateway would send. Undefined (the gateway then estimates) for other models, for a request
 * with parts Converse cannot carry, and when Bedrock declines to count: a 400 (the model or region
 * has no token counting) or an access error (the gateway's role lacks `bedrock:CountTokens`;
 * counting is optional, so a role granted only the invoke actions still answers count_tokens).
 */
export async function bedrockCountTokens(client: BedrockRuntimeClient, provider: string, cfg: BedrockProviderConfig, body: Record<string, unknown>, ctx: CallContext): Promise<Response | undefined> {
  if (!isAnthropicModel(ctx.upstreamModel)) return undefined;
  const req = parseAnthropicRequest(body, { requireMaxTokens: false });
  if (req.untranslatable?.length) return undefined;
  const input = toConverseInput({ ...req, stream: false }, ctx.upstreamModel, provider);
  const converse = {
    messages: input.messages,
    ...(input.system ? { system: input.system } : {}),
    ...(input.toolConfig ? { toolConfig: input.toolConfig } : {}),
    ...(input.additionalModelRequestFields ? { additionalModelRequestFields: input.additionalModelRequestFields } : {}),
  };
  const tokens = await bedrockCountNative(client, provider, cfg, { converse }, ctx);
  return tokens === undefined ? undefined : jsonResponse({ input_tokens: tokens });
}

/**
 * Bedrock's CountTokens with a Bedrock client's own input (`/bedrock/model/{id}/count-tokens`):
 * the InvokeModel body or Converse request as sent, for the target's model id. Undefined for
 * models other than Claude, and when Bedrock declines (as above).
 */
export async function bedrockCountNative(client: BedrockRuntimeClient, provider: string, cfg: BedrockProviderConfig, input: { invokeModel: { body: Uint8Array } } | { converse: Record<string, unknown> }, ctx: CallContext): Promise<number | undefined> {
  if (!isAnthropicModel(ctx.upstreamModel)) return undefined;
  const call = new SdkCall(provider, ctx.signal);
  try {
    const out = await client.send(new CountTokensCommand({ modelId: ctx.upstreamModel, input: input as never }), { abortSignal: call.signal as never });
    return out.inputTokens ?? 0;
  } catch (err) {
    const ge = call.error(err);
    if (ge.status === 400 || ge.code === 'upstream_auth_failed') return undefined;
    throw ge;
  } finally {
    call.done();
  }
}
