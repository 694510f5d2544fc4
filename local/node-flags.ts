/**
 * The Node flags the local server runs with (`npm start` in package.json passes them; the benchmark
 * starts our gateway with them too, and test/start-flags.test.ts keeps the two the same).
 *
 * A young generation of 64 MB per semi-space from the start, instead of V8's default that starts at
 * 1 MB and grows only as far as its heuristics take it. The gateway allocates 40-50 KB per request,
 * most of it dead by the end of the request; with a small young generation it scavenges a few times
 * per thousand requests at about 1.3 ms a pause, and the requests a pause lands on make the tail.
 * Measured with bench/ab.ts (this flag set against none, rounds alternating): one request at a time,
 * p99 0.67x (11 rounds, every one below 0.82) and 0.68x (9 rounds), with 1.04-1.07x the throughput;
 * at 64 connections p99 0.69x and 0.81x, throughput 0.96x and 1.08x (inside the A/A spread). 32 MB
 * gave 0.72x one at a time and 0.97x at 64 connections; the maximum alone (64 MB, growing from
 * 1 MB) 0.84x one at a time. The cost is memory, committed as it is used: up to 128 MB more of
 * young generation (two semi-spaces); the benchmark's gateway at 64 connections went from 117 to
 * 212 MB resident. `--min-semi-space-size` is not allowed in NODE_OPTIONS, so the flags are on the
 * command line (the Lambda functions, whose runtime starts node, keep V8's defaults).
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=64', '--min-semi-space-size=64'] as const;
