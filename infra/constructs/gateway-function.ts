import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';
import type { GatewayConfig } from '../../shared/config/schema.ts';
import { configDefine, copyLazyModules, ESM_REQUIRE_BANNER, LAMBDA_NODE_TARGET, LAZY_MODULES } from '../bundling.ts';

export interface GatewayFunctionProps {
  config: GatewayConfig;
  /** Entry file under functions/, e.g. 'gateway'. */
  entry: string;
  description: string;
  memorySize?: number;
  reservedConcurrency?: number;
  timeout?: Duration;
  environment?: Record<string, string>;
}

/** A Lambda entry from functions/, bundled locally with esbuild (no Docker), Node 22 on arm64. */
export class GatewayFunction extends Construct {
  readonly fn: NodejsFunction;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: GatewayFunctionProps) {
    super(scope, id);
    const logGroup = (this.logGroup = new LogGroup(this, 'Logs', { retention: props.config.deploy.functions.logRetentionDays, removalPolicy: RemovalPolicy.DESTROY }));
    this.fn = new NodejsFunction(this, 'Fn', {
      entry: fileURLToPath(new URL(`../../functions/${props.entry}.ts`, import.meta.url)),
      handler: 'handler',
      description: props.description,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? props.config.deploy.functions.memoryMb,
      reservedConcurrentExecutions: props.reservedConcurrency,
      timeout: props.timeout ?? Duration.minutes(15),
      tracing: Tracing.ACTIVE,
      logGroup,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: 'llm-gateway',
        POWERTOOLS_METRICS_NAMESPACE: 'LlmGateway',
        POWERTOOLS_LOG_LEVEL: 'INFO',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: LAMBDA_NODE_TARGET,
        minify: true,
        sourceMap: true,
        banner: ESM_REQUIRE_BANNER,
        define: configDefine(props.config),
        forceDockerBundling: false,
        // Bundle the AWS SDK too (the default would leave @aws-sdk/* to the runtime's copy); keep
        // only the lazily loaded modules outside, shipped beside the bundle.
        externalModules: LAZY_MODULES.map((m) => m.specifier),
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir, outputDir) => copyLazyModules(inputDir, outputDir),
        },
      },
    });
  }
}
