import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { loadConfigFile } from '../shared/config/load.ts';
import { GatewayStack } from '../infra/stack.ts';

describe('CDK stack', () => {
  const app = new App();
  const stack = new GatewayStack(app, 'TestGateway', { config: loadConfigFile('gateway.config.yaml'), env: { account: '123456789012', region: 'eu-west-1' } });
  const template = Template.fromStack(stack);

  it('runs the gateway on Node 22, arm64, with the bundled ESM entry', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Timeout: 900,
      Environment: { Variables: Match.objectLike({ NODE_OPTIONS: '--enable-source-maps', POWERTOOLS_SERVICE_NAME: 'llm-gateway' }) },
    });
  });

  it('puts every route on a Lambda proxy integration in response-streaming mode', () => {
    const methods = template.findResources('AWS::ApiGateway::Method');
    const integrations = Object.values(methods).map((m) => (m as { Properties: { Integration: Record<string, unknown> } }).Properties.Integration);
    assert.ok(integrations.length >= 3);
    for (const i of integrations) {
      assert.equal(i.Type, 'AWS_PROXY');
      assert.equal(i.ResponseTransferMode, 'STREAM');
      assert.equal(i.TimeoutInMillis, 900_000);
      assert.match(JSON.stringify(i.Uri), /2021-11-15\/functions\/.*\/response-streaming-invocations/);
    }
    template.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: '{proxy+}' });
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { EndpointConfiguration: { Types: ['REGIONAL'] } });
  });
});
