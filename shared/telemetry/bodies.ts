import type { StreamEvent } from '../core/types.ts';
import type { RequestTrace } from './record.ts';
import { webResponse } from '../http/bytes.ts';

/**
 * Optional request/response body logging (`logging.bodies` in the configuration). Off by default.
 * When on, the request body (as JSON text) and the response text are kept on the trace, redacted
 * (built-in credential patterns plus the configured ones), then cut at `maxBytes` each, and written
 * into the record's `requestBody` / `responseBody` when the request ends.
 */

export interface BodyLoggingSettings {
  enabled: boolean;
  /** Cap per body, in bytes of UTF-8, after redaction. */
  maxBytes: number;
  /** Extra regular expressions (JavaScript syntax) whose matches are replaced by `[REDACTED]`. */
  redact: string[];
}

export const REDACTED = '[REDACTED]';

/** Credentials that must never reach a log, whatever the configuration says. */
export const BUILTIN_REDACTIONS: readonly RegExp[] = [
  /gwk_[a-z2-7]{20}_[A-Za-z0-9_-]{20,}/g, // gateway keys
  /\bsk-[A-Za-z0-9_-]{16,}/g, // OpenAI / Anthropic style secret keys
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, // AWS access key ids
  /\bBearer\s+[A-Za-z0-9._~+/-]{8,}=*/gi,
  /\bAIza[0-9A-Za-z_-]{35}\b/g, // Google API keys
  /\bgh[pousr]_[A-Za-z0-9]{30,}\b/g, // GitHub tokens
];

/** Compile configured patterns (the config schema has already checked they compile). */
export function compileRedactions(patterns: readonly string[]): RegExp[] {
  return [...BUILTIN_REDACTIONS, ...patterns.map((p) => new RegExp(p, 'g'))];
}

export function redact(text: string, patterns: readonly RegExp[]): string {
  let out = text;
  for (const re of patterns) {
    re.lastIndex = 0;
    out = out.replace(re, REDACTED);
  }
  return out;
}

/** Cut `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function capUtf8(text: string, maxBytes: number): { text: string; truncated: boolean } {
  if (text.length <= maxBytes / 3 || Buffer.byteLength(text, 'utf8') <= maxBytes) return { text, truncated: false };
  const buf = Buffer.from(text, 'utf8');
  let end = maxBytes;
  // Step back over UTF-8 continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return { text: buf.subarray(0, end).toString('utf8'), truncated: true };
}

/**
 * Keep a bounded amount of text: up to `maxBytes` plus a margin, so a secret that straddles the cap
 * is still matched by redaction before the final cut.
 */
class BoundedText {
  private parts: string[] = [];
  private size = 0;
  overflow = false;
  private readonly decoder = new TextDecoder();
  constructor(private readonly limit: number) {}
  push(chunk: string | Uint8Array): void {
    if (this.size >= this.limit) {
      this.overflow = true;
      return;
    }
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    this.parts.push(text);
    this.size += text.length;
  }
  text(): string {
    return this.parts.join('');
  }
}

const MARGIN = 4096;

/** Turn body logging on for one request: sets the trace's capture hooks and an end hook. */
const compiled = new WeakMap<BodyLoggingSettings, RegExp[]>();

export function captureBodies(trace: RequestTrace, settings: BodyLoggingSettings): void {
  if (!settings.enabled) return;
  let patterns = compiled.get(settings);
  if (!patterns) compiled.set(settings, (patterns = compileRedactions(settings.redact)));
  let requestText: string | undefined;
  const response = new BoundedText(settings.maxBytes + MARGIN);
  let sawResponse = false;
  trace.captureRequest = (body: unknown) => {
    try {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      requestText = text.length > settings.maxBytes + MARGIN ? text.slice(0, settings.maxBytes + MARGIN) : text;
    } catch {
      requestText = undefined;
    }
  };
  trace.captureResponse = (chunk: string | Uint8Array) => {
    sawResponse = true;
    response.push(chunk);
  };
  trace.onEnd((record) => {
    let truncated = false;
    if (requestText !== undefined) {
      const c = capUtf8(redact(requestText, patterns!), settings.maxBytes);
      record.requestBody = c.text;
      truncated ||= c.truncated;
    }
    if (sawResponse) {
      const c = capUtf8(redact(response.text(), patterns!), settings.maxBytes);
      record.responseBody = c.text;
      truncated ||= c.truncated || response.overflow;
    }
    if (truncated) record.bodiesTruncated = true;
  });
}

/**
 * The answer as it goes into the front door (after output guardrails, cache hits included): text
 * and tool-call arguments of translated answers (a tool call as `[tool_call name] ` before its
 * arguments). Capturing here, once, covers every front door alike. Returns the iterator untouched
 * when body logging is off; `first` (already pulled) is captured at once.
 */
export function tapEvents(first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, trace: RequestTrace): AsyncIterator<StreamEvent> {
  const capture = trace.captureResponse;
  if (!capture) return events;
  const see = (r: IteratorResult<StreamEvent>) => {
    if (r.done) return;
    const ev = r.value;
    if (ev.type === 'text' || ev.type === 'tool_args') capture(ev.delta);
    else if (ev.type === 'tool_call') capture(`[tool_call ${ev.name}] `);
  };
  see(first);
  return {
    async next() {
      const r = await events.next();
      see(r);
      return r;
    },
    async return(value?: unknown) {
      return (await events.return?.(value as never)) ?? { done: true, value: undefined };
    },
  };
}

/** The upstream body of a pass-through answer, captured as it streams to the front door. */
export function tapBody(res: Response, trace: RequestTrace): Response {
  const capture = trace.captureResponse;
  if (!capture || !res.body) return res;
  const body = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctrl) {
        capture(chunk);
        ctrl.enqueue(chunk);
      },
    }),
  );
  return webResponse(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}
