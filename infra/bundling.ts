/**
 * The one description of how a Lambda entry is bundled, used by `npm run build` (scripts/build.ts)
 * and by the CDK functions, so both ship the same bytes.
 */
export const LAMBDA_NODE_TARGET = 'node22';

/** ESM output still meets CommonJS dependencies that call require(); give them one. */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __gwCreateRequire } from 'node:module'; const require = __gwCreateRequire(import.meta.url);";

/** Embed the validated configuration in the bundle, so the function needs no config file. */
export function configDefine(config: unknown): Record<string, string> {
  return { __GATEWAY_CONFIG__: JSON.stringify(config) };
}
