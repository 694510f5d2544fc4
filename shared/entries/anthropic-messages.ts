/** The Anthropic Messages door and count_tokens: the first `POST /v1/messages` or `/v1/messages/count_tokens` (shared/formats/index.ts, shared/lazy.ts). */
import '../gateway.ts'; // see README.md here
export { anthropicMessagesDoor } from '../wire/anthropic-messages/door.ts';
export { countTokens } from '../wire/anthropic-messages/count-tokens.ts';
