import type { StopReason, Usage } from '../../core/types.ts';
import { isObject, type Json } from '../common.ts';

/**
 * Facts of the Anthropic Messages wire format shared by the `/v1/messages` front door and the
 * `anthropic` provider: stop reasons, usage, and the SSE event names.
 */

/** Anthropic's `anthropic-version` when the client sends none. */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

/** Neutral stop reason -> Anthropic `stop_reason`. */
export function toAnthropicStopReason(r: StopReason): string {
  switch (r) {
    case 'stop':
      return 'end_turn';
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
      return 'tool_use';
    case 'stop_sequence':
      return 'stop_sequence';
    case 'content_filter':
      return 'refusal';
  }
}

/** Anthropic `stop_reason` -> neutral stop reason (unknown ones count as a normal stop). */
export function fromAnthropicStopReason(r: unknown): StopReason {
  switch (r) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'stop_sequence':
      return 'stop_sequence';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop'; // end_turn, pause_turn
  }
}

/** The `type` and `message` of an Anthropic `error` event's data (each absent when the data does not say). */
export function readErrorEvent(data: string): { type?: string; message?: string } {
  try {
    const e = (JSON.parse(data) as Json).error;
    if (!isObject(e)) return {};
    return { type: typeof e.type === 'string' ? e.type : undefined, message: typeof e.message === 'string' ? e.message : undefined };
  } catch {
    return {};
  }
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * Anthropic usage counters as they accumulate over a stream: `message_start` carries the input
 * side, `message_delta` the (cumulative) output count and, on newer API versions, final input
 * counts too. Anthropic's `input_tokens` excludes cached tokens; the neutral Usage includes them.
 */
export class AnthropicUsage {
  input?: number;
  output?: number;
  cacheRead?: number;
  cacheWrite?: number;

  /** Take what a `usage` object says (later values overwrite earlier ones). Returns whether it had anything. */
  read(u: unknown): boolean {
    if (!isObject(u)) return false;
    const input = num(u.input_tokens);
    const output = num(u.output_tokens);
    const read = num(u.cache_read_input_tokens);
    const write = num(u.cache_creation_input_tokens);
    if (input !== undefined) this.input = input;
    if (output !== undefined) this.output = output;
    if (read !== undefined) this.cacheRead = read;
    if (write !== undefined) this.cacheWrite = write;
    return input !== undefined || output !== undefined;
  }

  get seen(): boolean {
    return this.input !== undefined || this.output !== undefined;
  }

  toUsage(): Usage {
    const u: Usage = { inputTokens: (this.input ?? 0) + (this.cacheRead ?? 0) + (this.cacheWrite ?? 0), outputTokens: this.output ?? 0 };
    if (this.cacheRead !== undefined) u.cacheReadTokens = this.cacheRead;
    if (this.cacheWrite !== undefined) u.cacheWriteTokens = this.cacheWrite;
    return u;
  }
}

/** Neutral usage -> Anthropic's `usage` object (uncached input apart from the cache counts). */
export function toAnthropicUsage(u: Usage): Json {
  const cacheRead = u.cacheReadTokens ?? 0;
  const cacheWrite = u.cacheWriteTokens ?? 0;
  return {
    input_tokens: Math.max(0, u.inputTokens - cacheRead - cacheWrite),
    cache_creation_input_tokens: cacheWrite,
    cache_read_input_tokens: cacheRead,
    output_tokens: u.outputTokens,
  };
}

/** The `event:` name of one SSE event's text, if it has one. */
export function eventName(event: string): string | undefined {
  const i = event.startsWith('event:') ? 0 : event.indexOf('\nevent:');
  if (i < 0) return undefined;
  const start = i === 0 ? 6 : i + 7;
  let end = event.indexOf('\n', start);
  if (end < 0) end = event.length;
  return event.slice(start, end).replace(/\r$/, '').trim();
}

