/** The OpenAI Responses door: the first `POST /v1/responses` (shared/formats/index.ts). */
import '../gateway.ts'; // see README.md here
export { openaiResponsesDoor } from '../wire/openai-responses/door.ts';
