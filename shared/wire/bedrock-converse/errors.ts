import { AnswerRefused } from '../../http/answer.ts';
import { GatewayError } from '../../http/errors.ts';

/**
 * Bedrock Runtime failures as GatewayErrors. The SDK throws modeled exceptions (their `name` is
 * the AWS error code, also for exception frames inside a ConverseStream), credential-chain
 * errors, and Node network errors. Messages never carry credentials; AWS's access-denied wording
 * (which names the account and role) is replaced by our own.
 */

interface SdkErrorLike {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
  $response?: { headers?: Record<string, string> };
  $retryable?: unknown;
}

const AUTH_ERRORS = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'ExpiredToken',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'CredentialsProviderError',
  'TokenProviderError',
]);

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE']);

/** The message AWS gave, trimmed, or a fallback. */
function awsMessage(e: SdkErrorLike, fallback: string): string {
  const m = typeof e.message === 'string' ? e.message.trim() : '';
  if (!m || m === 'UnknownError' || m === e.name) return fallback;
  return m.length > 1000 ? `${m.slice(0, 1000)}...` : m;
}

/** Map anything the SDK (or its stream) threw to a GatewayError for the client. */
export function bedrockError(provider: string, err: unknown, midStream = false): GatewayError {
  if (err instanceof GatewayError) return err;
  // An answer the gateway stopped reading (./providers/bedrock/bounded-handler.ts), maybe passed on by the SDK as a cause.
  const refused = err instanceof AnswerRefused ? err : (err as { cause?: unknown } | undefined)?.cause instanceof AnswerRefused ? (err as { cause: AnswerRefused }).cause : undefined;
  if (refused) return new GatewayError('upstream', `Provider "${provider}" (Amazon Bedrock) ${refused.what}`, { status: 502, code: refused.code, cause: err });
  // The gateway's own failure (e.g. a request too deeply nested to serialize), not Bedrock's.
  if (err instanceof RangeError) return new GatewayError('internal', 'The gateway failed to handle this request.', { cause: err });
  const e = (err ?? {}) as SdkErrorLike;
  const name = e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const where = midStream ? ' mid-stream' : '';
  const code = `bedrock_${name ? name.replace(/Exception$/, '').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase() : 'error'}`;

  if (AUTH_ERRORS.has(name) || status === 401 || status === 403) {
    return new GatewayError(
      'upstream',
      `Provider "${provider}" (Amazon Bedrock) rejected the gateway's AWS credentials (${name || `HTTP ${status}`}). Check the credentials the gateway runs with, that its IAM policy allows bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on this model, and that model access is granted in the region.`,
      { status: 502, code: 'upstream_auth_failed', cause: err },
    );
  }
  switch (name) {
    case 'ThrottlingException':
    case 'ServiceQuotaExceededException':
    case 'TooManyRequestsException':
      return new GatewayError('rate_limit', `Amazon Bedrock is throttling requests${where}: ${awsMessage(e, 'too many requests')}`, { status: 429, code: 'upstream_rate_limited', cause: err });
    case 'ValidationException':
      return new GatewayError('invalid_request', awsMessage(e, 'Amazon Bedrock rejected the request as invalid.'), { status: 400, code: 'upstream_validation_error', cause: err });
    case 'ResourceNotFoundException':
      return new GatewayError('not_found', awsMessage(e, 'Amazon Bedrock could not find the model.'), { status: 404, code: 'upstream_model_not_found', cause: err });
    case 'ModelNotReadyException':
      return new GatewayError('overloaded', `The Bedrock model is not ready to serve requests: ${awsMessage(e, 'try again later')}`, { status: 503, code: 'upstream_model_not_ready', cause: err });
    case 'ServiceUnavailableException':
      return new GatewayError('overloaded', `Amazon Bedrock is unavailable${where}: ${awsMessage(e, 'service unavailable')}`, { status: 503, code: 'upstream_unavailable', cause: err });
    case 'ModelTimeoutException':
      return new GatewayError('timeout', `The Bedrock model timed out${where}: ${awsMessage(e, 'model timeout')}`, { status: 504, code: 'upstream_timeout', cause: err });
    case 'InternalServerException':
    case 'InternalFailure':
      return new GatewayError('upstream', `Amazon Bedrock failed${where} with an internal error: ${awsMessage(e, 'internal server error')}`, { status: 502, code: 'upstream_error', cause: err });
    case 'ModelErrorException':
    case 'ModelStreamErrorException':
      return new GatewayError('upstream', `The Bedrock model failed${where}: ${awsMessage(e, 'model error')}`, { status: 502, code: code, cause: err });
    case 'ConflictException':
      return new GatewayError('invalid_request', awsMessage(e, 'Conflict.'), { status: 409, code: 'upstream_conflict', cause: err });
    case 'TimeoutError':
      return new GatewayError('timeout', `Provider "${provider}" (Amazon Bedrock) did not answer in time.`, { status: 504, code: 'upstream_timeout', cause: err });
  }
  const netCode = e.code ?? (e as { cause?: { code?: string } }).cause?.code;
  if ((netCode && NETWORK_CODES.has(netCode)) || /socket hang up|aborted|premature/i.test(e.message ?? '')) {
    return new GatewayError('upstream', midStream ? `The connection to provider "${provider}" (Amazon Bedrock) failed mid-response: ${netCode ?? e.message}.` : `Could not reach provider "${provider}" (Amazon Bedrock): ${netCode ?? e.message}.`, {
      status: 502,
      code: midStream ? 'upstream_stream_error' : 'upstream_unreachable',
      cause: err,
    });
  }
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new GatewayError(status === 429 ? 'rate_limit' : status === 404 ? 'not_found' : 'invalid_request', awsMessage(e, `Amazon Bedrock answered HTTP ${status}.`), { status, code: `upstream_${status}`, cause: err });
  }
  return new GatewayError('upstream', `Provider "${provider}" (Amazon Bedrock) failed${where}${name ? ` (${name})` : ''}.`, { status: 502, code: midStream ? 'upstream_stream_error' : 'upstream_error', cause: err });
}
