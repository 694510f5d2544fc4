import { modelAllowed } from '../policy/index.ts';

/**
 * MCP allow lists. An entry is `server` (every tool of that server) or `server/tool`; `*` matches
 * any run of characters in either part (`github/*`, `files/read_*`, `*`). An absent list allows
 * everything; an empty list allows no MCP server at all. Lists combine by intersection: the
 * server's own `tools` in the configuration, the key's `mcp`, and its team's `mcp`.
 */

export function serverAllowed(list: readonly string[] | undefined, server: string): boolean {
  if (!list) return true;
  return list.some((entry) => modelAllowed([entry.split('/')[0]!], server));
}

export function toolAllowed(list: readonly string[] | undefined, server: string, tool: string): boolean {
  if (!list) return true;
  const full = `${server}/${tool}`;
  return list.some((entry) => modelAllowed([entry.includes('/') ? entry : `${entry}/*`], full));
}

/** Tool patterns of a server's own configuration (`tools: [...]`, names without the server part). */
export function configToolAllowed(patterns: readonly string[] | undefined, tool: string): boolean {
  return !patterns || patterns.length === 0 || modelAllowed([...patterns], tool);
}

/** Everything that limits one caller on one server. */
export interface McpAllowance {
  server: string;
  /** The server's `tools` from the configuration. */
  serverTools?: readonly string[];
  /** The key's and the team's lists (absent: no limit from that side). */
  lists: ReadonlyArray<readonly string[] | undefined>;
}

export function allowsServer(a: McpAllowance): boolean {
  return a.lists.every((l) => serverAllowed(l, a.server));
}

export function allowsTool(a: McpAllowance, tool: string): boolean {
  return configToolAllowed(a.serverTools, tool) && a.lists.every((l) => toolAllowed(l, a.server, tool));
}
