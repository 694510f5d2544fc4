import type { AwsCredentials } from './sigv4.ts';

/** Where a lean client (./json-client.ts) sends an AWS API's calls, and with what. */
export interface AwsTarget {
  region: string;
  endpoint: string;
  credentials: AwsCredentials;
}

/**
 * An AWS API's region, endpoint and credentials as the AWS SDK would resolve them first, where that
 * needs none of its chains: credentials in the environment (`AWS_ACCESS_KEY_ID`... as Lambda sets
 * them; the SDK's default chain takes them first unless `AWS_PROFILE` names a profile), the region
 * given (or `AWS_REGION`), and the endpoint in the SDK's order: the client's own, the service's
 * variable (`AWS_ENDPOINT_URL_<SERVICE>`), `AWS_ENDPOINT_URL`, then the regional one. Undefined
 * where only the SDK resolves them (profiles, SSO, container or instance roles, FIPS or dual-stack
 * endpoints, isolated regions): the caller uses the SDK then.
 */
export function awsTarget(
  service: { endpointPrefix: string; envName: string },
  opts: { region?: string; endpoint?: string },
  env: Record<string, string | undefined> = process.env,
): AwsTarget | undefined {
  const region = opts.region ?? env.AWS_REGION;
  if (!region || !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region) || region.startsWith('us-iso')) return undefined;
  if (env.AWS_PROFILE || !env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) return undefined;
  if (['AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT'].some((k) => env[k] && env[k] !== 'false')) return undefined;
  const fromEnv = env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === 'true' ? undefined : env[`AWS_ENDPOINT_URL_${service.envName}`] || env.AWS_ENDPOINT_URL || undefined;
  const endpoint = opts.endpoint ?? fromEnv ?? `https://${service.endpointPrefix}.${region}.${region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com'}`;
  return { region, endpoint, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined } };
}
