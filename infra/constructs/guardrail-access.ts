import { Arn, Stack } from 'aws-cdk-lib';
import { PolicyStatement, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import type { GatewayConfig } from '../../shared/config/schema.ts';

/**
 * Let the function call ApplyGuardrail on exactly the Amazon Bedrock guardrails the configuration's
 * guardrail profiles name (docs/guardrails.md). Returns the ARNs granted.
 */
export function grantGuardrails(scope: Construct, grantee: IGrantable, config: GatewayConfig): string[] {
  const stack = Stack.of(scope);
  const arns = new Set<string>();
  for (const p of Object.values(config.guardrails?.profiles ?? {})) {
    const g = p.bedrock;
    if (!g) continue;
    arns.add(
      g.guardrailIdentifier.startsWith('arn:')
        ? g.guardrailIdentifier
        : Arn.format({ service: 'bedrock', resource: 'guardrail', resourceName: g.guardrailIdentifier, region: g.region ?? stack.region }, stack),
    );
  }
  if (!arns.size) return [];
  const resources = [...arns].sort();
  grantee.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ sid: 'ApplyConfiguredGuardrails', actions: ['bedrock:ApplyGuardrail'], resources }));
  return resources;
}
