import { z } from 'zod';

/**
 * The `responses` section: stateful OpenAI Responses (`store`, `previous_response_id`, and
 * `GET`/`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`) on every provider.
 * Conversations are bodies: they are kept only while `logging.bodies.enabled` is on (docs/responses.md).
 */
export const responsesSchema = z
  .object({
    /** Off: the gateway keeps nothing and behaves as without this feature (pass-through only). */
    enabled: z.boolean().default(true),
    /** Days a stored response (and its conversation) stays readable; the usage table's TTL deletes it after. */
    ttlDays: z.number().int().min(1).max(400).default(30),
    /** Largest compressed conversation kept in one DynamoDB item (items stop at 400 KB); larger ones are not stored, with a log line. */
    maxItemBytes: z.number().int().min(1024).max(390 * 1024).default(380 * 1024),
  })
  .strict();

export type ResponsesConfig = z.output<typeof responsesSchema>;
