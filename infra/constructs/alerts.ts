import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { ALERT_TOPIC_ENV } from '../../shared/alerts/notifiers.ts';

export interface BudgetAlertTopicProps {
  /** Addresses subscribed to the topic (each confirms the subscription by email). */
  emails: readonly string[];
}

/**
 * The SNS topic budget alerts go to (docs/limits.md, "Budget alerts"): encrypted with a KMS key of
 * its own (rotated), SSL required of publishers, the configured email addresses subscribed.
 * `grantPublish(fn)` lets a function publish (and use the key for it) and names the topic to it.
 */
export class BudgetAlertTopic extends Construct {
  readonly key: Key;
  readonly topic: Topic;

  constructor(scope: Construct, id: string, props: BudgetAlertTopicProps) {
    super(scope, id);
    this.key = new Key(this, 'TopicKey', { enableKeyRotation: true, description: 'LLM gateway budget alert topic' });
    this.topic = new Topic(this, 'Topic', { displayName: 'LLM gateway budget alerts', masterKey: this.key, enforceSSL: true });
    for (const email of props.emails) this.topic.addSubscription(new EmailSubscription(email));
  }

  grantPublish(fn: LambdaFunction): void {
    fn.addEnvironment(ALERT_TOPIC_ENV, this.topic.topicArn);
    // What a publish to an SSE-KMS topic needs, named exactly (Topic.grantPublish adds `kms:GenerateDataKey*`).
    fn.addToRolePolicy(new PolicyStatement({ actions: ['sns:Publish'], resources: [this.topic.topicArn] }));
    this.key.grant(fn, 'kms:GenerateDataKey', 'kms:Decrypt');
  }
}
