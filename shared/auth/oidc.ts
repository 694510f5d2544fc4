import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload } from 'jose';
import { GatewayError } from '../http/errors.ts';
import type { OidcConfig, OidcIssuerConfig } from './schema.ts';

/** What a verified token says about its caller. */
export interface OidcCaller {
  issuer: string;
  subject: string;
  team: string;
  /** Models from the token's models claim or the issuer's configuration; undefined: all. */
  models?: string[];
}

function refuse(message: string, code = 'invalid_token'): GatewayError {
  return new GatewayError('authentication', message, { code });
}

/** The 401 for a token jose refused (never quoting the token); undefined when the failure is not the token's. */
function tokenFailure(err: unknown, issuer: OidcIssuerConfig): GatewayError | undefined {
  if (err instanceof errors.JWTExpired) return refuse('The token has expired.', 'token_expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return refuse(`The token's audience is not accepted here (expected ${[issuer.audience].flat().join(' or ')}).`, 'invalid_audience');
    if (err.claim === 'iss') return refuse('The token was not issued by an accepted issuer.', 'invalid_issuer');
    return refuse(`The token's "${err.claim}" claim is not valid (${err.reason}).`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return refuse(`The token's signing algorithm is not accepted (allowed: ${issuer.algorithms.join(', ')}).`, 'invalid_token_algorithm');
  if (err instanceof errors.JWSSignatureVerificationFailed) return refuse('The token signature does not verify.', 'invalid_token_signature');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return refuse("No signing key of the token's issuer matches the token's key id.", 'invalid_token_signature');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return refuse('The token is not a valid signed JWT.');
  return undefined;
}

/** A claim as a list of strings: a list, or a space- or comma-separated string. */
function stringList(v: unknown): string[] | undefined {
  if (typeof v === 'string') return v.split(/[\s,]+/).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  return undefined;
}

/**
 * Verifies JWTs from the configured OIDC issuers with `jose`: signature against the issuer's JWKS
 * (fetched on first use, cached, fetched again on an unknown `kid` after the cooldown, so a rotated
 * key is picked up), allowed algorithms, issuer, audience, expiry and not-before with the
 * configured clock skew. The token is never logged or quoted.
 */
export class OidcVerifier {
  private readonly issuers = new Map<string, { config: OidcIssuerConfig; jwks: ReturnType<typeof createRemoteJWKSet> }>();

  constructor(config: OidcConfig) {
    for (const c of config.issuers) {
      const jwks = createRemoteJWKSet(new URL(c.jwksUrl), { cacheMaxAge: c.jwksCacheSeconds * 1000, cooldownDuration: c.jwksCooldownSeconds * 1000, timeoutDuration: 5000 });
      this.issuers.set(c.issuer, { config: c, jwks });
    }
  }

  async verify(token: string, now: number): Promise<OidcCaller> {
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw refuse('The token is not a valid JWT.');
    }
    // Picks the issuer's keys; jwtVerify then checks `iss` against it with the signature.
    const entry = typeof iss === 'string' ? this.issuers.get(iss) : undefined;
    if (!entry) throw refuse('The token was not issued by an accepted issuer.', 'invalid_issuer');
    const c = entry.config;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, entry.jwks, { issuer: c.issuer, audience: c.audience, algorithms: c.algorithms, clockTolerance: c.clockSkewSeconds, currentDate: new Date(now) }));
    } catch (err) {
      throw (
        tokenFailure(err, c) ??
        new GatewayError('overloaded', "The gateway cannot reach the token issuer's signing keys right now; try again shortly.", { status: 503, code: 'identity_provider_unavailable', cause: err })
      );
    }
    const subject = payload[c.subjectClaim];
    if (typeof subject !== 'string' || !subject) throw refuse(`The token has no "${c.subjectClaim}" claim.`);
    const teamClaim = payload[c.teamClaim];
    const team = (typeof teamClaim === 'string' ? teamClaim : stringList(teamClaim)?.[0]) || c.defaultTeam;
    if (!team) throw refuse(`The token has no "${c.teamClaim}" claim naming the caller's team.`, 'missing_team');
    const models = (c.modelsClaim ? stringList(payload[c.modelsClaim]) : undefined) ?? c.models;
    return { issuer: c.issuer, subject, team, models };
  }
}
