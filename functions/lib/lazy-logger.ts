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
  let invocations = 0;
  const logger = (): Logger => {
    if (!made) {
      made = new Logger({ serviceName });
      // `cold_start` is true only on the first invocation's lines, and the Logger takes its first
      // addContext for the cold start: made on a later invocation, it is given that one first.
      if (context && invocations > 1) made.addContext(context);
      if (context) made.addContext(context);
    }
    return made;
  };
  return {
    addContext: (c) => {
      if (made) return made.addContext(c);
      context = c;
      invocations++;
    },
    info: (input, ...extra) => logger().info(input, ...extra),
    warn: (input, ...extra) => logger().warn(input, ...extra),
    error: (input, ...extra) => logger().error(input, ...extra),
  };
}
