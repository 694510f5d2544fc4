import { z } from 'zod';

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

export const providerSchema = z.discriminatedUnion('type', [mockProviderSchema, openaiProviderSchema]);

export const modelSchema = z
  .object({
    /** Name of an entry under `providers`. */
    provider: z.string().min(1),
    /** Model id sent to the upstream. */
    model: z.string().min(1),
  })
  .strict();

export const configSchema = z
  .object({
    server: z
      .object({
        /** Largest request body accepted, in bytes; larger bodies get 413. */
        maxBodyBytes: z.number().int().positive().max(20 * 1024 * 1024).default(4 * 1024 * 1024),
      })
      .strict()
      .default({ maxBodyBytes: 4 * 1024 * 1024 }),
    providers: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'provider names are lower-case letters, digits, - and _'), providerSchema),
    models: z.record(z.string().min(1), modelSchema),
    logging: z
      .object({
        /** Where request log records go locally: a folder of NDJSON files, or nowhere. */
        localDir: z.string().min(1).default('data/logs'),
      })
      .strict()
      .default({ localDir: 'data/logs' }),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    for (const [name, model] of Object.entries(cfg.models)) {
      if (!(model.provider in cfg.providers)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', name, 'provider'],
          message: `names provider "${model.provider}", which is not defined under providers (defined: ${Object.keys(cfg.providers).join(', ') || 'none'})`,
        });
      }
    }
  });

export type GatewayConfig = z.output<typeof configSchema>;
export type ProviderConfig = z.output<typeof providerSchema>;
export type MockProviderConfig = z.output<typeof mockProviderSchema>;
export type OpenAIProviderConfig = z.output<typeof openaiProviderSchema>;
export type ModelConfig = z.output<typeof modelSchema>;
