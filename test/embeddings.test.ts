import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { APIError } from 'openai';
import { assertCleanErrorText, CLIENT_KEY, UPSTREAM_KEY, UPSTREAM_KEY_ENV, startGateway, type StartedGateway } from './helpers/gateway.ts';
import { mockVector, startMockBedrock, wordCount, type MockBedrock } from './helpers/mock-bedrock.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';
import { readBody, startLoopback } from './helpers/loopback.ts';

/**
 * `POST /v1/embeddings` through the official openai client: the mock provider (no account), an
 * OpenAI upstream (pass-through), and Bedrock Titan / Cohere through the real Bedrock SDK client
 * against a loopback Bedrock Runtime. Float and base64 encodings; errors in OpenAI's shape.
 */

useDummyAwsCredentials('AKIATESTEMBEDDINGS01', 'embeddings-test-secret');

const TITAN = 'amazon.titan-embed-text-v2:0';
const COHERE = 'cohere.embed-english-v3';
const COHERE_V4 = 'cohere.embed-v4:0';

/** A small stand-in for OpenAI's `POST /v1/embeddings`. */
interface EmbeddingsUpstream {
  baseUrl: string;
  requests: { headers: IncomingHttpHeaders; body: any }[];
  /** Next answer: an error status and body, instead of vectors. */
  failNext?: { status: number; body: unknown };
  close(): Promise<void>;
}

async function startEmbeddingsUpstream(): Promise<EmbeddingsUpstream> {
  const state: EmbeddingsUpstream = { baseUrl: '', requests: [], close: async () => {} };
  const lb = await startLoopback(async (req, res) => {
    const body = JSON.parse((await readBody(req)) || 'null');
    state.requests.push({ headers: req.headers, body });
    const send = (status: number, obj: unknown) => {
      const text = JSON.stringify(obj);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.url !== '/v1/embeddings') return send(404, { error: { message: 'Invalid URL', type: 'invalid_request_error', param: null, code: null } });
    if (state.failNext) {
      const f = state.failNext;
      state.failNext = undefined;
      return send(f.status, f.body);
    }
    const inputs: string[] = typeof body.input === 'string' ? [body.input] : body.input;
    const dims = body.dimensions ?? 8;
    const data = inputs.map((t, index) => {
      const v = mockVector(String(t), dims);
      return { object: 'embedding', index, embedding: body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v };
    });
    const tokens = inputs.reduce((n, t) => n + wordCount(String(t)), 0);
    send(200, { object: 'list', data, model: `${body.model}-served`, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  });
  state.baseUrl = `${lb.url}/v1`;
  state.close = () => lb.close();
  return state;
}

let bedrock: MockBedrock;
let upstream: EmbeddingsUpstream;
let srv: StartedGateway;
let client: OpenAI;

before(async () => {
  bedrock = await startMockBedrock();
  upstream = await startEmbeddingsUpstream();
  srv = await startGateway({
    providers: {
      mock: { type: 'mock' },
      openai: { type: 'openai', baseUrl: upstream.baseUrl, apiKeyEnv: UPSTREAM_KEY_ENV },
      bedrock: { type: 'bedrock', region: 'us-west-2', endpoint: bedrock.endpoint },
    },
    models: {
      'mock-embed': { provider: 'mock', model: 'mock-embed-1' },
      'text-embedding-3-small': { provider: 'openai', model: 'text-embedding-3-small' },
      titan: { provider: 'bedrock', model: TITAN },
      cohere: { provider: 'bedrock', model: COHERE },
      'cohere-v4': { provider: 'bedrock', model: COHERE_V4 },
      nova: { provider: 'bedrock', model: 'amazon.nova-lite-v1:0' },
    },
    config: {
      routing: { retry: { retries: 0, baseDelayMs: 0, maxDelayMs: 0 } },
    },
    env: { [UPSTREAM_KEY_ENV]: UPSTREAM_KEY },
    label: 'embeddings test configuration',
  });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await srv?.close();
  await bedrock?.close();
  await upstream?.close();
});

beforeEach(() => {
  bedrock.reset();
  upstream.requests.length = 0;
});

function norm(v: number[]): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

function cosine(a: number[], b: number[]): number {
  return a.reduce((s, x, i) => s + x * b[i]!, 0) / (norm(a) * norm(b));
}

function decodeBase64Floats(b64: string): number[] {
  const buf = Buffer.from(b64, 'base64');
  const out: number[] = [];
  for (let i = 0; i < buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

async function raw(body: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${srv.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

async function expectApiError(p: Promise<unknown>, status: number, param?: string): Promise<APIError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof APIError, `expected an APIError, got ${String(caught)}`);
  assert.equal(caught.status, status, caught.message);
  if (param !== undefined) assert.equal(caught.param, param);
  assertCleanErrorText(`${caught.message} ${JSON.stringify(caught.error ?? null)}`);
  return caught;
}

describe('embeddings: mock provider (no account)', () => {
  it('answers in OpenAI shape with deterministic unit vectors (the SDK default, base64, decoded by the client)', async () => {
    const { data: res, response } = await client.embeddings.create({ model: 'mock-embed', input: ['The cat sat on the mat', 'the cat sat on the mat', 'Stock prices fell sharply'] }).withResponse();
    assert.equal(res.object, 'list');
    assert.equal(res.model, 'mock-embed-1');
    assert.equal(res.data.length, 3);
    res.data.forEach((d, i) => {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.equal(d.embedding.length, 256);
      assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5);
    });
    // Same words, same vector; related texts closer than unrelated ones.
    assert.deepEqual(res.data[0]!.embedding, res.data[1]!.embedding);
    const related = await client.embeddings.create({ model: 'mock-embed', input: ['the cat sat', 'a cat sat down', 'stock prices fell'] });
    const [a, b, c] = related.data.map((d) => d.embedding);
    assert.ok(cosine(a!, b!) > cosine(a!, c!));
    assert.deepEqual(res.usage, { prompt_tokens: 16, total_tokens: 16 });

    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.path, '/v1/embeddings');
    assert.equal(rec.model, 'mock-embed');
    assert.equal(rec.provider, 'mock');
    assert.equal(rec.upstreamModel, 'mock-embed-1');
    assert.equal(rec.status, 200);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.inputTokens, 16);
  });

  it('gives the same numbers as float and as base64 (little-endian float32), and honours dimensions', async () => {
    const f = await raw({ model: 'mock-embed', input: 'hello embeddings world', encoding_format: 'float', dimensions: 64 });
    const b = await raw({ model: 'mock-embed', input: 'hello embeddings world', encoding_format: 'base64', dimensions: 64 });
    assert.equal(f.status, 200);
    assert.equal(f.json.data[0].embedding.length, 64);
    assert.equal(typeof b.json.data[0].embedding, 'string');
    assert.deepEqual(decodeBase64Floats(b.json.data[0].embedding), f.json.data[0].embedding.map((x: number) => Math.fround(x)));
    assert.equal(f.headers.get('x-gateway-provider'), 'mock');
  });
});

describe('embeddings: OpenAI upstream (pass-through)', () => {
  it("sends the client's body with the upstream model id and the gateway's key, and passes the answer through", async () => {
    const { data: res, response } = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha beta', 'gamma'], dimensions: 16, user: 'u-42' }).withResponse();
    assert.equal(res.data.length, 2);
    assert.equal(res.data[0]!.embedding.length, 16);
    // Decoded by the SDK from the upstream's own base64.
    assert.deepEqual(res.data[1]!.embedding, mockVector('gamma', 16).map((x) => Math.fround(x)));
    assert.equal(res.model, 'text-embedding-3-small-served');
    assert.deepEqual(res.usage, { prompt_tokens: 3, total_tokens: 3 });
    const sent = upstream.requests[0]!;
    assert.deepEqual(sent.body, { model: 'text-embedding-3-small', input: ['alpha beta', 'gamma'], dimensions: 16, user: 'u-42', encoding_format: 'base64' });
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.provider, 'openai');
    assert.equal(rec.inputTokens, 3);
    assert.equal(rec.outcome, 'ok');
  });

  it('passes float answers through untouched', async () => {
    const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'one two three', encoding_format: 'float' });
    assert.deepEqual(res.data[0]!.embedding, mockVector('one two three', 8));
    assert.equal(upstream.requests[0]!.body.encoding_format, 'float');
  });

  it("passes an upstream error through in OpenAI's shape, and hides a refused key behind a 502", async () => {
    upstream.failNext = { status: 429, body: { error: { message: 'Rate limit reached for text-embedding-3-small', type: 'requests', param: null, code: 'rate_limit_exceeded' } } };
    const err = await expectApiError(client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }), 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.match(err.message, /Rate limit reached/);

    upstream.failNext = { status: 401, body: { error: { message: `Incorrect API key provided: ${UPSTREAM_KEY.slice(0, 12)}****`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } } };
    const auth = await expectApiError(client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }), 502);
    assert.equal(auth.code, 'upstream_auth_failed');
  });
});

describe('embeddings: Bedrock Titan and Cohere', () => {
  it('calls Titan v2 once per input with {inputText, dimensions, normalize}, in order, with usage', async () => {
    const texts = ['first text here', 'second', 'the third one', 'fourth text', 'fifth'];
    const { data: res, response } = await client.embeddings.create({ model: 'titan', input: texts, dimensions: 512, encoding_format: 'float' }).withResponse();
    assert.equal(res.data.length, texts.length);
    res.data.forEach((d, i) => {
      assert.equal(d.index, i);
      assert.deepEqual(d.embedding, mockVector(texts[i]!, 512));
    });
    assert.equal(res.model, TITAN);
    const tokens = texts.reduce((n, t) => n + wordCount(t), 0);
    assert.deepEqual(res.usage, { prompt_tokens: tokens, total_tokens: tokens });

    const calls = bedrock.requests.filter((r) => r.operation === 'invoke');
    assert.equal(calls.length, texts.length);
    for (const c of calls) {
      assert.equal(c.modelId, TITAN);
      assert.equal(c.path, `/model/${encodeURIComponent(TITAN)}/invoke`);
      assert.match(String(c.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIATESTEMBEDDINGS01\/\d{8}\/us-west-2\/bedrock\/aws4_request/);
      assert.equal(c.headers['content-type'], 'application/json');
      assert.deepEqual(Object.keys(c.body).sort(), ['dimensions', 'inputText', 'normalize']);
      assert.equal(c.body.dimensions, 512);
      assert.equal(c.body.normalize, true);
    }
    assert.deepEqual(calls.map((c) => c.body.inputText).sort(), [...texts].sort());
    const rec = await srv.recordOf(response.headers.get('x-request-id'));
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.upstreamModel, TITAN);
    assert.equal(rec.inputTokens, tokens);
  });

  it('encodes Bedrock vectors as base64 little-endian float32 (the SDK default) with the same numbers', async () => {
    const res = await client.embeddings.create({ model: 'titan', input: 'base64 please' });
    assert.equal(res.data[0]!.embedding.length, 1024);
    assert.deepEqual(res.data[0]!.embedding, mockVector('base64 please', 1024).map((x) => Math.fround(x)));
    const b = await raw({ model: 'titan', input: 'base64 please', encoding_format: 'base64' });
    assert.deepEqual(decodeBase64Floats(b.json.data[0].embedding), res.data[0]!.embedding);
  });

  it('calls Cohere in batches of 96 texts with input_type search_document, keeping the order', async () => {
    const texts = Array.from({ length: 100 }, (_, i) => `document number ${i}`);
    const res = await client.embeddings.create({ model: 'cohere', input: texts, encoding_format: 'float' });
    assert.equal(res.data.length, 100);
    res.data.forEach((d, i) => assert.deepEqual(d.embedding, mockVector(texts[i]!, 1024)));
    const calls = bedrock.requests.filter((r) => r.operation === 'invoke');
    assert.deepEqual(calls.map((c) => c.body.texts.length), [96, 4]);
    assert.equal(calls[0]!.modelId, COHERE);
    assert.equal(calls[0]!.body.input_type, 'search_document');
    assert.deepEqual(calls[0]!.body.embedding_types, ['float']);
    // Usage from Bedrock's X-Amzn-Bedrock-Input-Token-Count header.
    assert.equal(res.usage.prompt_tokens, 300);
  });

  it("passes dimensions to Cohere v4 as output_dimension", async () => {
    const res = await client.embeddings.create({ model: 'cohere-v4', input: ['a b'], dimensions: 256, encoding_format: 'float' });
    assert.equal(res.data[0]!.embedding.length, 256);
    assert.equal(bedrock.last('invoke').body.output_dimension, 256);
  });

  it('rejects what Bedrock models cannot take with a 400 naming the parameter, before any call', async () => {
    await expectApiError(client.embeddings.create({ model: 'titan', input: [[1, 2, 3]] }), 400, 'input');
    await expectApiError(client.embeddings.create({ model: 'titan', input: 'x', dimensions: 300 }), 400, 'dimensions');
    await expectApiError(client.embeddings.create({ model: 'cohere', input: 'x', dimensions: 512 }), 400, 'dimensions');
    const chat = await expectApiError(client.embeddings.create({ model: 'nova', input: 'x' }), 400, 'model');
    assert.match(chat.message, /titan-embed-text-v2/);
    assert.equal(bedrock.requests.length, 0);
  });

  it('maps Bedrock errors to OpenAI-shaped errors with the right status', async () => {
    bedrock.script({ type: 'error', status: 429, errorType: 'ThrottlingException', message: 'Too many requests, please wait before trying again.' });
    const t = await expectApiError(client.embeddings.create({ model: 'cohere', input: 'x' }), 429);
    assert.equal(t.type, 'rate_limit_error');
    bedrock.script({ type: 'error', status: 400, errorType: 'ValidationException', message: 'Malformed input request: #/texts/0: expected maxLength: 2048' });
    const v = await expectApiError(client.embeddings.create({ model: 'cohere', input: 'y' }), 400);
    assert.match(v.message, /expected maxLength: 2048/);
    bedrock.script({ type: 'error', status: 403, errorType: 'AccessDeniedException', message: 'You don\'t have access to the model with the specified model ID.' });
    const a = await expectApiError(client.embeddings.create({ model: 'titan', input: 'z' }), 502);
    assert.equal(a.code, 'upstream_auth_failed');
  });
});

describe('embeddings: request checks', () => {
  const bad: [string, unknown, string | null][] = [
    ['a missing model', { input: 'x' }, 'model'],
    ['a missing input', { model: 'mock-embed' }, 'input'],
    ['an empty input array', { model: 'mock-embed', input: [] }, 'input'],
    ['an empty string', { model: 'mock-embed', input: ['ok', ''] }, 'input'],
    ['mixed input types', { model: 'mock-embed', input: ['ok', 3] }, 'input'],
    ['an unknown encoding_format', { model: 'mock-embed', input: 'x', encoding_format: 'int8' }, 'encoding_format'],
    ['a non-integer dimensions', { model: 'mock-embed', input: 'x', dimensions: 1.5 }, 'dimensions'],
  ];
  for (const [what, body, param] of bad) {
    it(`answers 400 in OpenAI's shape for ${what}`, async () => {
      const r = await raw(body);
      assert.equal(r.status, 400);
      assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.equal(r.json.error.param, param);
    });
  }

  it('answers 404 for an unknown model, and logs the request', async () => {
    const r = await fetch(`${srv.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'no-such-model', input: 'x' }) });
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as any).error.code, 'model_not_found');
    const rec = await srv.recordOf(r.headers.get('x-request-id'));
    assert.equal(rec.status, 404);
    assert.equal(rec.outcome, 'error');
  });

  it('embeds token-id input on the mock provider', async () => {
    const r = await raw({ model: 'mock-embed', input: [[101, 102], [101, 102]], encoding_format: 'float' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.data[0].embedding, r.json.data[1].embedding);
  });
});
