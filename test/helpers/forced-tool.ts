import { schemaSample } from '../../shared/providers/mock/index.ts';

/**
 * What a real model does when a request forces a tool: it calls it with input valid for the tool's
 * schema. The mock upstreams answer so when no script is queued (emulated structured output).
 * Returns the call's name and its input JSON split in two fragments (as streamed), or undefined
 * when the request forces no tool.
 */
export function forcedToolCall(name: string | undefined, tools: { name: string; schema: unknown }[]): { name: string; input: string[] } | undefined {
  const tool = name === undefined ? undefined : tools.find((t) => t.name === name);
  if (!tool || typeof tool.schema !== 'object' || tool.schema === null) return undefined;
  const json = JSON.stringify(schemaSample(tool.schema as Record<string, unknown>, 'sample'));
  const cut = Math.ceil(json.length / 2);
  return { name: tool.name, input: [json.slice(0, cut), json.slice(cut)] };
}
