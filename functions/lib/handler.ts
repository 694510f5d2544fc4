import middy from '@middy/core';
import { Logger } from '@aws-lambda-powertools/logger';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { Gateway } from '../../shared/gateway.ts';
import { eventToRequest, responseMetadata } from './apigw.ts';
import { lambdaConfig } from './config.ts';
import { resolveSecrets } from './secrets.ts';
import { lambdaSinks } from './sinks.ts';
import { xraySpans } from './xray.ts';

export interface LambdaEntryOptions {
  /**
   * `admin`: the function behind the IAM-authorized `/admin` routes. API Gateway has verified the
   * caller's SigV4 signature, so the caller's IAM ARN is passed to the core as the admin principal.
   * `gateway`: the model routes; callers authenticate with gateway keys inside the core.
   */
  role: 'gateway' | 'admin';
}

/**
 * A streaming Lambda handler around the shared core: an API Gateway REST proxy event in, a streamed
 * HTTP response out (status and headers first, then the body as the core produces it). Config,
 * provider secrets and sinks are set up once per cold start; nothing else lives here.
 */
export async function createLambdaHandler(opts: LambdaEntryOptions) {
  const serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? 'llm-gateway';
  const logger = new Logger({ serviceName });
  // X-Ray (active tracing, set by the stack): subsegments for the request, each upstream attempt,
  // store calls and the log export. Outgoing HTTP is not auto-captured: the core's spans name
  // those calls (provider/model) and keep concurrent requests apart.
  const tracer = new Tracer({ serviceName, captureHTTPsRequests: false });
  const config = lambdaConfig();
  // Provider keys from Secrets Manager, read once per cold start.
  const env = await resolveSecrets(process.env, undefined, (message, extra) => logger.warn(message, extra));
  const gateway = new Gateway({
    config,
    env,
    // Firehose when LOG_STREAM_NAME is set (else one log line per request), plus EMF metrics.
    sinks: lambdaSinks({ logger, config, env: process.env }),
    onSinkError: (err) => logger.error('log sink failed', { error: String(err) }),
    spans: xraySpans(tracer, serviceName),
  });

  /** Work that finishes after the client has its bytes (log writes, usage settlement). */
  const pending = new Set<Promise<unknown>>();
  const waitUntil = (p: Promise<unknown>) => {
    pending.add(p);
    void p.finally(() => pending.delete(p)).catch(() => {});
  };

  return middy<APIGatewayProxyEvent>({
    streamifyResponse: true,
    // Runs once the body has been piped to the client; the instance does not idle before this ends.
    async requestEnd() {
      await Promise.allSettled([...pending]);
      await gateway.flush();
    },
  }).handler(async (event: APIGatewayProxyEvent, context: Context) => {
    logger.addContext(context);
    const adminPrincipal = opts.role === 'admin' ? event.requestContext?.identity?.userArn ?? undefined : undefined;
    const response = await gateway.handle(eventToRequest(event), { waitUntil, adminPrincipal });
    return { ...responseMetadata(response), body: response.body ?? '' };
  });
}
