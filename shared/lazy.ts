import type { McpGateway as McpGatewayImpl } from './mcp/gateway.ts';

/**
 * Code a request may not need, loaded by `import()` on first use: in a bundle (infra/bundling.ts,
 * code splitting) each is a chunk of its own that a cold start does not read or compile. The
 * gateway imports these stand-ins instead of the modules; they behave the same once loaded.
 */

/** The admin API (keys, teams; zod for its bodies): only `/admin/*` requests. */
export async function handleAdmin(...args: Parameters<typeof import('./admin/api.ts').handleAdmin>): Promise<Response> {
  return (await import('./admin/api.ts')).handleAdmin(...args);
}

/** `/admin/stats` and `/admin/dashboard` (the local logs' summary and its HTML page). */
export async function handleStatsRoute(...args: Parameters<typeof import('./telemetry/admin-stats.ts').handleStatsRoute>): Promise<Response> {
  return (await import('./telemetry/admin-stats.ts')).handleStatsRoute(...args);
}

/** The MCP gateway (shared/mcp), made on the first `/mcp` request with the arguments given here. */
export class McpGateway {
  private readonly args: ConstructorParameters<typeof McpGatewayImpl>;
  private impl?: Promise<McpGatewayImpl>;

  constructor(...args: ConstructorParameters<typeof McpGatewayImpl>) {
    this.args = args;
  }

  async handle(...args: Parameters<McpGatewayImpl['handle']>): ReturnType<McpGatewayImpl['handle']> {
    this.impl ??= import('./mcp/gateway.ts').then((m) => new m.McpGateway(...this.args));
    return (await this.impl).handle(...args);
  }
}
