import { anthropicErrorBody, doorErrorRenderer } from '../../http/errors.ts';

// The errors of `POST /v1/messages` (and of Anthropic's other paths), apart from the door: a path's
// errors are rendered without loading its door (shared/formats/index.ts).

/** Errors in Anthropic's shape; an Anthropic upstream's own error body and status go through unmodified. */
export const anthropicErrorResponse = doorErrorRenderer({ passThrough: ['anthropic-messages'], body: anthropicErrorBody, upstreamStatus: true });
