import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SERVER_NODE_FLAGS } from '../local/node-flags.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };

test('npm start runs node with the local server flags the benchmark uses', () => {
  const start = pkg.scripts.start!.split(/\s+/);
  const node = start.indexOf('node');
  // Node's own flags: what comes between `node` and the `--import tsx` that loads the server.
  const loader = start.indexOf('--import');
  assert.ok(node >= 0 && loader > node && start.includes('local/server.ts'), `start script: ${pkg.scripts.start}`);
  const flags = start.slice(node + 1, loader);
  assert.deepEqual(flags, [...SERVER_NODE_FLAGS]);
});

test('node accepts the flags and sizes the young generation by them', () => {
  const out = execFileSync(process.execPath, [...SERVER_NODE_FLAGS, '-e', 'process.stdout.write(String(require("v8").getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size))'], { encoding: 'utf8' });
  const mb = Number(SERVER_NODE_FLAGS.find((f) => f.startsWith('--min-semi-space-size='))!.split('=')[1]);
  assert.equal(Number(out), mb * 1024 * 1024);
});
