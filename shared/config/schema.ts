import { z } from 'zod';
import { deploySchema } from './deploy.ts';
import { budgetAlertsSchema } from '../alerts/schema.ts';
import { cacheSchema } from '../cache/schema.ts';
import { responsesSchema } from '../responses/schema.ts';
import { guardrailsSchema } from '../guardrails/schema.ts';
import { mcpSchema } from '../mcp/schema.ts';
import { iamSchema, oidcSchema } from '../auth/schema.ts';

/**
 * The one configuration schema. The local server validates it at start, the Lambda entry at cold
 * start, and the CDK app at synth time, so a bad file never reaches a running gateway.
 */

const envName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name such as OPENAI_API_KEY');

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');

const timeouts = {
  /** Milliseconds to wait for the upstream's response headers (first byte). */
  firstByteTimeoutMs: z.number().int().positive().max(900_000).default(60_000),
  /** Milliseconds the whole upstream call may take, body included. */
  totalTimeoutMs: z.number().int().positive().max(900_000).default(600_000),
  /** Milliseconds the upstream may stay silent between two chunks of its answer once it has started. */
  idleTimeoutMs: z.number().int().positive().max(900_000).default(120_000),
};

export const mockProviderSchema = z
  .object({
    type: z.literal('mock'),
    /** Delay between streamed words, so a human can see the stream arrive. */
    wordDelayMs: z.number().int().min(0).max(5_000).default(0),
    ...timeouts,
  })
  .strict();

export const openaiProviderSchema = z
  .object({
    /** `openai` talks to api.openai.com or any OpenAI-compatible server at `baseUrl`. */
    type: z.enum(['openai', 'openai-compatible']),
    baseUrl: httpUrl.default('https://api.openai.com/v1'),
    /** Environment variable that holds the upstream's API key. */
    apiKeyEnv: envName.optional(),
    /** Extra headers sent to the upstream on every call (e.g. OpenAI-Organization). */
    headers: z.record(z.string(), z.string()).default({}),
    ...timeouts,
  })
  .strict();

export const bedrockProviderSchema = z
  .object({
    /**
     * Amazon Bedrock Runtime through the AWS SDK (Converse / ConverseStream, InvokeModel for
     * embeddings). Credentials come from the default AWS provider chain (environment, SSO/profile,
     * ECS/EKS/Lambda role, instance metadata); none go in this file.
     */
    type: z.literal('bedrock'),
    /** AWS region, e.g. us-east-1. Default: AWS_REGION / AWS_DEFAULT_REGION from the environment. */
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'must be an AWS region such as us-east-1').optional(),
    /** Endpoint override (a VPC interface endpoint, or a local mock in tests). */
    endpoint: httpUrl.optional(),
    /**
     * Anthropic Messages requests (`/v1/messages`, Claude Code) to Claude models go through
     * InvokeModel with the Messages body as sent, keeping what Converse cannot carry
     * (`anthropic-beta`, `cache_control`, `context_management`, ...). Off: translated over Converse.
     */
    messagesViaInvokeModel: z.boolean().default(false),
    ...timeouts,
  })
  .strict();

export const anthropicProviderSchema = z
  .object({
    /** api.anthropic.com, or anything that speaks the Anthropic Messages API at `baseUrl`. */
    type: z.literal('anthropic'),
    baseUrl: httpUrl.default('https://api.anthropic.com'),
    /** Environment variable that holds the upstream's API key (sent as `x-api-key`). */
    apiKeyEnv: envName.default('ANTHROPIC_API_KEY'),
    /** Extra headers sent to the upstream on every call. */
    headers: z.record(z.string(), z.string()).default({}),
    /** `max_tokens` sent when a translated request (e.g. from an OpenAI client) gives none; Anthropic requires one. */
    defaultMaxTokens: z.number().int().positive().max(1_000_000).default(4096),
    ...timeouts,
  })
  .strict();

export const providerSchema = z.discriminatedUnion('type', [mockProviderSchema, openaiProviderSchema, bedrockProviderSchema, anthropicProviderSchema]);

/** Which upstream failures move a request on to the next attempt (never 4xx client errors). */
export const fallbackTrigger = z.enum(['429', '5xx', 'timeout', 'connection']);

const retrySchema = z
  .object({
    /** Extra tries of the same target before moving on (0 = none). */
    retries: z.number().int().min(0).max(5).default(1),
    /** Backoff: baseDelayMs * 2^n, with full jitter, capped at maxDelayMs; Retry-After is honoured up to the cap. */
    baseDelayMs: z.number().int().min(0).max(60_000).default(200),
    maxDelayMs: z.number().int().min(0).max(120_000).default(4_000),
  })
  .strict();

export const targetSchema = z
  .object({
    /** Name of an entry under `providers`. */
    provider: z.string().min(1),
    /** Model id sent to the upstream. */
    model: z.string().min(1),
    /** Share of traffic within its group, relative to the other targets' weights. */
    weight: z.number().positive().max(1_000_000).default(1),
    /** Milliseconds to wait for the first byte of this target's answer (overrides the provider's). */
    firstByteTimeoutMs: z.number().int().positive().max(900_000).optional(),
    /** Milliseconds this target's whole answer may take (overrides the provider's). */
    totalTimeoutMs: z.number().int().positive().max(900_000).optional(),
    /** Milliseconds this target may stay silent between chunks once its answer started (overrides the provider's). */
    idleTimeoutMs: z.number().int().positive().max(900_000).optional(),
    /** Parameter overrides applied to every request served by this target. */
    params: z
      .object({
        temperature: z.number().min(0).max(2).optional(),
        top_p: z.number().min(0).max(1).optional(),
        max_tokens: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const groupSchema = z.object({ targets: z.array(targetSchema).min(1) }).strict();

const routedModelSchema = z
  .object({
    /** Ordered groups: the first serves (spread by weight), the next ones are fallbacks. */
    groups: z.array(groupSchema).min(1).optional(),
    /** Shorthand for a single group. */
    targets: z.array(targetSchema).min(1).optional(),
    retry: retrySchema.optional(),
    fallbackOn: z.array(fallbackTrigger).optional(),
  })
  .strict();

/**
 * A public model name (alias). Either the shorthand `{provider, model}` (one target), or
 * `{targets: [...]}` (one weighted group) or `{groups: [{targets}, ...]}` (fallback chain).
 * Normalised to `groups`.
 */
type TargetOut = z.output<typeof targetSchema>;
type RetryOut = z.output<typeof retrySchema>;
type TriggerOut = z.output<typeof fallbackTrigger>;
export interface NormalizedModel {
  /** How the file wrote it, so errors can point at the field as written. */
  form: 'single' | 'targets' | 'groups';
  groups: { targets: TargetOut[] }[];
  retry?: RetryOut;
  fallbackOn?: TriggerOut[];
}

const FORMS: readonly unknown[] = ['single', 'targets', 'groups'];

export const modelSchema = z.unknown().transform((input, ctx): NormalizedModel => {
  // A model normalised before (a parsed configuration embedded in a Lambda bundle, validated again
  // at cold start) parses as its `groups` and keeps the form it was written in.
  let raw = input;
  let written: NormalizedModel['form'] | undefined;
  if (typeof input === 'object' && input !== null && 'groups' in input && 'form' in input && FORMS.includes(input.form)) {
    const { form, ...rest } = input as { form: NormalizedModel['form'] };
    raw = rest;
    written = form;
  }
  // Pick the form by its key, so errors name the field the user got wrong.
  const short = typeof raw === 'object' && raw !== null && 'provider' in raw;
  const result = (short ? targetSchema : routedModelSchema).safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path as PropertyKey[] });
    return z.NEVER;
  }
  const m = result.data;
  if ('provider' in m) return { form: 'single', groups: [{ targets: [m] }] };
  if (!!m.groups === !!m.targets) {
    ctx.addIssue({ code: 'custom', message: 'give either `provider` and `model`, or `targets`, or `groups`' });
    return z.NEVER;
  }
  return { form: written ?? (m.groups ? 'groups' : 'targets'), groups: m.groups ?? [{ targets: m.targets! }], retry: m.retry, fallbackOn: m.fallbackOn };
});

export const routingSchema = z
  .object({
    retry: retrySchema.default({ retries: 1, baseDelayMs: 200, maxDelayMs: 4_000 }),
    fallbackOn: z.array(fallbackTrigger).default(['429', '5xx', 'timeout', 'connection']),
    /** A target failing `failures` times within `windowMs` is skipped for `cooldownMs` (per gateway instance). */
    cooldown: z
      .object({
        failures: z.number().int().min(1).max(1000).default(3),
        windowMs: z.number().int().positive().default(30_000),
        cooldownMs: z.number().int().min(0).default(30_000),
      })
      .strict()
      .default({ failures: 3, windowMs: 30_000, cooldownMs: 30_000 }),
    /** Let a request name `provider/model` directly (subject to the key's allow list). */
    directTargets: z.boolean().default(true),
  })
  .strict();

/** Keys: who may call. Absent, or `required: false`: the gateway is open (no key needed). */
export const authSchema = z
  .object({
    required: z.boolean().default(true),
    /** Seconds a key lookup is cached in memory per instance: how long a revocation takes to bite. */
    cacheTtlSeconds: z.number().min(0).max(300).default(5),
    /** Environment variable holding the admin API token (local; in AWS the admin routes use IAM). */
    adminTokenEnv: envName.default('GATEWAY_ADMIN_TOKEN'),
    /** Callers without keys (shared/auth, docs/identity.md): OIDC issuers' JWTs and IAM callers on /iam. */
    oidc: oidcSchema.optional(),
    iam: iamSchema.optional(),
  })
  .strict();

/** How rate limits and budgets are enforced (the limits themselves live on keys and teams). */
export const limitsSchema = z
  .object({
    /** Largest block of requests an instance leases from a per-minute counter at once (1 = no leasing). */
    leaseRequests: z.number().int().min(1).max(10_000).default(10),
    /** Largest block of tokens an instance leases at once. */
    leaseTokens: z.number().int().min(1).max(100_000_000).default(20_000),
    /** Output tokens reserved for a request that sets no max_tokens (settled with real usage after). */
    defaultMaxTokens: z.number().int().min(1).max(10_000_000).default(4096),
    /** Seconds before an instance re-reads budget counters (in the background, off the hot path). */
    budgetRefreshSeconds: z.number().min(0).max(3600).default(5),
    /** Status of a spent budget: 429 (what SDKs expect from a limit) or 402. */
    budgetStatus: z.union([z.literal(429), z.literal(402)]).default(429),
  })
  .strict();

/** USD per million tokens, per model (configured name, upstream id, or provider/upstream-id). */
export const priceSchema = z
  .object({
    input: z.number().min(0),
    output: z.number().min(0),
    cacheRead: z.number().min(0).optional(),
    cacheWrite: z.number().min(0).optional(),
  })
  .strict();

/** Where keys and usage counters live. Table names from the environment win (set by the CDK stack). */
export const storeSchema = z
  .object({
    type: z.literal('dynamodb').default('dynamodb'),
    /** Keys and team limits (env GATEWAY_KEYS_TABLE). */
    keysTable: z.string().min(3).max(255).default('llm-gateway-keys'),
    /** Usage counters, TTL attribute `expiresAt` (env GATEWAY_USAGE_TABLE). */
    usageTable: z.string().min(3).max(255).default('llm-gateway-usage'),
    region: z.string().optional(),
    /** Endpoint override (env DYNAMODB_ENDPOINT); `npm start` runs a local DynamoDB API itself. */
    endpoint: httpUrl.optional(),
    /** Where `npm start` keeps its local tables. */
    localDir: z.string().min(1).default('data/dynamodb'),
  })
  .strict();

const bodyLoggingSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Cap per body (request and response each), in bytes, applied after redaction. */
    maxBytes: z.number().int().positive().max(256 * 1024).default(16 * 1024),
    /** Regular expressions (JavaScript syntax) whose matches become `[REDACTED]`; credentials are always redacted. */
    redact: z
      .array(
        z.string().refine((p) => {
          try {
            new RegExp(p, 'g');
            return true;
          } catch {
            return false;
          }
        }, 'must be a valid regular expression'),
      )
      .default([]),
  })
  .strict();

/** The Bedrock-native door (`/bedrock/model/{modelId}/invoke...`, docs/claude-code.md). */
export const bedrockApiSchema = z
  .object({
    /**
     * Bedrock model ids clients send -> configured model names, e.g.
     * `us.anthropic.claude-sonnet-4-5-20250929-v1:0: claude-sonnet`. Ids not listed here resolve by
     * name, or to the model whose `bedrock` or `anthropic` target serves them.
     */
    models: z.record(z.string().min(1), z.string().min(1)).default({}),
  })
  .strict();

export const configSchema = z
  .object({
    server: z
      .object({
        /** Largest request body accepted, in bytes; larger bodies get 413. */
        maxBodyBytes: z.number().int().positive().max(20 * 1024 * 1024).default(4 * 1024 * 1024),
        /**
         * A streamed (SSE) answer silent for this long gets an SSE comment line (`: keepalive`), which
         * every SSE client ignores, so API Gateway's 5-minute idle timeout and proxies never cut a long
         * generation. 0 turns it off.
         */
        sseKeepAliveMs: z.number().int().min(0).max(240_000).default(30_000),
      })
      .strict()
      .prefault({}),
    providers: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'provider names are lower-case letters, digits, - and _'), providerSchema),
    models: z.record(z.string().min(1), modelSchema),
    routing: routingSchema.default({
      retry: { retries: 1, baseDelayMs: 200, maxDelayMs: 4_000 },
      fallbackOn: ['429', '5xx', 'timeout', 'connection'],
      cooldown: { failures: 3, windowMs: 30_000, cooldownMs: 30_000 },
      directTargets: true,
    }),
    logging: z
      .object({
        /** Where request log records go locally: a folder of NDJSON files, or nowhere. */
        localDir: z.string().min(1).default('data/logs'),
        /** Request/response bodies in the log records: off unless set (telemetry/bodies.ts). */
        bodies: bodyLoggingSchema.optional(),
      })
      .strict()
      .default({ localDir: 'data/logs' }),
    auth: authSchema.optional(),
    limits: limitsSchema.prefault({}),
    budgetAlerts: budgetAlertsSchema.prefault({}),
    pricing: z.record(z.string().min(1), priceSchema).default({}),
    store: storeSchema.prefault({}),
    /** What `cdk deploy` builds (functions, throttling, log retention, secrets, alarms, domain, WAF). */
    deploy: deploySchema.prefault({}),
    /** Response cache (docs/cache.md); absent: no caching. */
    cache: cacheSchema.optional(),
    /** Stateful Responses API: store, previous_response_id, retrieve/delete (docs/responses.md). */
    responses: responsesSchema.prefault({}),
    /** Content rules and limits per key, team or model (docs/guardrails.md); absent: none. */
    guardrails: guardrailsSchema.optional(),
    /** MCP tool servers served at /mcp/<name> (docs/mcp.md). */
    mcp: mcpSchema.prefault({}),
    /** The Bedrock-native door at /bedrock (docs/claude-code.md). */
    bedrockApi: bedrockApiSchema.prefault({}),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    for (const [name, model] of Object.entries(cfg.models)) {
      model.groups.forEach((group, g) =>
        group.targets.forEach((target, t) => {
          if (target.provider in cfg.providers) return;
          // Point at the field as the user wrote it.
          const path =
            model.form === 'single' ? ['models', name, 'provider'] : model.form === 'targets' ? ['models', name, 'targets', t, 'provider'] : ['models', name, 'groups', g, 'targets', t, 'provider'];
          ctx.addIssue({
            code: 'custom',
            path,
            message: `names provider "${target.provider}", which is not defined under providers (defined: ${Object.keys(cfg.providers).join(', ') || 'none'})`,
          });
        }),
      );
    }
    for (const [id, name] of Object.entries(cfg.bedrockApi.models)) {
      if (!(name in cfg.models)) ctx.addIssue({ code: 'custom', path: ['bedrockApi', 'models', id], message: `names model "${name}", which is not defined under models` });
    }
  });

export type GatewayConfig = z.output<typeof configSchema>;
export type ProviderConfig = z.output<typeof providerSchema>;
export type MockProviderConfig = z.output<typeof mockProviderSchema>;
export type OpenAIProviderConfig = z.output<typeof openaiProviderSchema>;
export type BedrockProviderConfig = z.output<typeof bedrockProviderSchema>;
export type AnthropicProviderConfig = z.output<typeof anthropicProviderSchema>;
export type ModelConfig = z.output<typeof modelSchema>;
export type TargetConfig = z.output<typeof targetSchema>;
export type RoutingConfig = z.output<typeof routingSchema>;
export type FallbackTrigger = z.output<typeof fallbackTrigger>;
