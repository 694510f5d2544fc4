/**
 * Preload for bench/tail.ts (`node --import ./bench/tail-preload.mjs ...`): records, with epoch
 * timestamps (performance.timeOrigin + now, comparable across processes on the machine), every
 * garbage collection (start, pause, kind), every outgoing node:http request (start, port) and every
 * `fs/promises.appendFile` (the file log sink's flush). Written as JSON to BENCH_TAIL_FILE when
 * the process exits. It wraps `http.request` and `appendFile` before the server imports them.
 */
import { writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import { PerformanceObserver } from 'node:perf_hooks';

const at = () => performance.timeOrigin + performance.now();
const events = { gcs: [], requests: [], appends: [] };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) events.gcs.push([performance.timeOrigin + e.startTime, e.duration, e.detail?.kind]);
}).observe({ entryTypes: ['gc'] });

const request = http.request;
http.request = function (...args) {
  const opts = args.find((a) => a && typeof a === 'object' && !(a instanceof URL)) ?? {};
  events.requests.push([at(), String(opts.port ?? '')]);
  return request.apply(this, args);
};
const appendFile = fsp.appendFile;
fsp.appendFile = function (...args) {
  events.appends.push(at());
  return appendFile.apply(this, args);
};

process.on('exit', () => writeFileSync(process.env.BENCH_TAIL_FILE, JSON.stringify(events)));
