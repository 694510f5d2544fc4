import { jsonResponse, openaiErrorBody, type GatewayError } from '../../http/errors.ts';
import { webResponse } from '../../http/bytes.ts';

// The errors of `POST /v1/responses`, apart from the door: a path's errors are rendered without
// loading its door (shared/formats/index.ts).

/** Errors in OpenAI's shape; an OpenAI upstream's own error body goes to the client as it came. */
export function responsesError(err: GatewayError): Response {
  const headers = { ...err.headers };
  if (err.upstreamBody?.format === 'openai-responses' || err.upstreamBody?.format === 'openai-chat') {
    return webResponse(err.upstreamBody.text, { status: err.status, headers: { 'content-type': 'application/json', ...headers } });
  }
  return jsonResponse(openaiErrorBody(err), err.status, headers);
}
