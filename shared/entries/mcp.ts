/** The MCP gateway (shared/mcp): only `/mcp` requests. */
import '../gateway.ts'; // see README.md here
export { McpGateway } from '../mcp/gateway.ts';
