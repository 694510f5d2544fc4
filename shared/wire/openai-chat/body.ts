import type { ChatMessage, ChatRequest, ContentPart, ImagePart, ToolChoice } from '../../core/types.ts';
import { GatewayError } from '../../http/errors.ts';
import { textOf, unsupported, type Json } from '../common.ts';

/**
 * The neutral ChatRequest as an OpenAI Chat Completions request body, for clients that spoke
 * another API (Anthropic Messages, or OpenAI Responses toward a server without `/responses`).
 */

/** `openai` is api.openai.com (or a faithful copy); `openai-compatible` is vLLM, Ollama, LM Studio, ... */
export type OpenAIFlavor = 'openai' | 'openai-compatible';

/** An image as Chat Completions wants it: the http(s) URL, or the bytes as a `data:` URL. */
function imageUrl(p: ImagePart): string {
  if (p.url) return p.url;
  if (p.data !== undefined) return `data:${p.mediaType ?? 'image/png'};base64,${p.data}`;
  throw new GatewayError('invalid_request', 'An image has neither a URL nor data.', { code: 'invalid_value' });
}

/** A user message's content: a plain string for a single text part, else an array of parts. */
function userContent(parts: ContentPart[]): string | Json[] {
  if (parts.length === 0) return '';
  if (parts.length === 1 && parts[0]!.type === 'text') return parts[0]!.text;
  return parts.map((p) => (p.type === 'text' ? { type: 'text', text: p.text } : { type: 'image_url', image_url: { url: imageUrl(p) } }));
}

function toolChoice(tc: ToolChoice): unknown {
  return typeof tc === 'string' ? tc : { type: 'function', function: { name: tc.name } };
}

/**
 * Messages in Chat Completions order. Notes on what cannot be carried one to one:
 * - Chat Completions tool messages hold text only; images in a tool result follow the run of tool
 *   messages as one user message (OpenAI requires the tool messages right after the assistant's
 *   tool calls, so nothing may come between them).
 * - Assistant messages hold text only; an image in an assistant turn is rejected.
 */
function toChatMessages(req: ChatRequest): Json[] {
  const out: Json[] = [];
  if (req.system !== undefined && req.system !== '') out.push({ role: 'system', content: req.system });
  let pendingImages: Json[] = [];
  const flushImages = () => {
    if (pendingImages.length) out.push({ role: 'user', content: pendingImages });
    pendingImages = [];
  };
  req.messages.forEach((m: ChatMessage, i) => {
    if (m.role !== 'tool') flushImages();
    switch (m.role) {
      case 'user':
        // A mid-conversation system message stays a system message at its position (text only).
        if (m.fromSystem) {
          out.push({ role: 'system', content: textOf(m.content) });
          const images = m.content.filter((p): p is ImagePart => p.type === 'image');
          if (images.length) out.push({ role: 'user', content: images.map((img) => ({ type: 'image_url', image_url: { url: imageUrl(img) } })) });
        } else out.push({ role: 'user', content: userContent(m.content) });
        break;
      case 'assistant': {
        if (m.content.some((p) => p.type === 'image')) throw unsupported(`messages[${i}]: the upstream cannot take images in an assistant turn.`, `messages[${i}].content`);
        const text = textOf(m.content);
        const msg: Json = { role: 'assistant', content: text === '' && m.toolCalls?.length ? null : text };
        if (m.toolCalls?.length) msg.tool_calls = m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
        out.push(msg);
        break;
      }
      case 'tool': {
        out.push({ role: 'tool', tool_call_id: m.toolCallId, content: textOf(m.content) });
        const images = m.content.filter((p): p is ImagePart => p.type === 'image');
        if (images.length) {
          pendingImages.push({ type: 'text', text: `Image${images.length > 1 ? 's' : ''} from the result of tool call ${m.toolCallId}:` });
          for (const img of images) pendingImages.push({ type: 'image_url', image_url: { url: imageUrl(img) } });
        }
        break;
      }
    }
  });
  flushImages();
  return out;
}

/** The Chat Completions body for a translated call. Streams always ask for the usage chunk. */
export function toChatCompletionsBody(req: ChatRequest, upstreamModel: string, flavor: OpenAIFlavor): Json {
  const body: Json = { model: upstreamModel, messages: toChatMessages(req) };
  if (req.tools?.length) {
    body.tools = req.tools.map((t) => ({
      type: 'function',
      function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: t.parameters },
    }));
    if (req.toolChoice !== undefined) body.tool_choice = toolChoice(req.toolChoice);
    // OpenAI takes parallel_tool_calls only along with tools.
    if (req.parallelToolCalls === false) body.parallel_tool_calls = false;
  }
  // Without tools, tool_choice is left out: OpenAI refuses it there, and there is nothing to choose.
  if (req.maxTokens !== undefined) body[flavor === 'openai' ? 'max_completion_tokens' : 'max_tokens'] = req.maxTokens;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.topP !== undefined) body.top_p = req.topP;
  if (req.stop?.length) body.stop = req.stop;
  if (req.user !== undefined) body.user = req.user;
  if (req.stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}
