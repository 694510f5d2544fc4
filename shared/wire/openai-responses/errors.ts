import { doorErrorRenderer, openaiErrorBody } from '../../http/errors.ts';

// The errors of `POST /v1/responses`, apart from the door: a path's errors are rendered without
// loading its door (shared/formats/index.ts).

/** Errors in OpenAI's shape; an OpenAI upstream's own error body (Responses or Chat Completions) goes to the client as it came. */
export const responsesError = doorErrorRenderer({ passThrough: ['openai-responses', 'openai-chat'], body: openaiErrorBody });
