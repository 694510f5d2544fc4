import { createLambdaHandler } from './lib/handler.ts';

/** Lambda entry for the model and MCP routes (gateway keys are checked in the core). */
export const handler = await createLambdaHandler({ role: 'gateway' });
