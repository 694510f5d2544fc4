// Kept apart from deploy.ts (which loads zod) so the Lambda bundle reads it without the schema.
/**
 * The value the stack stores in each provider secret it creates (infra/constructs/secrets.ts); the
 * gateway reads it as "not set" (functions/lib/secrets.ts), so the provider stays off until the
 * real key is put with `aws secretsmanager put-secret-value`. Never change this string:
 * CloudFormation would write the new placeholder over the keys already put in deployed secrets.
 */
export const SECRET_PLACEHOLDER = 'PLACEHOLDER: set the provider key with aws secretsmanager put-secret-value';
