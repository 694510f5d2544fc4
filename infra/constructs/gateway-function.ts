import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Architecture, Function as LambdaFunction, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { LogGroup } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';
import type { GatewayConfig } from '../../shared/config/schema.ts';
import { LAMBDA_RUNTIME_ENV, lambdaCode } from '../bundling.ts';

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

/** A Lambda entry from functions/, bundled locally with esbuild (no Docker; infra/bundling.ts), Node 22 on arm64. */
export class GatewayFunction extends Construct {
  readonly fn: LambdaFunction;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: GatewayFunctionProps) {
    super(scope, id);
    const logGroup = (this.logGroup = new LogGroup(this, 'Logs', { retention: props.config.deploy.functions.logRetentionDays, removalPolicy: RemovalPolicy.DESTROY }));
    this.fn = new LambdaFunction(this, 'Fn', {
      code: lambdaCode(fileURLToPath(new URL(`../../functions/${props.entry}.ts`, import.meta.url)), props.config),
      handler: 'index.handler',
      description: props.description,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? props.config.deploy.functions.memoryMb,
      reservedConcurrentExecutions: props.reservedConcurrency,
      timeout: props.timeout ?? Duration.minutes(15),
      tracing: Tracing.ACTIVE,
      logGroup,
      environment: {
        ...LAMBDA_RUNTIME_ENV,
        POWERTOOLS_SERVICE_NAME: 'llm-gateway',
        POWERTOOLS_METRICS_NAMESPACE: 'LlmGateway',
        POWERTOOLS_LOG_LEVEL: 'INFO',
        ...props.environment,
      },
    });
  }
}
