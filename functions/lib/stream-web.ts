/**
 * `node:stream/web` as the Lambda bundles see it (infra/bundling.ts `alias`). Its one user,
 * @middy/core, imports `ReadableStream` at its top only to ask whether a handler's body is one
 * (`body instanceof ReadableStream`); loading Node's web streams for that is about 2 ms of every
 * cold start. This answers the same question and loads them (the global `ReadableStream` is the
 * same class) only when asked about an object that is not a Node stream (which middy checks first).
 */
export const ReadableStream = {
  [Symbol.hasInstance]: (value: unknown): boolean => typeof value === 'object' && value !== null && value instanceof globalThis.ReadableStream,
};
