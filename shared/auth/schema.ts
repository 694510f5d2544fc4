import { z } from 'zod';

/**
 * Callers without gateway keys (docs/identity.md): `auth.oidc` (JWTs from OIDC issuers) and
 * `auth.iam` (AWS principals whose SigV4 signature API Gateway verified on /iam/...). Both map the
 * caller to a team of the store, whose limits and budgets apply as they do to the team's keys.
 */

const claimName = z.string().min(1).max(200);
const modelList = z.array(z.string().min(1)).min(1);
/** Signing algorithms a verifier may accept: asymmetric only (no `none`, no shared-secret HMAC). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export const oidcIssuerSchema = z
  .object({
    /** The `iss` value tokens carry, exactly (e.g. `https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCd`). */
    issuer: z.string().min(1),
    /** Accepted `aud` value(s): a token must name one of them. */
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    /** Where the issuer publishes its signing keys (JWKS); fetched on first use and cached. */
    jwksUrl: z.string().url().refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL'),
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).default(['RS256']),
    /** Seconds of clock difference tolerated on `exp`, `nbf` and `iat`. */
    clockSkewSeconds: z.number().int().min(0).max(600).default(60),
    /** Seconds the fetched JWKS is trusted before it is fetched again. */
    jwksCacheSeconds: z.number().int().min(0).max(86_400).default(600),
    /** Seconds between two JWKS fetches caused by an unknown `kid` (a rotated key is picked up after at most this). */
    jwksCooldownSeconds: z.number().int().min(0).max(3600).default(30),
    /** The claim naming the caller (logged as `subject`). */
    subjectClaim: claimName.default('sub'),
    /** The claim naming the caller's team (a string, or a list whose first entry is used). */
    teamClaim: claimName.default('team'),
    /** Team for tokens without the team claim; absent: such tokens are refused. */
    defaultTeam: z.string().min(1).optional(),
    /** A claim listing the models the caller may use (a list, or a space- or comma-separated string). */
    modelsClaim: claimName.optional(),
    /** Models for this issuer's callers when no models claim applies; absent: all. */
    models: modelList.optional(),
  })
  .strict();

export const iamPrincipalSchema = z
  .object({
    /**
     * A caller ARN pattern (`*` matches any run of characters), e.g.
     * `arn:aws:iam::123456789012:role/chat-lambda-*`. An assumed-role session
     * (`arn:aws:sts::<account>:assumed-role/<role>/<session>`) matches by its role's ARN too.
     */
    arnPattern: z.string().regex(/^arn:aws[a-z-]*:(iam|sts)::/, 'must be an IAM or STS ARN pattern (arn:aws:iam::<account>:role/<name>)'),
    team: z.string().min(1),
    /** Models this caller may use; absent: all. */
    models: modelList.optional(),
  })
  .strict();

export const oidcSchema = z
  .object({
    issuers: z.array(oidcIssuerSchema).min(1),
  })
  .strict()
  .superRefine((o, ctx) => {
    const seen = new Set<string>();
    o.issuers.forEach((i, n) => {
      if (seen.has(i.issuer)) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'issuer'], message: `issuer "${i.issuer}" is listed twice` });
      seen.add(i.issuer);
    });
  });

export const iamSchema = z
  .object({
    /** Accounts whose principals API Gateway lets through to /iam (default: the stack's own account). */
    accounts: z.array(z.string().regex(/^\d{12}$/, 'must be a 12-digit AWS account id')).default([]),
    /** AWS Organizations whose principals API Gateway lets through to /iam. */
    organizationIds: z.array(z.string().regex(/^o-[a-z0-9]{10,32}$/, 'must be an AWS Organizations id (o-...)')).default([]),
    /** Caller ARN patterns -> team, first match wins; a verified caller that matches none is refused. */
    principals: z.array(iamPrincipalSchema).min(1),
  })
  .strict();

export type OidcIssuerConfig = z.output<typeof oidcIssuerSchema>;
export type OidcConfig = z.output<typeof oidcSchema>;
export type IamConfig = z.output<typeof iamSchema>;
