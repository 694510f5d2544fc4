import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ALERT_TOPIC_ENV } from '../shared/alerts/notifiers.ts';
import { loadConfigFile, parseConfig } from '../shared/config/load.ts';
import { GatewayStack } from '../infra/stack.ts';

/** The budget alert topic (infra/constructs/alerts.ts) as `cdk synth` builds it, bundling skipped. */
const shipped = loadConfigFile('gateway.config.yaml');
const CDK_CONTEXT: Record<string, unknown> = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')).context;
const app = () => new App({ context: { ...CDK_CONTEXT, 'aws:cdk:bundling-stacks': [] } });
const ENV = { account: '123456789012', region: 'us-east-1' };

function synth(config = shipped) {
  const stack = new GatewayStack(app(), 'AlertsTest', { config, env: ENV });
  return Template.fromStack(stack);
}

describe('budget alert topic', () => {
  const emails = ['finops@example.com', 'lead@example.com'];
  const template = synth(parseConfig({ ...structuredClone(shipped), budgetAlerts: { emails } }));
  const topicId = Object.keys(template.findResources('AWS::SNS::Topic', { Properties: { DisplayName: 'LLM gateway budget alerts' } }))[0]!;

  it('is an SNS topic encrypted with its own rotated KMS key, SSL required', () => {
    assert.ok(topicId, 'the budget alert topic exists');
    const topic = template.findResources('AWS::SNS::Topic')[topicId]!;
    const keyId = topic.Properties.KmsMasterKeyId['Fn::GetAtt'][0] as string;
    assert.equal(template.findResources('AWS::KMS::Key')[keyId]!.Properties.EnableKeyRotation, true);
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId }],
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('subscribes the configured email addresses', () => {
    for (const email of emails) template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: email, TopicArn: { Ref: topicId } });
  });

  it('the gateway function may publish (and use the key for it) and gets the topic in its environment; the admin function neither', () => {
    const fns = template.findResources('AWS::Lambda::Function');
    const env = (name: string) => Object.entries(fns).find(([id]) => id.startsWith(name))![1].Properties.Environment.Variables;
    assert.deepEqual(env('GatewayFn')[ALERT_TOPIC_ENV], { Ref: topicId });
    assert.equal(env('AdminFn')[ALERT_TOPIC_ENV], undefined);
    const policies = Object.entries(template.findResources('AWS::IAM::Policy'));
    const statements = (name: string) => policies.filter(([id]) => id.startsWith(name)).flatMap(([, p]) => p.Properties.PolicyDocument.Statement as any[]);
    assert.ok(statements('GatewayFn').some((s) => s.Action === 'sns:Publish' && JSON.stringify(s.Resource) === JSON.stringify({ Ref: topicId })), 'sns:Publish on the topic');
    const keyId = template.findResources('AWS::SNS::Topic')[topicId]!.Properties.KmsMasterKeyId['Fn::GetAtt'][0];
    assert.ok(
      statements('GatewayFn').some((s) => [s.Action].flat().includes('kms:GenerateDataKey') && JSON.stringify(s.Resource).includes(keyId)),
      'the key may encrypt for the topic',
    );
    assert.ok(!JSON.stringify(statements('AdminFn')).includes('sns:Publish'));
  });

  it('is not built when keys are off (no budgets) or no threshold is configured', () => {
    for (const config of [parseConfig({ ...structuredClone(shipped), auth: { required: false } }), parseConfig({ ...structuredClone(shipped), budgetAlerts: { thresholds: [] } })]) {
      assert.equal(Object.keys(synth(config).findResources('AWS::SNS::Topic', { Properties: { DisplayName: 'LLM gateway budget alerts' } })).length, 0);
    }
  });

  it('keeps cdk-nag AwsSolutions clean', () => {
    const a = app();
    new GatewayStack(a, 'AlertsNag', { config: parseConfig({ ...structuredClone(shipped), budgetAlerts: { emails } }), env: ENV });
    Validations.of(a).addPlugins(new AwsSolutionsChecks(a));
    assert.doesNotThrow(() => a.synth(), 'no unacknowledged cdk-nag finding');
  });
});
