import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { stringify as toYaml } from 'yaml';
import { ConfigError, loadConfigFile, parseConfig, parseConfigText } from '../shared/config/load.ts';
import { Gateway } from '../shared/gateway.ts';

const SHIPPED = fileURLToPath(new URL('../gateway.config.yaml', import.meta.url));

function validRaw(): any {
  return {
    server: { maxBodyBytes: 1024 },
    providers: {
      mock: { type: 'mock', wordDelayMs: 5 },
      openai: { type: 'openai', baseUrl: 'https://api.openai.com/v1', apiKeyEnv: 'OPENAI_API_KEY' },
      'local-llm': { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:11434/v1', headers: { 'x-extra': 'yes' } },
    },
    models: {
      mock: { provider: 'mock', model: 'mock-echo-1' },
      'gpt-4o-mini': { provider: 'openai', model: 'gpt-4o-mini' },
      llama3: { provider: 'local-llm', model: 'llama3.2' },
    },
    logging: { localDir: 'data/logs' },
  };
}

/** Assert that parsing fails with a ConfigError that names `path` (and optionally says `says`). */
function expectConfigError(raw: unknown, path: string, says?: RegExp): ConfigError {
  let caught: unknown;
  try {
    parseConfig(raw);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${path}, got ${String(caught)}`);
  const issue = caught.issues.find((i) => i.startsWith(`${path}: `));
  assert.ok(issue, `no issue names ${path}: ${JSON.stringify(caught.issues)}`);
  if (says) assert.match(issue, says);
  assert.ok(caught.message.includes(path), 'the message names the field too');
  return caught;
}

describe('the shipped gateway.config.yaml', () => {
  it('parses and describes the mock and openai providers and their models', () => {
    const cfg = loadConfigFile(SHIPPED);
    assert.equal(cfg.server.maxBodyBytes, 4 * 1024 * 1024);
    assert.deepEqual(cfg.providers.mock, { type: 'mock', wordDelayMs: 25, firstByteTimeoutMs: 60_000, totalTimeoutMs: 600_000, idleTimeoutMs: 120_000 });
    const openai = cfg.providers.openai;
    assert.ok(openai && openai.type === 'openai');
    assert.equal(openai.baseUrl, 'https://api.openai.com/v1');
    assert.equal(openai.apiKeyEnv, 'OPENAI_API_KEY');
    assert.deepEqual(Object.keys(cfg.models).sort(), ['claude-sonnet', 'gpt-4.1', 'gpt-4o-mini', 'mock', 'nova-lite', 'titan-embed']);
    assert.equal(cfg.logging.localDir, 'data/logs');
  });

  it('gives a gateway whose real providers are off until their keys (or region) are in the environment', () => {
    const cfg = loadConfigFile(SHIPPED);
    const off = new Gateway({ config: cfg, env: {} });
    assert.equal(off.providers.get('mock')?.live, true);
    assert.equal(off.providers.get('openai')?.live, false);
    assert.match(off.providers.get('openai')?.notLiveReason ?? '', /OPENAI_API_KEY/);
    assert.deepEqual(off.models.filter((m) => m.live).map((m) => m.id), ['mock']);
    assert.deepEqual(off.models.map((m) => m.id).sort(), ['claude-sonnet', 'gpt-4.1', 'gpt-4o-mini', 'mock', 'nova-lite', 'titan-embed']);
    assert.equal(off.providers.get('anthropic')?.live, false);
    assert.equal(off.providers.get('bedrock')?.live, false, 'Bedrock is off without a region');
    const on = new Gateway({ config: cfg, env: { OPENAI_API_KEY: 'sk-test', ANTHROPIC_API_KEY: 'sk-ant-test', AWS_REGION: 'us-east-1' } });
    assert.ok(on.models.every((m) => m.live));
  });
});

describe('config validation', () => {
  it('accepts a valid configuration and fills defaults', () => {
    const cfg = parseConfig(validRaw());
    assert.equal(cfg.server.maxBodyBytes, 1024);
    const local = cfg.providers['local-llm'];
    assert.ok(local && local.type === 'openai-compatible');
    assert.equal(local.apiKeyEnv, undefined);
    assert.deepEqual(local.headers, { 'x-extra': 'yes' });
    assert.equal(local.firstByteTimeoutMs, 60_000);

    const minimal = parseConfig({ providers: { m: { type: 'mock' } }, models: {} });
    assert.deepEqual(minimal.server, { maxBodyBytes: 4 * 1024 * 1024, sseKeepAliveMs: 30_000 });
    assert.deepEqual(minimal.logging, { localDir: 'data/logs' });
    assert.deepEqual(minimal.providers.m, { type: 'mock', wordDelayMs: 0, firstByteTimeoutMs: 60_000, totalTimeoutMs: 600_000, idleTimeoutMs: 120_000 });
    const oa = parseConfig({ providers: { o: { type: 'openai' } }, models: {} }).providers.o;
    assert.ok(oa && oa.type === 'openai');
    assert.equal(oa.baseUrl, 'https://api.openai.com/v1');
  });

  it('a model that names an undefined provider is an error at models.<name>.provider', () => {
    const raw = validRaw();
    raw.models['gpt-4.1'] = { provider: 'openia', model: 'gpt-4.1' };
    expectConfigError(raw, 'models.gpt-4.1.provider', /"openia".*not defined.*mock, openai, local-llm/);
  });

  it('a bad baseUrl is an error at providers.<name>.baseUrl', () => {
    const raw = validRaw();
    raw.providers.openai.baseUrl = 'api.openai.com/v1';
    expectConfigError(raw, 'providers.openai.baseUrl');
    const ftp = validRaw();
    ftp.providers['local-llm'].baseUrl = 'ftp://files.example.com/v1';
    expectConfigError(ftp, 'providers.local-llm.baseUrl', /http\(s\)/);
  });

  it('a wrong type is an error at its field path', () => {
    const delay = validRaw();
    delay.providers.mock.wordDelayMs = 'fast';
    expectConfigError(delay, 'providers.mock.wordDelayMs', /expected number/);
    const size = validRaw();
    size.server.maxBodyBytes = '4MB';
    expectConfigError(size, 'server.maxBodyBytes', /expected number/);
    const negative = validRaw();
    negative.server.maxBodyBytes = -1;
    expectConfigError(negative, 'server.maxBodyBytes');
    const header = validRaw();
    header.providers['local-llm'].headers = { 'x-extra': 1 };
    expectConfigError(header, 'providers.local-llm.headers.x-extra', /expected string/);
    const models = validRaw();
    models.models = ['mock'];
    expectConfigError(models, 'models');
    expectConfigError('just a string', '(root)');
  });

  it('unknown provider types, unknown keys and bad names are errors naming where they are', () => {
    const type = validRaw();
    type.providers.azure = { type: 'azure-openai' };
    expectConfigError(type, 'providers.azure.type');
    const key = validRaw();
    key.providers.mock.wordDelay = 5;
    expectConfigError(key, 'providers.mock', /wordDelay/);
    const rootKey = validRaw();
    rootKey.modles = {};
    expectConfigError(rootKey, '(root)', /modles/);
    const env = validRaw();
    env.providers.openai.apiKeyEnv = 'sk-live-not-a-variable-name';
    expectConfigError(env, 'providers.openai.apiKeyEnv', /environment variable name/);
    const name = validRaw();
    name.providers['Open AI'] = { type: 'mock' };
    expectConfigError(name, 'providers.Open AI');
    const missing = validRaw();
    delete missing.models.mock.model;
    expectConfigError(missing, 'models.mock.model');
  });

  it('reports every bad field at once', () => {
    const raw = validRaw();
    raw.providers.mock.wordDelayMs = 'slow';
    raw.providers.openai.baseUrl = 'nope';
    const err = expectConfigError(raw, 'providers.mock.wordDelayMs');
    assert.ok(err.issues.some((i) => i.startsWith('providers.openai.baseUrl: ')), JSON.stringify(err.issues));
    // A bad value and a dangling provider reference are reported together.
    const refs = validRaw();
    refs.providers.openai.baseUrl = 'nope';
    refs.models.mock.provider = 'mocky';
    const both = expectConfigError(refs, 'models.mock.provider');
    assert.ok(both.issues.some((i) => i.startsWith('providers.openai.baseUrl: ')), JSON.stringify(both.issues));
  });
});

describe('config text and files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gateway-config-test-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('accepts YAML and JSON text with the same meaning', () => {
    const raw = validRaw();
    const fromYaml = parseConfigText(toYaml(raw));
    const fromJson = parseConfigText(JSON.stringify(raw, null, 2));
    assert.deepEqual(fromYaml, fromJson);
    assert.deepEqual(fromJson, parseConfig(raw));
  });

  it('loads .yaml and .json files, and GATEWAY_CONFIG names the default file', async () => {
    const yamlPath = join(dir, 'gw.yaml');
    const jsonPath = join(dir, 'gw.json');
    await writeFile(yamlPath, toYaml(validRaw()));
    await writeFile(jsonPath, JSON.stringify(validRaw()));
    assert.deepEqual(loadConfigFile(yamlPath), loadConfigFile(jsonPath));
    const saved = process.env.GATEWAY_CONFIG;
    process.env.GATEWAY_CONFIG = jsonPath;
    try {
      assert.equal(loadConfigFile().server.maxBodyBytes, 1024);
    } finally {
      if (saved === undefined) delete process.env.GATEWAY_CONFIG;
      else process.env.GATEWAY_CONFIG = saved;
    }
  });

  it('a file error names the file and the field', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'providers:\n  mock:\n    type: mock\n    wordDelayMs: lots\nmodels: {}\n');
    assert.throws(() => loadConfigFile(bad), (err: unknown) => err instanceof ConfigError && err.message.includes(bad) && err.message.includes('providers.mock.wordDelayMs'));
  });

  it('a parsed configuration (as the Lambda build embeds it) validates again to the same thing', () => {
    const once = loadConfigFile(SHIPPED);
    const twice = parseConfig(JSON.parse(JSON.stringify(once)), 'bundled configuration');
    assert.equal(JSON.stringify(twice), JSON.stringify(once));
    const routed = parseConfig({
      providers: { a: { type: 'mock' }, b: { type: 'mock' } },
      models: { one: { provider: 'a', model: 'x' }, pair: { targets: [{ provider: 'a', model: 'x' }, { provider: 'b', model: 'y', weight: 3 }] }, chain: { groups: [{ targets: [{ provider: 'a', model: 'x' }] }, { targets: [{ provider: 'b', model: 'y' }] }] } },
    });
    const again = parseConfig(JSON.parse(JSON.stringify(routed)));
    assert.deepEqual(Object.fromEntries(Object.entries(again.models).map(([k, m]) => [k, m.form])), { one: 'single', pair: 'targets', chain: 'groups' });
    assert.equal(JSON.stringify(again.models), JSON.stringify(routed.models));
  });

  it('unparseable text and a missing file are ConfigErrors', () => {
    assert.throws(() => parseConfigText('providers: [\n  a: b'), (err: unknown) => err instanceof ConfigError && /Cannot parse/.test(err.message));
    assert.throws(() => parseConfigText('{"providers": {"m": {"type": "mock"}}, "models": {'), ConfigError);
    assert.throws(() => loadConfigFile(join(dir, 'does-not-exist.yaml')), (err: unknown) => err instanceof ConfigError && /Cannot read configuration file .*ENOENT/.test(err.message));
  });
});
