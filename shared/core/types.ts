/**
 * The gateway's neutral model of a chat call. Front doors decode their API into a ChatRequest and
 * encode StreamEvents back out; providers encode a ChatRequest for their upstream and decode the
 * upstream's answer into StreamEvents. Same-format routes skip this and pass bytes through.
 */

/**
 * `bedrock-invoke`: Bedrock's InvokeModel API with an Anthropic body (`/bedrock/model/{id}/invoke...`);
 * `bedrock-converse`: Bedrock's Converse API (`/bedrock/model/{id}/converse...`).
 */
export type FrontDoor = 'openai-chat' | 'anthropic-messages' | 'openai-responses' | 'bedrock-invoke' | 'bedrock-converse';

export interface TextPart {
  type: 'text';
  text: string;
}

export interface ImagePart {
  type: 'image';
  /** An http(s) URL, or absent when `data` carries the bytes. */
  url?: string;
  /** Base64 bytes, with their media type. */
  data?: string;
  mediaType?: string;
}

export type ContentPart = TextPart | ImagePart;

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text of the arguments, as the model produced it. */
  arguments: string;
}

/** A block of the model's reasoning from an earlier turn (Anthropic `thinking` / `redacted_thinking`). */
export interface ThinkingBlock {
  text?: string;
  /** Signature the upstream gave the block; it must be sent back unchanged. */
  signature?: string;
  /** Encrypted reasoning (a redacted block), sent back unchanged. */
  redactedData?: string;
}

export type ChatMessage =
  /**
   * `fromSystem`: a system message in the middle of the conversation (Anthropic clients send
   * `{"role": "system"}` entries inside `messages`). Providers with a system role at any position
   * (OpenAI) send it as one; others send a user turn marked as system text (see markSystemText).
   */
  | { role: 'user'; content: ContentPart[]; fromSystem?: boolean }
  | { role: 'assistant'; content: ContentPart[]; toolCalls?: ToolCall[]; thinking?: ThinkingBlock[] }
  | { role: 'tool'; toolCallId: string; content: ContentPart[]; isError?: boolean };

export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON Schema of the arguments. */
  parameters: Record<string, unknown>;
}

export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

/**
 * How the answer is to be generated: the request options every wire API maps to its own fields.
 * Options added later (structured output from `response_format`, `n` choices emulated on
 * translated routes) belong here, parsed by each door and carried out by each provider's body
 * builder in `shared/wire/<api>/`.
 */
export interface RequestOptions {
  /** False: at most one tool call per turn (OpenAI `parallel_tool_calls: false`, Anthropic `disable_parallel_tool_use`). */
  parallelToolCalls?: boolean;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  /** Top-k sampling (Anthropic, Bedrock); dropped by upstreams that lack it. */
  topK?: number;
  stop?: string[];
  /** Extended thinking (Anthropic's `thinking`); dropped by upstreams that lack it. */
  thinking?: { type: 'enabled' | 'disabled' | 'adaptive'; budgetTokens?: number };
  /** End-user id for abuse tracking, passed on where the upstream has one. */
  user?: string;
  /**
   * Structured output (Chat `response_format`, Responses `text.format`). On translated routes it is
   * emulated by a forced tool (shared/emulate/structured.ts); same-format routes pass it as sent.
   */
  responseFormat?: ResponseFormat;
  /** Choices wanted (Chat `n`); above 1 on a translated route, parallel calls (shared/emulate/choices.ts). */
  n?: number;
}

export type ResponseFormat =
  | { kind: 'json_object' }
  | { kind: 'json_schema'; name: string; schema: Record<string, unknown>; strict?: boolean; description?: string };

export interface ChatRequest extends RequestOptions {
  /** The model name the client asked for. */
  model: string;
  system?: string;
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  toolChoice?: ToolChoice;
  stream: boolean;
  /** The client wants a usage report at the end of a stream. */
  includeUsage: boolean;
  /**
   * Parts of the client's request the neutral model cannot carry (e.g. an Anthropic server tool or
   * a PDF document block). A provider that passes the client's body through can still serve the
   * request; one that translates must not: the gateway rejects it with a 400 naming the first.
   */
  untranslatable?: { param: string; message: string }[];
}

/**
 * Token usage. `inputTokens` counts every prompt token, cached ones included (OpenAI's
 * `prompt_tokens`); `cacheReadTokens` and `cacheWriteTokens` are parts of it. (Anthropic and
 * Bedrock report uncached input separately: add the cache counts when decoding their usage.)
 */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
}

export type StopReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'stop_sequence';

/** What a provider yields, in order: start, then deltas, then finish and usage. */
export type StreamEvent =
  | { type: 'start'; id: string; model: string }
  | { type: 'text'; delta: string }
  | { type: 'tool_call'; index: number; id: string; name: string }
  | { type: 'tool_args'; index: number; delta: string }
  | { type: 'finish'; reason: StopReason; /** The stop sequence that matched, when the upstream says. */ stopSequence?: string }
  | { type: 'usage'; usage: Usage }
  /**
   * The model's reasoning, where the upstream exposes it: `delta` is a piece of reasoning text;
   * `signature` closes the current reasoning block; `redactedData` is a whole redacted block.
   * Front doors without a place for reasoning drop these.
   */
  | { type: 'thinking'; delta?: string; signature?: string; redactedData?: string };

/** An event of one of `n` choices (emulated `n`): `choice` is its index, 0 when absent. */
export type ChoiceEvent = StreamEvent & { choice?: number };

/** The text of a mid-conversation system message, for upstreams without a system role at that position. */
function markSystemText(text: string): string {
  return `<system-message>\n${text}\n</system-message>`;
}

/** A mid-conversation system message's content as a marked user turn: its text marked, images kept. */
export function markedSystemContent(parts: ContentPart[]): ContentPart[] {
  const text = parts.map((p) => (p.type === 'text' ? p.text : '')).join('\n');
  return [{ type: 'text', text: markSystemText(text) }, ...parts.filter((p) => p.type !== 'text')];
}

export function totalTokens(u: Usage): number {
  return u.inputTokens + u.outputTokens;
}
