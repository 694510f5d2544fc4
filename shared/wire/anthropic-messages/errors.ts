import { anthropicErrorBody, jsonResponse, type GatewayError } from '../../http/errors.ts';
import { webResponse } from '../../http/bytes.ts';

// The errors of `POST /v1/messages` (and of Anthropic's other paths), apart from the door: a path's
// errors are rendered without loading its door (shared/formats/index.ts).

/** Errors in Anthropic's shape; an Anthropic upstream's own error body and status go through unmodified. */
export function anthropicErrorResponse(err: GatewayError): Response {
  const headers = { ...err.headers };
  if (err.upstreamBody?.format === 'anthropic-messages') {
    return webResponse(err.upstreamBody.text, { status: err.upstreamBody.status ?? err.status, headers: { 'content-type': 'application/json', ...headers } });
  }
  return jsonResponse(anthropicErrorBody(err), err.status, headers);
}
