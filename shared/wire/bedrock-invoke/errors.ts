import { GatewayError, jsonResponse } from '../../http/errors.ts';
import type { FrontDoorCodec } from '../../formats/types.ts';
import { isObject, type Json } from '../common.ts';

/*
 * Errors in Bedrock Runtime's shape, for every /bedrock route: a module of its own so that rendering
 * one does not load the Bedrock doors (they are loaded on the first /bedrock model request).
 */

/** Bedrock's error name (`x-amzn-errortype`) and usual status for an Anthropic error type. */
function exceptionForAnthropic(anthropicType: string | undefined): { name: string; status: number } {
  switch (anthropicType) {
    case 'invalid_request_error':
    case 'request_too_large':
      return { name: 'ValidationException', status: 400 };
    case 'authentication_error':
    case 'permission_error':
      return { name: 'AccessDeniedException', status: 403 };
    case 'not_found_error':
      return { name: 'ResourceNotFoundException', status: 404 };
    case 'rate_limit_error':
      return { name: 'ThrottlingException', status: 429 };
    case 'overloaded_error':
      return { name: 'ServiceUnavailableException', status: 503 };
    case 'timeout_error':
      return { name: 'ModelTimeoutException', status: 408 };
    default:
      return { name: 'InternalServerException', status: 500 };
  }
}

/** Bedrock Runtime's modeled errors: an upstream Bedrock error of one of these keeps its name. */
const BEDROCK_ERRORS = new Set([
  'ValidationException',
  'ThrottlingException',
  'ServiceQuotaExceededException',
  'ResourceNotFoundException',
  'ModelNotReadyException',
  'ModelTimeoutException',
  'ModelErrorException',
  'ServiceUnavailableException',
  'InternalServerException',
]);

function exceptionForGateway(err: GatewayError): string {
  const cause = err.cause as { name?: unknown; $metadata?: unknown } | undefined;
  if (cause && typeof cause.name === 'string' && cause.$metadata && BEDROCK_ERRORS.has(cause.name)) return cause.name;
  switch (err.kind) {
    case 'invalid_request':
    case 'request_too_large':
      return 'ValidationException';
    case 'authentication':
      return 'UnrecognizedClientException';
    case 'permission':
      return 'AccessDeniedException';
    case 'not_found':
      return 'ResourceNotFoundException';
    case 'rate_limit':
      return 'ThrottlingException';
    case 'overloaded':
      return 'ServiceUnavailableException';
    case 'timeout':
      return 'ModelTimeoutException';
    default:
      return 'InternalServerException';
  }
}

/**
 * An error as Bedrock Runtime answers one: the status, `x-amzn-errortype: <Name>`, and
 * `{"message": ...}` (what the AWS SDKs decode into their modeled exceptions). An Anthropic
 * upstream's own error keeps its message, under the matching Bedrock name.
 */
export function bedrockErrorResponse(err: GatewayError): Response {
  const headers: Record<string, string> = { ...err.headers };
  let name = exceptionForGateway(err);
  let status = err.status;
  let message = err.message;
  if (err.upstreamBody?.format === 'anthropic-messages') {
    try {
      const e = (JSON.parse(err.upstreamBody.text) as Json).error;
      if (isObject(e)) {
        const mapped = exceptionForAnthropic(typeof e.type === 'string' ? e.type : undefined);
        name = mapped.name;
        status = mapped.status;
        if (typeof e.message === 'string') message = e.message;
      }
    } catch {
      // keep the gateway's own message
    }
  }
  headers['x-amzn-errortype'] = name;
  return jsonResponse({ message }, status, headers);
}

export const bedrockInvokeErrors: Pick<FrontDoorCodec, 'error'> = { error: bedrockErrorResponse };
