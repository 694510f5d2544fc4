import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { GatewayError } from './errors.ts';

const encoder = new TextEncoder();

export const SSE_HEADERS: Record<string, string> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

export function encodeText(s: string): Uint8Array {
  return encoder.encode(s);
}

/** One `data:` event (OpenAI style). */
export function sseData(data: unknown): string {
  return `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** One named event (Anthropic style). */
export function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The most text one server-sent event may hold before the stream counts as broken: 32 MiB of
 * characters (the bound the gateway checks a whole JSON answer within). Larger than any event a
 * provider sends (a Responses `response.completed` carrying generated images is a few MB); an
 * upstream that never ends its event would otherwise hold the gateway's memory without limit.
 */
export const MAX_SSE_EVENT_CHARS = 32 * 1024 * 1024;

/** The error for an event past MAX_SSE_EVENT_CHARS: a broken upstream answer (502; a fallback before the first byte, an error ending after it). */
export function eventTooLarge(max: number): GatewayError {
  return new GatewayError('upstream', `The upstream stream sent an event larger than ${max} characters without ending it.`, { status: 502, code: 'upstream_invalid_response' });
}

/**
 * An event's end: a blank line, `\n\n` or `\r\n\r\n` (the earliest; `\r\n\r\n` where both
 * start at once) and, with `bareCr`, `\r\r` (lines ended by a bare CR, as MCP servers may send).
 */
const BLANK_LINE_OR_CR = /\r\n\r\n|\n\n|\r\r/g;

/**
 * Splits an SSE byte stream into whole events, keeping each event's exact text. Decoding is
 * incremental, so multi-byte characters split across chunks survive.
 *
 * Linear in the stream's length however its events are cut: an unfinished event is kept in the
 * pieces it came in (joined once, when its blank line comes), and each push searches only its own
 * text and the three characters before it (where a blank line split across pushes starts). An
 * event longer than `maxEventChars` throws (`eventTooLarge`). `bareCr`: `\r\r` ends an event too.
 */
export class SseSplitter {
  private readonly decoder = new TextDecoder();
  private readonly maxEventChars: number;
  private readonly bareCr: boolean;
  /** The unfinished event's text, in the pieces it came in. */
  private parts: string[] = [];
  private size = 0;
  /** The unfinished event's last three characters at most (also at the end of `parts`). */
  private tail = '';

  constructor(opts: { maxEventChars?: number; bareCr?: boolean } = {}) {
    this.maxEventChars = opts.maxEventChars ?? MAX_SSE_EVENT_CHARS;
    this.bareCr = opts.bareCr ?? false;
  }

  /** Whole events completed by this chunk (each with its trailing blank line). */
  push(chunk: Uint8Array): string[] {
    const text = this.decoder.decode(chunk, { stream: true });
    return text ? this.take(text) : [];
  }

  /** Whatever is left at the end of the stream (an unterminated last event, if any). */
  end(): string {
    const rest = this.parts.join('') + this.decoder.decode();
    this.parts = [];
    this.size = 0;
    this.tail = '';
    return rest;
  }

  private take(text: string): string[] {
    const out: string[] = [];
    // The search runs over the tail (already in `parts`) and the new text: a blank line that
    // starts in the tail ends in the new text (one wholly in the tail was found by the last push).
    const t = this.tail.length;
    const s = t ? this.tail + text : text;
    /** Where the text not yet given out as events starts in `s` (the tail goes out with `parts`). */
    let start = t;
    // Without bare CRs, two searches whose finds are kept until passed (one that found nothing is
    // not repeated), so a chunk of many small events is read once, not once per event.
    let lf = -2;
    let crlf = -2;
    for (;;) {
      // The first search runs from 0: a blank line may start in the tail.
      const from = start === t ? 0 : start;
      let end: number;
      if (this.bareCr) {
        BLANK_LINE_OR_CR.lastIndex = from;
        const m = BLANK_LINE_OR_CR.exec(s);
        end = m ? m.index + m[0].length : -1;
      } else {
        if (lf !== -1 && lf < from) lf = s.indexOf('\n\n', from);
        if (crlf !== -1 && crlf < from) crlf = s.indexOf('\r\n\r\n', from);
        end = lf < 0 && crlf < 0 ? -1 : crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf + 2;
      }
      if (end < 0) break;
      if (start === t && this.parts.length) {
        this.parts.push(s.slice(t, end));
        out.push(this.parts.join(''));
        this.parts = [];
        this.size = 0;
      } else out.push(s.slice(start, end));
      start = end;
    }
    // No blank line in this push: all its text continues the unfinished event.
    const rest = start === t ? text : s.slice(start);
    if (rest) {
      this.parts.push(rest);
      this.size += rest.length;
    }
    if (this.size > this.maxEventChars) {
      this.parts = [];
      this.size = 0;
      this.tail = '';
      throw eventTooLarge(this.maxEventChars);
    }
    // The unfinished event's last three characters: its old tail goes on only if no event ended here.
    this.tail = (start === t ? this.tail + rest : rest).slice(-3);
    return out;
  }
}

/**
 * eventsource-parser with the same bound on an unfinished event as SseSplitter: `feed` throws
 * (`eventTooLarge`) once more than `maxEventChars` have come since the last event.
 */
export function boundedSseParser(onEvent: (e: EventSourceMessage) => void, maxEventChars = MAX_SSE_EVENT_CHARS): { feed(text: string): void; reset(opts?: { consume?: boolean }): void } {
  let since = 0;
  const parser = createParser({
    onEvent: (e) => {
      since = 0;
      onEvent(e);
    },
  });
  return {
    feed(text: string) {
      since += text.length;
      parser.feed(text);
      // Events that completed in this text reset the count; what is left unfinished is at most this text.
      if (since > maxEventChars) throw eventTooLarge(maxEventChars);
    },
    reset: (opts) => parser.reset(opts),
  };
}

/** The joined `data:` lines of one event's text, or undefined when it has none. */
export function eventData(event: string): string | undefined {
  let data: string | undefined;
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith('data:')) {
      const v = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
      data = data === undefined ? v : `${data}\n${v}`;
    }
  }
  return data;
}
