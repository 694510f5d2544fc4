import { anthropicMessagesDoor } from '../wire/anthropic-messages/door.ts';
import { bedrockInvokeErrors } from '../wire/bedrock-invoke/errors.ts';
import { openaiChatDoor } from '../wire/openai-chat/door.ts';
import { openaiResponsesDoor } from '../wire/openai-responses/door.ts';
import type { FrontDoorCodec } from './types.ts';

/** Chat front doors by the path they answer on (POST). */
export const CHAT_DOORS: Record<string, FrontDoorCodec> = {
  '/v1/chat/completions': openaiChatDoor,
  '/v1/responses': openaiResponsesDoor,
  '/v1/messages': anthropicMessagesDoor,
};

/** Paths that belong to OpenAI's API alone and have no chat door above them: their errors are OpenAI's whatever the caller sends. */
const OPENAI_ONLY = new Set(['/v1/embeddings']);

/**
 * The front door whose error shape a path's errors use: the chat door of the path or of its
 * parent path (so `/v1/messages/count_tokens` answers in Anthropic's shape), else, on a route
 * both APIs share (`/v1/models`, unknown paths), Anthropic's when the caller sends
 * `anthropic-version` (as Anthropic's SDKs and Claude Code always do), else OpenAI's.
 */
export function errorDoorFor(path: string, headers?: Headers): Pick<FrontDoorCodec, 'error'> {
  // Bedrock's own API (`/bedrock/...`): errors as Bedrock Runtime sends them.
  if (path === '/bedrock' || path.startsWith('/bedrock/')) return bedrockInvokeErrors;
  for (let p = path; p.length > 1; p = p.slice(0, p.lastIndexOf('/')) || '/') {
    const door = CHAT_DOORS[p];
    if (door) return door;
  }
  if (!OPENAI_ONLY.has(path) && headers?.has('anthropic-version')) return anthropicMessagesDoor;
  return openaiChatDoor;
}
