import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/**
 * Provider credentials in AWS: for each `<NAME>_SECRET_ARN` in the environment (set by the stack),
 * read the secret once at cold start and expose its value as `<NAME>`, the variable the
 * configuration's `apiKeyEnv` names. A secret may hold the bare key or JSON `{"apiKey": "..."}`.
 * An empty or unreadable secret leaves its provider off (reported in the log), never the function
 * down.
 */
export async function resolveSecrets(
  env: Record<string, string | undefined>,
  client?: Pick<SecretsManagerClient, 'send'>,
  warn: (message: string, extra: Record<string, unknown>) => void = () => {},
): Promise<Record<string, string | undefined>> {
  const out = { ...env };
  const wanted = Object.entries(env).filter(([k, v]) => k.endsWith('_SECRET_ARN') && v);
  if (!wanted.length) return out;
  const sm = client ?? new SecretsManagerClient({});
  await Promise.all(
    wanted.map(async ([k, arn]) => {
      const name = k.slice(0, -'_SECRET_ARN'.length);
      if (out[name]) return; // an explicit value wins
      try {
        const res = await sm.send(new GetSecretValueCommand({ SecretId: arn }));
        const value = secretValue(res.SecretString);
        if (value) out[name] = value;
        else warn('provider secret is empty; its provider stays off', { variable: name });
      } catch (err) {
        warn('cannot read provider secret; its provider stays off', { variable: name, error: (err as Error).name });
      }
    }),
  );
  return out;
}

function secretValue(s: string | undefined): string | undefined {
  const text = s?.trim();
  if (!text) return undefined;
  if (text.startsWith('{')) {
    try {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const v = parsed.apiKey ?? parsed.api_key ?? parsed.key;
      return typeof v === 'string' && v ? v : undefined;
    } catch {
      return text;
    }
  }
  return text;
}
