import type { ChatRequest, ContentPart } from '../core/types.ts';

/**
 * A cheap, conservative prompt-size estimate for reserving tokens before the call (about four
 * characters a token, plus per-message overhead). The reservation is settled with the upstream's
 * real usage afterwards, so it only has to be in the right range, and fast.
 */
export function estimatePromptTokens(req: ChatRequest): number {
  let chars = req.system?.length ?? 0;
  let extra = 3;
  const parts = (content: ContentPart[]) => {
    for (const p of content) {
      if (p.type === 'text') chars += p.text.length;
      else extra += 800; // an image: a typical tile cost
    }
  };
  for (const m of req.messages) {
    extra += 4;
    parts(m.content);
    if (m.role === 'assistant') for (const c of m.toolCalls ?? []) chars += c.name.length + c.arguments.length;
  }
  for (const t of req.tools ?? []) chars += t.name.length + (t.description?.length ?? 0) + JSON.stringify(t.parameters).length;
  return Math.ceil(chars / 4) + extra;
}
