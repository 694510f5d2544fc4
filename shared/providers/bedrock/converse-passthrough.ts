import { ConverseCommand, ConverseStreamCommand, type ConverseCommandInput } from '@aws-sdk/client-bedrock-runtime';
import type { ChatRequest } from '../../core/types.ts';
import type { CallContext } from '../types.ts';

type Json = Record<string, unknown>;
/** The SDK's build-step middleware, as far as it is used here (before signing). */
type BuildMiddleware<I, O> = (next: (args: { input: I; request: unknown }) => Promise<O>) => (args: { input: I; request: unknown }) => Promise<O>;

/**
 * Converse clients on a `bedrock` target (docs/translation.md, the pass-through rule): the client's
 * own Converse body goes to Bedrock as sent, fields, roles and block types the gateway does not
 * know included, so Bedrock (not the gateway) judges them. Only the model id changes (it is in the
 * path: the target's model), and `modelId` is taken out of the body.
 *
 * The SDK's serializer keeps only the members it knows, so the command is built from a stub input
 * and the serialized body is swapped for the client's before the request is signed.
 */
export function converseAsSentCommand(req: ChatRequest, ctx: CallContext): ConverseCommand | ConverseStreamCommand {
  const bytes = new TextEncoder().encode(JSON.stringify(converseBody(req, ctx.rawBody)));
  const input: ConverseCommandInput = { modelId: ctx.upstreamModel, messages: [] };
  const command = req.stream ? new ConverseStreamCommand(input) : new ConverseCommand(input);
  const swap: BuildMiddleware<object, object> = (next) => async (args) => {
    const request = args.request as { body?: unknown; headers?: Record<string, string> } | undefined;
    if (request && typeof request === 'object' && request.headers) {
      request.body = bytes;
      for (const name of Object.keys(request.headers)) if (name.toLowerCase() === 'content-length') delete request.headers[name];
      request.headers['content-length'] = String(bytes.byteLength);
    }
    return next(args);
  };
  (command.middlewareStack as unknown as { add(m: BuildMiddleware<object, object>, o: { step: 'build'; name: string; priority: 'low' }): void }).add(swap, { step: 'build', name: 'gatewayConverseBodyAsSent', priority: 'low' });
  return command;
}

/**
 * The body for Bedrock: the client's, without `modelId`. Target `params` overrides reach Converse's
 * `inferenceConfig` (routing applies them to the body under their Chat Completions names, which
 * Converse does not have: those keys are moved, not sent).
 */
function converseBody(req: ChatRequest, rawBody: Json): Json {
  const { modelId: _modelId, ...body } = rawBody;
  const moves: [string, string, number | undefined][] = [
    ['max_tokens', 'maxTokens', req.maxTokens],
    ['temperature', 'temperature', req.temperature],
    ['top_p', 'topP', req.topP],
  ];
  for (const [flat, key, value] of moves) {
    // A key equal to the neutral value is taken as the one routing set from `params` (it sets both);
    // any other top-level key goes up as sent, for Bedrock to judge.
    if (!(flat in body) || body[flat] !== value || value === undefined) continue;
    delete body[flat];
    const inf = typeof body.inferenceConfig === 'object' && body.inferenceConfig !== null && !Array.isArray(body.inferenceConfig) ? (body.inferenceConfig as Json) : {};
    body.inferenceConfig = { ...inf, [key]: value };
  }
  return body;
}
