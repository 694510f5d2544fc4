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
 * Splits an SSE byte stream into whole events, keeping each event's exact text. Decoding is
 * incremental, so multi-byte characters split across chunks survive.
 */
export class SseSplitter {
  private readonly decoder = new TextDecoder();
  private pending = '';

  /** Whole events completed by this chunk (each with its trailing blank line). */
  push(chunk: Uint8Array): string[] {
    this.pending += this.decoder.decode(chunk, { stream: true });
    return this.take();
  }

  /** Whatever is left at the end of the stream (an unterminated last event, if any). */
  end(): string {
    this.pending += this.decoder.decode();
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  private take(): string[] {
    const out: string[] = [];
    let start = 0;
    for (;;) {
      const lf = this.pending.indexOf('\n\n', start);
      const crlf = this.pending.indexOf('\r\n\r\n', start);
      if (lf < 0 && crlf < 0) break;
      const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf + 2;
      out.push(this.pending.slice(start, end));
      start = end;
    }
    if (start > 0) this.pending = this.pending.slice(start);
    return out;
  }
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
