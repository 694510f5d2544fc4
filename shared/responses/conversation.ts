import { createHash } from 'node:crypto';
import { GatewayError } from '../http/errors.ts';
import type { StoredResponse } from './store.ts';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A request's `input` as items (a string is one user message, as OpenAI lists it back). */
export function inputItems(input: unknown): Json[] {
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: input }] }];
  if (!Array.isArray(input)) return [];
  return input.map((item) => (isObject(item) && item.type === undefined && typeof item.role === 'string' ? { type: 'message', ...item } : (item as Json)));
}

/**
 * The conversation a stored response continues into: its own input items, then its output as
 * input. The ids of output items are left out (another upstream, or OpenAI without that state,
 * cannot resolve them) and reasoning items are dropped (only the upstream that made them can read them).
 */
export function conversationOf(rec: StoredResponse): Json[] {
  const output = Array.isArray(rec.response.output) ? (rec.response.output as unknown[]) : [];
  const turn = output.flatMap((item): Json[] => {
    if (!isObject(item) || item.type === 'reasoning') return [];
    const { id: _, ...rest } = item;
    return [item.type === 'message' || item.type === 'function_call' ? rest : item];
  });
  return [...rec.items, ...turn];
}

/** An item as `input_items` lists it: with an id (a stable one made up from the response id when the caller sent none). */
function listed(rec: StoredResponse, item: Json, i: number): Json {
  if (typeof item.id === 'string') return item;
  const prefix = item.type === 'function_call_output' ? 'fco' : item.type === 'function_call' ? 'fc' : 'msg';
  const id = `${prefix}_${createHash('sha256').update(`${rec.id}:${i}`).digest('hex').slice(0, 48)}`;
  return { id, ...item };
}

/** `GET /v1/responses/{id}/input_items`: `limit` (1-100, default 20), `order` (`desc` default, or `asc`), `after` / `before` (an item id). */
export function listInputItems(rec: StoredResponse, q: URLSearchParams): Json {
  const limitText = q.get('limit');
  const limit = limitText === null ? 20 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new GatewayError('invalid_request', "'limit' must be an integer between 1 and 100.", { param: 'limit', code: 'invalid_value' });
  const order = q.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw new GatewayError('invalid_request', "'order' must be 'asc' or 'desc'.", { param: 'order', code: 'invalid_value' });
  let items = rec.items.map((item, i) => listed(rec, item, i));
  if (order === 'desc') items.reverse();
  const cursor = (param: 'after' | 'before'): number => {
    const id = q.get(param);
    if (id === null) return -1;
    const at = items.findIndex((it) => it.id === id);
    if (at < 0) throw new GatewayError('invalid_request', `No input item with id '${id}' in response '${rec.id}'.`, { param, code: 'invalid_value' });
    return at;
  };
  const after = cursor('after');
  const before = cursor('before');
  // `before` pages back: the `limit` items right before the cursor.
  items = items.slice(after + 1, before >= 0 ? before : undefined);
  const data = before >= 0 ? items.slice(-limit) : items.slice(0, limit);
  return { object: 'list', data, first_id: (data[0]?.id as string | undefined) ?? null, last_id: (data[data.length - 1]?.id as string | undefined) ?? null, has_more: items.length > limit };
}
