import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfigOrExit } from '../shared/config/load.ts';
import { openGatewayProblem } from '../shared/config/deploy.ts';
import { GatewayStack } from './stack.ts';

// The configuration is validated here, at synth time (a bad file stops `cdk synth` with the field
// named), embedded in the function bundles, and validated again at each cold start.
const config = loadConfigOrExit();
// A deployed gateway is never open by accident.
const open = openGatewayProblem(config);
if (open) {
  console.error(open);
  process.exit(1);
}
const app = new App();
// The stack name, which also names its resources: `cdk deploy -c stackName=LlmGatewayStaging`, else
// GATEWAY_STACK_NAME, else deploy.stackName. Two names deploy side by side in one account and region.
const stackName = (app.node.tryGetContext('stackName') as string | undefined) ?? process.env.GATEWAY_STACK_NAME ?? config.deploy.stackName;
new GatewayStack(app, stackName, {
  config,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
// AWS Solutions checks: an unacknowledged finding fails the synth (see infra/nag.ts).
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
