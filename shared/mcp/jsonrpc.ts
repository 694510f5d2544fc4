/**
 * JSON-RPC 2.0 as MCP uses it: classify incoming messages, and build the error answers the gateway
 * gives itself (in JSON-RPC shape, so MCP clients surface them as errors of the request they sent).
 */

export type RpcId = string | number;

/** Standard JSON-RPC codes, and the gateway's own in the implementation-defined range (-32000..-32099). */
export const RPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** The upstream MCP server failed, timed out or could not be reached. */
  UPSTREAM_ERROR: -32000,
  /** No (valid) gateway key. */
  UNAUTHORIZED: -32001,
  /** The key may not use this server or tool. */
  FORBIDDEN: -32003,
  /** No MCP server of that name is configured. */
  SERVER_NOT_FOUND: -32004,
  /** A rate limit of the key or its team refused the call. */
  RATE_LIMITED: -32029,
} as const;

export type Classified =
  | { kind: 'request'; id: RpcId; method: string; params: unknown; message: Record<string, unknown> }
  | { kind: 'notification'; method: string; params: unknown; message: Record<string, unknown> }
  | { kind: 'response'; id: RpcId | null; error?: { code?: unknown }; message: Record<string, unknown> };

function isId(v: unknown): v is RpcId {
  return typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v));
}

/** What a message is, or why it is not a valid JSON-RPC 2.0 message. */
export function classify(m: unknown): Classified | { invalid: string } {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return { invalid: 'each message must be a JSON object' };
  const o = m as Record<string, unknown>;
  if (o.jsonrpc !== '2.0') return { invalid: 'each message must have "jsonrpc": "2.0"' };
  if ('method' in o) {
    if (typeof o.method !== 'string' || !o.method) return { invalid: '"method" must be a non-empty string' };
    if (o.params !== undefined && (typeof o.params !== 'object' || o.params === null)) return { invalid: '"params" must be an object or an array' };
    if (o.id === undefined) return { kind: 'notification', method: o.method, params: o.params, message: o };
    if (!isId(o.id)) return { invalid: '"id" must be a string or an integer' };
    return { kind: 'request', id: o.id, method: o.method, params: o.params, message: o };
  }
  if ('result' in o !== 'error' in o && (isId(o.id) || o.id === null)) {
    return { kind: 'response', id: o.id as RpcId | null, error: o.error as { code?: unknown } | undefined, message: o };
  }
  return { invalid: 'not a JSON-RPC request, notification or response' };
}

export function rpcError(id: RpcId | null, code: number, message: string, data?: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}

/** The `name` of a `tools/call` request's params, when it is a string. */
export function toolName(params: unknown): string | undefined {
  const name = (params as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? name : undefined;
}
