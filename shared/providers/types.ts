import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';
import type { CallSignal } from '../http/client-signal.ts';
import type { EmbeddingContext, EmbeddingRequest, EmbeddingResult } from '../core/embeddings.ts';

/** What a provider needs to know about the call besides the neutral request. */
export interface CallContext {
  requestId: string;
  /**
   * The attempt's deadline (first byte, idle gaps, whole call, the client's leaving) as one signal:
   * pass it to every upstream call; the attempt runner names the failure when it fires. Not a web
   * AbortSignal unless the runner was given one: `webSignal(signal)` makes one for an API that needs it.
   */
  signal: CallSignal;
  /** The API the client spoke. */
  frontDoor: FrontDoor;
  /** The client's request body as parsed JSON, for same-format pass-through. */
  rawBody: Record<string, unknown>;
  /** The client's request headers (for headers a same-format upstream should see). */
  headers: Headers;
  /** Model id to send upstream. */
  upstreamModel: string;
  /** The client's query string (`?beta=true`), with its `?`, for same-format pass-through; '' when none. */
  query?: string;
}

/**
 * A provider answers either with neutral events (which the front door encodes for its client) or,
 * when the upstream speaks the client's own API, with the upstream's HTTP response to pass through.
 */
export type ProviderResult =
  | { kind: 'events'; events: AsyncIterator<StreamEvent> }
  | { kind: 'passthrough'; response: Response };

export interface Provider {
  readonly name: string;
  readonly type: string;
  /** Whether this provider can serve calls now (e.g. its API key is present). */
  readonly live: boolean;
  /** Why it is not live, for the start-up banner. */
  readonly notLiveReason?: string;
  chat(req: ChatRequest, ctx: CallContext): Promise<ProviderResult>;
  /**
   * True when `chat` settles as soon as `ctx.signal` aborts (every wait in it is an upstream call
   * made with that signal, through shared/http/upstream.ts): the attempt runner then waits on it
   * without racing it against the deadline. Absent: raced, so a provider that ignores the signal
   * still fails over on time.
   */
  readonly honorsSignal?: boolean;
  /**
   * True when this provider sends the client's own body through (changing only the model and the
   * credential) for this front door, so request features the neutral model cannot carry
   * (`ChatRequest.untranslatable`) still reach the upstream. Absent: always translates.
   */
  passthrough?(door: FrontDoor): boolean;
  /**
   * Exact input-token count from the upstream, for `POST /v1/messages/count_tokens` (body in
   * Anthropic's format): a response with Anthropic's `{"input_tokens": n}` body (or an error).
   * Absent, or resolving to undefined (this model cannot be counted upstream): the gateway answers
   * with a local estimate.
   */
  countTokens?(body: Record<string, unknown>, ctx: CallContext): Promise<Response | undefined>;
  /**
   * Exact input-token count for Bedrock's CountTokens (`POST /bedrock/model/{id}/count-tokens`),
   * with the client's input as sent (an InvokeModel body or a Converse request). Undefined: this
   * model cannot be counted upstream (the gateway then estimates).
   */
  countBedrockTokens?(input: { invokeModel: { body: Uint8Array } } | { converse: Record<string, unknown> }, ctx: CallContext): Promise<number | undefined>;
  /** Embeddings (`POST /v1/embeddings`). Absent: the provider's models cannot embed. */
  embed?(req: EmbeddingRequest, ctx: EmbeddingContext): Promise<EmbeddingResult>;
}
