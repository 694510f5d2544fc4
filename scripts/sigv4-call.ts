import { pathToFileURL } from 'node:url';
import { executeApiRegion, sigv4Headers } from './keys.ts';

/**
 * Call the gateway as an IAM caller (docs/identity.md): a SigV4-signed request to
 * `/iam/v1/chat/completions`, signed with whatever credentials the AWS SDK finds (a Lambda's or ECS
 * task's role, an EC2 instance profile, `AWS_PROFILE`, SSO...). No gateway key: API Gateway verifies
 * the signature, and the gateway maps the caller's ARN to a team by `auth.iam.principals`.
 *
 *   npx tsx scripts/sigv4-call.ts https://<api>.execute-api.<region>.amazonaws.com/prod/ [model] [prompt]
 *
 * The same few lines work inside a Lambda handler (see `iamChat`).
 */

/** A signed OpenAI-format chat call through /iam; returns the gateway's JSON answer. */
export async function iamChat(gatewayUrl: string, body: unknown, region = regionOf(gatewayUrl)): Promise<unknown> {
  const url = new URL(`iam/v1/chat/completions`, gatewayUrl.endsWith('/') ? gatewayUrl : `${gatewayUrl}/`);
  const payload = JSON.stringify(body);
  const headers = await sigv4Headers(url, 'POST', region, { 'content-type': 'application/json' }, payload);
  const res = await fetch(url, { method: 'POST', headers, body: payload });
  const json = await res.json();
  if (!res.ok) throw new Error(`gateway answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

/** The region of an execute-api URL (else AWS_REGION). */
function regionOf(gatewayUrl: string): string {
  const region = executeApiRegion(new URL(gatewayUrl).hostname) ?? process.env.AWS_REGION;
  if (!region) throw new Error('cannot tell the region from the URL: set AWS_REGION');
  return region;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [url, model = 'gpt-4o-mini', prompt = 'Say hello in five words.'] = process.argv.slice(2);
  if (!url) {
    console.error('usage: npx tsx scripts/sigv4-call.ts <GatewayUrl> [model] [prompt]');
    process.exit(2);
  }
  const answer = (await iamChat(url, { model, messages: [{ role: 'user', content: prompt }] })) as { choices?: { message?: { content?: string } }[] };
  console.log(answer.choices?.[0]?.message?.content ?? JSON.stringify(answer));
}
