import { Readable } from 'node:stream';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { Gateway } from '../../shared/gateway.ts';
import { bodyReader, hasBody, responseBytes } from '../../shared/http/bytes.ts';
import { eventToRequest, responseMetadata } from './apigw.ts';
import { lambdaConfig } from './config.ts';
import { loggerOnFirstLine } from './lazy-logger.ts';
import { ProviderSecrets, secretMaxAgeMs } from './secrets.ts';
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
  const logger = loggerOnFirstLine(serviceName);
  const config = lambdaConfig();
  // Provider keys from Secrets Manager: read at cold start, then again when older than a minute,
  // so a key put after deploy (or rotated) reaches warm instances without a cold start.
  const secrets = new ProviderSecrets(process.env, { maxAgeMs: secretMaxAgeMs(process.env), warn: (message, extra) => logger.warn(message, extra) });
  // Firehose when LOG_STREAM_NAME is set (else one log line per request), plus EMF metrics; shared
  // by every Gateway this instance builds.
  const sinks = lambdaSinks({ logger, config, env: process.env });
  // X-Ray (active tracing, set by the stack): subsegments for the request, each upstream attempt,
  // store calls and the log export, sent to the daemon by a light emitter (functions/lib/xray.ts).
  // Outgoing HTTP is not auto-captured: the core's spans name those calls (provider/model) and
  // keep concurrent requests apart.
  const spans = xraySpans(process.env, serviceName);
  const build = (env: Record<string, string | undefined>) =>
    new Gateway({ config, env, sinks, onSinkError: (err) => logger.error('log sink failed', { error: String(err) }), spans, logger: { error: (m, f) => logger.error(m, f ?? {}), warn: (m, f) => logger.warn(m, f ?? {}) } });
  let gateway = build((await secrets.current()).env);

  /** Work that finishes after the client has its bytes (log writes, usage settlement). */
  const pending = new Set<Promise<unknown>>();
  const waitUntil = (p: Promise<unknown>) => {
    pending.add(p);
    void p.finally(() => pending.delete(p)).catch(() => {});
  };
  /** Settle the pending work and flush the logs: run however the response stream ended. */
  const settle = async (g: Gateway) => {
    await Promise.allSettled([...pending]);
    await g.flush().catch((err) => logger.error('log flush failed', { error: String(err) }));
    // Lines logged before the Logger's module was loaded are written once it is.
    await logger.written();
  };

  // middy (streamifyResponse) writes the status and headers first (the runtime's prelude), then
  // pipes the body as the core produces it; a client that goes away cancels the body, which ends
  // the upstream call.
  const inner = middy<APIGatewayProxyEvent>({ streamifyResponse: true }).handler(async (event: APIGatewayProxyEvent, context: Context) => {
    logger.addContext(context);
    const { env, changed } = await secrets.current();
    if (changed) {
      // A provider key was put, rotated or removed: providers read their key when built.
      const previous = gateway;
      gateway = build(env);
      waitUntil(previous.flush());
      logger.info('provider secrets changed; gateway rebuilt');
    }
    const adminPrincipal = opts.role === 'admin' ? event.requestContext?.identity?.userArn ?? undefined : undefined;
    // /iam/{proxy+} is SigV4-authorized by API Gateway: its verified caller ARN maps to a team (shared/auth).
    const iamPrincipal = opts.role === 'gateway' ? event.requestContext?.identity?.userArn ?? undefined : undefined;
    const response = await gateway.handle(eventToRequest(event), { waitUntil, adminPrincipal, iamPrincipal });
    return { ...responseMetadata(response), body: nodeBody(response) };
  });

  // middy runs its end hooks only when the body was piped without error: a client that went away
  // mid-stream would skip them. The settlement and the flush run here instead, whatever happened
  // (the instance does not idle before this handler's promise settles).
  type StreamHandler = (event: APIGatewayProxyEvent, stream: unknown, context: Context) => Promise<void>;
  const streaming = inner as unknown as StreamHandler;
  const settled: StreamHandler = async (event, stream, context) => {
    try {
      await streaming(event, stream, context);
    } finally {
      await settle(gateway);
    }
  };
  return awslambda.streamifyResponse(settled as never) as unknown as StreamHandler;
}

/**
 * A response's body as the Node stream middy pipes to the runtime: an answer whose bytes are whole
 * in one piece; a streamed one read from its source as the client reads (the core's stream frame
 * or an upstream body, read directly: no web stream, and Node's web streams are never loaded). The
 * stream destroyed before its end (the client left) cancels the source, which ends the upstream call.
 */
function nodeBody(response: Response): Readable | string {
  const bytes = responseBytes(response);
  if (bytes) return Readable.from(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  if (!hasBody(response)) return '';
  const reader = bodyReader(response);
  let ended = false;
  return new Readable({
    read() {
      const next = (): Promise<void> =>
        reader.read().then(({ done, value }) => {
          if (done) {
            ended = true;
            this.push(null);
          } else if (value.byteLength === 0) return next();
          else this.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
        });
      next().catch((err: unknown) => this.destroy(err as Error));
    },
    destroy(err, callback) {
      if (ended) return callback(err);
      ended = true;
      reader.cancel(err ?? undefined).then(
        () => callback(err),
        () => callback(err),
      );
    },
  });
}
