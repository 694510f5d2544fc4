import { Stack, Token } from 'aws-cdk-lib';
import { PolicyStatement, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import type { GatewayConfig } from '../../shared/config/schema.ts';
import { acknowledgeBedrockProfiles } from '../nag.ts';
import { grantGuardrails } from './guardrail-access.ts';

/**
 * Access to the Amazon Bedrock models and guardrails the configuration names. It creates no
 * resource: it refuses at synth a cross-region inference profile that cannot be called from its
 * region (it would fail at the first request), and `grantInvoke(fn)` lets a function call exactly
 * the configured models and apply exactly the configured guardrails.
 */
export class BedrockAccess extends Construct {
  private readonly config: GatewayConfig;

  constructor(scope: Construct, id: string, config: GatewayConfig) {
    super(scope, id);
    this.config = config;
    const problems = bedrockRegionProblems(config, concreteRegion(this));
    if (problems.length) throw new Error(`Bedrock model ids do not fit the region:\n- ${problems.join('\n- ')}`);
  }

  /** Invoke (and count tokens on) the configured models, apply the configured guardrails. */
  grantInvoke(fn: LambdaFunction): void {
    const anyRegionModels = grantBedrock(this, fn, this.config);
    grantGuardrails(this, fn, this.config);
    // The foundation model behind a cross-region profile is granted in every region: justified in nag.ts.
    acknowledgeBedrockProfiles(fn, anyRegionModels);
  }
}

/** Bedrock model ids the configuration routes to, with the region of their provider. */
export function bedrockModels(config: GatewayConfig): Array<{ modelId: string; region?: string }> {
  const out = new Map<string, { modelId: string; region?: string }>();
  for (const m of Object.values(config.models)) {
    for (const g of m.groups) {
      for (const t of g.targets) {
        const p = config.providers[t.provider];
        if (p?.type !== 'bedrock') continue;
        out.set(`${p.region ?? ''}|${t.model}`, { modelId: t.model, region: p.region });
      }
    }
  }
  return [...out.values()];
}

const PROFILE_PREFIX = /^(us|eu|apac|us-gov|ca|jp|au|global)\./;

/**
 * The ARNs a Bedrock model id needs: a foundation model in its region, or, for a cross-region
 * inference profile (`us.anthropic...`), the profile in the provider's region and the foundation
 * model in every region the profile may send the call to.
 */
export function bedrockResourceArns(scope: Construct, modelId: string, region?: string): string[] {
  if (modelId.startsWith('arn:')) return [modelId];
  const stack = Stack.of(scope);
  const r = region ?? stack.region;
  const partition = stack.partition;
  if (PROFILE_PREFIX.test(modelId)) {
    const base = modelId.replace(PROFILE_PREFIX, '');
    return [`arn:${partition}:bedrock:${r}:${stack.account}:inference-profile/${modelId}`, `arn:${partition}:bedrock:*::foundation-model/${base}`];
  }
  return [`arn:${partition}:bedrock:${r}::foundation-model/${modelId}`];
}

/**
 * Let the function call exactly the configured Bedrock models (Converse, ConverseStream, InvokeModel*).
 * Returns the foundation models reached through cross-region inference profiles, whose ARN has to
 * leave the region open.
 */
export function grantBedrock(scope: Construct, grantee: IGrantable, config: GatewayConfig): string[] {
  const arns = [...new Set(bedrockModels(config).flatMap((m) => bedrockResourceArns(scope, m.modelId, m.region)))].sort();
  const anyRegion = [...new Set(bedrockModels(config).filter((m) => PROFILE_PREFIX.test(m.modelId)).map((m) => m.modelId.replace(PROFILE_PREFIX, '')))];
  if (!arns.length) return anyRegion;
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      sid: 'InvokeConfiguredBedrockModels',
      // Converse/ConverseStream are authorized as InvokeModel/InvokeModelWithResponseStream;
      // CountTokens makes /v1/messages/count_tokens exact for Claude on Bedrock.
      actions: ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream', 'bedrock:CountTokens'],
      resources: arns,
    }),
  );
  return anyRegion;
}

/** Which regions a cross-region inference profile prefix can be called from. */
const PROFILE_SOURCE_REGIONS: Record<string, (region: string) => boolean> = {
  us: (r) => /^us-(east|west)-\d$/.test(r),
  'us-gov': (r) => r.startsWith('us-gov-'),
  eu: (r) => r.startsWith('eu-'),
  apac: (r) => r.startsWith('ap-'),
  ca: (r) => r.startsWith('ca-'),
  jp: (r) => r === 'ap-northeast-1' || r === 'ap-northeast-3',
  au: (r) => r === 'ap-southeast-2' || r === 'ap-southeast-4',
  global: () => true,
};

/**
 * Bedrock model ids that cannot be called from the region they would be called in: a `us.` profile
 * from eu-west-1 grants ARNs that do not exist and fails at the first request. `region` is the
 * stack's (unknown for an environment-agnostic synth: then only providers with a region are checked).
 */
export function bedrockRegionProblems(config: GatewayConfig, stackRegion: string | undefined): string[] {
  const problems: string[] = [];
  for (const m of bedrockModels(config)) {
    const match = PROFILE_PREFIX.exec(m.modelId);
    const region = m.region ?? stackRegion;
    if (!match || !region) continue;
    const fits = PROFILE_SOURCE_REGIONS[match[1]!];
    if (fits && !fits(region)) {
      problems.push(
        `Bedrock model "${m.modelId}" is a "${match[1]}." cross-region inference profile, which cannot be called from ${region}` +
          (m.region ? ' (the provider\'s region)' : ' (the stack\'s region; set the bedrock provider\'s `region`, or deploy to a fitting region)') +
          `: use the profile id for ${region}'s geography (e.g. "${m.modelId.replace(PROFILE_PREFIX, `${geographyOf(region)}.`)}").`,
      );
    }
  }
  return problems;
}

function geographyOf(region: string): string {
  if (region.startsWith('us-gov-')) return 'us-gov';
  if (region.startsWith('us-')) return 'us';
  if (region.startsWith('eu-')) return 'eu';
  if (region.startsWith('ca-')) return 'ca';
  if (region.startsWith('ap-')) return 'apac';
  return 'global';
}

/** The stack's region when known at synth time. */
export function concreteRegion(scope: Construct): string | undefined {
  const r = Stack.of(scope).region;
  return Token.isUnresolved(r) ? undefined : r;
}
