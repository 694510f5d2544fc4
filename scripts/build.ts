import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadConfigOrExit } from '../shared/config/load.ts';
import { buildLambdaSync, startFootprint } from '../infra/bundling.ts';

/**
 * `npm run build`: bundle each Lambda entry in functions/ as the CDK functions do (infra/bundling.ts:
 * minified ESM for Node 22, split into chunks loaded on demand, linked source maps, the validated
 * configuration embedded) into dist/<name>/, and print what a cold start loads. esbuild's metafile
 * is kept as dist/<name>.meta.json (outside the function's directory, so it is not shipped).
 */
const config = loadConfigOrExit();

const kib = (n: number) => `${(n / 1024).toFixed(1).padStart(7)} KiB`;
const entries = readdirSync('functions').filter((f) => f.endsWith('.ts')).map((f) => join('functions', f));
const rows: string[] = [];
for (const entry of entries) {
  const name = basename(entry, '.ts');
  const outdir = join('dist', name);
  const meta = buildLambdaSync(entry, outdir, config);
  writeFileSync(join('dist', `${name}.meta.json`), JSON.stringify(meta));
  const start = startFootprint(meta, 'index.mjs');
  const maps = Object.keys(meta.outputs).filter((f) => f.endsWith('.map')).reduce((n, f) => n + statSync(f).size, 0);
  rows.push(`${name.padEnd(10)} ${join(outdir, 'index.mjs').padEnd(24)} loaded at start ${kib(start.bytes)} in ${start.files.length} file(s); on demand ${kib(start.lazyBytes)} in ${start.lazyFiles.length}; source maps ${kib(maps)}`);
}
console.log(['Lambda bundles:', ...rows].join('\n'));
