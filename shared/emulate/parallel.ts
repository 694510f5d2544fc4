import type { ChoiceEvent, StreamEvent, Usage } from '../core/types.ts';
import type { Router } from '../routing/router.ts';
import { runAttempts, type AttemptLog, type RunInput, type Served } from '../routing/execute.ts';

/**
 * `n > 1` emulated on a translated route (see shared/emulate/choices.ts for when): the N calls, run
 * in parallel and merged into one answer. Loaded on first use (shared/lazy.ts `runChoices`).
 */

/** A same-format answer as events (a route that mixes translating and pass-through targets). */
type ToEvents = (served: Extract<Served, { kind: 'passthrough' }>) => AsyncIterator<StreamEvent> | undefined;

/**
 * Run the N calls and merge them. Each call is the request with one choice (`n` left out of the
 * pass-through body too); `wrap` is applied to each choice's events (output guardrails).
 */
export async function runChoices(router: Router, input: RunInput, n: number, toEvents: ToEvents, wrap?: (events: AsyncIterator<StreamEvent>) => AsyncIterator<StreamEvent>): Promise<Served> {
  const rawBody = { ...input.rawBody };
  delete rawBody.n;
  const req = { ...input.req };
  delete req.n;
  const records = Array.from({ length: n }, () => ({}) as NonNullable<RunInput['record']>);
  const settled = await Promise.allSettled(records.map((record) => runAttempts(router, { ...input, req, rawBody, record })));
  // One record for the request: every call's attempts, in choice order.
  const r = input.trace.record;
  r.attemptLog = records.flatMap((x) => (x.attemptLog ?? []) as AttemptLog[]);
  r.attempts = r.attemptLog.length;
  r.fallbacks = Math.max(0, ...records.map((x) => x.fallbacks ?? 0));
  // Until the answer is served, the record names a target that was tried (so a failure says where).
  const tried = records.find((x) => x.provider);
  if (tried) Object.assign(r, { provider: tried.provider, upstreamModel: tried.upstreamModel });
  const failed = settled.find((s) => s.status === 'rejected');
  const parts: { first: IteratorResult<StreamEvent>; events: AsyncIterator<StreamEvent> }[] = [];
  for (const s of settled) {
    if (s.status !== 'fulfilled') continue;
    const served = s.value;
    if (served.kind === 'events') parts.push({ first: served.first, events: served.events });
    else {
      const events = toEvents(served);
      if (!events) {
        void served.response.body?.cancel().catch(() => {});
        continue;
      }
      parts.push({ first: await events.next(), events });
    }
  }
  if (failed || parts.length < n) {
    for (const p of parts) void Promise.resolve(p.events.return?.()).catch(() => {});
    if (failed) throw failed.reason;
    throw new Error('A choice was served in a format the gateway cannot merge.');
  }
  const first = settled[0]!.status === 'fulfilled' ? settled[0]!.value : undefined;
  const merged = mergeChoices(parts.map((p) => (wrap ? { first: undefined, events: wrap(replay(p.first, p.events)) } : p)));
  return { kind: 'events', target: first!.target, first: await merged.next(), events: merged };
}

/** An iterator that gives `first` again before the rest. */
function replay(first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>): AsyncIterator<StreamEvent> {
  let used = false;
  return {
    next: () => (used ? events.next() : ((used = true), Promise.resolve(first))),
    return: (v?: unknown) => events.return?.(v as never) ?? Promise.resolve({ done: true, value: undefined }),
  };
}

/** The choices' events interleaved as they arrive, each with its `choice`; one summed usage at the end. */
async function* mergeChoices(parts: { first?: IteratorResult<StreamEvent>; events: AsyncIterator<StreamEvent> }[]): AsyncGenerator<ChoiceEvent> {
  const usage: Usage = { inputTokens: 0, outputTokens: 0 };
  let sawUsage = false;
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<StreamEvent> }>>();
  const pull = (i: number) => pending.set(i, parts[i]!.events.next().then((r) => ({ i, r })));
  parts.forEach((p, i) => (p.first ? pending.set(i, Promise.resolve({ i, r: p.first })) : pull(i)));
  try {
    while (pending.size) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(i);
        continue;
      }
      pull(i);
      const ev = r.value;
      if (ev.type !== 'usage') {
        yield { ...ev, choice: i };
        continue;
      }
      sawUsage = true;
      usage.inputTokens += ev.usage.inputTokens;
      usage.outputTokens += ev.usage.outputTokens;
      if (ev.usage.cacheReadTokens !== undefined) usage.cacheReadTokens = (usage.cacheReadTokens ?? 0) + ev.usage.cacheReadTokens;
      if (ev.usage.cacheWriteTokens !== undefined) usage.cacheWriteTokens = (usage.cacheWriteTokens ?? 0) + ev.usage.cacheWriteTokens;
    }
    if (sawUsage) yield { type: 'usage', usage };
  } finally {
    // Stop the choices still running (a failure, or the client left).
    for (const i of pending.keys()) void Promise.resolve(parts[i]!.events.return?.()).catch(() => {});
  }
}
