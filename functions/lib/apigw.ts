import type { APIGatewayProxyEvent } from 'aws-lambda';
import { ShellRequest } from '../../shared/http/bytes.ts';
import { WebHeaders } from '../../shared/http/web.ts';

/** A host name or address with an optional port, nothing else. */
const PLAIN_HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * API Gateway REST proxy event -> web Request. Multi-value headers and query strings are kept;
 * binary bodies arrive base64-encoded. The path is the resource path API Gateway matched, without
 * the stage name.
 */
export function eventToRequest(event: APIGatewayProxyEvent, signal?: AbortSignal): Request {
  const headers = new WebHeaders();
  // A header fetch cannot represent (a name that is not a token, a value beyond Latin-1) is left
  // out, as the local shell does: hostile input gets an answer, not an exception.
  const add = (k: string, v: string, set: boolean) => {
    try {
      if (set) headers.set(k, v);
      else headers.append(k, v);
    } catch {
      // dropped
    }
  };
  if (event.multiValueHeaders) {
    for (const [k, vs] of Object.entries(event.multiValueHeaders)) for (const v of vs ?? []) add(k, v, false);
  } else if (event.headers) {
    for (const [k, v] of Object.entries(event.headers)) if (v !== undefined) add(k, v, true);
  }
  const query = new URLSearchParams();
  if (event.multiValueQueryStringParameters) {
    for (const [k, vs] of Object.entries(event.multiValueQueryStringParameters)) for (const v of vs ?? []) query.append(k, v);
  } else if (event.queryStringParameters) {
    for (const [k, v] of Object.entries(event.queryStringParameters)) if (v !== undefined) query.append(k, v);
  }
  // The URL's host is only informative (the core routes on the path), but a Host header is the
  // caller's: one that is not a plain host[:port] would change the path the URL parses to.
  const host = [headers.get('host'), event.requestContext?.domainName].find((h) => h && PLAIN_HOST.test(h)) ?? 'lambda.local';
  const qs = query.toString();
  const url = `https://${host}${event.path || '/'}${qs ? `?${qs}` : ''}`;
  const method = (event.httpMethod || 'GET').toUpperCase();
  const hasBody = method !== 'GET' && method !== 'HEAD' && event.body != null;
  const sourceIp = event.requestContext?.identity?.sourceIp;
  if (sourceIp && !headers.has('x-forwarded-for')) headers.set('x-forwarded-for', sourceIp);
  const bytes = hasBody ? Buffer.from(event.body!, event.isBase64Encoded ? 'base64' : 'utf8') : undefined;
  // The body is whole already: handed to the core as bytes (no body stream). A text body without a
  // type is typed as fetch types a string body.
  if (hasBody && !event.isBase64Encoded && !headers.has('content-type')) headers.set('content-type', 'text/plain;charset=UTF-8');
  const request = new ShellRequest(url, { method, headers, bytes });
  if (signal?.aborted) request.leaving.leave();
  else signal?.addEventListener('abort', () => request.leaving.leave(), { once: true });
  return request;
}

/** The metadata a streaming Lambda sends before the body: status and headers. */
export function responseMetadata(response: Response): { statusCode: number; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    // API Gateway computes these itself in stream mode; a copied value would be wrong or rejected.
    if (k === 'content-length' || k === 'transfer-encoding' || k === 'connection') return;
    headers[k] = v;
  });
  return { statusCode: response.status, headers };
}
