import type { ListedModel } from '../routing/router.ts';
import { jsonResponse } from '../http/errors.ts';

/**
 * `GET /v1/models` and `GET /v1/models/{id}` in the shape the caller's SDK reads. Anthropic's SDKs
 * (and Claude Code) send `anthropic-version` on every call and read Anthropic's page
 * (`{data: [{type: "model", id, display_name, created_at}], has_more, first_id, last_id}`, paged
 * with `limit` / `after_id` / `before_id`); everyone else gets OpenAI's list
 * (`{object: "list", data: [{id, object: "model", created, owned_by}]}`). The ids are the
 * configured model names the caller's key may use.
 */

const EPOCH = '1970-01-01T00:00:00Z';

function wantsAnthropic(request: Request): boolean {
  return request.headers.has('anthropic-version');
}

function anthropicModel(m: ListedModel) {
  return { type: 'model', id: m.id, display_name: m.id, created_at: EPOCH };
}

function openaiModel(m: ListedModel) {
  return { id: m.id, object: 'model', created: 0, owned_by: m.ownedBy };
}

export function listModelsResponse(request: Request, models: ListedModel[], headers: Record<string, string>): Response {
  if (!wantsAnthropic(request)) return jsonResponse({ object: 'list', data: models.map(openaiModel) }, 200, headers);
  const q = new URL(request.url).searchParams;
  const limitRaw = Number(q.get('limit') ?? '');
  const limit = Number.isInteger(limitRaw) && limitRaw >= 1 ? Math.min(limitRaw, 1000) : 1000;
  const afterId = q.get('after_id');
  const beforeId = q.get('before_id');
  let start = 0;
  let end = models.length;
  if (afterId) start = models.findIndex((m) => m.id === afterId) + 1;
  if (beforeId) {
    const i = models.findIndex((m) => m.id === beforeId);
    end = i < 0 ? models.length : i;
    start = Math.max(start, end - limit);
  }
  const page = models.slice(start, Math.min(end, start + limit));
  const hasMore = beforeId ? start > 0 : start + page.length < end;
  return jsonResponse(
    { data: page.map(anthropicModel), has_more: hasMore, first_id: page[0]?.id ?? null, last_id: page[page.length - 1]?.id ?? null },
    200,
    headers,
  );
}

export function modelResponse(request: Request, m: ListedModel, headers: Record<string, string>): Response {
  return jsonResponse(wantsAnthropic(request) ? anthropicModel(m) : openaiModel(m), 200, headers);
}
