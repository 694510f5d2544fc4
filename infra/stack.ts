import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { GatewayConfig } from '../shared/config/schema.ts';
import { GatewayApi } from './constructs/api.ts';
import { GatewayFunction } from './constructs/gateway-function.ts';

export interface GatewayStackProps extends StackProps {
  config: GatewayConfig;
}

export class GatewayStack extends Stack {
  constructor(scope: Construct, id: string, props: GatewayStackProps) {
    super(scope, id, props);
    const gateway = new GatewayFunction(this, 'Gateway', { config: props.config, entry: 'gateway' });
    const api = new GatewayApi(this, 'Api', { handler: gateway.fn });
    new CfnOutput(this, 'GatewayUrl', { value: api.api.url, description: 'Base URL: point OpenAI clients at <url>v1' });
  }
}
