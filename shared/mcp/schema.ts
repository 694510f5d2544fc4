import { z } from 'zod';

/**
 * The `mcp` section of the configuration: upstream MCP servers (Streamable HTTP transport) that
 * the gateway serves at `/mcp/<name>`, behind the same keys, allow lists, limits and logs as models.
 */

const envName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name such as GITHUB_MCP_TOKEN');

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');

/** Headers the gateway sets itself or must never forward from configuration. */
const RESERVED = new Set(['host', 'content-length', 'connection', 'transfer-encoding', 'mcp-session-id', 'mcp-protocol-version', 'traceparent', 'tracestate']);

export const mcpServerSchema = z
  .object({
    /** The server's Streamable HTTP endpoint (the one URL it answers POST/GET/DELETE on). */
    url: httpUrl,
    /**
     * Environment variable holding the server's credential. In AWS the stack makes it a Secrets
     * Manager secret (as for providers' `apiKeyEnv`); the client never sees it.
     */
    apiKeyEnv: envName.optional(),
    /** Header that carries the credential: `authorization` sends `Bearer <value>`, any other header the bare value. */
    apiKeyHeader: z
      .string()
      .regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name')
      .transform((h) => h.toLowerCase())
      .default('authorization'),
    /** Extra headers sent to the server on every call. */
    headers: z
      .record(z.string().regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name'), z.string())
      .refine((h) => !Object.keys(h).some((k) => RESERVED.has(k.toLowerCase())), `may not set ${[...RESERVED].join(', ')}`)
      .default({}),
    /** Tools of this server reachable through the gateway at all (`*` wildcards); absent: all. Keys and teams narrow it further. */
    tools: z.array(z.string().min(1).max(256)).max(1000).optional(),
    /** Milliseconds to wait for the server's response headers. */
    firstByteTimeoutMs: z.number().int().positive().max(900_000).default(60_000),
    /** Milliseconds one HTTP exchange may last, streams included (API Gateway ends streams at 15 minutes). */
    totalTimeoutMs: z.number().int().positive().max(900_000).default(900_000),
  })
  .strict();

export const mcpSchema = z
  .object({
    servers: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'MCP server names are lower-case letters, digits, - and _'), mcpServerSchema).default({}),
    /** Most JSON-RPC messages one POST may batch; more gets a JSON-RPC error and nothing is forwarded. */
    maxBatch: z.number().int().min(1).max(1000).default(20),
  })
  .strict();

export type McpConfig = z.output<typeof mcpSchema>;
export type McpServerConfig = z.output<typeof mcpServerSchema>;
