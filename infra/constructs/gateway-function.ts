import { Duration } from 'aws-cdk-lib';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';
import type { GatewayConfig } from '../../shared/config/schema.ts';
import { configDefine, ESM_REQUIRE_BANNER, LAMBDA_NODE_TARGET } from '../bundling.ts';

export interface GatewayFunctionProps {
  config: GatewayConfig;
  /** Entry file under functions/, e.g. 'gateway'. */
  entry: string;
  memorySize?: number;
  timeout?: Duration;
  environment?: Record<string, string>;
}

/** A Lambda entry from functions/, bundled locally with esbuild (no Docker), Node 22 on arm64. */
export class GatewayFunction extends Construct {
  readonly fn: NodejsFunction;

  constructor(scope: Construct, id: string, props: GatewayFunctionProps) {
    super(scope, id);
    this.fn = new NodejsFunction(this, 'Fn', {
      entry: fileURLToPath(new URL(`../../functions/${props.entry}.ts`, import.meta.url)),
      handler: 'handler',
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 1024,
      timeout: props.timeout ?? Duration.minutes(15),
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: 'llm-gateway',
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
      },
    });
  }
}
