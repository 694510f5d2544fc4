import type Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';

/**
 * Reading a streamed answer through an official SDK as a caller would: the text, and the error a
 * caller must see. The SDKs end some broken streams quietly (Anthropic's without `message_stop`,
 * OpenAI Responses' with a `response.failed` or `error` event): those count as errors here.
 */

export interface StreamRead {
  text: string;
  error?: string;
}

/** An OpenAI Responses stream: its output text, and an error unless it reached `response.completed`. */
export async function readResponsesStream(stream: AsyncIterable<OpenAI.Responses.ResponseStreamEvent>): Promise<StreamRead> {
  const out: StreamRead = { text: '' };
  let completed = false;
  for await (const ev of stream) {
    if (ev.type === 'response.output_text.delta') out.text += ev.delta;
    if (ev.type === 'response.completed') completed = true;
    if (ev.type === 'response.failed' || ev.type === 'error') out.error ??= `${ev.type} event`;
  }
  if (!completed) out.error ??= 'the stream ended without response.completed';
  return out;
}

/** An Anthropic Messages stream: its text, and an error unless it reached `message_stop`. */
export async function readMessagesStream(stream: AsyncIterable<Anthropic.Messages.RawMessageStreamEvent>): Promise<StreamRead> {
  const out: StreamRead = { text: '' };
  let stopped = false;
  for await (const ev of stream) {
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') out.text += ev.delta.text;
    if (ev.type === 'message_stop') stopped = true;
  }
  if (!stopped) out.error ??= 'the stream ended without message_stop';
  return out;
}
