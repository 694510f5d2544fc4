import type {
  ContentBlock,
  ConverseResponse,
  ConverseStreamCommandInput,
  ConverseStreamOutput,
  ImageFormat,
  Message,
  StopReason as BedrockStopReason,
  TokenUsage,
  Tool,
  ToolConfiguration,
  ToolResultContentBlock,
} from '@aws-sdk/client-bedrock-runtime';
import { markedSystemContent, type ChatRequest, type ContentPart, type StopReason, type StreamEvent, type Usage } from '../../core/types.ts';
import { GatewayError } from '../../http/errors.ts';
import { unsupported } from '../common.ts';

/**
 * ChatRequest <-> Bedrock Converse. Converse is one shape for every model on Bedrock: a system
 * list, strictly alternating user/assistant messages of content blocks (text, image bytes,
 * toolUse, toolResult), a toolConfig and an inferenceConfig.
 */

const IMAGE_FORMATS: Record<string, ImageFormat> = {
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/gif': 'gif',
  'image/webp': 'webp',
};

function imageBlock(part: Extract<ContentPart, { type: 'image' }>, provider: string): ContentBlock.ImageMember {
  if (part.url !== undefined && part.data === undefined) {
    throw unsupported(`Provider "${provider}" (Amazon Bedrock Converse) does not accept image URLs; send the image inline as base64 data (a data: URL, or a base64 source).`, 'messages');
  }
  const format = IMAGE_FORMATS[(part.mediaType ?? '').toLowerCase()];
  if (!format) throw unsupported(`Provider "${provider}" (Amazon Bedrock) accepts png, jpeg, gif and webp images, not '${part.mediaType ?? 'unknown'}'.`, 'messages');
  return { image: { format, source: { bytes: Buffer.from(part.data ?? '', 'base64') } } };
}

function contentBlocks(parts: ContentPart[], provider: string): ContentBlock[] {
  const out: ContentBlock[] = [];
  for (const p of parts) {
    if (p.type === 'text') {
      // Converse rejects blank text blocks; an empty string carries nothing anyway.
      if (p.text !== '') out.push({ text: p.text });
    } else if (p.type === 'image') out.push(imageBlock(p, provider));
  }
  return out;
}

function toolResultContent(parts: ContentPart[], provider: string): ToolResultContentBlock[] {
  const out: ToolResultContentBlock[] = [];
  for (const p of parts) {
    if (p.type === 'text') out.push({ text: p.text });
    else if (p.type === 'image') out.push({ image: imageBlock(p, provider).image });
  }
  return out.length ? out : [{ text: '' }];
}

function parseArguments(args: string, name: string): Record<string, unknown> {
  if (!args.trim()) return {};
  let v: unknown;
  try {
    v = JSON.parse(args);
  } catch {
    throw new GatewayError('invalid_request', `The arguments of the earlier call to tool '${name}' are not valid JSON; Amazon Bedrock needs them as a JSON object.`, { param: 'messages', code: 'invalid_value' });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new GatewayError('invalid_request', `The arguments of the earlier call to tool '${name}' must be a JSON object for Amazon Bedrock.`, { param: 'messages', code: 'invalid_value' });
  }
  return v as Record<string, unknown>;
}

/** Build the Converse / ConverseStream input (the two take the same shape). */
export function toConverseInput(req: ChatRequest, modelId: string, provider: string): ConverseStreamCommandInput {
  const messages: Message[] = [];
  const push = (role: 'user' | 'assistant', blocks: ContentBlock[]) => {
    if (!blocks.length) return;
    const last = messages[messages.length - 1];
    // Converse needs user and assistant turns to alternate: merge neighbours of the same role
    // (e.g. several tool results, or tool results followed by a user message).
    if (last && last.role === role) last.content!.push(...blocks);
    else messages.push({ role, content: blocks });
  };
  const historyTools = new Set<string>();
  for (const m of req.messages) {
    if (m.role === 'user') push('user', contentBlocks(m.fromSystem ? markedSystemContent(m.content) : m.content, provider));
    else if (m.role === 'assistant') {
      // Reasoning from an earlier turn goes back first, signature and all (Claude checks it).
      const blocks: ContentBlock[] = (m.thinking ?? []).flatMap((t): ContentBlock[] => {
        if (t.redactedData !== undefined) return [{ reasoningContent: { redactedContent: Buffer.from(t.redactedData, 'base64') } }];
        if (t.signature) return [{ reasoningContent: { reasoningText: { text: t.text ?? '', signature: t.signature } } }];
        return [];
      });
      blocks.push(...contentBlocks(m.content, provider));
      for (const c of m.toolCalls ?? []) {
        historyTools.add(c.name);
        blocks.push({ toolUse: { toolUseId: c.id, name: c.name, input: parseArguments(c.arguments, c.name) as never } });
      }
      push('assistant', blocks);
    } else {
      historyTools.add('');
      push('user', [{ toolResult: { toolUseId: m.toolCallId, content: toolResultContent(m.content, provider), ...(m.isError ? { status: 'error' as const } : {}) } }]);
    }
  }

  const input: ConverseStreamCommandInput = { modelId, messages };
  if (req.system) input.system = [{ text: req.system }];

  const inference: NonNullable<ConverseStreamCommandInput['inferenceConfig']> = {};
  if (req.maxTokens !== undefined) inference.maxTokens = req.maxTokens;
  if (req.temperature !== undefined) inference.temperature = req.temperature;
  if (req.topP !== undefined) inference.topP = req.topP;
  if (req.stop?.length) inference.stopSequences = req.stop;
  if (Object.keys(inference).length) input.inferenceConfig = inference;

  const toolConfig = buildToolConfig(req, historyTools);
  if (toolConfig) input.toolConfig = toolConfig;

  // Model-specific fields Converse has no slot for. Anthropic's Claude on Bedrock takes its own
  // top_k and thinking here, and can report which stop sequence matched; other models do not
  // know these fields, so they are dropped for them.
  if (isAnthropicModel(modelId)) {
    const extra: Record<string, unknown> = {};
    if (req.topK !== undefined) extra.top_k = req.topK;
    if (req.thinking && req.thinking.type !== 'disabled') {
      extra.thinking = req.thinking.type === 'enabled' ? { type: 'enabled', budget_tokens: req.thinking.budgetTokens } : { type: req.thinking.type };
    }
    if (Object.keys(extra).length) input.additionalModelRequestFields = extra as never;
    if (req.stop?.length) input.additionalModelResponseFieldPaths = ['/stop_sequence'];
  }
  return input;
}

/**
 * Converse requires a toolConfig whenever the history holds toolUse/toolResult blocks. So:
 * tool_choice `none` omits the tools only when the history has no tool blocks (else the tools
 * are sent with no choice, i.e. auto); history tools the request no longer lists are declared
 * with an open object schema.
 */
function buildToolConfig(req: ChatRequest, historyTools: Set<string>): ToolConfiguration | undefined {
  const declared = req.tools ?? [];
  const hasHistory = historyTools.size > 0;
  if (!declared.length && !hasHistory) {
    if (typeof req.toolChoice === 'object' || req.toolChoice === 'required') throw unsupported("'tool_choice' needs tools to choose from.", 'tool_choice');
    return undefined;
  }
  if (req.toolChoice === 'none' && !hasHistory) return undefined;
  const tools: Tool[] = declared.map((t) => ({
    toolSpec: { name: t.name, ...(t.description ? { description: t.description } : {}), inputSchema: { json: t.parameters as never } },
  }));
  const names = new Set(declared.map((t) => t.name));
  for (const name of historyTools) {
    if (name && !names.has(name)) {
      names.add(name);
      tools.push({ toolSpec: { name, inputSchema: { json: { type: 'object' } as never } } });
    }
  }
  if (!tools.length) {
    // Only tool results with no named calls in the history: declare nothing we cannot name.
    return undefined;
  }
  const config: ToolConfiguration = { tools };
  const choice = req.toolChoice;
  if (choice === 'required') config.toolChoice = { any: {} };
  else if (typeof choice === 'object') {
    if (!names.has(choice.name)) throw unsupported(`'tool_choice' names the tool '${choice.name}', which is not in 'tools'.`, 'tool_choice');
    config.toolChoice = { tool: { name: choice.name } };
  } else if (choice === 'auto') config.toolChoice = { auto: {} };
  return config;
}

/** Claude on Bedrock: base model ids (`anthropic.claude-...`), inference profiles (`us.anthropic.claude-...`) and their ARNs. */
export function isAnthropicModel(modelId: string): boolean {
  return /(^|[.:/])anthropic\.claude/.test(modelId);
}

/** The matched stop sequence Claude reports in `additionalModelResponseFields`, if any. */
function stopSequenceOf(fields: unknown): string | undefined {
  const v = (fields as { stop_sequence?: unknown } | undefined)?.stop_sequence;
  return typeof v === 'string' ? v : undefined;
}

export function stopReason(r: BedrockStopReason | string | undefined): StopReason {
  switch (r) {
    case 'tool_use':
      return 'tool_calls';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'stop_sequence':
      return 'stop_sequence';
    case 'guardrail_intervened':
    case 'content_filtered':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/** Bedrock counts uncached input apart from cache reads and writes; our inputTokens holds all three. */
function usageOf(u: TokenUsage | undefined): Usage {
  const out: Usage = { inputTokens: (u?.inputTokens ?? 0) + (u?.cacheReadInputTokens ?? 0) + (u?.cacheWriteInputTokens ?? 0), outputTokens: u?.outputTokens ?? 0 };
  if (u?.cacheReadInputTokens !== undefined) out.cacheReadTokens = u.cacheReadInputTokens;
  if (u?.cacheWriteInputTokens !== undefined) out.cacheWriteTokens = u.cacheWriteInputTokens;
  return out;
}

/** The events of a whole (non-streaming) Converse answer, in stream order. */
export function* eventsFromResponse(res: ConverseResponse, id: string, model: string): Generator<StreamEvent> {
  yield { type: 'start', id, model };
  let tool = 0;
  for (const block of res.output?.message?.content ?? []) {
    if (block.text !== undefined) {
      if (block.text) yield { type: 'text', delta: block.text };
    } else if (block.toolUse) {
      const index = tool++;
      yield { type: 'tool_call', index, id: block.toolUse.toolUseId ?? `tooluse_${index}`, name: block.toolUse.name ?? '' };
      yield { type: 'tool_args', index, delta: JSON.stringify(block.toolUse.input ?? {}) };
    } else if (block.reasoningContent) {
      const rc = block.reasoningContent;
      if (rc.reasoningText) yield { type: 'thinking', delta: rc.reasoningText.text ?? '', ...(rc.reasoningText.signature ? { signature: rc.reasoningText.signature } : {}) };
      else if (rc.redactedContent) yield { type: 'thinking', redactedData: Buffer.from(rc.redactedContent).toString('base64') };
    }
  }
  yield finishEvent(res.stopReason, res.additionalModelResponseFields);
  yield { type: 'usage', usage: usageOf(res.usage) };
}

function finishEvent(reason: string | undefined, fields: unknown): StreamEvent {
  const seq = stopSequenceOf(fields);
  return { type: 'finish', reason: stopReason(reason), ...(seq !== undefined ? { stopSequence: seq } : {}) };
}

/**
 * Decodes ConverseStream events into neutral events. Tool calls are numbered in the order their
 * blocks start; the stop reason arrives in messageStop and the usage in the metadata event
 * after it.
 */
export class StreamDecoder {
  private readonly toolIndex = new Map<number, number>();
  private nextTool = 0;
  /** messageStop has arrived. */
  stopped = false;
  /** The metadata (usage) event has arrived. */
  sawMetadata = false;

  *decode(ev: ConverseStreamOutput): Generator<StreamEvent> {
    if (ev.contentBlockStart) {
      const tu = ev.contentBlockStart.start?.toolUse;
      if (tu) {
        const index = this.nextTool++;
        this.toolIndex.set(ev.contentBlockStart.contentBlockIndex ?? index, index);
        yield { type: 'tool_call', index, id: tu.toolUseId ?? `tooluse_${index}`, name: tu.name ?? '' };
      }
    } else if (ev.contentBlockDelta) {
      const d = ev.contentBlockDelta.delta;
      const block = ev.contentBlockDelta.contentBlockIndex ?? 0;
      if (d?.text !== undefined) {
        if (d.text) yield { type: 'text', delta: d.text };
      } else if (d?.toolUse) {
        const index = this.toolIndex.get(block);
        if (index !== undefined && d.toolUse.input) yield { type: 'tool_args', index, delta: d.toolUse.input };
      } else if (d?.reasoningContent) {
        const rc = d.reasoningContent;
        if (rc.text !== undefined) {
          if (rc.text) yield { type: 'thinking', delta: rc.text };
        } else if (rc.signature !== undefined) yield { type: 'thinking', signature: rc.signature };
        else if (rc.redactedContent) yield { type: 'thinking', redactedData: Buffer.from(rc.redactedContent).toString('base64') };
      }
    } else if (ev.messageStop) {
      this.stopped = true;
      yield finishEvent(ev.messageStop.stopReason, ev.messageStop.additionalModelResponseFields);
    } else if (ev.metadata) {
      this.sawMetadata = true;
      yield { type: 'usage', usage: usageOf(ev.metadata.usage) };
    } else {
      const ex = ev.internalServerException ?? ev.modelStreamErrorException ?? ev.validationException ?? ev.throttlingException ?? ev.serviceUnavailableException;
      if (ex) throw ex;
    }
  }
}
