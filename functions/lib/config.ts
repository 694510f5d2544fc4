import type { GatewayConfig } from '../../shared/config/schema.ts';

/**
 * Set by the bundler (esbuild `define`) to the JSON text of the configuration validated at
 * synth/build time, in the form the schema gives it (infra/bundling.ts configDefine checks that it
 * is a fixed point of the schema); so it is used as it is, and the schema (zod) and the YAML parser
 * are not in a bundle.
 */
declare const __GATEWAY_CONFIG__: string;

// Only without an embedded configuration (tests, a bundle built without one): the loader, lazily
// (in a bundle the condition is a constant and the import is dropped).
const load = typeof __GATEWAY_CONFIG__ === 'undefined' ? await import('../../shared/config/load.ts') : undefined;

/**
 * The configuration a Lambda runs with: the one the bundler embedded, else GATEWAY_CONFIG_JSON,
 * else the file named by GATEWAY_CONFIG (or the default file), validated.
 */
export function lambdaConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  if (typeof __GATEWAY_CONFIG__ !== 'undefined') return JSON.parse(__GATEWAY_CONFIG__) as GatewayConfig;
  if (env.GATEWAY_CONFIG_JSON) return load!.parseConfigText(env.GATEWAY_CONFIG_JSON, 'GATEWAY_CONFIG_JSON');
  return load!.loadConfigFile(env.GATEWAY_CONFIG || undefined);
}
