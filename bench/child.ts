/** Helpers for bench/'s child entry points (kept free of heavy imports). */

/** Announce readiness to the parent (used by the child entry points in bench/). */
export function announceReady(url: string): void {
  process.stdout.write(`${JSON.stringify({ ready: true, url })}\n`);
}

/** Stop a child entry point cleanly on SIGTERM/SIGINT (so --cpu-prof can write its profile). */
export function onStopSignal(close: () => Promise<void>): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
