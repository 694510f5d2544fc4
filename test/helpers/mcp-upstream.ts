import { randomUUID } from 'node:crypto';
import { type IncomingHttpHeaders } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { startLoopback } from './loopback.ts';

/**
 * A real MCP server (the official SDK's McpServer over its StreamableHTTPServerTransport) on
 * loopback, standing in for an upstream tool server. It demands its own bearer token, records every
 * HTTP request's method and headers, and counts tool executions per tool.
 */

export interface McpUpstreamRequest {
  method: string;
  headers: IncomingHttpHeaders;
}

export interface McpUpstream {
  url: string;
  token: string;
  requests: McpUpstreamRequest[];
  /** Executions per tool name (a refused call must never show up here). */
  calls: Map<string, number>;
  /** Arguments of the last execution per tool. */
  lastArgs: Map<string, unknown>;
  sessionsOpened: string[];
  sessionsClosed: string[];
  /** The SDK server of each session, by session id (to send server-initiated messages). */
  servers: Map<string, McpServer>;
  /** Resolved by the test when its client has seen the first progress event of `progress_count`. */
  progressSeen: { resolve?: () => void };
  close(): Promise<void>;
}

export const TOOL_NAMES = ['echo', 'add', 'progress_count', 'secret_delete'];

function buildServer(up: McpUpstream, hugeToolBytes?: number): McpServer {
  const server = new McpServer({ name: 'test-upstream', version: '1.0.0' });
  const count = (name: string, args: unknown) => {
    up.calls.set(name, (up.calls.get(name) ?? 0) + 1);
    up.lastArgs.set(name, args);
  };
  server.registerTool('echo', { description: 'Echo the text back', inputSchema: { text: z.string() } }, async (args) => {
    count('echo', args);
    return { content: [{ type: 'text', text: `echo: ${args.text}` }] };
  });
  server.registerTool('add', { description: 'Add two numbers', inputSchema: { a: z.number(), b: z.number() } }, async (args) => {
    count('add', args);
    return { content: [{ type: 'text', text: String(args.a + args.b) }] };
  });
  server.registerTool('progress_count', { description: 'Counts to n, reporting progress', inputSchema: { n: z.number().int().min(1).max(10) } }, async (args, extra) => {
    count('progress_count', args);
    const token = extra._meta?.progressToken;
    // The first progress event must reach the client while this call is still running: the tool
    // waits (bounded) for the client to report it before finishing. A relay that buffered the
    // stream would make it wait out the bound, and the answer says so.
    const seen = new Promise<boolean>((resolve) => {
      up.progressSeen.resolve = () => resolve(true);
      setTimeout(() => resolve(false), 5_000).unref();
    });
    for (let i = 1; i <= args.n; i++) {
      if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: args.n } });
      if (i === 1 && token !== undefined && !(await seen)) return { content: [{ type: 'text', text: 'progress was not relayed while the call ran' }], isError: true };
    }
    return { content: [{ type: 'text', text: `counted to ${args.n}` }] };
  });
  // A tool whose description alone makes the tools/list answer that many bytes and more.
  if (hugeToolBytes) server.registerTool('huge', { description: 'x'.repeat(hugeToolBytes), inputSchema: {} }, async () => ({ content: [{ type: 'text', text: 'huge' }] }));
  server.registerTool('secret_delete', { description: 'A tool no test key may call', inputSchema: { path: z.string() } }, async (args) => {
    count('secret_delete', args);
    return { content: [{ type: 'text', text: `deleted ${args.path}` }] };
  });
  return server;
}

export async function startMcpUpstream(opts: { token: string; jsonResponse?: boolean; hugeToolBytes?: number }): Promise<McpUpstream> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const up: McpUpstream = {
    url: '',
    token: opts.token,
    requests: [],
    calls: new Map(),
    lastArgs: new Map(),
    sessionsOpened: [],
    sessionsClosed: [],
    servers: new Map(),
    progressSeen: {},
    close: async () => {},
  };
  const lb = await startLoopback(async (req, res) => {
    up.requests.push({ method: req.method ?? '', headers: req.headers });
    if (req.headers.authorization !== `Bearer ${opts.token}`) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'upstream says: bad token' } }));
      return;
    }
    const sid = req.headers['mcp-session-id'];
    let transport = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (!transport) {
      if (typeof sid === 'string') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
        return;
      }
      const mcp = buildServer(up, opts.hugeToolBytes);
      const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: opts.jsonResponse ?? false,
        onsessioninitialized: (id) => {
          transports.set(id, t);
          up.sessionsOpened.push(id);
          up.servers.set(id, mcp);
        },
        onsessionclosed: (id) => {
          transports.delete(id);
          up.sessionsClosed.push(id);
        },
      });
      await mcp.connect(t);
      transport = t;
    }
    await transport.handleRequest(req, res);
  });
  up.url = `http://127.0.0.1:${lb.port}/mcp`;
  up.close = async () => {
    await Promise.all([...transports.values()].map((t) => t.close().catch(() => {})));
    await lb.close();
  };
  return up;
}
