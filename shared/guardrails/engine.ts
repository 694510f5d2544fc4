import type { ChatMessage, ChatRequest, ContentPart, StreamEvent } from '../core/types.ts';
import { GatewayError } from '../http/errors.ts';
import { DETECTOR_TABLE, findAll, type Found } from './detectors.ts';
import type { GuardrailProfile, GuardrailRule } from './schema.ts';

/**
 * A guardrail profile compiled for use: rule matchers for input and output, limits, and the
 * streaming output filter. Pure (no I/O): Bedrock Guardrails calls live in bedrock.ts.
 */

export type Where = 'input' | 'output';

interface Matcher {
  rule: GuardrailRule;
  detector: string;
  regex: RegExp;
  valid?: (m: string) => boolean;
}

/** What a check decided, for the log record. */
export interface GuardrailVerdict {
  outcome: 'passed' | 'redacted';
  /** Rules that redacted something, in order of first use. */
  rules: string[];
}

export function blockedError(rule: string, what: string, where: Where | 'request'): GatewayError {
  const place = where === 'input' ? 'the prompt' : where === 'output' ? "the model's answer" : 'the request';
  return new GatewayError('invalid_request', `Blocked by the gateway's guardrails (guardrail_blocked): rule "${rule}" matched ${what} in ${place}.`, {
    status: 400,
    code: 'guardrail_blocked',
    headers: { 'x-gateway-guardrail': 'blocked' },
  });
}

/** Thrown (as a GatewayError) by checks; carries the rule for the log record. */
export class GuardrailBlock extends GatewayError {
  constructor(readonly rule: string, what: string, where: Where | 'request') {
    const e = blockedError(rule, what, where);
    super(e.kind, e.message, { status: e.status, code: e.code, headers: e.headers });
  }
}

export class CompiledProfile {
  private readonly matchers: Record<Where, Matcher[]> = { input: [], output: [] };

  constructor(
    readonly name: string,
    readonly profile: GuardrailProfile,
  ) {
    for (const rule of profile.rules) {
      const ms: Matcher[] = [
        ...rule.detect.map((d) => ({ rule, detector: d, regex: DETECTOR_TABLE[d].regex, valid: DETECTOR_TABLE[d].valid })),
        ...rule.patterns.map((p) => ({ rule, detector: 'pattern', regex: new RegExp(p, rule.caseSensitive ? 'gu' : 'giu') })),
      ];
      for (const where of rule.on) this.matchers[where].push(...ms);
    }
  }

  hasOutputRules(): boolean {
    return this.matchers.output.length > 0;
  }

  /** Every match of the rules that look at `where`, sorted by position (overlaps resolved to the earliest, longest). */
  scan(text: string, where: Where): (Found & { action: 'block' | 'redact' })[] {
    const all: (Found & { action: 'block' | 'redact' })[] = [];
    for (const m of this.matchers[where]) {
      for (const f of findAll(m, text, m.rule.name, m.detector)) all.push({ ...f, action: m.rule.action });
    }
    all.sort((a, b) => a.start - b.start || b.end - a.end);
    const out: typeof all = [];
    let reach = -1;
    for (const f of all) {
      if (f.start >= reach) {
        out.push(f);
        reach = f.end;
      } else if (f.action === 'block') out.push(f); // an overlapping block still blocks
    }
    return out;
  }

  /** Apply the rules to one text: throws on a block, returns the text with redactions. */
  filter(text: string, where: Where, used: Set<string>): string {
    const found = this.scan(text, where);
    if (!found.length) return text;
    const block = found.find((f) => f.action === 'block');
    if (block) throw new GuardrailBlock(block.rule, describe(block.detector), where);
    let out = '';
    let at = 0;
    for (const f of found) {
      if (f.start < at) continue;
      out += text.slice(at, f.start) + marker(f);
      at = f.end;
      used.add(f.rule);
    }
    return out + text.slice(at);
  }

  /**
   * The released part `text[0, cut)` with the matches that end inside it applied (block throws);
   * matches reaching past `cut` are left for the next round, when more text has arrived.
   */
  private apply(text: string, found: ReturnType<CompiledProfile['scan']>, cut: number, where: Where, used: Set<string>): string {
    const block = found.find((f) => f.end <= cut && f.action === 'block');
    if (block) throw new GuardrailBlock(block.rule, describe(block.detector), where);
    let out = '';
    let at = 0;
    for (const f of found) {
      if (f.end > cut || f.start < at) continue;
      out += text.slice(at, f.start) + marker(f);
      at = f.end;
      used.add(f.rule);
    }
    return out + text.slice(at, cut);
  }

  /**
   * Check a request before it goes anywhere: allowed tools, prompt size, the max_tokens cap, then
   * the input rules (block, or redact in both the neutral request and the client's raw body, which
   * same-format upstreams receive).
   */
  checkInput(req: ChatRequest, rawBody: Record<string, unknown>, maxTokensKey: string): { req: ChatRequest; rawBody: Record<string, unknown>; verdict: GuardrailVerdict } {
    const p = this.profile;
    if (p.allowedTools && req.tools) {
      const bad = req.tools.find((t) => !p.allowedTools!.includes(t.name));
      if (bad) throw new GuardrailBlock('allowed_tools', `the tool "${bad.name.slice(0, 64)}", which is not allowed`, 'request');
    }
    if (p.maxPromptChars !== undefined) {
      const size = promptChars(req);
      if (size > p.maxPromptChars) throw new GuardrailBlock('max_prompt_chars', `a prompt of ${size} characters (limit ${p.maxPromptChars})`, 'request');
    }
    let out = req;
    let body = rawBody;
    if (p.maxTokens !== undefined && (req.maxTokens === undefined || req.maxTokens > p.maxTokens)) {
      if (p.maxTokensAction === 'block' && req.maxTokens !== undefined) throw new GuardrailBlock('max_tokens', `max_tokens ${req.maxTokens} (limit ${p.maxTokens})`, 'request');
      out = { ...out, maxTokens: p.maxTokens };
      body = { ...body, [maxTokensKey]: p.maxTokens };
      if (maxTokensKey === 'max_completion_tokens' || maxTokensKey === 'max_tokens') delete body[maxTokensKey === 'max_tokens' ? 'max_completion_tokens' : 'max_tokens'];
    }
    const used = new Set<string>();
    if (this.matchers.input.length) {
      const f = (s: string) => this.filter(s, 'input', used);
      const messages = req.messages.map((m) => redactMessage(m, f));
      const system = req.system === undefined ? undefined : f(req.system);
      // Parts the neutral request cannot carry (an unknown role, content part or block, passed
      // through as sent) are only in the raw body: its prompt text is scanned too.
      const raw = req.untranslatable?.length ? (redactRaw(body, f) as Record<string, unknown>) : undefined;
      if (used.size) {
        out = { ...out, system, messages };
        body = raw ?? (redactRaw(body, f) as Record<string, unknown>);
      }
    }
    return { req: out, rawBody: body, verdict: { outcome: used.size ? 'redacted' : 'passed', rules: [...used] } };
  }

  /**
   * Apply the output rules to an answer while it streams. Text (and tool-argument) deltas pass
   * through a sliding window: everything but the last `holdBackChars` characters is released as
   * soon as it arrives, and a match that reaches into the held tail is kept whole until it ends,
   * so a secret split across chunks is still caught. Other events keep their order; the held text
   * is released before them.
   */
  filterOutput(events: AsyncIterator<StreamEvent>, used: Set<string>): AsyncIterator<StreamEvent> {
    const hold = this.profile.holdBackChars;
    const windows = new Map<string, { pending: string; make: (t: string) => StreamEvent }>();
    const queue: StreamEvent[] = [];
    let finished = false;
    // Scan once per `step` new characters rather than on every (often one-token) delta.
    const step = Math.max(16, Math.floor(hold / 2));
    const release = (key: string, final: boolean) => {
      const w = windows.get(key);
      if (!w || !w.pending) return;
      const text = w.pending;
      if (!final && text.length < hold + step) return;
      const found = this.scan(text, 'output');
      let cut = final ? text.length : text.length - hold;
      if (!final) {
        for (const f of found) {
          if (f.start < cut && f.end >= cut) {
            // A match touching the held tail may still grow: keep it whole, unless that would hold too much.
            cut = text.length - f.start <= hold * 4 ? f.start : f.end;
            break;
          }
        }
        if (cut <= 0) return;
      }
      const out = this.apply(text, found, cut, 'output', used);
      w.pending = text.slice(cut);
      if (out) queue.push(w.make(out));
    };
    const flushAll = () => {
      for (const key of windows.keys()) release(key, true);
    };
    return {
      next: async (): Promise<IteratorResult<StreamEvent>> => {
        for (;;) {
          if (queue.length) return { done: false, value: queue.shift()! };
          if (finished) return { done: true, value: undefined };
          const r = await events.next();
          if (r.done) {
            finished = true;
            flushAll();
            continue;
          }
          const ev = r.value;
          if (ev.type === 'text') {
            const w = windows.get('text') ?? { pending: '', make: (t: string): StreamEvent => ({ type: 'text', delta: t }) };
            windows.set('text', w);
            w.pending += ev.delta;
            release('text', false);
          } else if (ev.type === 'tool_args') {
            const key = `tool:${ev.index}`;
            const w = windows.get(key) ?? { pending: '', make: (t: string): StreamEvent => ({ type: 'tool_args', index: ev.index, delta: t }) };
            windows.set(key, w);
            w.pending += ev.delta;
            release(key, false);
          } else {
            // Anything else ends or interleaves the text: release what is held first, in order.
            if (ev.type !== 'start' && ev.type !== 'thinking') flushAll();
            queue.push(ev);
          }
        }
      },
      return: async (value?: unknown) => (await events.return?.(value as never)) ?? { done: true, value: undefined },
    };
  }
}

function describe(detector: string): string {
  switch (detector) {
    case 'card':
      return 'a payment card number';
    case 'iban':
      return 'an IBAN';
    case 'email':
      return 'an email address';
    case 'phone':
      return 'a phone number';
    case 'aws_access_key':
      return 'an AWS access key id';
    default:
      return 'a denied pattern';
  }
}

function marker(f: Found): string {
  return `[REDACTED:${f.detector === 'pattern' ? f.rule : f.detector}]`;
}

function redactParts(parts: ContentPart[], f: (s: string) => string): ContentPart[] {
  return parts.map((p) => (p.type === 'text' ? { ...p, text: f(p.text) } : p));
}

function redactMessage(m: ChatMessage, f: (s: string) => string): ChatMessage {
  if (m.role === 'assistant') return { ...m, content: redactParts(m.content, f), toolCalls: m.toolCalls?.map((c) => ({ ...c, arguments: f(c.arguments) })) };
  return { ...m, content: redactParts(m.content, f) } as ChatMessage;
}

/** Fields of a raw body whose strings are prompt text (in any of the three APIs). */
const PROMPT_FIELDS = new Set(['messages', 'system', 'input', 'instructions', 'prompt']);
/** Keys whose string values are identifiers or binary data, not prompt text. */
const NOT_TEXT = new Set(['type', 'role', 'id', 'tool_call_id', 'tool_use_id', 'call_id', 'name', 'media_type', 'url', 'image_url', 'data', 'signature', 'file_id', 'detail', 'cache_control', 'status']);

function redactRaw(v: unknown, f: (s: string) => string, inPrompt = false, key = ''): unknown {
  if (typeof v === 'string') return inPrompt && !NOT_TEXT.has(key) ? f(v) : v;
  if (Array.isArray(v)) return v.map((x) => redactRaw(x, f, inPrompt, key));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (NOT_TEXT.has(k) && k !== 'image_url') out[k] = x;
      else out[k] = redactRaw(x, f, inPrompt || PROMPT_FIELDS.has(k), k);
    }
    return out;
  }
  return v;
}

export function promptChars(req: ChatRequest): number {
  let n = req.system?.length ?? 0;
  for (const m of req.messages) {
    for (const p of m.content) if (p.type === 'text') n += p.text.length;
    if (m.role === 'assistant') for (const c of m.toolCalls ?? []) n += c.arguments.length;
  }
  return n;
}

/** All prompt text of a request, for checks that take one string (Bedrock Guardrails). */
export function promptText(req: ChatRequest): string {
  const parts: string[] = [];
  if (req.system) parts.push(req.system);
  for (const m of req.messages) for (const p of m.content) if (p.type === 'text') parts.push(p.text);
  return parts.join('\n');
}
