import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { ProviderSecrets, SECRET_MAX_AGE_MS, SECRET_PLACEHOLDER, secretMaxAgeMs, secretValue } from '../functions/lib/secrets.ts';

/**
 * Provider secrets in Lambda (functions/lib/secrets.ts): the placeholder the stack stores means
 * "off", and values are re-read once older than the max age, so put-secret-value reaches warm
 * instances. Secrets Manager has no local implementation: a stand-in client records each request.
 */

const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:gw-openai-AbCdEf';

function fakeClient(values: Record<string, string | Error>) {
  const calls: Array<{ SecretId?: string }> = [];
  return {
    calls,
    values,
    async send(cmd: GetSecretValueCommand) {
      assert.ok(cmd instanceof GetSecretValueCommand, 'only GetSecretValue is called');
      calls.push(cmd.input);
      const v = values[cmd.input.SecretId!];
      if (v instanceof Error) throw v;
      return { SecretString: v, $metadata: {} };
    },
  } as unknown as { calls: typeof calls; values: typeof values; send: (c: unknown) => Promise<never> };
}

describe('provider secrets in Lambda', () => {
  it('reads the stack placeholder, an empty value or an empty apiKey as "not set"; a bare key or JSON apiKey as the key', () => {
    assert.equal(secretValue(SECRET_PLACEHOLDER), undefined);
    assert.equal(secretValue(`  ${SECRET_PLACEHOLDER}\n`), undefined);
    assert.equal(secretValue(''), undefined);
    assert.equal(secretValue(JSON.stringify({ apiKey: '' })), undefined);
    assert.equal(secretValue(JSON.stringify({ apiKey: SECRET_PLACEHOLDER })), undefined);
    assert.equal(secretValue('sk-real'), 'sk-real');
    assert.equal(secretValue(JSON.stringify({ apiKey: 'sk-json' })), 'sk-json');
  });

  it('sends GetSecretValue with the ARN from <NAME>_SECRET_ARN; an explicit <NAME> wins and is not read', async () => {
    const client = fakeClient({ [ARN]: 'sk-1' });
    const s = new ProviderSecrets({ OPENAI_API_KEY_SECRET_ARN: ARN, ANTHROPIC_API_KEY_SECRET_ARN: `${ARN}2`, ANTHROPIC_API_KEY: 'explicit' }, { client });
    const { env } = await s.current();
    assert.deepEqual(client.calls, [{ SecretId: ARN }]);
    assert.equal(env.OPENAI_API_KEY, 'sk-1');
    assert.equal(env.ANTHROPIC_API_KEY, 'explicit');
  });

  it('re-reads after the max age: a key put after deploy is picked up without a cold start; a failed read keeps the last good key', async () => {
    let now = 0;
    const warnings: string[] = [];
    const client = fakeClient({ [ARN]: SECRET_PLACEHOLDER });
    const s = new ProviderSecrets({ OPENAI_API_KEY_SECRET_ARN: ARN }, { client, now: () => now, warn: (m) => warnings.push(m) });
    assert.equal((await s.current()).env.OPENAI_API_KEY, undefined, 'placeholder: provider off');
    assert.equal(warnings.length, 1);
    client.values[ARN] = 'sk-put-later';
    now = SECRET_MAX_AGE_MS - 1;
    assert.equal((await s.current()).env.OPENAI_API_KEY, undefined, 'cached within the max age');
    assert.equal(client.calls.length, 1);
    now = SECRET_MAX_AGE_MS;
    const later = await s.current();
    assert.equal(later.env.OPENAI_API_KEY, 'sk-put-later');
    assert.equal(later.changed, true);
    assert.equal(client.calls.length, 2);
    client.values[ARN] = Object.assign(new Error('throttled'), { name: 'ThrottlingException' });
    now = 2 * SECRET_MAX_AGE_MS;
    const failed = await s.current();
    assert.equal(failed.env.OPENAI_API_KEY, 'sk-put-later');
    assert.equal(failed.changed, false);
    assert.equal(failed.env, later.env, 'the environment is copied again only when a value changed');
    assert.ok(warnings.some((w) => /cannot read/.test(w)));
  });

  it('the max age is about a minute unless GATEWAY_SECRETS_MAX_AGE_SECONDS says otherwise', () => {
    assert.equal(secretMaxAgeMs({}), 60_000);
    assert.equal(secretMaxAgeMs({ GATEWAY_SECRETS_MAX_AGE_SECONDS: '0' }), 0);
    assert.equal(secretMaxAgeMs({ GATEWAY_SECRETS_MAX_AGE_SECONDS: 'x' }), 60_000);
  });
});
