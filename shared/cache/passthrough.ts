import type { FrontDoor, StreamEvent } from '../core/types.ts';
import { chatCompletionEvents } from '../wire/openai-chat/events.ts';
import { decodeAnthropicMessage, decodeAnthropicStream } from '../wire/anthropic-messages/translate.ts';
import { responsesJsonEvents, responsesStreamEvents } from '../wire/openai-responses/events.ts';

/**
 * Neutral events from a same-format (pass-through) upstream answer, for the features that need to
 * see an answer as events: the cache (which decodes the bytes it kept while they streamed to the
 * client) and output guardrails (which, on pass-through routes, answer from the decoded events).
 */
export function passthroughEvents(door: FrontDoor, res: Response, provider: string, model: string): AsyncIterator<StreamEvent> | undefined {
  const stream = (res.headers.get('content-type') ?? '').includes('text/event-stream');
  switch (door) {
    case 'openai-chat':
      return chatCompletionEvents(res, stream, provider, model);
    case 'anthropic-messages':
    // The Bedrock InvokeModel door's pass-through answers are Anthropic Messages JSON/SSE too (its codec frames them).
    case 'bedrock-invoke':
      return stream ? decodeAnthropicStream(res, provider) : decodeAnthropicMessage(res, provider);
    case 'openai-responses':
      return stream ? responsesStreamEvents(res, provider) : responsesJsonEvents(res, provider);
    default:
      return undefined;
  }
}
