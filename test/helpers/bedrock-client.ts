import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/** The SDK's HTTP request as a build-step middleware sees it (before signing). */
export interface OutgoingRequest {
  headers: Record<string, string>;
  body: string;
}

/**
 * The real Bedrock Runtime SDK client pointed at a gateway's `/bedrock` routes: SigV4 with dummy
 * credentials (the gateway authenticates by its own key), no retries. `beforeSend` edits each
 * request before it is signed (a header the gateway reads, members a newer SDK would send).
 */
export function gatewayBedrockClient(gatewayUrl: string, opts: { accessKeyId?: string; beforeSend?: (request: OutgoingRequest) => void } = {}): BedrockRuntimeClient {
  const client = new BedrockRuntimeClient({
    region: 'us-east-1',
    endpoint: `${gatewayUrl}/bedrock`,
    credentials: { accessKeyId: opts.accessKeyId ?? 'AKIDGATEWAYTEST00000', secretAccessKey: 'not-used-by-the-gateway' },
    requestHandler: new NodeHttpHandler(),
    maxAttempts: 1,
  });
  const edit = opts.beforeSend;
  if (edit) {
    client.middlewareStack.add(
      (next) => async (args) => {
        edit(args.request as OutgoingRequest);
        return next(args);
      },
      { step: 'build', name: 'gatewayTestEdit', priority: 'low' },
    );
  }
  return client;
}
