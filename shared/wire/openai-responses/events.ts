import type { StopReason, StreamEvent, Usage } from '../../core/types.ts';
import { GatewayError } from '../../http/errors.ts';
import { isObject, readOpenAIUsage, SseReader, type Json } from '../common.ts';
import { readAnswerJson } from '../../http/answer.ts';

/** An OpenAI Responses answer (a Response object, or its SSE events) decoded into neutral StreamEvents, and its usage. */

/** Responses usage (`input_tokens` count cached ones too, as OpenAI reports them). */
export function readResponsesUsage(u: unknown): Usage | undefined {
  return readOpenAIUsage(u, 'input_tokens', 'output_tokens', 'input_tokens_details');
}

function responseStatus(r: Json): StopReason {
  const details = isObject(r.incomplete_details) ? r.incomplete_details : undefined;
  if (r.status === 'incomplete') return details?.reason === 'content_filter' ? 'content_filter' : 'length';
  const out = Array.isArray(r.output) ? r.output : [];
  return out.some((o) => isObject(o) && o.type === 'function_call') ? 'tool_calls' : 'stop';
}

/** A whole Responses object (`object: "response"`) as events. */
function* responseObjectEvents(r: Json): Generator<StreamEvent> {
  yield { type: 'start', id: String(r.id ?? 'resp'), model: String(r.model ?? '') };
  let tool = 0;
  for (const item of Array.isArray(r.output) ? r.output : []) {
    if (!isObject(item)) continue;
    if (item.type === 'message' && Array.isArray(item.content)) {
      for (const c of item.content) if (isObject(c) && c.type === 'output_text' && typeof c.text === 'string' && c.text) yield { type: 'text', delta: c.text };
    } else if (item.type === 'function_call') {
      const index = tool++;
      yield { type: 'tool_call', index, id: String(item.call_id ?? item.id ?? `call_${index}`), name: String(item.name ?? '') };
      if (typeof item.arguments === 'string' && item.arguments) yield { type: 'tool_args', index, delta: item.arguments };
    }
  }
  yield { type: 'finish', reason: responseStatus(r) };
  const usage = readResponsesUsage(r.usage);
  if (usage) yield { type: 'usage', usage };
}

export async function* responsesJsonEvents(res: Response, provider: string): AsyncGenerator<StreamEvent> {
  let body: unknown;
  try {
    body = await readAnswerJson(res, provider);
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw new GatewayError('upstream', `Provider "${provider}" answered with a body that is not JSON.`, { code: 'upstream_bad_response' });
  }
  if (!isObject(body)) throw new GatewayError('upstream', `Provider "${provider}" answered with an unexpected body.`, { code: 'upstream_bad_response' });
  yield* responseObjectEvents(body);
}

function jsonObject(data: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(data);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Responses SSE: text and function-call deltas as they come; finish and usage from the terminal event. */
export async function* responsesStreamEvents(res: Response, provider: string): AsyncGenerator<StreamEvent> {
  const sse = new SseReader(res.body!);
  const tools = new Map<number, number>();
  let started = false;
  try {
    while (!sse.done) {
      for (const e of await sse.read()) {
        const ev = jsonObject(e.data);
        // not a JSON object: ignored, as OpenAI's SDK does
        if (!ev) continue;
        const type = ev.type;
        if (type === 'response.created' && isObject(ev.response) && !started) {
          started = true;
          yield { type: 'start', id: String(ev.response.id ?? 'resp'), model: String(ev.response.model ?? '') };
        } else if (type === 'response.output_text.delta' && typeof ev.delta === 'string') {
          yield { type: 'text', delta: ev.delta };
        } else if (type === 'response.output_item.added' && isObject(ev.item) && ev.item.type === 'function_call') {
          const index = tools.size;
          tools.set(Number(ev.output_index ?? index), index);
          yield { type: 'tool_call', index, id: String(ev.item.call_id ?? ev.item.id ?? `call_${index}`), name: String(ev.item.name ?? '') };
        } else if (type === 'response.function_call_arguments.delta' && typeof ev.delta === 'string') {
          const index = tools.get(Number(ev.output_index)) ?? 0;
          yield { type: 'tool_args', index, delta: ev.delta };
        } else if ((type === 'response.completed' || type === 'response.incomplete') && isObject(ev.response)) {
          yield { type: 'finish', reason: responseStatus(ev.response) };
          const usage = readResponsesUsage(ev.response.usage);
          if (usage) yield { type: 'usage', usage };
          return;
        } else if (type === 'response.failed' || type === 'error') {
          throw new GatewayError('upstream', `Provider "${provider}" reported a failed response.`, { code: 'upstream_error' });
        }
      }
    }
    throw new GatewayError('upstream', `The stream from provider "${provider}" ended before it was complete.`, { code: 'upstream_stream_truncated' });
  } finally {
    sse.cancel();
  }
}
