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

/**
 * Modules kept out of the single-file bundle and shipped beside it, because only a rare path loads
 * them (lazily) and their size would slow every cold start: js-tiktoken's cl100k ranks (about 1 MB,
 * used only by the count_tokens estimate) would be parsed at every cold start if inlined.
 * Everything else is bundled, the AWS SDK included, so the function never depends on the SDK
 * version the Lambda runtime happens to ship.
 */
export const LAZY_MODULES: ReadonlyArray<{ specifier: string; files: string[] }> = [
  { specifier: 'js-tiktoken/ranks/cl100k_base', files: ['node_modules/js-tiktoken/package.json', 'node_modules/js-tiktoken/dist/ranks/cl100k_base.js'] },
];

/** Shell commands that copy the lazy modules from the project root next to a bundle. */
export function copyLazyModules(projectDir: string, outDir: string): string[] {
  return LAZY_MODULES.flatMap((m) => m.files).flatMap((f) => {
    const dir = f.slice(0, f.lastIndexOf('/'));
    return [`mkdir -p "${outDir}/${dir}"`, `cp "${projectDir}/${f}" "${outDir}/${f}"`];
  });
}
