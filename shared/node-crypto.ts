/**
 * node:crypto when first used, not at import (a cold start loads it only with the first key, id or
 * hash that needs it), then kept: a lookup costs about 0.2 us.
 */
let cryptoModule: typeof import('node:crypto') | undefined;
export const nodeCrypto = (): typeof import('node:crypto') => (cryptoModule ??= process.getBuiltinModule('node:crypto'));
