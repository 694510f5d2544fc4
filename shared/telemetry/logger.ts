/**
 * Where the core writes its own operational messages (not request records: those go to the sinks).
 * The Lambda shell injects Powertools' Logger; anywhere else, JSON lines on stderr.
 */
export interface GatewayLogger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** One JSON object per line on stderr: `{"level":"ERROR","message":...,...fields}`. */
export const jsonLinesLogger: GatewayLogger = {
  error: (message, fields) => console.error(JSON.stringify({ level: 'ERROR', message, ...fields })),
  warn: (message, fields) => console.error(JSON.stringify({ level: 'WARN', message, ...fields })),
};

/** An error's message (or stack) as a log field, never the object itself. */
export function errorText(err: unknown, stack = false): string {
  const e = err as Error | undefined;
  return String((stack ? e?.stack : e?.message) ?? err);
}
