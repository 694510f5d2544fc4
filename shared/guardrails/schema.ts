import { z } from 'zod';

/**
 * The `guardrails` section: named profiles of content rules and limits, applied per key, team or
 * model. See docs/guardrails.md.
 */

const regex = z.string().min(1).max(1000).refine((p) => {
  try {
    new RegExp(p, 'gu');
    return true;
  } catch {
    return false;
  }
}, 'must be a valid regular expression (JavaScript syntax)');

export const DETECTORS = ['email', 'phone', 'card', 'iban', 'aws_access_key'] as const;
export type DetectorName = (typeof DETECTORS)[number];

export const guardrailRuleSchema = z
  .object({
    /** Names the rule in errors, log records (`guardrailReason`) and redaction markers. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'rule names are letters, digits, _ . -'),
    /** Built-in detectors (card numbers pass a Luhn check, IBANs mod-97). */
    detect: z.array(z.enum(DETECTORS)).default([]),
    /** Extra regular expressions (deny patterns or custom PII), matched case-insensitively unless `caseSensitive`. */
    patterns: z.array(regex).default([]),
    caseSensitive: z.boolean().default(false),
    action: z.enum(['block', 'redact']).default('block'),
    /** Where the rule looks: the prompt, the answer, or both. */
    on: z.array(z.enum(['input', 'output'])).min(1).default(['input', 'output']),
  })
  .strict()
  .refine((r) => r.detect.length + r.patterns.length > 0, 'a rule needs `detect` or `patterns`');

export const bedrockGuardrailSchema = z
  .object({
    guardrailIdentifier: z.string().min(1),
    guardrailVersion: z.string().min(1).default('DRAFT'),
    region: z.string().optional(),
    /** Endpoint override (VPC endpoint, or a local mock in tests). */
    endpoint: z.string().url().optional(),
    on: z.array(z.enum(['input', 'output'])).min(1).default(['input']),
  })
  .strict();

export const guardrailProfileSchema = z
  .object({
    rules: z.array(guardrailRuleSchema).default([]),
    /** Largest prompt accepted, in characters of text (system, messages, tool results). */
    maxPromptChars: z.number().int().positive().optional(),
    /** Cap on the output tokens a request may ask for. */
    maxTokens: z.number().int().positive().optional(),
    /** `clamp`: lower the request's max_tokens to the cap (and set it when absent); `block`: refuse larger requests. */
    maxTokensAction: z.enum(['clamp', 'block']).default('clamp'),
    /** Tool (function) names a request may define; absent: any. */
    allowedTools: z.array(z.string().min(1)).optional(),
    /** Characters of streamed output held back so a match split across chunks is still caught. */
    holdBackChars: z.number().int().min(16).max(4096).default(128),
    /** Amazon Bedrock Guardrails (ApplyGuardrail), for any provider. */
    bedrock: bedrockGuardrailSchema.optional(),
  })
  .strict();

export const guardrailsSchema = z
  .object({
    profiles: z.record(z.string().min(1), guardrailProfileSchema).default({}),
    /** Which profile applies: the key's id wins over its team, the team over the model, `*` last. */
    apply: z
      .object({
        keys: z.record(z.string().min(1), z.string().min(1)).default({}),
        teams: z.record(z.string().min(1), z.string().min(1)).default({}),
        models: z.record(z.string().min(1), z.string().min(1)).default({}),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((g, ctx) => {
    for (const kind of ['keys', 'teams', 'models'] as const) {
      for (const [who, profile] of Object.entries(g.apply[kind])) {
        if (!(profile in g.profiles)) ctx.addIssue({ code: 'custom', path: ['apply', kind, who], message: `names profile "${profile}", which is not defined under guardrails.profiles` });
      }
    }
  });

export type GuardrailsConfig = z.output<typeof guardrailsSchema>;
export type GuardrailProfile = z.output<typeof guardrailProfileSchema>;
export type GuardrailRule = z.output<typeof guardrailRuleSchema>;
export type BedrockGuardrailConfig = z.output<typeof bedrockGuardrailSchema>;
