import type { GatewayConfig } from '../config/schema.ts';
import { AnthropicProvider } from './anthropic/index.ts';
// The SDK-backed provider is loaded on its first call (see ./bedrock/lazy.ts).
import { BedrockProvider } from './bedrock/lazy.ts';
import { MockProvider } from './mock/index.ts';
import { OpenAIProvider } from './openai/index.ts';
import type { Provider } from './types.ts';

/** Build one Provider per configured entry. Secrets are read from `env` here and only here. */
export function buildProviders(config: GatewayConfig, env: Record<string, string | undefined>): Map<string, Provider> {
  const out = new Map<string, Provider>();
  for (const [name, cfg] of Object.entries(config.providers)) {
    switch (cfg.type) {
      case 'mock':
        out.set(name, new MockProvider(name, cfg));
        break;
      case 'openai':
      case 'openai-compatible':
        out.set(name, new OpenAIProvider(name, cfg, env));
        break;
      case 'bedrock':
        out.set(name, new BedrockProvider(name, cfg, env));
        break;
      case 'anthropic':
        out.set(name, new AnthropicProvider(name, cfg, env));
        break;
    }
  }
  return out;
}
