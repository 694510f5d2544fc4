import type { CachePlan } from '../cache/index.ts';
import type { FrontDoorCodec } from '../formats/types.ts';
import type { GuardedRequest } from '../guardrails/index.ts';
import type { RoutePlan } from '../routing/router.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import type { ChatRequest } from './types.ts';

/** What the shell (local server or Lambda) lends to a request. */
export interface RequestExtras {
  /** Keep work alive after the response (log writes); the shell awaits it before it idles. */
  waitUntil(p: Promise<unknown>): void;
  /**
   * The caller of an /admin/ route as already authorized by the shell (in AWS: the IAM caller ARN
   * API Gateway verified with SigV4, `requestContext.identity.userArn`). Never set from a header.
   */
  adminPrincipal?: string;
  /**
   * The caller of an /iam/ route as API Gateway verified it with SigV4 (`requestContext.identity.userArn`),
   * mapped to a team by `auth.iam.principals` (shared/auth). Never set from a header.
   */
  iamPrincipal?: string;
}

/** One request as the route handlers see it: made once by `Gateway.handle`, passed whole. */
export interface RequestContext {
  request: Request;
  /** The path as routed (without a trailing slash). */
  path: string;
  /** The query string with its `?` ('' when none). */
  query: string;
  /** The route's path parameters (`{id}` in the route table), percent-decoded. */
  params: Record<string, string>;
  trace: RequestTrace;
  /** Headers every answer to this request carries (request id, trace context, rate-limit headers once known). */
  headers: Record<string, string>;
  extras: RequestExtras;
}

/** A chat request once parsed, permitted, checked and admitted: what answering it needs. */
export interface ChatContext extends RequestContext {
  codec: FrontDoorCodec;
  req: ChatRequest;
  plan: RoutePlan;
  /** The input guardrails' verdict (with the output check, when the profile has one). */
  guard?: GuardedRequest;
  /** The response cache's plan for this request, when it may be cached. */
  cachePlan?: CachePlan;
}
