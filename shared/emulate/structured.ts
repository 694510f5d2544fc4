import type { ChatRequest, ResponseFormat, StreamEvent, ToolDefinition } from '../core/types.ts';
import { isObject } from '../wire/common.ts';

/**
 * Structured output on translated routes (docs/translation.md), emulated by a forced tool whose
 * input schema is the answer's schema: the request gets the tool (and a tool choice that makes the
 * model call it), and the answer's call of that tool comes back as the message text, streamed as
 * text deltas, with finish reason `stop`. Same-format routes never come here: they pass
 * `response_format` / `text.format` as sent.
 *
 * - `json_schema`: a tool named after the schema, the schema as its input schema. The root must be
 *   an object schema (a tool's input is an object), as OpenAI's own strict mode requires.
 * - `json_object`: the same with an open object schema (any JSON object).
 * - With tools of the client's: the answer tool is offered beside them and the model must call one
 *   (`required`), or the tool the client forced; a call of a client tool reaches the client as a
 *   tool call, as it would from OpenAI. `tool_choice: none` forces the answer tool.
 * - Extended thinking is not sent: forcing a tool excludes it (Anthropic and Claude on Bedrock).
 */

/**
 * The `response_format` of Chat (`{type, json_schema: {name, schema, strict}}`) or the `text.format`
 * of Responses (`{type, name, schema, strict}`). Undefined for `text`; a string says what is wrong
 * (the caller lists it as untranslatable: a same-format upstream judges the value itself).
 */
export function parseResponseFormat(v: unknown): ResponseFormat | string | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) return 'must be an object.';
  if (v.type === 'text') return undefined;
  if (v.type === 'json_object') return { kind: 'json_object' };
  if (v.type !== 'json_schema') return `of type '${String(v.type)}' cannot be emulated (the types that translate are text, json_object and json_schema).`;
  const spec = isObject(v.json_schema) ? v.json_schema : v;
  if (typeof spec.name !== 'string' || !spec.name) return 'needs a schema name.';
  const schema = spec.schema ?? { type: 'object', properties: {} };
  if (!isObject(schema)) return "'schema' must be a JSON Schema object.";
  if (schema.type !== 'object') return "'schema' must have type 'object' at its root on this model's provider (the answer is emulated with a tool call, whose input is an object).";
  const out: ResponseFormat = { kind: 'json_schema', name: spec.name, schema };
  if (typeof spec.strict === 'boolean') out.strict = spec.strict;
  if (typeof spec.description === 'string') out.description = spec.description;
  return out;
}

/** The tool a structured answer is asked for with, named so it does not clash with the client's tools. */
function answerTool(req: ChatRequest, format: ResponseFormat): ToolDefinition {
  const base = (format.kind === 'json_schema' ? format.name : 'json_answer').replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 56) || 'json_answer';
  let name = base;
  for (let i = 2; req.tools?.some((t) => t.name === name); i++) name = `${base}_${i}`;
  if (format.kind === 'json_object') return { name, description: 'Give the answer as a JSON object: the input of this tool is the answer.', parameters: { type: 'object', additionalProperties: true } };
  return { name, description: format.description ?? `Give the answer as the input of this tool: it must match the schema '${format.name}'.`, parameters: format.schema };
}

/** The request as the provider gets it: the answer tool added and chosen. */
export function structuredRequest(req: ChatRequest): { req: ChatRequest; tool: string } {
  const format = req.responseFormat!;
  const tool = answerTool(req, format);
  const clientTools = req.tools ?? [];
  const useClientTools = clientTools.length > 0 && req.toolChoice !== 'none';
  const out: ChatRequest = {
    ...req,
    tools: [...clientTools, tool],
    toolChoice: useClientTools ? (typeof req.toolChoice === 'object' ? req.toolChoice : 'required') : { name: tool.name },
  };
  delete out.responseFormat;
  delete out.thinking;
  return { req: out, tool: tool.name };
}

/**
 * The provider's events as the client expects them: the answer tool's call becomes text deltas
 * (its arguments are the JSON answer), its finish reason `stop`; calls of the client's tools pass
 * with their indexes renumbered to leave no gap.
 */
export async function* structuredEvents(events: AsyncIterator<StreamEvent>, tool: string): AsyncGenerator<StreamEvent> {
  let answerIndex: number | undefined;
  const clientIndex = new Map<number, number>();
  try {
    for (let r = await events.next(); !r.done; r = await events.next()) {
      const ev = r.value;
      if (ev.type === 'tool_call') {
        if (ev.name === tool && answerIndex === undefined) answerIndex = ev.index;
        else {
          clientIndex.set(ev.index, clientIndex.size);
          yield { ...ev, index: clientIndex.get(ev.index)! };
        }
      } else if (ev.type === 'tool_args') {
        if (ev.index === answerIndex) {
          if (ev.delta) yield { type: 'text', delta: ev.delta };
        } else yield { ...ev, index: clientIndex.get(ev.index) ?? ev.index };
      } else if (ev.type === 'finish' && ev.reason === 'tool_calls' && clientIndex.size === 0) yield { type: 'finish', reason: 'stop' };
      else yield ev;
    }
  } finally {
    await events.return?.();
  }
}
