import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { build } from 'esbuild';
import { loadConfigOrExit } from '../shared/config/load.ts';
import { execSync } from 'node:child_process';
import { configDefine, copyLazyModules, ESM_REQUIRE_BANNER, LAMBDA_NODE_TARGET, LAZY_MODULES } from '../infra/bundling.ts';

/**
 * `npm run build`: bundle each Lambda entry in functions/ with esbuild (minified, source maps, ESM
 * for Node 22) into dist/<name>/index.mjs, with the validated configuration embedded, and print
 * each bundle's size.
 */
const config = loadConfigOrExit();

const entries = readdirSync('functions').filter((f) => f.endsWith('.ts')).map((f) => join('functions', f));
const rows: string[] = [];
for (const entry of entries) {
  const name = basename(entry, '.ts');
  const outfile = join('dist', name, 'index.mjs');
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: LAMBDA_NODE_TARGET,
    format: 'esm',
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    banner: { js: ESM_REQUIRE_BANNER },
    define: configDefine(config),
    external: LAZY_MODULES.map((m) => m.specifier),
    logLevel: 'warning',
  });
  for (const cmd of copyLazyModules(process.cwd(), join('dist', name))) execSync(cmd);
  const size = statSync(outfile).size;
  const map = statSync(`${outfile}.map`).size;
  rows.push(`${name.padEnd(20)} ${outfile.padEnd(32)} ${(size / 1024).toFixed(1).padStart(8)} KiB  (+ ${(map / 1024).toFixed(0)} KiB source map)`);
}
console.log(['Lambda bundles:', ...rows].join('\n'));
