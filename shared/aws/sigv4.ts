import { createHash, createHmac } from 'node:crypto';

/** AWS credentials as a request is signed with them. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Signing keys by secret, day, region and service: derived once a day, not per request (four HMACs each). */
const keys = new Map<string, Buffer>();

function signingKey(secret: string, day: string, region: string, service: string): Buffer {
  const id = `${day}\n${region}\n${service}\n${secret}`;
  let key = keys.get(id);
  if (!key) {
    const kDate = createHmac('sha256', `AWS4${secret}`).update(day).digest();
    const kRegion = createHmac('sha256', kDate).update(region).digest();
    const kService = createHmac('sha256', kRegion).update(service).digest();
    key = createHmac('sha256', kService).update('aws4_request').digest();
    if (keys.size >= 16) keys.clear();
    keys.set(id, key);
  }
  return key;
}

/** `20261202T030000Z` for a time. */
export function amzDate(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/**
 * Sign a request to an AWS JSON API (POST to `/`, no query string) with Signature Version 4, the
 * way the AWS SDK's signer does for it: `x-amz-date`, `x-amz-content-sha256` and (with temporary
 * credentials) `x-amz-security-token` are added, every header given is signed, and the headers to
 * send are returned with `authorization`. `headers` names must be lower case and include `host`.
 * See https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.
 */
export function signJsonRequest(
  headers: Record<string, string>,
  body: string | Uint8Array,
  opts: { credentials: AwsCredentials; region: string; service: string; at?: Date },
): Record<string, string> {
  const { credentials: c, region, service } = opts;
  const stamp = amzDate(opts.at ?? new Date());
  const day = stamp.slice(0, 8);
  const out: Record<string, string> = { ...headers, 'x-amz-date': stamp, 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') };
  if (c.sessionToken) out['x-amz-security-token'] = c.sessionToken;
  const names = Object.keys(out).sort();
  const canonicalHeaders = names.map((n) => `${n}:${out[n]!.trim().replace(/\s+/g, ' ')}\n`).join('');
  const signed = names.join(';');
  const canonicalRequest = `POST\n/\n\n${canonicalHeaders}\n${signed}\n${out['x-amz-content-sha256']}`;
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${stamp}\n${scope}\n${createHash('sha256').update(canonicalRequest).digest('hex')}`;
  const signature = createHmac('sha256', signingKey(c.secretAccessKey, day, region, service)).update(toSign).digest('hex');
  out.authorization = `AWS4-HMAC-SHA256 Credential=${c.accessKeyId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`;
  return out;
}
