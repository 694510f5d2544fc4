import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { openGatewayProblem } from '../shared/config/deploy.ts';
import { loadConfigFile, parseConfig } from '../shared/config/load.ts';

/** A deployed gateway is never open by accident: `cdk synth` refuses keys-off configurations. */

const base = { providers: { mock: { type: 'mock' } }, models: { m: { provider: 'mock', model: 'mock-echo-1' } } };

describe('deploy guard: no open gateway by accident', () => {
  it('the shipped configuration has keys on', () => {
    const shipped = loadConfigFile('gateway.config.yaml');
    assert.equal(shipped.auth?.required, true);
    assert.equal(openGatewayProblem(shipped), undefined);
  });

  it('refuses keys off (absent or required: false) unless deploy.allowOpenGateway is true', () => {
    assert.match(openGatewayProblem(parseConfig(base))!, /Refusing to deploy an open gateway.*deploy\.allowOpenGateway: true/);
    assert.match(openGatewayProblem(parseConfig({ ...base, auth: { required: false } }))!, /auth\.required/);
    assert.equal(openGatewayProblem(parseConfig({ ...base, auth: { required: true } })), undefined);
    assert.equal(openGatewayProblem(parseConfig({ ...base, deploy: { allowOpenGateway: true } })), undefined);
  });

  it('the CDK app exits non-zero with the reason before synthesizing an open gateway', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-open-'));
    const file = join(dir, 'open.yaml');
    writeFileSync(file, 'providers:\n  mock: { type: mock }\nmodels:\n  m: { provider: mock, model: x }\n');
    const res = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'infra/app.ts'], { env: { ...process.env, GATEWAY_CONFIG: file, CDK_OUTDIR: join(dir, 'out') }, timeout: 120_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code ?? -1, stderr: err.stderr ?? '' }),
    );
    assert.equal(res.code, 1);
    assert.match(res.stderr, /Refusing to deploy an open gateway/);
  });
});
