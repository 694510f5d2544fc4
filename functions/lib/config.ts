import { loadConfigFile, parseConfig, parseConfigText } from '../../shared/config/load.ts';
import type { GatewayConfig } from '../../shared/config/schema.ts';

/** Set by the bundler (esbuild `define`) to the configuration validated at synth/build time. */
declare const __GATEWAY_CONFIG__: unknown;

/**
 * The configuration a Lambda runs with, validated again at cold start: the one the bundler embedded,
 * else GATEWAY_CONFIG_JSON, else the file named by GATEWAY_CONFIG (or the default file).
 */
export function lambdaConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  if (typeof __GATEWAY_CONFIG__ !== 'undefined') return parseConfig(__GATEWAY_CONFIG__, 'bundled configuration');
  if (env.GATEWAY_CONFIG_JSON) return parseConfigText(env.GATEWAY_CONFIG_JSON, 'GATEWAY_CONFIG_JSON');
  return loadConfigFile(env.GATEWAY_CONFIG || undefined);
}
