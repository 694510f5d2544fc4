/**
 * Micro-benchmark of the in-process costs the cache and guardrails add to a request (run with
 * `npx tsx bench/guardrails-cache.ts`): the streaming output filter per answer, and encoding /
 * decoding a cache entry. Prints times and ratios against a plain pass over the same events.
 * Bounded: a fixed number of iterations, no network.
 */
import type { StreamEvent } from '../shared/core/types.ts';
import { compactEvents, decodeEntry, encodeEntry, type CacheEntry } from '../shared/cache/entry.ts';
import { CompiledProfile } from '../shared/guardrails/engine.ts';
import { guardrailProfileSchema } from '../shared/guardrails/schema.ts';

const WORDS = 'the quick brown fox jumps over the lazy dog while streaming tokens arrive in small pieces'.split(' ');
function answer(chunks: number): StreamEvent[] {
  const out: StreamEvent[] = [{ type: 'start', id: 'x', model: 'm' }];
  for (let i = 0; i < chunks; i++) out.push({ type: 'text', delta: `${WORDS[i % WORDS.length]} ` });
  out.push({ type: 'finish', reason: 'stop' }, { type: 'usage', usage: { inputTokens: 100, outputTokens: chunks } });
  return out;
}

function iterate(evs: StreamEvent[]): AsyncIterator<StreamEvent> {
  let i = 0;
  return { next: async () => (i < evs.length ? { done: false, value: evs[i++]! } : { done: true, value: undefined }) };
}

async function drain(it: AsyncIterator<StreamEvent>): Promise<number> {
  let n = 0;
  for (let r = await it.next(); !r.done; r = await it.next()) n++;
  return n;
}

async function time(label: string, runs: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  for (let i = 0; i < Math.min(100, runs); i++) await fn();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await fn();
  const ms = (performance.now() - t0) / runs;
  console.log(`${label.padEnd(48)} ${(ms * 1000).toFixed(1).padStart(9)} us/answer`);
  return ms;
}

const profile = new CompiledProfile(
  'bench',
  guardrailProfileSchema.parse({ rules: [{ name: 'pii', detect: ['email', 'phone', 'card', 'iban', 'aws_access_key'], action: 'redact', on: ['output'] }], holdBackChars: 128 }),
);

for (const chunks of [200, 2000]) {
  const evs = answer(chunks);
  const runs = chunks > 1000 ? 30 : 200;
  const base = await time(`plain pass, ${chunks} chunks`, runs, () => drain(iterate(evs)));
  const filtered = await time(`output guardrails (5 detectors), ${chunks} chunks`, runs, () => drain(profile.filterOutput(iterate(evs), new Set())));
  console.log(`  ratio filtered/plain: ${(filtered / base).toFixed(1)}x; per chunk: ${(((filtered - base) * 1000) / chunks).toFixed(2)} us`);
  const entry: CacheEntry = { v: 1, provider: 'p', upstreamModel: 'm', door: 'openai-chat', storedAt: 0, events: compactEvents(evs) };
  const body = encodeEntry(entry);
  await time(`cache entry encode (${chunks} chunks -> ${body.byteLength} B)`, runs, () => encodeEntry(entry));
  await time(`cache entry decode`, runs, () => decodeEntry(body));
}
