import { Agent, request } from 'node:http';
import { median, percentile, round3, type Target } from './load.ts';

/**
 * Streaming through a proxy, measured with timestamps on one clock: the mock upstream writes each
 * SSE event with the CLOCK_MONOTONIC time of its write inside (`system_fingerprint:
 * "bench-<ns>"`), and this client notes process.hrtime.bigint() (the same clock, shared by all
 * processes on the machine) for every read it gets. So:
 *  - first event: client read time minus upstream write time of the stream's first event;
 *  - per event: the same for every event;
 *  - coalescing: events that arrived in one read together with an earlier event (the upstream
 *    wrote each one separately, a gap apart);
 *  - gap distortion: |client gap - upstream gap| between consecutive events.
 */

export const STREAM_BODY = JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Say hello.' }] });

export interface StreamResult {
  target: string;
  requests: number;
  /** Upstream writes per stream (content events + role, finish, usage and [DONE]). */
  upstreamWrites: number;
  /** Median number of reads the client got per stream. */
  clientReadsMedian: number;
  clientReadsMin: number;
  /** Events that arrived glued to an earlier event in the same read, over all streams. */
  coalescedEvents: number;
  firstEventP50Ms: number;
  firstEventP90Ms: number;
  perEventP50Ms: number;
  perEventP99Ms: number;
  gapDistortionP50Ms: number;
  gapDistortionMaxMs: number;
  incomplete: number;
}

const STAMP = /"system_fingerprint":"bench-(\d+)"/g;

interface OneStream {
  reads: { t: bigint; text: string }[];
  complete: boolean;
}

function once(target: Target, agent: Agent): Promise<OneStream> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${target.url}${target.path}`);
    const reads: OneStream['reads'] = [];
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(STREAM_BODY), ...target.headers } },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (text: string) => reads.push({ t: process.hrtime.bigint(), text }));
        res.on('end', () => resolve({ reads, complete: res.statusCode === 200 && reads.some((r) => r.text.includes('[DONE]')) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('stream timed out')));
    req.on('error', reject);
    req.end(STREAM_BODY);
  });
}

/** Streams run at once in the warm-up burst. */
export const BURST_CONCURRENCY = 20;

/**
 * `n` streams one at a time, measured, after `warmup` (default 5) unmeasured ones on the same
 * connection. Before those, `burst` (default none) unmeasured streams BURST_CONCURRENCY at a time: each target starts fresh for this
 * test, and a proxy that has relayed a few streams only still runs its stream code in V8's
 * interpreter (ours' first event took about twice as long after 45 streams as after 300).
 */
export async function measureStreaming(target: Target, n: number, upstreamWrites: number, { warmup = 5, burst = 0 }: { warmup?: number; burst?: number } = {}): Promise<StreamResult> {
  if (burst > 0) {
    const warm = new Agent({ keepAlive: true, maxSockets: BURST_CONCURRENCY });
    try {
      for (let done = 0; done < burst; done += BURST_CONCURRENCY) {
        await Promise.all(Array.from({ length: Math.min(BURST_CONCURRENCY, burst - done) }, () => once(target, warm)));
      }
    } finally {
      warm.destroy();
    }
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const first: number[] = [];
  const perEvent: number[] = [];
  const gaps: number[] = [];
  const readsPer: number[] = [];
  let coalesced = 0;
  let incomplete = 0;
  try {
    for (let i = 0; i < warmup + n; i++) {
      const s = await once(target, agent);
      if (i < warmup) continue;
      if (!s.complete) incomplete++;
      readsPer.push(s.reads.length);
      const events: { sent: bigint; got: bigint }[] = [];
      for (const r of s.reads) {
        let inRead = 0;
        for (const m of r.text.matchAll(STAMP)) {
          events.push({ sent: BigInt(m[1]!), got: r.t });
          if (inRead++ > 0) coalesced++;
        }
      }
      if (!events.length) {
        incomplete++;
        continue;
      }
      first.push(ms(events[0]!.got - events[0]!.sent));
      for (let k = 0; k < events.length; k++) {
        perEvent.push(ms(events[k]!.got - events[k]!.sent));
        if (k > 0) gaps.push(Math.abs(ms(events[k]!.got - events[k - 1]!.got) - ms(events[k]!.sent - events[k - 1]!.sent)));
      }
    }
  } finally {
    agent.destroy();
  }
  const sortedEv = Float64Array.from(perEvent).sort();
  const sortedFirst = Float64Array.from(first).sort();
  return {
    target: target.name,
    requests: n,
    upstreamWrites,
    clientReadsMedian: median(readsPer),
    clientReadsMin: Math.min(...readsPer),
    coalescedEvents: coalesced,
    firstEventP50Ms: round3(percentile(sortedFirst, 50)),
    firstEventP90Ms: round3(percentile(sortedFirst, 90)),
    perEventP50Ms: round3(percentile(sortedEv, 50)),
    perEventP99Ms: round3(percentile(sortedEv, 99)),
    gapDistortionP50Ms: round3(median(gaps)),
    gapDistortionMaxMs: round3(gaps.length ? Math.max(...gaps) : NaN),
    incomplete,
  };
}

function ms(ns: bigint): number {
  return Number(ns) / 1e6;
}
