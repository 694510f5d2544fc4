import type { ShellLogger } from './lazy-logger.ts';
import type { LogSink, RequestRecord } from '../../shared/telemetry/record.ts';

/** Writes each request record as one structured CloudWatch log line. */
export class LoggerSink implements LogSink {
  constructor(private readonly logger: Pick<ShellLogger, 'info'>) {}
  write(record: RequestRecord): void {
    this.logger.info('request', { request: record });
  }
}
