import type { ChatRequest, FrontDoor, StreamEvent } from '../core/types.ts';
import type { GatewayError } from '../http/errors.ts';
import type { RequestTrace } from '../telemetry/record.ts';

export interface EncodeMeta {
  /** Unix seconds, for the `created` fields of OpenAI objects. */
  created: number;
  /** Headers for the client (request id, served-by, rate limits). */
  headers: Record<string, string>;
}

/**
 * A client-facing chat API. The gateway routes a request to its front door, which decodes the body
 * into the neutral ChatRequest, and encodes the answer back: from neutral events (translated
 * routes) or by passing a same-format upstream response through.
 */
export interface FrontDoorCodec {
  readonly door: FrontDoor;
  /**
   * For a door whose wire body is not what the pipeline runs (Bedrock's InvokeModel): the body
   * and headers to decode with `parse` and to hand to providers. Absent: the request's own.
   */
  prepare?(body: unknown, request: Request): { body: Record<string, unknown>; headers: Headers };
  /** Decode and check the request body; throws a GatewayError (400) naming the bad parameter. */
  parse(body: unknown, request: Request): ChatRequest;
  /** Render an error in this API's error shape. */
  error(err: GatewayError): Response;
  /** Answer from neutral events; `first` has already been pulled (so failures before output are clean errors). */
  respondFromEvents(req: ChatRequest, first: IteratorResult<StreamEvent>, events: AsyncIterator<StreamEvent>, meta: EncodeMeta, trace: RequestTrace): Promise<Response>;
  /** Pass a same-format upstream response through, reading usage on the side. */
  respondPassthrough(req: ChatRequest, upstream: Response, meta: EncodeMeta, trace: RequestTrace): Response;
}
