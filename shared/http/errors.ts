import { BytesResponse, webResponse } from './bytes.ts';

/**
 * Gateway errors. A GatewayError carries a kind and a status; each front door renders it in its
 * own API's error shape. Messages are written for the caller: never a stack trace, never a key.
 */
export type ErrorKind =
  | 'invalid_request'
  | 'authentication'
  | 'permission'
  | 'not_found'
  | 'request_too_large'
  | 'rate_limit'
  | 'upstream'
  | 'timeout'
  | 'overloaded'
  | 'internal';

const defaultStatus: Record<ErrorKind, number> = {
  invalid_request: 400,
  authentication: 401,
  permission: 403,
  not_found: 404,
  request_too_large: 413,
  rate_limit: 429,
  upstream: 502,
  timeout: 504,
  overloaded: 503,
  internal: 500,
};

export interface GatewayErrorOptions {
  status?: number;
  /** Machine-readable code (OpenAI's `code`), e.g. `model_not_found`. */
  code?: string | null;
  /** The request parameter at fault (OpenAI's `param`). */
  param?: string | null;
  headers?: Record<string, string>;
  cause?: unknown;
  /**
   * The upstream's own error body, passed to clients that speak the same API, verbatim; `status`
   * is the upstream's own status when that front door passes it on too (Anthropic's 529).
   */
  upstreamBody?: { format: string; text: string; status?: number };
}

export class GatewayError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;
  readonly upstreamBody?: { format: string; text: string; status?: number };

  constructor(
    readonly kind: ErrorKind,
    message: string,
    opts: GatewayErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.status = opts.status ?? defaultStatus[kind];
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
    this.upstreamBody = opts.upstreamBody;
  }
}

/** Any thrown value as a GatewayError, hiding internals of unexpected failures. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('internal', 'The gateway failed to handle this request.', { cause: err });
}

const openaiType: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  authentication: 'authentication_error',
  permission: 'permission_error',
  not_found: 'invalid_request_error',
  request_too_large: 'invalid_request_error',
  rate_limit: 'rate_limit_error',
  upstream: 'api_error',
  timeout: 'timeout_error',
  overloaded: 'api_error',
  internal: 'server_error',
};

const kindCode: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request',
  authentication: 'invalid_api_key',
  permission: 'permission_denied',
  not_found: 'not_found',
  request_too_large: 'request_too_large',
  rate_limit: 'rate_limit_exceeded',
  upstream: 'upstream_error',
  timeout: 'timeout',
  overloaded: 'overloaded',
  internal: 'internal_error',
};

/** OpenAI's error body: `{"error":{"message","type","param","code"}}`. */
export function openaiErrorBody(err: GatewayError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  // Every error the gateway makes has a code (a client switching on it never sees null): the kind's when none was set.
  return { error: { message: err.message, type: openaiType[err.kind], param: err.param, code: err.code ?? kindCode[err.kind] } };
}

/** Anthropic's error types (docs: API errors): 400, 401, 403, 404, 413, 429, 500 api_error, 504 timeout_error, 529. */
const anthropicType: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  authentication: 'authentication_error',
  permission: 'permission_error',
  not_found: 'not_found_error',
  request_too_large: 'request_too_large',
  rate_limit: 'rate_limit_error',
  upstream: 'api_error',
  timeout: 'timeout_error',
  overloaded: 'overloaded_error',
  internal: 'api_error',
};

/** Anthropic's documented status -> type pairs; other statuses take the type of the error's kind. */
const anthropicTypeByStatus: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

/** Anthropic's error body: `{"type":"error","error":{"type","message"}}`. */
export function anthropicErrorBody(err: GatewayError): { type: 'error'; error: { type: string; message: string } } {
  return { type: 'error', error: { type: anthropicTypeByStatus[err.status] ?? anthropicType[err.kind], message: err.message } };
}

/** A JSON answer, carried as its bytes (no body stream unless someone reads `.body`). */
export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new BytesResponse(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/**
 * A door's error renderer: an upstream's own error body in one of the `passThrough` formats goes
 * to the client as it came (with the upstream's own status when `upstreamStatus`, else the
 * error's); any other error is `body(err)` as JSON. Both keep the error's headers.
 */
export function doorErrorRenderer(opts: { passThrough: readonly string[]; body: (err: GatewayError) => unknown; upstreamStatus?: boolean }): (err: GatewayError) => Response {
  return (err) => {
    const headers = { ...err.headers };
    const upstream = err.upstreamBody;
    if (upstream && opts.passThrough.includes(upstream.format)) {
      return webResponse(upstream.text, { status: opts.upstreamStatus ? (upstream.status ?? err.status) : err.status, headers: { 'content-type': 'application/json', ...headers } });
    }
    return jsonResponse(opts.body(err), err.status, headers);
  };
}
