/**
 * Preload for Portkey's gateway on Node (`node --import ./bench/portkey-preload.mjs ...`).
 *
 * @hono/node-server replaces the global Response with its own lightweight class when the server
 * starts (`Object.defineProperty(global, 'Response', { value })`). Portkey 1.15.2 then builds
 * streaming responses whose headers are immutable and fails with "TypeError: immutable" in
 * Headers.append (Portkey issues #1389 and #1550). This preload lets that one redefinition of
 * `globalThis.Response` through as a no-op and then restores Object.defineProperty untouched, so
 * nothing else changes and no cost remains on the request path. The Request override stays.
 */
const originalDefine = Object.defineProperty;
const NativeResponse = globalThis.Response;
Object.defineProperty = function defineProperty(target, key, descriptor) {
  if (target === globalThis && key === 'Response' && descriptor && descriptor.value !== NativeResponse) {
    Object.defineProperty = originalDefine;
    return target;
  }
  return originalDefine(target, key, descriptor);
};
