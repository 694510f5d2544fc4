import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

import { SECRET_PLACEHOLDER } from '../../shared/secret-placeholder.ts';

export { SECRET_PLACEHOLDER };

/** How long a secret value is reused before it is read again (put-secret-value takes effect within this). */
export const SECRET_MAX_AGE_MS = 60_000;

/** SECRET_MAX_AGE_MS, or GATEWAY_SECRETS_MAX_AGE_SECONDS when set (0: read on every request). */
export function secretMaxAgeMs(env: Record<string, string | undefined>): number {
  const s = Number(env.GATEWAY_SECRETS_MAX_AGE_SECONDS);
  return env.GATEWAY_SECRETS_MAX_AGE_SECONDS && Number.isFinite(s) && s >= 0 ? s * 1000 : SECRET_MAX_AGE_MS;
}

type Warn = (message: string, extra: Record<string, unknown>) => void;

/**
 * Provider credentials in AWS: for each `<NAME>_SECRET_ARN` in the environment (set by the stack),
 * the secret's value is exposed as `<NAME>`, the variable the configuration's `apiKeyEnv` names.
 * A secret may hold the bare key or JSON `{"apiKey": "..."}`. An empty, placeholder or unreadable
 * secret leaves its provider off (reported in the log), never the function down.
 *
 * Values are cached for at most `maxAgeMs`: `current()` re-reads the secrets once the cache is
 * older, so a key put after deploy (or rotated) is used within a minute by warm instances too.
 * A failed re-read keeps the last good value.
 */
export class ProviderSecrets {
  private readonly wanted: Array<[name: string, arn: string]>;
  private readonly values = new Map<string, string | undefined>();
  private readAt = -Infinity;
  private reading?: Promise<boolean>;
  private client?: Pick<SecretsManagerClient, 'send'>;

  constructor(
    private readonly env: Record<string, string | undefined>,
    private readonly opts: { client?: Pick<SecretsManagerClient, 'send'>; warn?: Warn; maxAgeMs?: number; now?: () => number } = {},
  ) {
    // An explicit value in the environment wins over the secret.
    this.wanted = Object.entries(env)
      .filter(([k, v]) => k.endsWith('_SECRET_ARN') && v)
      .map(([k, v]) => [k.slice(0, -'_SECRET_ARN'.length), v!] as [string, string])
      .filter(([name]) => !env[name]);
    this.client = opts.client;
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** The environment with the secrets' values; `changed` when a value differs from the last one returned. */
  async current(): Promise<{ env: Record<string, string | undefined>; changed: boolean }> {
    let changed = false;
    if (this.wanted.length && this.now() - this.readAt >= (this.opts.maxAgeMs ?? SECRET_MAX_AGE_MS)) {
      this.reading ??= this.read().finally(() => (this.reading = undefined));
      changed = await this.reading;
    }
    if (changed) this.snap = undefined;
    return { env: (this.snap ??= this.snapshot()), changed };
  }

  /**
   * The environment with the secrets' values, made once and again only when a value changed: a
   * copy of process.env reads every variable through the process (measured: 0.28 ms of each Lambda
   * invocation, before its request was handled).
   */
  private snap?: Record<string, string | undefined>;

  private snapshot(): Record<string, string | undefined> {
    const out = { ...this.env };
    for (const [name, value] of this.values) if (value !== undefined) out[name] = value;
    return out;
  }

  private async read(): Promise<boolean> {
    const warn = this.opts.warn ?? (() => {});
    const first = this.readAt === -Infinity;
    // The SDK client is loaded on the first read (a function with no secret never loads it).
    const sdk = await import('@aws-sdk/client-secrets-manager');
    const client = (this.client ??= new sdk.SecretsManagerClient({}));
    const results = await Promise.all(
      this.wanted.map(async ([name, arn]): Promise<[string, string | undefined]> => {
        try {
          const res = await client.send(new sdk.GetSecretValueCommand({ SecretId: arn }));
          const value = secretValue(res.SecretString);
          // Said once, and again only when a key disappears (not every minute).
          if (!value && (first || this.values.get(name) !== undefined)) warn('provider secret is not set (empty or placeholder); its provider stays off', { variable: name });
          return [name, value];
        } catch (err) {
          warn('cannot read provider secret; its provider stays off', { variable: name, error: (err as Error).name });
          return [name, this.values.get(name)]; // keep the last good value
        }
      }),
    );
    let changed = false;
    for (const [name, value] of results) {
      if (this.values.get(name) !== value) changed = true;
      this.values.set(name, value);
    }
    this.readAt = this.now();
    return changed;
  }
}

/** The key a secret string holds, or undefined when it is empty or the stack's placeholder. */
export function secretValue(s: string | undefined): string | undefined {
  const text = s?.trim();
  if (!text || text === SECRET_PLACEHOLDER) return undefined;
  if (text.startsWith('{')) {
    try {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const v = parsed.apiKey ?? parsed.api_key ?? parsed.key;
      return typeof v === 'string' && v.trim() && v.trim() !== SECRET_PLACEHOLDER ? v.trim() : undefined;
    } catch {
      return text;
    }
  }
  return text;
}
