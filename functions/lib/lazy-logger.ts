import { Logger } from '@aws-lambda-powertools/logger';

/** The Powertools Logger's methods the Lambda shell uses. */
export type ShellLogger = Pick<Logger, 'info' | 'warn' | 'error' | 'addContext'>;

/**
 * The Powertools Logger, made on its first log line rather than at cold start (its construction,
 * environment, formatter and log-level setup, costs a few ms of the import): until then
 * `addContext` only keeps the invocation's context, which the logger gets when it is made. A
 * function whose records go to Firehose may never make it.
 */
export function loggerOnFirstLine(serviceName: string): ShellLogger {
  let made: Logger | undefined;
  let context: Parameters<Logger['addContext']>[0] | undefined;
  const logger = (): Logger => {
    if (!made) {
      made = new Logger({ serviceName });
      if (context) made.addContext(context);
    }
    return made;
  };
  return {
    addContext: (c) => (made ? made.addContext(c) : void (context = c)),
    info: (input, ...extra) => logger().info(input, ...extra),
    warn: (input, ...extra) => logger().warn(input, ...extra),
    error: (input, ...extra) => logger().error(input, ...extra),
  };
}
