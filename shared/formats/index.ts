import { bedrockInvokeErrors } from '../wire/bedrock-invoke/errors.ts';
import { anthropicErrorResponse } from '../wire/anthropic-messages/errors.ts';
import { openaiError } from '../wire/openai-chat/errors.ts';
import { responsesError } from '../wire/openai-responses/errors.ts';
import { LazyDoor } from '../lazy.ts';
import type { FrontDoorCodec } from './types.ts';

type ErrorDoor = Pick<FrontDoorCodec, 'error'>;

/**
 * Chat front doors by the path they answer on (POST), each loaded by its first request (a chunk of
 * its own in a bundle: a cold start compiles none, a request the door of its path). Their errors
 * are rendered without them (`errorDoorFor`).
 */
export const CHAT_DOORS: Record<string, LazyDoor> = {
  '/v1/chat/completions': new LazyDoor(() => import('../entries/openai-chat.ts').then((m) => m.openaiChatDoor)),
  '/v1/responses': new LazyDoor(() => import('../entries/openai-responses.ts').then((m) => m.openaiResponsesDoor)),
  '/v1/messages': new LazyDoor(() => import('../entries/anthropic-messages.ts').then((m) => m.anthropicMessagesDoor)),
};

/** The error shape of each chat door's path (what its codec's `error` is). */
const DOOR_ERRORS: Record<string, ErrorDoor> = {
  '/v1/chat/completions': { error: openaiError },
  '/v1/responses': { error: responsesError },
  '/v1/messages': { error: anthropicErrorResponse },
};

/** Paths that belong to OpenAI's API alone and have no chat door above them: their errors are OpenAI's whatever the caller sends. */
const OPENAI_ONLY = new Set(['/v1/embeddings']);

/**
 * The front door whose error shape a path's errors use: the chat door of the path or of its
 * parent path (so `/v1/messages/count_tokens` answers in Anthropic's shape), else, on a route
 * both APIs share (`/v1/models`, unknown paths), Anthropic's when the caller sends
 * `anthropic-version` (as Anthropic's SDKs and Claude Code always do), else OpenAI's.
 */
export function errorDoorFor(path: string, headers?: Headers): ErrorDoor {
  // Bedrock's own API (`/bedrock/...`): errors as Bedrock Runtime sends them.
  if (path === '/bedrock' || path.startsWith('/bedrock/')) return bedrockInvokeErrors;
  for (let p = path; p.length > 1; p = p.slice(0, p.lastIndexOf('/')) || '/') {
    const door = DOOR_ERRORS[p];
    if (door) return door;
  }
  if (!OPENAI_ONLY.has(path) && headers?.has('anthropic-version')) return DOOR_ERRORS['/v1/messages']!;
  return DOOR_ERRORS['/v1/chat/completions']!;
}
