import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import { Code } from 'aws-cdk-lib/aws-lambda';
import { buildSync, type BuildOptions, type Metafile } from 'esbuild';
import { parseConfig } from '../shared/config/load.ts';

/**
 * The one description of how a Lambda entry is bundled, used by `npm run build` (scripts/build.ts),
 * by the CDK functions (infra/constructs/gateway-function.ts) and by the cold-start benchmark, so
 * all three ship and measure the same bytes.
 *
 * Cold start is what shapes it: ESM with code splitting, so every `import()` of code a request may
 * not need (the admin API, MCP, the Bedrock SDK, the config schema, the token ranks...) is a chunk
 * of its own that Node reads only when that import runs; source maps written beside the files and
 * never read at start (no `--enable-source-maps`): an error's stack is mapped when it is formatted
 * (functions/lib/source-map-stacks.ts, injected into every bundle).
 */
export const LAMBDA_NODE_TARGET = 'node22';

/** The project root (this file is in infra/). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * ESM output still meets CommonJS dependencies that call require(); give them one (node:module taken
 * with getBuiltinModule: no ES module facade to build for it). esbuild puts the banner in every
 * file; dropUnusedBanners keeps it only in those that name `require`.
 */
export const ESM_REQUIRE_BANNER = "const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);";

/**
 * Embed the validated configuration in the bundle, so the function needs no config file and does
 * not validate it again at cold start (functions/lib/config.ts uses it as it is: no zod, no yaml in
 * the bundle's start path). That is only sound if the embedded JSON is exactly what the schema
 * makes of it, defaults and normalization included: checked here, at build and synth time.
 */
export function configDefine(config: unknown): Record<string, string> {
  const embedded = JSON.parse(JSON.stringify(config)) as unknown;
  const again = JSON.parse(JSON.stringify(parseConfig(embedded, 'embedded configuration'))) as unknown;
  if (!isDeepStrictEqual(again, embedded)) {
    throw new Error('The configuration to embed is not what the schema makes of it again (it would change at cold start); it must be the output of parseConfig.');
  }
  // A string (the JSON text), not an object literal: esbuild folds `typeof` of a string constant,
  // so the loader's `import()` (functions/lib/config.ts) and its chunks (zod, yaml) leave the bundle.
  return { __GATEWAY_CONFIG__: JSON.stringify(JSON.stringify(embedded)) };
}

/**
 * Modules kept out of the bundle and shipped beside it, because only a rare path loads them
 * (lazily): js-tiktoken's cl100k ranks (about 1 MB, used only by the count_tokens estimate).
 * Everything else is bundled, the AWS SDK included, so the function never depends on the SDK
 * version the Lambda runtime happens to ship.
 */
export const LAZY_MODULES: ReadonlyArray<{ specifier: string; files: string[] }> = [
  { specifier: 'js-tiktoken/ranks/cl100k_base', files: ['node_modules/js-tiktoken/package.json', 'node_modules/js-tiktoken/dist/ranks/cl100k_base.js'] },
];

/** The file every bundle gets first: maps stack traces through the source maps, on demand. */
export const SOURCE_MAP_STACKS = join(PROJECT_ROOT, 'functions', 'lib', 'source-map-stacks.ts');

/**
 * Built-ins replaced in the bundles by a module that loads them only when used: `node:stream/web`
 * (imported at its top by @middy/core, used by it only for an `instanceof`; functions/lib/stream-web.ts).
 * A bundle importing anything else from it fails to build.
 */
const BUILTIN_STAND_INS: Readonly<Record<string, string>> = {
  'node:stream/web': join(PROJECT_ROOT, 'functions', 'lib', 'stream-web.ts'),
};

/**
 * esbuild options for one Lambda entry: `<outdir>/index.mjs` (the handler) plus `<outdir>/chunks/*.mjs`
 * (code loaded by `import()`), each with a `.map` beside it. `config` is embedded (see configDefine).
 */
export function lambdaBuildOptions(entry: string, outdir: string, config: unknown): BuildOptions & { metafile: true } {
  return {
    absWorkingDir: PROJECT_ROOT,
    entryPoints: { index: resolve(PROJECT_ROOT, entry) },
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    platform: 'node',
    target: LAMBDA_NODE_TARGET,
    format: 'esm',
    // The ES module build of a package where it has one (esbuild's default for Node is CommonJS
    // first): its `import()`s stay lazy chunks, where the CommonJS build would `require()` them at
    // start (the AWS SDK's credential providers for SSO, STS, INI files... that Lambda never uses).
    mainFields: ['module', 'main'],
    minify: true,
    // Linked maps (a sourceMappingURL comment) without the sources' text: enough to map a stack
    // frame to file:line:column, a fraction of the size to ship.
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    banner: { js: ESM_REQUIRE_BANNER },
    inject: [SOURCE_MAP_STACKS],
    alias: BUILTIN_STAND_INS,
    define: configDefine(config),
    external: LAZY_MODULES.map((m) => m.specifier),
    metafile: true,
    logLevel: 'warning',
  };
}

/** After esbuild: the lazy modules copied beside the bundle. */
export function shipLazyModules(outdir: string, projectDir = PROJECT_ROOT): void {
  for (const f of LAZY_MODULES.flatMap((m) => m.files)) {
    mkdirSync(dirname(join(outdir, f)), { recursive: true });
    cpSync(join(projectDir, f), join(outdir, f));
  }
}

/**
 * After esbuild: the require banner removed from each output file that does not use it (most
 * chunks, the entry included), so loading them does not make a `require` (node:module's
 * createRequire) per file. The banner is the file's first line, which maps to nothing: its map
 * loses that line's (empty) entry (a map with no entries at all stays empty). The metafile's byte
 * counts follow.
 */
export function dropUnusedBanners(meta: Metafile, projectDir = PROJECT_ROOT): void {
  const head = `${ESM_REQUIRE_BANNER}\n`;
  for (const [file, out] of Object.entries(meta.outputs)) {
    if (!file.endsWith('.mjs')) continue;
    const path = resolve(projectDir, file);
    const text = readFileSync(path, 'utf8');
    if (!text.startsWith(head) || /\brequire\b/.test(text.slice(head.length))) continue;
    const map = JSON.parse(readFileSync(`${path}.map`, 'utf8')) as { mappings: string };
    if (map.mappings && !map.mappings.startsWith(';')) continue;
    map.mappings = map.mappings.slice(1);
    const mapText = JSON.stringify(map);
    writeFileSync(path, text.slice(head.length));
    writeFileSync(`${path}.map`, mapText);
    out.bytes -= Buffer.byteLength(head);
    meta.outputs[`${file}.map`]!.bytes = Buffer.byteLength(mapText);
  }
}

/** Build one Lambda entry into `outdir` (emptied first), as the CDK asset and `npm run build` do. */
export function buildLambdaSync(entry: string, outdir: string, config: unknown): Metafile {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const result = buildSync(lambdaBuildOptions(entry, outdir, config));
  dropUnusedBanners(result.metafile);
  shipLazyModules(outdir);
  return result.metafile;
}

/**
 * The CDK asset of a Lambda entry: built locally by buildLambdaSync at synth (the same build as
 * `npm run build`, chunks and maps included), hashed by its output. Handler: `index.handler`.
 * (CDK's NodejsFunction cannot do this: it bundles to one `--outfile`, which rules out splitting.)
 */
export function lambdaCode(entry: string, config: unknown): Code {
  return Code.fromAsset(PROJECT_ROOT, {
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      // Never pulled: the local build below always succeeds or throws.
      image: DockerImage.fromRegistry('lambda-gateway-local-bundling-only'),
      // CDK caches bundling results per App by these options, and `local.tryBundle` is not part of
      // that key: name the entry and the config here, or a second function would reuse the first's bundle.
      environment: { GATEWAY_ENTRY: relative(PROJECT_ROOT, entry), GATEWAY_CONFIG_SHA256: createHash('sha256').update(JSON.stringify(config)).digest('hex') },
      local: {
        tryBundle(outputDir: string): boolean {
          buildLambdaSync(entry, outputDir, config);
          return true;
        },
      },
    },
  });
}

/**
 * Environment a bundle runs with in Lambda (the functions set it; the cold-start benchmark probes
 * with it). No NODE_OPTIONS=--enable-source-maps: that makes Node read and parse every source map
 * while loading the bundle; stacks are mapped on demand instead (functions/lib/source-map-stacks.ts).
 */
export const LAMBDA_RUNTIME_ENV: Readonly<Record<string, string>> = {};

export interface StartFootprint {
  /** Output files Node reads when it imports the entry: the entry and its static imports, transitively. */
  files: string[];
  bytes: number;
  /** Input modules (`node_modules/<package>` or project paths) whose code is in those files. */
  inputs: string[];
  /** Output files loaded only by `import()`. */
  lazyFiles: string[];
  lazyBytes: number;
}

/**
 * What importing the entry loads before any request: from esbuild's metafile, the entry's output
 * file and every chunk it imports statically, transitively. Chunks reached only through `import()`
 * are not loaded at start.
 */
export function startFootprint(meta: Metafile, entryOutput: string): StartFootprint {
  const outputs = meta.outputs;
  const key = Object.keys(outputs).find((k) => k === entryOutput || k.endsWith(`/${entryOutput}`));
  if (!key) throw new Error(`no output ${entryOutput} in the metafile`);
  const seen = new Set<string>();
  const visit = (k: string) => {
    if (seen.has(k) || !outputs[k]) return;
    seen.add(k);
    for (const i of outputs[k]!.imports) if (i.kind === 'import-statement' && !i.external) visit(i.path);
  };
  visit(key);
  const js = Object.keys(outputs).filter((k) => !k.endsWith('.map'));
  const files = js.filter((k) => seen.has(k));
  const lazyFiles = js.filter((k) => !seen.has(k));
  const inputs = new Set<string>();
  for (const f of files) for (const i of Object.keys(outputs[f]!.inputs)) inputs.add(i);
  return {
    files,
    bytes: files.reduce((n, f) => n + outputs[f]!.bytes, 0),
    inputs: [...inputs].sort(),
    lazyFiles,
    lazyBytes: lazyFiles.reduce((n, f) => n + outputs[f]!.bytes, 0),
  };
}
