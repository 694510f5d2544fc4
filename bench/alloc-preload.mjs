/**
 * Preload for bench/alloc.ts (`node --import ./bench/alloc-preload.mjs ...`): V8's sampling heap
 * profiler over everything the process allocates, objects already collected included (so it
 * counts allocation, not what stays alive); with BENCH_ALLOC_SURVIVORS=1, only objects that
 * survived the young generation (promoted, or still alive when sampled). SIGUSR2 writes the samples taken since the last signal
 * to BENCH_ALLOC_DIR/alloc-<pid>.heapprofile and starts over.
 */
import { Session } from 'node:inspector';
import { renameSync, writeFileSync } from 'node:fs';

const session = new Session();
session.connect();
const post = (method, params = {}) =>
  new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
const start = () =>
  post('HeapProfiler.startSampling', {
    samplingInterval: Number(process.env.BENCH_ALLOC_INTERVAL ?? 512),
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_SURVIVORS !== '1',
  });
await post('HeapProfiler.enable');
await start();
process.on('SIGUSR2', async () => {
  const { profile } = await post('HeapProfiler.stopSampling');
  // Written whole, then renamed: the file is complete when it appears (bench/procs.ts dumpOnSignal).
  const file = `${process.env.BENCH_ALLOC_DIR ?? '.'}/alloc-${process.pid}.heapprofile`;
  writeFileSync(`${file}.part`, JSON.stringify(profile));
  renameSync(`${file}.part`, file);
  await start();
});
