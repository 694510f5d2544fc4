/** The OpenAI Chat Completions door: the first `POST /v1/chat/completions` (shared/formats/index.ts). */
import '../gateway.ts'; // see README.md here
export { openaiChatDoor } from '../wire/openai-chat/door.ts';
