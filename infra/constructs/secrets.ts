import { RemovalPolicy, SecretValue } from 'aws-cdk-lib';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { GatewayConfig } from '../../shared/config/schema.ts';
import { SECRET_PLACEHOLDER } from '../../shared/config/deploy.ts';

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
 * One Secrets Manager secret per provider credential: referenced by ARN from the configuration
 * (`deploy.secrets.<ENV>.arn`), or created holding SECRET_PLACEHOLDER, which the gateway reads as
 * "not set" (a secret created without a value would hold a random password, which the gateway
 * would take for a key). Put the real key after deploy; the functions get `<ENV>_SECRET_ARN` and
 * re-read the value at most a minute old (functions/lib/secrets.ts). Real keys never appear in
 * the template; CloudFormation does not write the placeholder again on later deploys because the
 * property does not change.
 */
export class ProviderSecrets extends Construct {
  readonly secrets = new Map<string, ISecret>();

  constructor(scope: Construct, id: string, config: GatewayConfig) {
    super(scope, id);
    for (const env of secretEnvNames(config)) {
      const arn = config.deploy.secrets[env]?.arn;
      const secret = arn
        ? Secret.fromSecretCompleteArn(this, env, arn)
        : new Secret(this, env, {
            description: `LLM gateway provider credential ${env} (holds a placeholder until you put the key: aws secretsmanager put-secret-value)`,
            // A placeholder, not a credential: safe in the template.
            secretStringValue: SecretValue.unsafePlainText(SECRET_PLACEHOLDER),
            removalPolicy: RemovalPolicy.RETAIN,
          });
      this.secrets.set(env, secret);
    }
  }

  /** `<ENV>_SECRET_ARN` for each credential, as functions/lib/secrets.ts reads them. */
  get environment(): Record<string, string> {
    return Object.fromEntries([...this.secrets].map(([env, s]) => [`${env}_SECRET_ARN`, s.secretArn]));
  }

  /** Let the function read every credential, and name each secret to it in the environment. */
  grantRead(fn: LambdaFunction): void {
    for (const [name, value] of Object.entries(this.environment)) fn.addEnvironment(name, value);
    for (const s of this.secrets.values()) s.grantRead(fn);
  }
}
