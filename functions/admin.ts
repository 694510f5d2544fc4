import { createLambdaHandler } from './lib/handler.ts';

/** Lambda entry for `/admin/*`: API Gateway has authorized the caller with IAM (SigV4). */
export const handler = await createLambdaHandler({ role: 'admin' });
