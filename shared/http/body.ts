import { GatewayError } from './errors.ts';

/** Read a JSON request body, refusing bodies over `limit` bytes without reading them whole. */
export async function readJsonBody(request: Request, limit: number): Promise<unknown> {
  const declared = Number(request.headers.get('content-length') ?? NaN);
  if (declared > limit) throw tooLarge(limit);
  let text: string;
  if (!request.body) text = '';
  else {
    const reader = request.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        reader.cancel().catch(() => {});
        throw tooLarge(limit);
      }
      chunks.push(value);
    }
    text = chunks.length === 1 ? Buffer.from(chunks[0]!.buffer, chunks[0]!.byteOffset, chunks[0]!.byteLength).toString('utf8') : Buffer.concat(chunks).toString('utf8');
  }
  if (!text.trim()) throw new GatewayError('invalid_request', 'The request body is empty; send a JSON object.', { code: 'invalid_json' });
  try {
    return JSON.parse(text);
  } catch {
    throw new GatewayError('invalid_request', 'We could not parse the JSON body of your request. Check that it is valid JSON.', { code: 'invalid_json' });
  }
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('request_too_large', `The request body is larger than the gateway's limit of ${limit} bytes.`, { code: 'request_too_large' });
}
