import type { Logger } from '@aws-lambda-powertools/logger';

/** The Powertools Logger's methods the Lambda shell uses. */
export type ShellLogger = Pick<Logger, 'info' | 'warn' | 'error' | 'addContext'>;

export interface LazyShellLogger extends ShellLogger {
  /** Settles when every line logged so far is written (the first line waits for the Logger's module). */
  written(): Promise<void>;
}

type Level = 'info' | 'warn' | 'error';
type Extra = Parameters<Logger['info']> extends [unknown, ...infer R] ? R : never;

/**
 * The Powertools Logger, loaded (`import()`, a chunk of its own in a bundle) and made on its first
 * log line rather than at cold start: its module (with node:console) and its construction are a few
 * ms of the import, and a function whose records go to Firehose (as deployed) may never log a line.
 * Lines logged while it loads are written in order once it is there (the handler awaits `written()`
 * before an invocation ends); until then `addContext` only keeps the invocation's context, which
 * the logger gets when it is made.
 */
export function loggerOnFirstLine(serviceName: string): LazyShellLogger {
  let made: Logger | undefined;
  let making: Promise<void> | undefined;
  let context: Parameters<Logger['addContext']>[0] | undefined;
  let invocations = 0;
  let queued: { level: Level; input: Parameters<Logger['info']>[0]; extra: Extra }[] = [];
  const make = (LoggerClass: typeof Logger) => {
    const logger = new LoggerClass({ serviceName });
    // `cold_start` is true only on the first invocation's lines, and the Logger takes its first
    // addContext for the cold start: made on a later invocation, it is given that one first.
    if (context && invocations > 1) logger.addContext(context);
    if (context) logger.addContext(context);
    made = logger;
    for (const q of queued) logger[q.level](q.input, ...q.extra);
    queued = [];
  };
  const line =
    (level: Level) =>
    (input: Parameters<Logger['info']>[0], ...extra: Extra): void => {
      if (made) return made[level](input, ...extra);
      queued.push({ level, input, extra });
      making ??= import('@aws-lambda-powertools/logger').then(
        (m) => make(m.Logger),
        // The module is shipped with the bundle; should it fail to load, the lines still reach CloudWatch.
        (err: unknown) => {
          for (const q of queued) process.stderr.write(`${JSON.stringify({ level: q.level.toUpperCase(), message: q.input, loggerError: String(err) })}\n`);
          queued = [];
          making = undefined;
        },
      );
    };
  return {
    addContext: (c) => {
      if (made) return made.addContext(c);
      context = c;
      invocations++;
    },
    info: line('info'),
    warn: line('warn'),
    error: line('error'),
    written: () => making ?? Promise.resolve(),
  };
}
