import { FileLogSink } from './file-sink.ts';
import type { LogSink } from './record.ts';

/** The admin routes served from the local request logs (shared/telemetry/admin-stats.ts). */
export const STATS_PATHS = new Set(['/admin/stats', '/admin/dashboard']);

/** Where the local file sink (if any) keeps records, and how to flush it before reading. */
export function localLogs(sinks: readonly LogSink[]): { logDir?: string; flush?: () => Promise<void> } {
  const file = sinks.find((s): s is FileLogSink => s instanceof FileLogSink);
  return file ? { logDir: file.dir, flush: () => file.flush() } : {};
}
