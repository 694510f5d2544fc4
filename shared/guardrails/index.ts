import { createHash } from 'node:crypto';
import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';
import { canonicalJson } from '../cache/entry.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { BedrockGuardrail } from './bedrock.ts';
import { CompiledProfile, GuardrailBlock, promptText } from './engine.ts';
import type { GuardrailsConfig } from './schema.ts';

export { GuardrailBlock } from './engine.ts';
export type { GuardrailsConfig } from './schema.ts';

/** Counters since start (per instance). */
export interface GuardrailStats {
  checked: number;
  blocked: number;
  redacted: number;
}

/** What the input check hands back to the pipeline. */
export interface GuardedRequest {
  req: ChatRequest;
  rawBody: Record<string, unknown>;
  /** Wraps the answer's events with the output checks; absent when the profile has none. */
  output?: (events: AsyncIterator<StreamEvent>) => AsyncIterator<StreamEvent>;
  /** The profile applied: its name and a hash of its configuration (part of the response cache's key). */
  profile?: string;
}

/** The request field that caps output tokens, per front door (for clamping a raw body). */
function maxTokensKey(door: FrontDoor, rawBody: Record<string, unknown>): string {
  if (door === 'openai-responses') return 'max_output_tokens';
  if (door === 'openai-chat') return 'max_completion_tokens' in rawBody ? 'max_completion_tokens' : 'max_tokens';
  return 'max_tokens';
}

/**
 * Guardrails: one profile per request, chosen by the key's id, then its team, then the model name,
 * then `*`. Input checks run before the rate limits and the cache; output checks wrap the answer's
 * events. Outcomes go to the log record (`guardrail`, `guardrailReason`) and so to the metrics.
 */
export class Guardrails {
  readonly stats: GuardrailStats = { checked: 0, blocked: 0, redacted: 0 };
  private readonly profiles = new Map<string, { compiled: CompiledProfile; bedrock?: BedrockGuardrail; id: string }>();

  constructor(
    private readonly cfg: GuardrailsConfig,
    env: Record<string, string | undefined>,
  ) {
    for (const [name, p] of Object.entries(cfg.profiles)) {
      const id = `${name}:${createHash('sha256').update(canonicalJson(p)).digest('base64url').slice(0, 16)}`;
      this.profiles.set(name, { compiled: new CompiledProfile(name, p), bedrock: p.bedrock ? new BedrockGuardrail(p.bedrock, env) : undefined, id });
    }
  }

  private profileFor(trace: RequestTrace, model: string): string | undefined {
    const a = this.cfg.apply;
    const { keyId, team } = trace.record;
    return (keyId && a.keys[keyId]) || (team && a.teams[team]) || a.models[model] || a.models['*'] || undefined;
  }

  /**
   * Check a request (throws a 400 `guardrail_blocked` GatewayError when a rule blocks); returns the
   * request to send on (redacted, capped) and the output filter.
   */
  async checkInput(trace: RequestTrace, req: ChatRequest, rawBody: Record<string, unknown>, door: FrontDoor, signal?: AbortSignal): Promise<GuardedRequest> {
    const name = this.profileFor(trace, req.model);
    const p = name ? this.profiles.get(name) : undefined;
    if (!p) return { req, rawBody };
    this.stats.checked++;
    const record = trace.record;
    try {
      const checked = p.compiled.checkInput(req, rawBody, maxTokensKey(door, rawBody));
      if (p.bedrock?.applies('input')) {
        const reason = await p.bedrock.assess(promptText(checked.req), 'input', signal);
        if (reason) throw new GuardrailBlock('bedrock', `the Amazon Bedrock guardrail (${reason})`, 'input');
      }
      record.guardrail = checked.verdict.outcome;
      if (checked.verdict.rules.length) {
        record.guardrailReason = checked.verdict.rules.join(',');
        this.stats.redacted++;
      }
      const wantsOutput = p.compiled.hasOutputRules() || p.bedrock?.applies('output');
      return {
        req: checked.req,
        rawBody: checked.rawBody,
        output: wantsOutput ? (events) => this.filterOutput(p, events, trace) : undefined,
        profile: p.id,
      };
    } catch (err) {
      if (err instanceof GuardrailBlock) this.block(trace, err);
      throw err;
    }
  }

  private block(trace: RequestTrace, err: GuardrailBlock): void {
    this.stats.blocked++;
    trace.record.guardrail = 'blocked';
    trace.record.guardrailReason = err.rule;
  }

  private filterOutput(p: { compiled: CompiledProfile; bedrock?: BedrockGuardrail }, events: AsyncIterator<StreamEvent>, trace: RequestTrace): AsyncIterator<StreamEvent> {
    const used = new Set<string>();
    let inner = p.compiled.hasOutputRules() ? p.compiled.filterOutput(events, used) : events;
    if (p.bedrock?.applies('output')) inner = bedrockOutput(p.bedrock, inner);
    const note = () => {
      if (used.size && trace.record.guardrail !== 'blocked') {
        trace.record.guardrail = 'redacted';
        const before = trace.record.guardrailReason ? trace.record.guardrailReason.split(',') : [];
        trace.record.guardrailReason = [...new Set([...before, ...used])].join(',');
      }
    };
    return {
      next: async () => {
        try {
          const r = await inner.next();
          if (r.done) {
            note();
            if (used.size) this.stats.redacted++;
          }
          return r;
        } catch (err) {
          if (err instanceof GuardrailBlock) {
            this.block(trace, err);
            // The answer is refused: stop the upstream call (and release its attempt's timers) now.
            void Promise.resolve(events.return?.()).catch(() => {});
          }
          throw err;
        }
      },
      return: async (value?: unknown) => (await inner.return?.(value as never)) ?? { done: true, value: undefined },
    };
  }

  close(): void {
    for (const p of this.profiles.values()) p.bedrock?.close();
  }
}

/**
 * Bedrock Guardrails on the answer: the text is assessed once it is complete, before the events
 * that end the answer (finish, usage) are released; text already streamed has reached the client,
 * so an intervention ends a stream with an error event (and a non-streamed answer with a 400).
 */
function bedrockOutput(g: BedrockGuardrail, events: AsyncIterator<StreamEvent>): AsyncIterator<StreamEvent> {
  let text = '';
  let checked = false;
  const held: StreamEvent[] = [];
  let ended = false;
  const check = async () => {
    if (checked) return;
    checked = true;
    const reason = await g.assess(text, 'output');
    if (reason) throw new GuardrailBlock('bedrock', `the Amazon Bedrock guardrail (${reason})`, 'output');
  };
  return {
    next: async () => {
      for (;;) {
        if (held.length) return { done: false, value: held.shift()! };
        if (ended) return { done: true, value: undefined };
        const r = await events.next();
        if (r.done) {
          ended = true;
          await check();
          continue;
        }
        const ev = r.value;
        if (ev.type === 'text') text += ev.delta;
        if (ev.type === 'finish' || ev.type === 'usage') {
          await check();
        }
        return { done: false, value: ev };
      }
    },
    return: async (value?: unknown) => (await events.return?.(value as never)) ?? { done: true, value: undefined },
  };
}
