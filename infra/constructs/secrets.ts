import { RemovalPolicy } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { GatewayConfig } from '../../shared/config/schema.ts';

/** Environment variables holding provider and MCP server credentials, as the configuration names them. */
export function secretEnvNames(config: GatewayConfig): string[] {
  const names = new Set<string>();
  for (const p of Object.values(config.providers)) {
    const env = (p as { apiKeyEnv?: string }).apiKeyEnv;
    if (env) names.add(env);
    else if (p.type === 'openai') names.add('OPENAI_API_KEY');
    else if (p.type === 'anthropic') names.add('ANTHROPIC_API_KEY');
  }
  // MCP servers' credentials travel the same way (shared/mcp).
  for (const m of Object.values(config.mcp?.servers ?? {})) if (m.apiKeyEnv) names.add(m.apiKeyEnv);
  return [...names].sort();
}

/**
 * One Secrets Manager secret per provider credential: referenced by ARN from the configuration, or
 * created empty (fill it in after deploy). Functions get `<ENV>_SECRET_ARN` and read the value at
 * cold start (functions/lib/secrets.ts); the plaintext never appears in the template.
 */
export class ProviderSecrets extends Construct {
  readonly secrets = new Map<string, ISecret>();

  constructor(scope: Construct, id: string, config: GatewayConfig) {
    super(scope, id);
    for (const env of secretEnvNames(config)) {
      const arn = config.deploy.secrets[env]?.arn;
      const secret = arn
        ? Secret.fromSecretCompleteArn(this, env, arn)
        : new Secret(this, env, { description: `LLM gateway provider credential ${env} (set the value after deploy)`, removalPolicy: RemovalPolicy.RETAIN });
      this.secrets.set(env, secret);
    }
  }

  get environment(): Record<string, string> {
    return Object.fromEntries([...this.secrets].map(([env, s]) => [`${env}_SECRET_ARN`, s.secretArn]));
  }

  grantRead(grantee: IGrantable): void {
    for (const s of this.secrets.values()) s.grantRead(grantee);
  }
}
