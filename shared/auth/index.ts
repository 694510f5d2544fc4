import { GatewayError } from '../http/errors.ts';
import { nodeCrypto } from '../node-crypto.ts';
import { presentedKey } from '../policy/keys.ts';
import type { Principal } from '../policy/identity.ts';
import type { KeyRecord, TeamRecord } from '../store/types.ts';
import type { RequestTrace } from '../telemetry/record.ts';
import { iamCallerOf, mapIamCaller, noIamCaller } from './iam.ts';
import type { OidcVerifier } from './oidc.ts';
import type { IamConfig, OidcConfig } from './schema.ts';

export { stripIamPrefix } from './iam.ts';

/** A compact JWS: three base64url parts (the signature may be empty, as in `alg: none`). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

/** How a request's caller was identified (the log record's `authKind`). */
export type AuthKind = 'key' | 'oidc' | 'iam';

/** Reads a team's record (cached by the policy); throws a 503 when the store fails. */
export type TeamReader = (name: string) => Promise<TeamRecord | undefined>;

const EPOCH = new Date(0).toISOString();

/**
 * A key-like record for a caller without a key: a stable, non-secret id derived from the issuer and
 * subject (`oidc_...`, `iam_...`), the team's name, and the caller's allow list. It has no limits or
 * budget of its own: the team's apply, as they do to every key of the team.
 */
function callerRecord(kind: 'oidc' | 'iam', issuer: string, subject: string, team: string, models?: string[]): KeyRecord {
  const id = `${kind}_${nodeCrypto().createHash('sha256').update(`${issuer}\n${subject}`).digest('hex').slice(0, 24)}`;
  return { id, hash: '', name: `${kind}:${subject}`, team, models, limits: {}, budget: {}, createdAt: EPOCH, updatedAt: EPOCH, metadata: {}, version: 0 };
}

/**
 * Callers without gateway keys (issue #19): OIDC/JWT bearer tokens (`auth.oidc`) and IAM callers on
 * /iam routes (`auth.iam`). `principal` answers the caller of a request that is one of these, or
 * undefined for a request the key path handles (a `gwk_` key, or no OIDC configured).
 */
export class Callers {
  /** The verifier (and `jose`) is loaded on the first JWT-shaped token: a cold start without one does not read it. */
  private verifier?: Promise<OidcVerifier>;

  private readonly iam?: IamConfig;
  private readonly oidc?: OidcConfig;

  constructor(config: { oidc?: OidcConfig; iam?: IamConfig }) {
    this.iam = config.iam;
    this.oidc = config.oidc;
  }

  async principal(request: Request, trace: RequestTrace, now: number, readTeam: TeamReader): Promise<Principal | undefined> {
    const r = trace.record;
    const viaIam = this.iam && iamCallerOf(request);
    if (viaIam) {
      r.authKind = 'iam';
      if (!viaIam.principal) throw noIamCaller();
      const mapped = mapIamCaller(this.iam!, viaIam.principal);
      r.subject = viaIam.principal;
      return this.withTeam(callerRecord('iam', 'aws-iam', viaIam.principal, mapped.team, mapped.models), readTeam, 'auth.iam.principals');
    }
    const token = this.oidc && presentedKey(request.headers);
    if (!token || !looksLikeJwt(token)) return undefined;
    r.authKind = 'oidc';
    const oidc = this.oidc!;
    this.verifier ??= import('../entries/oidc.ts').then((m) => new m.OidcVerifier(oidc));
    const caller = await (await this.verifier).verify(token, now);
    r.subject = caller.subject;
    r.issuer = caller.issuer;
    return this.withTeam(callerRecord('oidc', caller.issuer, caller.subject, caller.team, caller.models), readTeam, `the token's team claim`);
  }

  /** The caller's team must exist in the store: its limits and budgets are what bound the caller. */
  private async withTeam(key: KeyRecord, readTeam: TeamReader, from: string): Promise<Principal> {
    const team = await readTeam(key.team!);
    if (!team) throw new GatewayError('authentication', `The team "${key.team}" named by ${from} is not known to the gateway (create it with PUT /admin/teams/${key.team}).`, { code: 'unknown_team' });
    return { key, team };
  }
}

/** The callers-without-keys check for an `auth` section, or undefined when it configures none. */
export function createCallers(auth: { oidc?: OidcConfig; iam?: IamConfig } | undefined): Callers | undefined {
  return auth?.oidc || auth?.iam ? new Callers(auth) : undefined;
}
