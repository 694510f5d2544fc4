import { App } from 'aws-cdk-lib';
import { ConfigError, loadConfigFile } from '../shared/config/load.ts';
import { GatewayStack } from './stack.ts';

// The configuration is validated here, at synth time, and again at each cold start.
let config;
try {
  config = loadConfigFile();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}
const app = new App();
new GatewayStack(app, process.env.GATEWAY_STACK_NAME ?? 'LlmGateway', {
  config,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
app.synth();
