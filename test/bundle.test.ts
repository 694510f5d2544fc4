import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { BUILTINS_NOT_AT_START, NOT_AT_START } from '../bench/coldstart.ts';
import { buildLambdaSync, configDefine, ESM_REQUIRE_BANNER, LAMBDA_RUNTIME_ENV, lambdaCode, startFootprint } from '../infra/bundling.ts';
import { parseConfig } from '../shared/config/load.ts';
import { BedrockProvider as LazyBedrock } from '../shared/providers/bedrock/lazy.ts';
import { BedrockProvider } from '../shared/providers/bedrock/index.ts';
import type { Metafile } from 'esbuild';
import { App, Stack } from 'aws-cdk-lib';
import { Function as LambdaFunction, Runtime } from 'aws-cdk-lib/aws-lambda';

/**
 * The Lambda bundle as shipped (infra/bundling.ts, the build `npm run build` and the CDK asset
 * share): what a cold start loads, and that the bundle runs, its on-demand chunks and the lazy
 * modules beside it included, in a fresh Node process. No timings here (see bench/coldstart.ts).
 */

const config = parseConfig({
  providers: {
    mock: { type: 'mock', wordDelayMs: 0 },
    // Nothing listens there: a call fails fast, after the SDK chunk has been loaded.
    bedrock: { type: 'bedrock', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9' },
  },
  models: { mock: { provider: 'mock', model: 'mock-echo-1' }, nova: { provider: 'bedrock', model: 'amazon.nova-lite-v1:0' } },
  auth: { required: false },
});

const PROBE = `
globalThis.awslambda = {
  streamifyResponse(fn) { return fn; },
  HttpResponseStream: { from(stream, prelude) { stream.write(JSON.stringify(prelude) + '\\n'); return stream; } },
};
const before = new Set(process.moduleLoadList);
const { handler } = await import(process.env.BUNDLE_URL);
const out = { atImport: process.moduleLoadList.filter((m) => !before.has(m)) };
const { Writable } = await import('node:stream');
for (const [name, path, body] of JSON.parse(process.env.CALLS)) {
  const chunks = [];
  const stream = new Writable({ write(c, _e, cb) { chunks.push(Buffer.from(c)); cb(); } });
  const event = { path, httpMethod: body === null ? 'GET' : 'POST', headers: { 'content-type': 'application/json', host: 'x.example' }, body: body === null ? null : JSON.stringify(body), isBase64Encoded: false, requestContext: { identity: {} } };
  await handler(event, stream, { awsRequestId: name, functionName: 'f', getRemainingTimeInMillis: () => 60000 });
  const text = Buffer.concat(chunks).toString('utf8');
  out[name] = { status: JSON.parse(text.slice(0, text.indexOf('\\n'))).statusCode, body: text.slice(text.indexOf('\\n') + 1) };
}
process.stdout.write('RESULT' + JSON.stringify(out));
`;

describe('Lambda bundle (split build)', () => {
  let dir: string;
  let meta: Metafile;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gw-bundle-'));
    meta = buildLambdaSync('functions/gateway.ts', join(dir, 'gateway'), config);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('loads at start only what a request needs: no zod, yaml, admin, MCP, Bedrock SDK or token ranks', () => {
    const start = startFootprint(meta, 'index.mjs');
    for (const n of NOT_AT_START) {
      const hit = start.inputs.find((i) => n.pattern.test(i));
      assert.equal(hit, undefined, `${n.what} is loaded at start (${hit})`);
    }
    // Loaded on demand, in chunks of their own.
    const lazy = new Set(start.lazyFiles.flatMap((f) => Object.keys(meta.outputs[f]!.inputs)));
    for (const m of ['shared/admin/api.ts', 'shared/mcp/gateway.ts', 'shared/providers/bedrock/index.ts']) assert.ok(lazy.has(m), `${m} in an on-demand chunk`);
    // The optional features: one on-demand chunk for all of them (shared/entries/features.ts).
    const features = ['shared/guardrails/index.ts', 'shared/cache/index.ts', 'shared/responses/index.ts', 'shared/emulate/parallel.ts', 'shared/alerts/budget-alerts.ts', 'shared/alerts/notifiers.ts'];
    const chunkOf = (m: string) => start.lazyFiles.find((f) => m in meta.outputs[f]!.inputs);
    for (const m of features) assert.equal(chunkOf(m), chunkOf('shared/entries/features.ts'), `${m} in the features chunk`);
    assert.ok(chunkOf('shared/entries/features.ts'));
    // The configuration is embedded: its loader and the YAML parser are not even shipped.
    const shipped = Object.values(meta.outputs).flatMap((o) => Object.keys(o.inputs));
    assert.deepEqual(shipped.filter((i) => i === 'shared/config/load.ts' || i.startsWith('node_modules/yaml/')), []);
    // A size bound, to catch a static import that pulls a large dependency back in (was 1.6 MB in one file).
    assert.ok(start.bytes < 700 * 1024, `loaded at start: ${Math.round(start.bytes / 1024)} KiB`);
    // Few files: each lazy module reaches the whole core (shared/entries/), so the core is not split
    // into a chunk per subset of it that some lazy module uses (13 files before, each one more read).
    assert.ok(start.files.length <= 6, `loaded at start: ${start.files.length} files (${start.files.join(', ')})`);
    assert.equal(/--enable-source-maps/.test(LAMBDA_RUNTIME_ENV.NODE_OPTIONS ?? ''), false);
  });

  it('ships every chunk with a linked source map (no sources inlined) and the token ranks beside the bundle', () => {
    const js = Object.keys(meta.outputs).filter((f) => f.endsWith('.mjs'));
    assert.ok(js.some((f) => f.includes('/chunks/')));
    for (const f of js) {
      assert.ok(existsSync(`${f}.map`), f);
      const text = readFileSync(f, 'utf8');
      assert.match(text, /\/\/# sourceMappingURL=[^\n]+\.map\s*$/);
      // The require banner only where the code uses require (the entry does not).
      const banner = text.startsWith(`${ESM_REQUIRE_BANNER}\n`);
      assert.equal(banner, /\brequire\b/.test(banner ? text.slice(ESM_REQUIRE_BANNER.length + 1) : text), f);
      assert.equal((JSON.parse(readFileSync(`${f}.map`, 'utf8')) as { sourcesContent?: unknown }).sourcesContent, undefined);
    }
    assert.ok(existsSync(join(dir, 'gateway', 'node_modules', 'js-tiktoken', 'dist', 'ranks', 'cl100k_base.js')));
    assert.ok(!readFileSync(join(dir, 'gateway', 'index.mjs'), 'utf8').startsWith(ESM_REQUIRE_BANNER), 'no banner on the entry');
    assert.ok(js.some((f) => readFileSync(f, 'utf8').startsWith(ESM_REQUIRE_BANNER)), 'the banner where a CommonJS dependency requires');
  });

  it('runs in a fresh Node process: a chat answer, count_tokens (ranks beside it), the admin API, a Bedrock call and the optional features load their chunks', () => {
    const calls = [
      ['chat', '/v1/chat/completions', { model: 'mock', messages: [{ role: 'user', content: 'hello bundle' }] }],
      ['count', '/v1/messages/count_tokens', { model: 'mock', messages: [{ role: 'user', content: 'count these words' }] }],
      ['admin', '/admin/keys', null],
      ['bedrock', '/v1/chat/completions', { model: 'nova', messages: [{ role: 'user', content: 'hi' }] }],
      // The optional features' chunk (shared/entries/features.ts): `n` choices, and a stored Response asked of a gateway that keeps none.
      ['choices', '/v1/chat/completions', { model: 'mock', n: 2, messages: [{ role: 'user', content: 'two of these' }] }],
      ['stored', '/v1/responses', { model: 'mock', input: 'keep this', store: true }],
      // The Anthropic door's chunk (loaded by its first request), and a 400 from it in Anthropic's shape.
      ['messages', '/v1/messages', { model: 'mock', max_tokens: 16, messages: [{ role: 'user', content: 'hello door' }] }],
      ['messagesBad', '/v1/messages', { model: 'mock', messages: 'not a list' }],
    ];
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE], {
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...LAMBDA_RUNTIME_ENV,
        PATH: process.env.PATH,
        BUNDLE_URL: pathToFileURL(join(dir, 'gateway', 'index.mjs')).href,
        CALLS: JSON.stringify(calls),
        AWS_REGION: 'eu-west-1',
        AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        POWERTOOLS_TRACE_ENABLED: 'false',
        POWERTOOLS_METRICS_DISABLED: 'true',
      },
    });
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    const { atImport, ...out } = JSON.parse(r.stdout.slice(r.stdout.indexOf('RESULT') + 6)) as { atImport: string[] } & Record<string, { status: number; body: string }>;
    // Built-ins no request needs are not loaded by the import (the web streams, node:console).
    for (const b of BUILTINS_NOT_AT_START) assert.ok(!atImport.includes(b.module), `${b.what} loaded at import`);
    assert.ok(atImport.includes('NativeModule http'), 'the probe sees what the import loads');
    assert.equal(out.chat!.status, 200, out.chat!.body);
    assert.equal(JSON.parse(out.chat!.body).choices[0].message.content, 'hello bundle');
    assert.equal(out.count!.status, 200, out.count!.body);
    assert.ok(JSON.parse(out.count!.body).input_tokens > 0);
    assert.ok(out.admin!.status >= 400 && out.admin!.status < 500, `admin: ${out.admin!.status} ${out.admin!.body}`);
    assert.ok(out.bedrock!.status >= 500, `bedrock: ${out.bedrock!.status} ${out.bedrock!.body}`);
    assert.match(out.bedrock!.body, /bedrock/i);
    assert.equal(out.choices!.status, 200, out.choices!.body);
    assert.deepEqual((JSON.parse(out.choices!.body) as { choices: { index: number; message: { content: string } }[] }).choices.map((c) => [c.index, c.message.content]), [[0, 'two of these'], [1, 'two of these']]);
    assert.equal(out.stored!.status, 400, out.stored!.body);
    assert.equal(JSON.parse(out.stored!.body).error.code, 'unsupported_parameter');
    assert.equal(out.messages!.status, 200, out.messages!.body);
    assert.equal((JSON.parse(out.messages!.body) as { content: { text: string }[] }).content[0]!.text, 'hello door');
    assert.equal(out.messagesBad!.status, 400, out.messagesBad!.body);
    assert.equal(JSON.parse(out.messagesBad!.body).type, 'error');
  });

  it('is what the CDK asset ships: entry, chunks, maps and the ranks beside it', () => {
    const app = new App({ outdir: join(dir, 'cdk.out') });
    const stack = new Stack(app, 'BundleAsset');
    new LambdaFunction(stack, 'Fn', { code: lambdaCode('functions/gateway.ts', config), handler: 'index.handler', runtime: Runtime.NODEJS_22_X });
    const out = app.synth().directory;
    const asset = readdirSync(out).find((d) => d.startsWith('asset.') && existsSync(join(out, d, 'index.mjs')));
    assert.ok(asset, 'an asset directory with index.mjs');
    const files = readdirSync(join(out, asset!), { recursive: true }).map(String);
    // Same build, another directory (chunk hashes may differ): the same files, each with its map.
    const js = files.filter((f) => f.endsWith('.mjs') && !f.startsWith('node_modules/'));
    assert.equal(js.length, Object.keys(meta.outputs).filter((f) => f.endsWith('.mjs')).length);
    assert.ok(js.includes('index.mjs') && js.some((f) => f.startsWith('chunks/')));
    for (const f of js) assert.ok(files.includes(`${f}.map`), `${f}.map in the asset`);
    assert.ok(files.includes('node_modules/js-tiktoken/dist/ranks/cl100k_base.js'));
  });

  it('maps an error stack through the source maps when it is formatted, without --enable-source-maps', () => {
    const src = join(dir, 'boom.ts');
    writeFileSync(src, ['export function handler(): string {', '  const e = new Error("boom");', '  return e.stack ?? "";', '}', ''].join('\n'));
    buildLambdaSync(src, join(dir, 'boom'), config);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(join(dir, 'boom', 'index.mjs')).href)}); process.stdout.write(m.handler());`], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    // The TypeScript source's own path, line and column (the map names it relative to itself).
    const first = r.stdout.split('\n').slice(0, 2).join('\n');
    assert.ok(first.startsWith('Error: boom\n    at ') && first.includes(`${src}:2:13`), r.stdout);
  });
});

describe('Bedrock provider stand-in (loads the SDK-backed provider on its first call)', () => {
  it('agrees with the provider on live, region, the reason it is off, and pass-through', () => {
    const cfgs = [
      parseConfig({ providers: { b: { type: 'bedrock', region: 'us-east-1' } }, models: {} }).providers.b,
      parseConfig({ providers: { b: { type: 'bedrock', messagesViaInvokeModel: true } }, models: {} }).providers.b,
      parseConfig({ providers: { b: { type: 'bedrock' } }, models: {} }).providers.b,
    ];
    for (const cfg of cfgs) {
      for (const env of [{}, { AWS_REGION: 'eu-west-1' }, { AWS_DEFAULT_REGION: 'ap-south-1' }]) {
        const real = new BedrockProvider('b', cfg as never, env);
        const lazy = new LazyBedrock('b', cfg as never, env);
        assert.deepEqual([lazy.live, lazy.region, lazy.notLiveReason, lazy.type], [real.live, real.region, real.notLiveReason, real.type]);
        for (const door of ['openai-chat', 'anthropic-messages', 'bedrock-invoke', 'bedrock-converse', 'openai-responses'] as const) assert.equal(lazy.passthrough(door), real.passthrough(door), door);
      }
    }
  });

  it('offers every method the provider has (a method missing here silently changes behaviour, e.g. an exact token count becomes an estimate)', () => {
    // Own methods (getters skipped), minus the implementation's private helpers.
    const methods = (proto: object) => Object.entries(Object.getOwnPropertyDescriptors(proto)).filter(([n, d]) => n !== 'constructor' && typeof d.value === 'function').map(([n]) => n);
    const privateHelpers = new Set(['streamEvents']);
    const lazy = new Set(methods(LazyBedrock.prototype));
    const real = methods(BedrockProvider.prototype).filter((m) => !privateHelpers.has(m));
    assert.ok(real.includes('chat') && real.includes('countBedrockTokens'));
    for (const m of real) assert.ok(lazy.has(m), `the stand-in lacks ${m}()`);
  });

  it('embeds only a configuration that is what the schema makes of it again', () => {
    assert.doesNotThrow(() => configDefine(config));
    // Valid, but not normalized (the schema would add the provider's defaults at cold start).
    assert.throws(() => configDefine({ ...config, providers: { ...config.providers, mock: { type: 'mock' } } }), /schema makes of it/);
  });
});
