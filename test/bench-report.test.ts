import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LoadResult } from '../bench/load.ts';
import { goals, loadWarnings, printGoals, ratio } from '../bench/report.ts';

/**
 * How `npm run bench` judges its latency goals when a run's noise exceeds the overheads it
 * compares. The rows are the load results of a real run (bench/results/2026-12-02T13-17-53-179Z.json):
 * at 64 connections the mock upstream alone (direct) answered at 7,942 req/s, no faster than the
 * proxies in front of it, and the work floor's p50 and p99 came out below direct's.
 */

function row(target: string, shape: 'sequential' | 'concurrent', rps: number, p50Ms: number, p99Ms: number): LoadResult {
  return {
    target,
    shape,
    connections: shape === 'sequential' ? 1 : 64,
    durationS: 6,
    requests: rps * 6,
    rps,
    p50Ms,
    p90Ms: p50Ms,
    p99Ms,
    meanMs: p50Ms,
    non2xx: 0,
    errors: 0,
    cpuUsPerReq: null,
    bgCpuUsPerReq: null,
    storeCpuUsPerReq: null,
    storeCalls: null,
    storeCallsPerReq: null,
  };
}

const RUN: LoadResult[] = [
  row('direct', 'sequential', 12127, 0.06, 0.272),
  row('floor', 'sequential', 4250, 0.194, 0.776),
  row('work-floor', 'sequential', 3705, 0.219, 0.81),
  row('ours', 'sequential', 3007, 0.277, 1.108),
  row('direct', 'concurrent', 7942, 7.324, 32.644),
  row('floor', 'concurrent', 7154, 7.931, 26.189),
  row('work-floor', 'concurrent', 8155, 7.268, 26.195),
  row('ours', 'concurrent', 5365, 9.791, 43.895),
];

test('a target measured faster than the upstream alone gives no ratio, so no goal passes on it', () => {
  // The work floor's p50 was 0.056 ms below direct's: -0.056 / 0.607 used to read -0.092, a PASS.
  assert.equal(ratio(RUN, 'work-floor', 'floor', 'concurrent', 'p50Ms'), null);
  // The floor's p99 was below direct's: no reference to divide by.
  assert.equal(ratio(RUN, 'ours', 'floor', 'concurrent', 'p99Ms'), null);
  const list = goals(RUN, [], []);
  const p50 = list.find((g) => g.goal === 'concurrent p50: ours/floor added latency <= 1.5')!;
  assert.equal(p50.workFloor?.value, null);
  assert.equal(p50.workFloor?.pass, false);
  const p99 = list.find((g) => g.goal === 'concurrent p99: ours/floor added latency <= 1.5')!;
  assert.equal(p99.value, null);
  assert.equal(p99.pass, false);
});

test('ratios of positive added latencies are computed as before', () => {
  // Sequential p50: ours added 0.217 ms, the floor 0.134.
  assert.equal(ratio(RUN, 'ours', 'floor', 'sequential', 'p50Ms')!.toFixed(3), '1.619');
  const seq = goals(RUN, [], []).find((g) => g.goal === 'sequential p50: ours/floor added latency <= 1.5')!;
  assert.equal(seq.pass, false);
  assert.equal(seq.workFloor?.pass, true);
});

test('the run says which percentiles it cannot judge, and why', () => {
  const warnings = loadWarnings(RUN);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!, /^concurrent p50: work-floor measured at or below direct \(7\.324 ms, 7942 req\/s\)/);
  assert.match(warnings[1]!, /^concurrent p99: floor, work-floor measured at or below direct/);
  assert.deepEqual(loadWarnings(RUN.filter((r) => r.shape === 'sequential')), []);
});

test('a goal against Portkey says when the bare proxy itself misses it', () => {
  // Sequential rows of a real run (bench/results/2026-12-02T15-08-59-559Z.json): Portkey added
  // 1.200 ms at p50 and the bare proxy 0.344, a ratio of 0.287, above the goal's 0.25.
  const seq: LoadResult[] = [
    row('direct', 'sequential', 12950, 0.063, 0.175),
    row('floor', 'sequential', 2303, 0.407, 1.101),
    row('work-floor', 'sequential', 2328, 0.409, 0.706),
    row('ours', 'sequential', 1756, 0.529, 1.349),
    row('portkey', 'sequential', 629, 1.263, 10.626),
  ];
  const list = goals(seq, [], []);
  const p50 = list.find((g) => g.goal === 'sequential p50: ours/portkey added latency <= 0.25')!;
  assert.equal(p50.value!.toFixed(3), '0.388');
  assert.equal(p50.pass, false);
  assert.equal(p50.floor?.value!.toFixed(3), '0.287');
  assert.equal(p50.floor?.pass, false);
  assert.equal(p50.workFloor?.pass, false);
  // At p99 the bare proxy is well within it, and so is ours.
  const p99 = list.find((g) => g.goal === 'sequential p99: ours/portkey added latency <= 0.25')!;
  assert.equal(p99.floor?.pass, true);
  assert.equal(p99.pass, true);
  // Goals against the floor carry no floor reference of their own.
  assert.equal(list.find((g) => g.goal === 'sequential p50: ours/floor added latency <= 1.5')!.floor, undefined);
  const lines: string[] = [];
  printGoals(list, (l) => lines.push(l));
  assert.ok(lines.some((l) => l.includes('MISS  sequential p50: ours/portkey added latency <= 0.25: 0.388 [floor 0.287 MISS, work floor 0.288 MISS]')), lines.join('\n'));
});
