/** OIDC/JWT bearer tokens (jose): the first token (shared/auth/index.ts). */
import '../gateway.ts'; // see README.md here
export * from '../auth/oidc.ts';
