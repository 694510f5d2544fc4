import { doorErrorRenderer, openaiErrorBody } from '../../http/errors.ts';

// The errors of `POST /v1/chat/completions` (and of OpenAI's other paths), apart from the door: a
// path's errors are rendered without loading its door (shared/formats/index.ts).

/** Errors in OpenAI's shape; an OpenAI upstream's own error body goes to the client as it came. */
export const openaiError = doorErrorRenderer({ passThrough: ['openai-chat'], body: openaiErrorBody });
