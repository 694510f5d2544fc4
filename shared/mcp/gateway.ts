import type { GatewayConfig } from '../config/schema.ts';
import type { RequestContext } from '../core/context.ts';
import { GatewayError, toGatewayError } from '../http/errors.ts';
import { readBodyBytes } from '../http/body.ts';
import { fetchUpstream } from '../http/upstream.ts';
import { readAnswer } from '../http/answer.ts';
import { runExchange } from '../routing/execute.ts';
import type { Policy } from '../policy/index.ts';
import { captureBodies } from '../telemetry/bodies.ts';
import { RequestTrace, type RequestRecord } from '../telemetry/record.ts';
import { allowsServer, allowsTool, type McpAllowance } from './allow.ts';
import { classify, RPC, rpcError, toolName, type Classified, type RpcId } from './jsonrpc.ts';
import { relayBody } from './relay.ts';
import type { McpServerConfig } from './schema.ts';
import { errorText, jsonLinesLogger, type GatewayLogger } from '../telemetry/logger.ts';
import { utf8, webResponse } from '../http/bytes.ts';
import { WebHeaders } from '../http/web.ts';

/**
 * MCP tool servers behind the gateway: `/mcp/<server>` speaks the MCP Streamable HTTP transport to
 * clients and relays to the configured server with the server's own credential.
 *
 * - POST carries JSON-RPC messages (one, or a batch); the answer is `application/json` or a
 *   `text/event-stream`, relayed as it arrives. GET opens the server's stream; DELETE ends a session.
 *   `Mcp-Session-Id`, `MCP-Protocol-Version` and `Last-Event-ID` pass both ways.
 * - The caller's gateway key (Bearer or x-api-key) never reaches the server.
 * - `tools/list` answers are filtered to the tools the key may use (per event for streams); a
 *   `tools/call` of any other tool is answered by the gateway with a JSON-RPC error naming the tool,
 *   and nothing is forwarded. Tool calls count against the key's and team's requests per minute.
 * - One log record per JSON-RPC request (the HTTP request's record; further requests of a batch get
 *   their own records, ids `<request id>.<n>`).
 */

/** A refusal by the gateway itself, rendered as a JSON-RPC error with an HTTP status. */
class McpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly rpcCode: number,
    message: string,
    readonly kind: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Headers a client may send that the server needs; everything else (the key above all) stays here. */
const FORWARD_REQUEST_HEADERS = ['accept', 'content-type', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id', 'user-agent'];
/** Headers of the server's answer the client needs. */
const FORWARD_RESPONSE_HEADERS = ['content-type', 'mcp-session-id', 'mcp-protocol-version', 'cache-control', 'allow'];
/** How much of an application/json answer is looked at for its error codes (it is relayed as it arrives). */
const SNIFF_BYTES = 64 * 1024;
/** Largest application/json answer to a tools/list the gateway reads whole to filter. */
const MAX_FILTERED_JSON = 16 * 1024 * 1024;

interface Pending {
  method: string;
  record: RequestRecord;
}

export class McpGateway {
  private readonly servers: Map<string, McpServerConfig>;

  constructor(
    private readonly config: GatewayConfig,
    private readonly env: Record<string, string | undefined>,
    private readonly policy: Policy | undefined,
    private readonly log: GatewayLogger = jsonLinesLogger,
  ) {
    this.servers = new Map(Object.entries(config.mcp?.servers ?? {}));
  }

  /**
   * Answer one request on `/mcp/...`. Always returns a response (errors in JSON-RPC shape) and
   * ends the trace once the client has the last byte. `emit` writes the records of further batch members.
   */
  async handle({ request, path, trace, headers: baseHeaders, extras }: RequestContext, emit: (r: RequestRecord) => void): Promise<Response> {
    const name = path.slice('/mcp/'.length);
    trace.record.mcpServer = name || undefined;
    let firstId: RpcId | null = null;
    try {
      if (this.policy) {
        try {
          await this.policy.authenticate(request, trace, extras);
        } catch (err) {
          const ge = toGatewayError(err);
          throw new McpRefusal(ge.status, RPC.UNAUTHORIZED, ge.message, ge.kind, ge.code ?? 'invalid_api_key', { 'www-authenticate': 'Bearer realm="llm-gateway"' });
        }
      }
      const server = name ? this.servers.get(name) : undefined;
      if (!server) {
        throw new McpRefusal(404, RPC.SERVER_NOT_FOUND, `No MCP server named '${name}' is configured on this gateway${this.servers.size ? ` (configured: ${[...this.servers.keys()].join(', ')})` : ''}.`, 'not_found', 'mcp_server_not_found');
      }
      const allowance = this.allowance(trace, name);
      if (!allowsServer(allowance)) {
        throw new McpRefusal(403, RPC.FORBIDDEN, `This key may not use the MCP server '${name}'.`, 'permission', 'mcp_server_not_allowed');
      }
      switch (request.method) {
        case 'POST': {
          const res = await this.post(request, name, server, allowance, trace, baseHeaders, emit, (id) => (firstId = id));
          return res;
        }
        case 'GET':
        case 'DELETE':
          return await this.forward(request, name, server, allowance, trace, baseHeaders, undefined, new Map());
        default:
          throw new McpRefusal(405, RPC.INVALID_REQUEST, `Method ${request.method} is not allowed on ${path}; MCP uses POST, GET and DELETE.`, 'invalid_request', 'method_not_allowed', { allow: 'GET, POST, DELETE' });
      }
    } catch (err) {
      return this.refuse(err, trace, baseHeaders, firstId);
    }
  }

  private allowance(trace: RequestTrace, server: string): McpAllowance {
    return { server, serverTools: this.servers.get(server)?.tools, lists: this.policy?.mcpLists(trace) ?? [] };
  }

  private refuse(err: unknown, trace: RequestTrace, baseHeaders: Record<string, string>, id: RpcId | null): Response {
    let r: McpRefusal;
    if (err instanceof McpRefusal) r = err;
    else {
      const ge = toGatewayError(err);
      if (ge.kind === 'internal') this.log.error('mcp error', { requestId: trace.record.requestId, error: errorText(err, true) });
      const rpcCode =
        ge.kind === 'request_too_large' || ge.kind === 'invalid_request' ? RPC.INVALID_REQUEST : ge.kind === 'internal' ? RPC.INTERNAL_ERROR : ge.kind === 'rate_limit' ? RPC.RATE_LIMITED : RPC.UPSTREAM_ERROR;
      r = new McpRefusal(ge.status, rpcCode, ge.message, ge.kind, ge.code ?? ge.kind, ge.headers);
    }
    trace.fail(r.status === 499 ? 'client_closed' : 'error', { kind: r.kind, code: r.code, message: r.message });
    trace.record.mcpErrorCode = r.rpcCode;
    const body = JSON.stringify(rpcError(id, r.rpcCode, r.message));
    trace.record.responseBytes = Buffer.byteLength(body);
    trace.end(r.status);
    return webResponse(body, { status: r.status, headers: { 'content-type': 'application/json', ...r.headers, ...baseHeaders } });
  }

  private async post(
    request: Request,
    name: string,
    server: McpServerConfig,
    allowance: McpAllowance,
    trace: RequestTrace,
    baseHeaders: Record<string, string>,
    emit: (r: RequestRecord) => void,
    setFirstId: (id: RpcId) => void,
  ): Promise<Response> {
    const type = request.headers.get('content-type') ?? '';
    if (!/^application\/json\b/i.test(type.trim())) {
      throw new McpRefusal(415, RPC.INVALID_REQUEST, 'MCP messages must be sent as Content-Type: application/json.', 'invalid_request', 'unsupported_media_type');
    }
    const text = await readBounded(request, this.config.server.maxBodyBytes);
    trace.record.requestBytes = Buffer.byteLength(text);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new McpRefusal(400, RPC.PARSE_ERROR, 'Parse error: the request body is not valid JSON.', 'invalid_request', 'invalid_json');
    }
    const batch = Array.isArray(parsed);
    const raw = batch ? (parsed as unknown[]) : [parsed];
    if (batch && raw.length === 0) throw new McpRefusal(400, RPC.INVALID_REQUEST, 'Invalid Request: the batch is empty.', 'invalid_request', 'empty_batch');
    const max = this.config.mcp?.maxBatch ?? 20;
    if (raw.length > max) throw new McpRefusal(400, RPC.INVALID_REQUEST, `Invalid Request: a batch may hold at most ${max} messages; this one has ${raw.length}.`, 'invalid_request', 'batch_too_large');
    const messages: Classified[] = [];
    for (const [i, m] of raw.entries()) {
      const c = classify(m);
      if ('invalid' in c) throw new McpRefusal(400, RPC.INVALID_REQUEST, `Invalid Request${batch ? ` (message ${i + 1})` : ''}: ${c.invalid}.`, 'invalid_request', 'invalid_jsonrpc');
      messages.push(c);
    }

    // One record per JSON-RPC request: the first uses the HTTP request's trace, others their own.
    const pending = new Map<RpcId, Pending>();
    const requests = messages.filter((m): m is Extract<Classified, { kind: 'request' }> => m.kind === 'request');
    const bodies = this.config.logging.bodies;
    const siblings: RequestTrace[] = [];
    for (const [i, m] of requests.entries()) {
      let t = trace;
      if (i > 0) {
        t = new RequestTrace(`${trace.record.requestId}.${i + 1}`, request, trace.record.path, emit);
        if (bodies?.enabled) captureBodies(t, bodies);
        siblings.push(t);
      }
      t.record.mcpServer = name;
      t.record.mcpMethod = m.method.slice(0, 128);
      const tool = m.method === 'tools/call' ? toolName(m.params) : undefined;
      if (tool !== undefined) t.record.mcpTool = tool.slice(0, 256);
      t.captureRequest?.(m.params ?? {});
      pending.set(m.id, { method: m.method, record: t.record });
    }
    if (requests[0]) setFirstId(requests[0].id);
    else {
      // Notifications or responses only: the record names the first notification's method.
      const note = messages.find((m): m is Extract<Classified, { kind: 'notification' }> => m.kind === 'notification');
      if (note) trace.record.mcpMethod = note.method.slice(0, 128);
    }
    if (siblings.length) {
      trace.onEnd((r) => {
        for (const s of siblings) {
          for (const k of ['keyId', 'team', 'traceId', 'xrayTraceId', 'outcome', 'errorType', 'errorCode', 'errorMessage', 'rateLimit', 'rateLimitReason', 'requestBytes', 'responseBytes', 'stream', 'ttfbMs'] as const) {
            if (r[k] !== undefined && s.record[k] === undefined) (s.record as unknown as Record<string, unknown>)[k] = r[k];
          }
          s.end(r.status);
        }
      });
    }

    // Tools the key may not call: answered here, nothing forwarded (the whole batch, if any is refused).
    const refused = requests.filter((m) => m.method === 'tools/call' && !allowsTool(allowance, toolName(m.params) ?? ''));
    if (refused.length) {
      const answers = requests.map((m) => {
        const tool = toolName(m.params);
        const rec = pending.get(m.id)!.record;
        rec.mcpErrorCode = RPC.FORBIDDEN;
        rec.outcome = 'error';
        rec.errorType = 'permission';
        rec.errorCode = 'tool_not_allowed';
        if (refused.includes(m)) {
          rec.errorMessage = `This key may not call the tool '${tool ?? ''}' on the MCP server '${name}'.`;
          return rpcError(m.id, RPC.FORBIDDEN, rec.errorMessage, { tool: tool ?? null, server: name });
        }
        rec.errorCode = 'batch_refused';
        rec.errorMessage = 'Not forwarded: another call in the same batch was refused.';
        return rpcError(m.id, RPC.FORBIDDEN, rec.errorMessage);
      });
      const body = JSON.stringify(batch ? answers : answers[0]);
      trace.record.responseBytes = Buffer.byteLength(body);
      trace.captureResponse?.(body);
      trace.end(200);
      return webResponse(body, { status: 200, headers: { 'content-type': 'application/json', ...baseHeaders } });
    }

    const calls = requests.filter((m) => m.method === 'tools/call').length;
    // Tool calls count one request each against the key's and its team's requests per minute (a 429 is RATE_LIMITED).
    if (calls) await this.policy?.admitRequests(trace, calls);
    return this.forward(request, name, server, allowance, trace, baseHeaders, text, pending);
  }

  /** Relay one HTTP exchange to the server and its answer back, filtering tools/list answers. */
  private async forward(
    request: Request,
    name: string,
    server: McpServerConfig,
    allowance: McpAllowance,
    trace: RequestTrace,
    baseHeaders: Record<string, string>,
    body: string | undefined,
    pending: Map<RpcId, Pending>,
  ): Promise<Response> {
    const headers = new WebHeaders();
    for (const h of FORWARD_REQUEST_HEADERS) {
      const v = request.headers.get(h);
      if (v) headers.set(h, v);
    }
    if (!headers.has('accept')) headers.set('accept', request.method === 'GET' ? 'text/event-stream' : 'application/json, text/event-stream');
    for (const [k, v] of Object.entries(server.headers)) headers.set(k, v);
    headers.set('x-request-id', trace.record.requestId);
    if (server.apiKeyEnv) {
      const secret = this.env[server.apiKeyEnv];
      if (!secret) throw new McpRefusal(503, RPC.UPSTREAM_ERROR, `The MCP server '${name}' is not available: its credential is not configured.`, 'upstream', 'mcp_server_not_configured');
      headers.set(server.apiKeyHeader, server.apiKeyHeader === 'authorization' ? `Bearer ${secret}` : secret);
    }
    const url = new URL(server.url);
    // The client's query string goes along (the server's own URL query wins on a clash).
    for (const [k, v] of new URL(request.url).searchParams) if (!url.searchParams.has(k)) url.searchParams.append(k, v);

    const res = await runExchange(`mcp:${name}`, server, request.signal, (signal) => fetchUpstream(`mcp:${name}`, url.toString(), { method: request.method, headers, body }, signal), trace.context);
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel().catch(() => {});
      throw new McpRefusal(502, RPC.UPSTREAM_ERROR, `The MCP server '${name}' refused the gateway's credential (HTTP ${res.status}).`, 'upstream', 'mcp_upstream_auth');
    }
    const out = new WebHeaders(baseHeaders);
    for (const h of FORWARD_RESPONSE_HEADERS) {
      const v = res.headers.get(h);
      if (v) out.set(h, v);
    }
    const type = res.headers.get('content-type') ?? '';
    const eventStream = /^text\/event-stream\b/i.test(type);
    const json = /^application\/json\b/i.test(type);
    trace.record.stream = eventStream;
    const status = res.status;
    if (status >= 400) {
      trace.fail('error', { kind: status >= 500 ? 'upstream' : 'invalid_request', code: `mcp_upstream_${status}`, message: `The MCP server '${name}' answered HTTP ${status}.` });
    }
    const filterIds = new Set([...pending].filter(([, p]) => p.method === 'tools/list').map(([id]) => id));
    const inspect = (message: unknown): unknown | undefined => this.inspect(message, pending, filterIds, allowance);

    if (!res.body || status === 202 || status === 204) {
      await res.body?.cancel().catch(() => {});
      trace.record.responseBytes = 0;
      trace.end(status);
      return webResponse(null, { status, headers: out });
    }
    if (json && filterIds.size) {
      // A tools/list answer as one JSON document: read it whole (bounded), filter, send. One past
      // the bound is refused, never passed on cut short or unfiltered.
      let text: string;
      try {
        text = utf8(await readAnswer(res, `mcp:${name}`, MAX_FILTERED_JSON));
      } catch (err) {
        if (err instanceof GatewayError && err.code === 'upstream_answer_too_large') {
          throw new McpRefusal(502, RPC.UPSTREAM_ERROR, `The MCP server '${name}' sent a tools/list answer larger than ${MAX_FILTERED_JSON} bytes.`, 'upstream', 'mcp_answer_too_large');
        }
        throw err;
      }
      let sent = text;
      try {
        const doc = JSON.parse(text) as unknown;
        const next = Array.isArray(doc) ? doc.map((m) => inspect(m) ?? m) : (inspect(doc) ?? doc);
        sent = JSON.stringify(next);
      } catch {
        // Not JSON after all: passed on as it came.
      }
      trace.record.responseBytes = Buffer.byteLength(sent);
      trace.firstByte();
      trace.captureResponse?.(sent);
      trace.end(status);
      return webResponse(sent, { status, headers: out });
    }

    let bytes = 0;
    const sniff: Uint8Array[] = [];
    let sniffed = 0;
    const relayed = relayBody(res.body, eventStream, {
      sent: (chunk) => {
        if (bytes === 0) trace.firstByte();
        bytes += chunk.byteLength;
        trace.captureResponse?.(chunk);
        if (json && sniffed < SNIFF_BYTES) {
          sniff.push(chunk);
          sniffed += chunk.byteLength;
        }
      },
      done: () => {
        trace.record.responseBytes = bytes;
        if (json && sniffed < SNIFF_BYTES) {
          try {
            const doc = JSON.parse(Buffer.concat(sniff).toString('utf8')) as unknown;
            for (const m of Array.isArray(doc) ? doc : [doc]) inspect(m);
          } catch {
            // not JSON: nothing to note
          }
        }
        trace.end(status);
      },
      failed: (err) => {
        trace.record.responseBytes = bytes;
        const ge = toGatewayError(err);
        trace.fail('stream_error', ge);
        trace.end(status);
      },
      cancelled: () => {
        trace.record.responseBytes = bytes;
        trace.fail('client_closed', { kind: 'invalid_request', code: 'client_closed', message: 'The client closed the stream.' });
        trace.end(status);
      },
      inspect: eventStream
        ? (data) => {
            let msg: unknown;
            try {
              msg = JSON.parse(data);
            } catch {
              return undefined;
            }
            const next = inspect(msg);
            return next === undefined ? undefined : JSON.stringify(next);
          }
        : undefined,
    });
    return webResponse(relayed, { status, headers: out });
  }

  /**
   * Look at one message from the server: note a JSON-RPC error on the record of the request it
   * answers, and return a filtered copy of a tools/list result (undefined: pass it on unchanged).
   */
  private inspect(message: unknown, pending: Map<RpcId, Pending>, filterIds: Set<RpcId>, allowance: McpAllowance): unknown | undefined {
    if (typeof message !== 'object' || message === null) return undefined;
    const m = message as { id?: RpcId; error?: { code?: unknown }; result?: { tools?: unknown } };
    if (m.id === undefined || m.id === null) return undefined;
    const p = pending.get(m.id);
    if (!p) return undefined;
    if (m.error && typeof m.error.code === 'number') p.record.mcpErrorCode = m.error.code;
    if (!filterIds.has(m.id) || !m.result || !Array.isArray(m.result.tools)) return undefined;
    const tools = m.result.tools as Array<{ name?: unknown }>;
    const kept = tools.filter((t) => typeof t?.name === 'string' && allowsTool(allowance, t.name));
    if (kept.length === tools.length) return undefined;
    return { ...m, result: { ...m.result, tools: kept } };
  }
}

async function readBounded(request: Request, limit: number): Promise<string> {
  const tooLarge = () => new McpRefusal(413, RPC.INVALID_REQUEST, `The request body is larger than the gateway's limit of ${limit} bytes.`, 'request_too_large', 'request_too_large');
  return (await readBodyBytes(request, limit, tooLarge)).toString('utf8');
}
