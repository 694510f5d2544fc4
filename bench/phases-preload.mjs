/**
 * Preload for bench/phases.ts (`node --import ./bench/phases-preload.mjs ...`): where a proxy's time
 * goes on each request, from node:http's own diagnostics channels (no change to the code measured).
 * Per request handled one at a time (the sequential shape):
 * - `before`: the request's head parsed -> the upstream request created;
 * - `upstream`: the upstream request created -> the upstream answer's head parsed;
 * - `after`: the upstream answer's head parsed -> the response finished (handed to the socket).
 * Also counted: the garbage collections (perf_hooks 'gc' entries) by kind, with their pauses.
 * SIGUSR2 writes the phases recorded since the last signal to BENCH_PHASES_DIR/phases-<pid>.json
 * (JSON arrays of microseconds, and `gc`: { kind: [count, total pause in microseconds] }) and
 * starts over.
 */
import { subscribe } from 'node:diagnostics_channel';
import { renameSync, writeFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { GC_KINDS } from './gc-kinds.mjs';

let gc = {};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = GC_KINDS[e.detail?.kind] ?? 'other';
    const k = (gc[kind] ??= [0, 0]);
    k[0]++;
    k[1] += Math.round(e.duration * 1000);
  }
}).observe({ entryTypes: ['gc'] });

let current;
let phases = { before: [], upstream: [], after: [] };
subscribe('http.server.request.start', () => {
  current = { start: performance.now() };
});
subscribe('http.client.request.start', () => {
  if (current && current.sent === undefined) current.sent = performance.now();
});
subscribe('http.client.response.finish', () => {
  if (current?.sent !== undefined && current.answered === undefined) current.answered = performance.now();
});
subscribe('http.server.response.finish', () => {
  const r = current;
  current = undefined;
  if (r?.answered === undefined) return;
  const end = performance.now();
  phases.before.push(Math.round((r.sent - r.start) * 1000));
  phases.upstream.push(Math.round((r.answered - r.sent) * 1000));
  phases.after.push(Math.round((end - r.answered) * 1000));
});
process.on('SIGUSR2', () => {
  // Written whole, then renamed: the file is complete when it appears (bench/procs.ts dumpOnSignal).
  const file = `${process.env.BENCH_PHASES_DIR ?? '.'}/phases-${process.pid}.json`;
  writeFileSync(`${file}.part`, JSON.stringify({ ...phases, gc }));
  renameSync(`${file}.part`, file);
  phases = { before: [], upstream: [], after: [] };
  gc = {};
});
