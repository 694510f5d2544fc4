/** Whether a request path is one of the MCP routes (`/mcp`, `/mcp/<server>`). */
export function isMcpPath(path: string): boolean {
  return path === '/mcp' || path.startsWith('/mcp/');
}
