import middy from '@middy/core';
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { Gateway } from '../shared/gateway.ts';
import { eventToRequest, responseMetadata } from './lib/apigw.ts';
import { lambdaConfig } from './lib/config.ts';
import { LoggerSink } from './lib/logger-sink.ts';

/**
 * Lambda entry for the model routes: an API Gateway REST proxy event in, a streamed HTTP response
 * out (status and headers first, then the body as the core produces it). Everything else lives in
 * the shared core.
 */
const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'llm-gateway' });
const config = lambdaConfig();
const gateway = new Gateway({
  config,
  env: process.env,
  sinks: [new LoggerSink(logger)],
  onSinkError: (err) => logger.error('log sink failed', { error: String(err) }),
});

/** Work that finishes after the client has its bytes (log writes, usage settlement). */
const pending = new Set<Promise<unknown>>();
const waitUntil = (p: Promise<unknown>) => {
  pending.add(p);
  void p.finally(() => pending.delete(p)).catch(() => {});
};

export const handler = middy<APIGatewayProxyEvent>({
  streamifyResponse: true,
  // Runs once the body has been piped to the client; the instance does not idle before this ends.
  async requestEnd() {
    await Promise.allSettled([...pending]);
    await gateway.flush();
  },
}).handler(async (event: APIGatewayProxyEvent, context: Context) => {
  logger.addContext(context);
  const response = await gateway.handle(eventToRequest(event), { waitUntil });
  return { ...responseMetadata(response), body: response.body ?? '' };
});
