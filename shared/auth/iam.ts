import { reaimed } from '../http/bytes.ts';
import { GatewayError } from '../http/errors.ts';
import { modelAllowed } from '../policy/keys.ts';
import type { IamConfig } from './schema.ts';

/** The route prefix whose methods API Gateway authorizes with SigV4 (AWS_IAM). */
const IAM_PREFIX = '/iam';

/** Requests that came in under /iam, with the caller ARN the shell passed (undefined: none was). */
const iamRequests = new WeakMap<Request, { principal?: string }>();

/**
 * `/iam/<route>` is `<route>` for a caller API Gateway verified with SigV4: the request is re-aimed
 * at the route without the prefix and remembered with the shell's verified caller ARN
 * (`requestContext.identity.userArn`), which no header can set. Other paths come back as they are.
 * The admin API is not served under /iam (it has its own IAM-authorized routes).
 */
export function stripIamPrefix(request: Request, principal: string | undefined): Request {
  // Most requests are not under /iam: no URL parse for them.
  if (!request.url.includes(`${IAM_PREFIX}/`)) return request;
  const url = new URL(request.url);
  if (!url.pathname.startsWith(`${IAM_PREFIX}/`) || /^\/iam\/admin(\/|$)/.test(url.pathname)) return request;
  url.pathname = url.pathname.slice(IAM_PREFIX.length);
  const stripped = reaimed(request, url.href);
  iamRequests.set(stripped, { principal });
  return stripped;
}

/** Whether a request came in under /iam, and the caller ARN the shell passed with it. */
export function iamCallerOf(request: Request): { principal?: string } | undefined {
  return iamRequests.get(request);
}

/**
 * The role ARN behind an assumed-role session (`arn:aws:sts::<acct>:assumed-role/<role>/<session>`
 * -> `arn:aws:iam::<acct>:role/<role>`), so one pattern covers every session of a role (a Lambda's,
 * an ECS task's, an EC2 instance's). Undefined for any other ARN.
 */
export function roleOfSession(arn: string): string | undefined {
  const m = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/[^/]+$/.exec(arn);
  return m ? `arn:${m[1]}:iam::${m[2]}:role/${m[3]}` : undefined;
}

/** The configured mapping of a verified caller ARN (first match wins), or a 403 when none matches. */
export function mapIamCaller(config: IamConfig, arn: string): IamConfig['principals'][number] {
  const role = roleOfSession(arn);
  // modelAllowed is the allow-list matcher: `*` matches any run of characters, the rest literally.
  const found = config.principals.find((p) => modelAllowed([p.arnPattern], arn) || (role !== undefined && modelAllowed([p.arnPattern], role)));
  if (!found) throw new GatewayError('permission', `The IAM caller ${arn} is not mapped to a team of this gateway (auth.iam.principals).`, { code: 'iam_principal_not_mapped' });
  return found;
}

/** The 401 for an /iam request that reached the gateway without a verified caller. */
export function noIamCaller(): GatewayError {
  return new GatewayError('authentication', 'This route is for callers whose SigV4 signature API Gateway verified (AWS_IAM); no verified IAM caller came with the request.', { code: 'missing_iam_principal' });
}
