import type { MockProviderConfig } from '../../config/schema.ts';
import type { ChatMessage, ChatRequest, ContentPart, StreamEvent, ToolDefinition } from '../../core/types.ts';
import type { CallContext, Provider, ProviderResult } from '../types.ts';
import type { EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';
import { mockEmbed } from './embeddings.ts';
import { sleepUnlessLeft } from '../../http/client-signal.ts';

/**
 * A built-in provider that answers with no account at all, deterministically (docs/claude-code.md):
 * - it echoes the last user turn, streamed word by word, with usage (one token per word);
 *   `<system-reminder>...</system-reminder>` text and mid-conversation system messages are skipped;
 * - it calls a tool only when told to: a line `call <tool>` or `call <tool> {json arguments}` in the
 *   last user turn, naming a tool the request offers (or when tool_choice forces one). Without JSON,
 *   each required argument is filled (strings with the turn's text);
 * - after a tool result, it answers "<tool> returned: <result>".
 */
export class MockProvider implements Provider {
  readonly type = 'mock';
  readonly live = true;

  constructor(
    readonly name: string,
    private readonly cfg: MockProviderConfig,
  ) {}

  async chat(req: ChatRequest, ctx: CallContext): Promise<ProviderResult> {
    return { kind: 'events', events: this.answer(req, ctx)[Symbol.asyncIterator]() };
  }

  /** Deterministic hashed bag-of-words vectors (see ./embeddings.ts). */
  async embed(req: EmbeddingRequest): Promise<EmbeddingResult> {
    return mockEmbed(req);
  }

  private async *answer(req: ChatRequest, ctx: CallContext): AsyncGenerator<StreamEvent> {
    const inputTokens = Math.max(1, countWords(req.system ?? '') + req.messages.reduce((n, m) => n + countWords(textOf(m.content)), 0));
    yield { type: 'start', id: `mock-${ctx.requestId}`, model: ctx.upstreamModel };

    const last = lastTurn(req.messages);
    const call = last?.role === 'user' ? chooseTool(req, userText(last.content)) : undefined;
    if (call && 'tool' in call) {
      const args = call.args ?? JSON.stringify(fillArguments(call.tool, userText(last!.content)));
      yield { type: 'tool_call', index: 0, id: `call_mock_${ctx.requestId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}`, name: call.tool.name };
      yield { type: 'tool_args', index: 0, delta: args };
      yield { type: 'finish', reason: 'tool_calls' };
      yield { type: 'usage', usage: { inputTokens, outputTokens: 1 + countWords(args) } };
      return;
    }

    const text = call?.error ?? replyText(req.messages);
    const words = text.match(/\S+\s*/g) ?? [text];
    const limit = req.maxTokens ?? Infinity;
    let emitted = 0;
    for (const word of words) {
      if (emitted >= limit) break;
      if (this.cfg.wordDelayMs > 0 && emitted > 0) await sleepUnlessLeft(this.cfg.wordDelayMs, ctx.signal);
      yield { type: 'text', delta: word };
      emitted++;
    }
    yield { type: 'finish', reason: emitted < words.length ? 'length' : 'stop' };
    yield { type: 'usage', usage: { inputTokens, outputTokens: emitted } };
  }
}

function textOf(parts: ContentPart[]): string {
  return parts.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

function countWords(s: string): number {
  return s.match(/\S+/g)?.length ?? 0;
}

/** A user turn's text without the `<system-reminder>` blocks clients such as Claude Code add. */
function userText(parts: ContentPart[]): string {
  return parts
    .map((p) => (p.type === 'text' ? p.text.replace(/<system-reminder>[\s\S]*?<\/system-reminder>/g, '').trim() : ''))
    .filter(Boolean)
    .join('\n');
}

/** The last message that is not a mid-conversation system message nor a user turn of reminders only. */
function lastTurn(messages: ChatMessage[]): ChatMessage | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'user' && (m.fromSystem || !userText(m.content))) continue;
    return m;
  }
  return undefined;
}

function replyText(messages: ChatMessage[]): string {
  const last = lastTurn(messages);
  if (last?.role === 'tool') {
    const call = messages
      .flatMap((m) => (m.role === 'assistant' ? (m.toolCalls ?? []) : []))
      .find((c) => c.id === last.toolCallId);
    return `${call?.name ?? 'tool'} returned: ${textOf(last.content)}`;
  }
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'user' && !m.fromSystem) {
      const t = userText(m.content);
      if (t) return t;
    }
  }
  return 'Hello from the mock provider.';
}

/** The `call <tool> [json]` directive: a line of the user's text. */
const DIRECTIVE = /^\s*call\s+([A-Za-z0-9_.:-]+)(?:\s+(.*?))?\s*$/m;

/**
 * The tool to call: the one a `call <tool> [json]` line names (with the JSON as its arguments when
 * the rest of the line is a JSON object), or the one tool_choice forces. A directive naming a tool
 * the request does not offer gets a text answer saying so.
 */
function chooseTool(req: ChatRequest, text: string): { tool: ToolDefinition; args?: string } | { error: string } | undefined {
  const tools = req.tools ?? [];
  if (req.toolChoice === 'none') return undefined;
  const m = DIRECTIVE.exec(text);
  if (m) {
    const tool = tools.find((t) => t.name === m[1]);
    if (!tool) return { error: `mock: no tool named ${m[1]} is offered.` };
    const rest = m[2]?.trim();
    if (rest?.startsWith('{')) {
      try {
        const v = JSON.parse(rest) as unknown;
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) return { tool, args: JSON.stringify(v) };
      } catch {
        // not JSON: the arguments are filled in
      }
    }
    return { tool };
  }
  const choice = req.toolChoice;
  if (!tools.length) return undefined;
  if (typeof choice === 'object') {
    const tool = tools.find((t) => t.name === choice.name);
    return tool ? { tool } : undefined;
  }
  return choice === 'required' ? { tool: tools[0]! } : undefined;
}

function fillArguments(tool: ToolDefinition, userText: string): Record<string, unknown> {
  return schemaSample(tool.parameters, userText.trim()) as Record<string, unknown>;
}

/** A deterministic value valid for `schema`, its strings taken from `text` (see sampleOf). */
export function schemaSample(schema: Record<string, unknown>, text: string): unknown {
  return sampleOf(schema, schema, text, 0);
}

type Schema = Record<string, unknown>;

/**
 * A deterministic value valid for a JSON Schema (a forced tool's input: emulated structured output
 * answers with it): objects with their required properties (all when none are listed), strings
 * (the turn's text, within maxLength), numbers within their bounds, booleans, arrays of minItems
 * (at least one) items, enums and consts (the first), anyOf/oneOf (the first), nullable types, and
 * `$ref`s into `$defs`/`definitions`.
 */
function sampleOf(schema: Schema, root: Schema, text: string, depth: number): unknown {
  if (typeof schema.$ref === 'string') {
    const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(schema.$ref);
    const defs = m ? (root[m[1]!] as Record<string, Schema> | undefined) : undefined;
    return depth > 8 || !defs?.[m![2]!] ? null : sampleOf(defs[m![2]!]!, root, text, depth + 1);
  }
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  const alt = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  if (Array.isArray(alt) && alt.length) return sampleOf(alt.find((a) => a.type !== 'null') ?? alt[0]!, root, text, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  const min = typeof schema.minimum === 'number' ? schema.minimum : typeof schema.exclusiveMinimum === 'number' ? schema.exclusiveMinimum + 1 : 1;
  switch (type) {
    case 'integer':
      return Math.ceil(min);
    case 'number':
      return min;
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'string': {
      const max = typeof schema.maxLength === 'number' ? schema.maxLength : Infinity;
      return text.slice(0, max).padEnd(typeof schema.minLength === 'number' ? schema.minLength : 0, 'x');
    }
    case 'array': {
      const items = (schema.items ?? {}) as Schema;
      const count = Math.max(1, typeof schema.minItems === 'number' ? schema.minItems : 1);
      return depth > 8 ? [] : Array.from({ length: count }, () => sampleOf(items, root, text, depth + 1));
    }
    default: {
      if (type !== 'object' && !schema.properties) return text;
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      const required = Array.isArray(schema.required) ? (schema.required as string[]) : Object.keys(props);
      const out: Record<string, unknown> = {};
      if (depth <= 8) for (const key of required) out[key] = sampleOf(props[key] ?? {}, root, text, depth + 1);
      return out;
    }
  }
}
