import { z } from 'zod';

export { SECRET_PLACEHOLDER } from '../secret-placeholder.ts';

/**
 * The `deploy` section: what `cdk deploy` builds around the gateway. Read only by infra/, validated
 * with the rest of the file at synth time.
 */
export const deploySchema = z
  .object({
    /**
     * Default CloudFormation stack name. The stack name also prefixes every named resource (API,
     * Glue database, Athena workgroup, dashboard, admin role), so two stacks (staging, prod) can
     * live in one account and region: choose it per deploy with `cdk deploy -c stackName=...` or
     * GATEWAY_STACK_NAME (infra/app.ts).
     */
    stackName: z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, 'letters, digits and -, starting with a letter').default('LlmGateway'),
    stageName: z.string().regex(/^[A-Za-z0-9_]+$/).default('prod'),
    /**
     * Deploy a gateway whose model routes need no key (`auth` absent or `auth.required: false`).
     * Off by default: `cdk synth` refuses such a configuration unless this is true.
     */
    allowOpenGateway: z.boolean().default(false),
    functions: z
      .object({
        memoryMb: z.number().int().min(128).max(10_240).default(1024),
        /** Reserved concurrency of the model-route function (unset: account pool). */
        reservedConcurrency: z.number().int().min(1).optional(),
        /** Lambda log retention in days. */
        logRetentionDays: z.number().int().positive().default(30),
        /**
         * Publish a version of the model function behind the alias `live` (API Gateway then calls
         * the alias). Implied by provisionedConcurrency.
         */
        publishAlias: z.boolean().default(false),
        /** Provisioned concurrency on the `live` alias (warm instances, no cold start; billed while idle). */
        provisionedConcurrency: z.number().int().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /**
     * The account-wide (per region) API Gateway CloudWatch Logs role, which access and execution
     * logs need. `create`: the stack creates it and sets it on the account, and KEEPS both when the
     * stack is destroyed (other APIs of the region log through it). `existing`: the account already
     * has one (`aws apigateway get-account` shows cloudwatchRoleArn); the stack leaves it alone.
     */
    apiGatewayLoggingRole: z.enum(['create', 'existing']).default('create'),
    /**
     * Who may call `/admin`: the role the stack creates (`<stack>-admin`, output AdminRoleArn, assumable
     * by principals of the account that IAM allows to) plus these IAM principal ARNs (roles or users).
     * Everyone else is denied by the API's resource policy, whatever their own IAM policies say.
     */
    admin: z
      .object({ principals: z.array(z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:(role|user)\/.+/, 'an IAM role or user ARN')).default([]) })
      .strict()
      .prefault({}),
    /** API Gateway stage throttling (requests per second, burst). */
    throttle: z
      .object({ rateLimit: z.number().positive().default(500), burstLimit: z.number().int().positive().default(1000) })
      .strict()
      .prefault({}),
    /** Request logs in S3: move to Infrequent Access after N days, delete after M days. */
    logs: z
      .object({
        transitionToInfrequentAccessDays: z.number().int().min(30).default(30),
        expireDays: z.number().int().positive().default(365),
        /** Firehose buffering before an S3 object is written. */
        bufferSeconds: z.number().int().min(0).max(900).default(60),
        bufferMiB: z.number().int().min(1).max(128).default(5),
      })
      .strict()
      .prefault({})
      .refine((l) => l.expireDays > l.transitionToInfrequentAccessDays, { message: 'expireDays must be after transitionToInfrequentAccessDays', path: ['expireDays'] }),
    /**
     * Provider secrets in Secrets Manager, by environment variable name (the providers' apiKeyEnv).
     * Given an ARN, that secret is used; otherwise the stack creates an empty secret to fill in.
     */
    secrets: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.object({ arn: z.string().startsWith('arn:').optional() }).strict()).default({}),
    alarms: z
      .object({
        /** E-mail address subscribed to the alarm topic (optional). */
        email: z.string().email().optional(),
        /** Gateway 5xx (its own metric and API Gateway's 5XXError), percent of requests. */
        errorRatePercent: z.number().positive().max(100).default(5),
        /**
         * p99 of the time to the first body byte, from the gateway's TimeToFirstByte metric (the total
         * latency of a stream is its length, so it is not alarmed on).
         */
        firstByteP99Ms: z.number().int().positive().default(30_000),
        /** 429s answered (API Gateway stage throttling and gateway rate limits) per 5 minutes. */
        throttled429Per5Minutes: z.number().int().min(0).default(100),
      })
      .strict()
      .prefault({}),
    customDomain: z
      .object({
        domainName: z.string().min(3),
        certificateArn: z.string().startsWith('arn:aws'),
        /** Route 53 zone to create the alias record in (optional). */
        hostedZoneId: z.string().optional(),
        zoneName: z.string().optional(),
      })
      .strict()
      .optional(),
    /**
     * AWS WAF in front of the API (off by default; WAF is billed per web ACL and request): a
     * rate-based rule per client IP, the Amazon IP reputation list, and the AWS common rule set
     * with its body-inspecting rules in count mode (prompts full of source code look like XSS).
     */
    waf: z
      .object({
        enabled: z.boolean().default(false),
        /** Requests per 5 minutes per client IP before WAF blocks it. */
        rateLimitPer5Minutes: z.number().int().min(100).default(2_000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type DeployConfig = z.output<typeof deploySchema>;

/**
 * Why this configuration must not be deployed as it is: keys are off (anyone who finds the URL can
 * spend the upstream accounts) and the deploy section does not say that this is intended.
 */
export function openGatewayProblem(config: { auth?: { required: boolean }; deploy: { allowOpenGateway: boolean } }): string | undefined {
  if (config.auth?.required || config.deploy.allowOpenGateway) return undefined;
  return (
    'Refusing to deploy an open gateway: keys are off (`auth.required` is not true), so anyone who finds the URL could call the models on your accounts. ' +
    'Set `auth: { required: true }` (then create keys with `npm run keys`), or, if an open gateway is really intended (e.g. behind your own network controls), set `deploy.allowOpenGateway: true`.'
  );
}
