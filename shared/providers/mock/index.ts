import { setTimeout as sleep } from 'node:timers/promises';
import type { MockProviderConfig } from '../../config/schema.ts';
import type { ChatMessage, ChatRequest, ContentPart, StreamEvent, ToolDefinition } from '../../core/types.ts';
import type { CallContext, Provider, ProviderResult } from '../types.ts';
import type { EmbeddingRequest, EmbeddingResult } from '../../core/embeddings.ts';
import { mockEmbed } from './embeddings.ts';

/**
 * A built-in provider that answers with no account at all, deterministically:
 * - it echoes the last user message, streamed word by word, with usage (one token per word);
 * - when tools are offered and the last user message names one (or tool_choice forces one), it
 *   calls that tool, filling each required string argument with the user's text;
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

    const last = req.messages[req.messages.length - 1];
    const tool = last?.role === 'user' ? chooseTool(req, textOf(last.content)) : undefined;
    if (tool) {
      const args = JSON.stringify(fillArguments(tool, textOf(last!.content)));
      yield { type: 'tool_call', index: 0, id: `call_mock_${ctx.requestId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}`, name: tool.name };
      yield { type: 'tool_args', index: 0, delta: args };
      yield { type: 'finish', reason: 'tool_calls' };
      yield { type: 'usage', usage: { inputTokens, outputTokens: 1 + countWords(args) } };
      return;
    }

    const text = replyText(req.messages);
    const words = text.match(/\S+\s*/g) ?? [text];
    const limit = req.maxTokens ?? Infinity;
    let emitted = 0;
    for (const word of words) {
      if (emitted >= limit) break;
      if (this.cfg.wordDelayMs > 0 && emitted > 0) await sleep(this.cfg.wordDelayMs, undefined, { signal: ctx.signal });
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

function replyText(messages: ChatMessage[]): string {
  const last = messages[messages.length - 1];
  if (last?.role === 'tool') {
    const call = messages
      .flatMap((m) => (m.role === 'assistant' ? (m.toolCalls ?? []) : []))
      .find((c) => c.id === last.toolCallId);
    return `${call?.name ?? 'tool'} returned: ${textOf(last.content)}`;
  }
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'user') {
      const t = textOf(m.content).trim();
      if (t) return t;
    }
  }
  return 'Hello from the mock provider.';
}

function chooseTool(req: ChatRequest, userText: string): ToolDefinition | undefined {
  const tools = req.tools ?? [];
  if (!tools.length || req.toolChoice === 'none') return undefined;
  const choice = req.toolChoice;
  if (typeof choice === 'object') return tools.find((t) => t.name === choice.name);
  const named = tools.find((t) => new RegExp(`\\b${escapeRegExp(t.name)}\\b`).test(userText));
  if (named) return named;
  return req.toolChoice === 'required' ? tools[0] : undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function fillArguments(tool: ToolDefinition, userText: string): Record<string, unknown> {
  const props = (tool.parameters.properties ?? {}) as Record<string, { type?: string; enum?: unknown[] }>;
  const required = Array.isArray(tool.parameters.required) ? (tool.parameters.required as string[]) : Object.keys(props);
  const args: Record<string, unknown> = {};
  for (const key of required) {
    const schema = props[key] ?? {};
    if (schema.enum?.length) args[key] = schema.enum[0];
    else if (schema.type === 'number' || schema.type === 'integer') args[key] = 1;
    else if (schema.type === 'boolean') args[key] = true;
    else args[key] = userText.trim();
  }
  return args;
}
