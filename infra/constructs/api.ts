import { Duration } from 'aws-cdk-lib';
import { EndpointType, LambdaIntegration, ResponseTransferMode, RestApi } from 'aws-cdk-lib/aws-apigateway';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

export interface GatewayApiProps {
  handler: IFunction;
  stageName?: string;
}

/**
 * The public door: a Regional REST API whose model routes reach the gateway Lambda through a proxy
 * integration in response-streaming mode (so the first token leaves as soon as it is produced).
 */
export class GatewayApi extends Construct {
  readonly api: RestApi;

  constructor(scope: Construct, id: string, props: GatewayApiProps) {
    super(scope, id);
    this.api = new RestApi(this, 'Api', {
      restApiName: 'llm-gateway',
      endpointConfiguration: { types: [EndpointType.REGIONAL] },
      deployOptions: { stageName: props.stageName ?? 'prod' },
      // Prompts and answers are never re-encoded by API Gateway: stream mode forbids it.
      minCompressionSize: undefined,
    });
    const integration = new LambdaIntegration(props.handler, {
      proxy: true,
      responseTransferMode: ResponseTransferMode.STREAM,
      timeout: Duration.minutes(15),
      scopePermissionToMethod: false,
    });
    this.api.root.addMethod('ANY', integration);
    this.api.root.addResource('health').addMethod('ANY', integration);
    this.api.root.addResource('v1').addProxy({ defaultIntegration: integration, anyMethod: true });
  }
}
