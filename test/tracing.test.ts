import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { parseConfig } from '../shared/config/load.ts';
import { parseTraceparent, startTrace, xrayRoot } from '../shared/tracing/context.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import { CLIENT_KEY, MemorySink, startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { startMcpUpstream, type McpUpstream } from './helpers/mcp-upstream.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';

/**
 * Trace context end to end: a caller's W3C `traceparent` reaches the mock upstreams (model provider
 * and MCP server) as a child span of the same trace, comes back in the response headers, and lands
 * in the log record; without one the gateway starts a trace (or follows the Lambda's X-Ray trace).
 */

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

function assertChildOf(header: string | string[] | undefined, traceId: string, notSpan?: string): string {
  assert.equal(typeof header, 'string', 'the upstream got a traceparent');
  const p = parseTraceparent(header as string);
  assert.ok(p, `a valid traceparent: ${header}`);
  assert.equal(p.traceId, traceId, 'same trace id');
  if (notSpan) assert.notEqual(p.parentId, notSpan, 'a span of its own (a child), not the caller\'s');
  return p.parentId;
}

describe('trace context', () => {
  let upstream: MockOpenAI;
  let gw: TestGateway;
  before(async () => {
    upstream = await startMockOpenAI();
    gw = await startTestGateway({ upstreamBaseUrl: upstream.baseUrl });
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  test('a caller\'s traceparent reaches the model upstream as a child span, the response headers and the log record', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, defaultHeaders: { traceparent: TRACEPARENT, 'x-request-id': 'trace-test-1' } });
    const { data, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'trace me' }] }).withResponse();
    assert.ok(data.choices[0]!.message.content);
    const sent = upstream.lastChatRequest().headers.traceparent;
    const childSpan = assertChildOf(sent, TRACE_ID, PARENT_ID);
    // Back to the caller: the gateway's own span in the same trace.
    const back = parseTraceparent(response.headers.get('traceparent'));
    assert.equal(back?.traceId, TRACE_ID);
    assert.notEqual(back?.parentId, PARENT_ID);
    assert.notEqual(back?.parentId, childSpan, 'each upstream call gets a new span id');
    assert.equal(response.headers.get('x-request-id'), 'trace-test-1');
    const rec = await gw.waitForRecord('trace-test-1');
    assert.equal(rec.traceId, TRACE_ID);
  });

  test('a streamed request on the Anthropic door carries the trace too', async () => {
    // The Anthropic door routed to the OpenAI-format upstream: the trace does not depend on the door.
    const client = new Anthropic({ baseURL: gw.url, apiKey: CLIENT_KEY, maxRetries: 0, defaultHeaders: { traceparent: TRACEPARENT } });
    const stream = client.messages.stream({ model: 'gpt-4o-mini', max_tokens: 50, messages: [{ role: 'user', content: 'stream a trace' }] });
    const msg = await stream.finalMessage();
    assert.ok(msg.content.length > 0);
    assertChildOf(upstream.lastChatRequest().headers.traceparent, TRACE_ID, PARENT_ID);
  });

  test('without a traceparent (or with an invalid one) the gateway starts a trace and sends it on', async () => {
    for (const incoming of [undefined, `00-${'0'.repeat(32)}-${PARENT_ID}-01`, 'garbage']) {
      const headers: Record<string, string> = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
      if (incoming) headers.traceparent = incoming;
      const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
      assert.equal(res.status, 200);
      await res.json();
      const back = parseTraceparent(res.headers.get('traceparent'));
      assert.ok(back, 'the response names the trace');
      assert.notEqual(back.traceId, '0'.repeat(32));
      assertChildOf(upstream.lastChatRequest().headers.traceparent, back.traceId, back.parentId);
      const rec = await gw.waitForRecord(res.headers.get('x-request-id')!);
      assert.equal(rec.traceId, back.traceId);
    }
  });

  test('in Lambda with X-Ray, the record keeps the X-Ray trace id and a new trace follows its root', async () => {
    const saved = process.env._X_AMZN_TRACE_ID;
    process.env._X_AMZN_TRACE_ID = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1';
    try {
      const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
      await res.json();
      const rec = await gw.waitForRecord(res.headers.get('x-request-id')!);
      assert.equal(rec.xrayTraceId, '1-5759e988-bd862e3fe1be46a994272793');
      assert.equal(rec.traceId, '5759e988bd862e3fe1be46a994272793');
      assertChildOf(upstream.lastChatRequest().headers.traceparent, '5759e988bd862e3fe1be46a994272793');
    } finally {
      if (saved === undefined) delete process.env._X_AMZN_TRACE_ID;
      else process.env._X_AMZN_TRACE_ID = saved;
    }
  });

  test('parsing follows the W3C rules', () => {
    assert.deepEqual(parseTraceparent(TRACEPARENT), { traceId: TRACE_ID, parentId: PARENT_ID, flags: '01' });
    assert.equal(parseTraceparent(`ff-${TRACE_ID}-${PARENT_ID}-01`), undefined, 'version ff is invalid');
    assert.equal(parseTraceparent(`00-${TRACE_ID}-${'0'.repeat(16)}-01`), undefined, 'zero parent id');
    assert.equal(parseTraceparent(`00-${TRACE_ID}-${PARENT_ID}-01-extra`), undefined, 'version 00 has four fields');
    assert.equal(parseTraceparent(`01-${TRACE_ID}-${PARENT_ID}-01-extra`)?.traceId, TRACE_ID, 'later versions may add fields');
    assert.equal(xrayRoot('Root=1-abc;Parent=1'), undefined);
    const h = new Headers({ traceparent: TRACEPARENT, tracestate: 'vendor=1' });
    const tc = startTrace(h);
    assert.equal(tc.traceId, TRACE_ID);
    assert.equal(tc.parentSpanId, PARENT_ID);
    assert.equal(tc.tracestate, 'vendor=1');
    assert.match(tc.spanId, /^[0-9a-f]{16}$/);
  });
});

describe('trace context and body logging on MCP routes', () => {
  let mcp: McpUpstream;
  let server: LocalServer;
  const sink = new MemorySink();
  before(async () => {
    mcp = await startMcpUpstream({ token: 'trace-mcp-token-77aa' });
    const config = parseConfig(
      {
        providers: { mock: { type: 'mock', wordDelayMs: 0 } },
        models: { mock: { provider: 'mock', model: 'mock-echo-1' } },
        logging: { localDir: 'data/test-logs-unused', bodies: { enabled: true, redact: ['hunter2'] } },
        mcp: { servers: { tools: { url: mcp.url, apiKeyEnv: 'TRACE_MCP_TOKEN', headers: { 'x-tenant': 'acme' } } } },
      },
      'tracing test configuration',
    );
    server = await startLocalServer({ config, env: { TRACE_MCP_TOKEN: 'trace-mcp-token-77aa' }, port: 0, host: '127.0.0.1', sinks: [sink] });
  });
  after(async () => {
    await server.close();
    await mcp.close();
  });

  test('an MCP server receives the caller\'s trace id; arguments are logged redacted only with body logging on', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp/tools`), { requestInit: { headers: { traceparent: TRACEPARENT } } });
    const client = new Client({ name: 'trace-client', version: '1.0.0' });
    await client.connect(transport);
    try {
      const r = await client.callTool({ name: 'echo', arguments: { text: 'password hunter2 and key sk-abcdefghijklmnopqrstuvwx' } });
      assert.ok(JSON.stringify(r).includes('hunter2'), 'the tool itself got the real arguments');
    } finally {
      await client.close();
    }
    const posts = mcp.requests.filter((r) => r.method === 'POST');
    assert.ok(posts.length >= 2);
    for (const p of posts) {
      assertChildOf(p.headers.traceparent, TRACE_ID, PARENT_ID);
      assert.equal(p.headers['x-tenant'], 'acme', 'configured headers are sent');
      assert.equal(p.headers.authorization, 'Bearer trace-mcp-token-77aa');
    }
    const rec = sink.records.find((x) => x.mcpTool === 'echo')!;
    assert.equal(rec.traceId, TRACE_ID);
    assert.ok(rec.requestBody, 'arguments are logged when body logging is on');
    assert.ok(rec.requestBody.includes('password'));
    assert.ok(!rec.requestBody.includes('hunter2'), 'configured pattern redacted');
    assert.ok(!rec.requestBody.includes('sk-abcdefghijklmnopqrstuvwx'), 'credentials redacted');
  });
});

describe('trace context on the Bedrock path (AWS SDK)', () => {
  let bedrock: MockBedrock;
  let server: LocalServer;
  const saved: Record<string, string | undefined> = {};
  const env = { AWS_ACCESS_KEY_ID: 'AKIATESTGATEWAY00002', AWS_SECRET_ACCESS_KEY: 'tracing-test-secret-00000000', AWS_EC2_METADATA_DISABLED: 'true' };
  before(async () => {
    for (const [k, v] of Object.entries(env)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    bedrock = await startMockBedrock();
    const config = parseConfig(
      {
        providers: { bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint } },
        models: { nova: { provider: 'bedrock', model: 'amazon.nova-lite-v1:0' } },
        logging: { localDir: 'data/test-logs-unused' },
      },
      'bedrock tracing configuration',
    );
    server = await startLocalServer({ config, env: {}, port: 0, host: '127.0.0.1', sinks: [new MemorySink()] });
  });
  after(async () => {
    await server.close();
    await bedrock.close();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  test('the Bedrock call carries traceparent as a child span of the caller\'s trace', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, defaultHeaders: { traceparent: TRACEPARENT } });
    const stream = await client.chat.completions.create({ model: 'nova', stream: true, messages: [{ role: 'user', content: 'trace on bedrock' }] });
    for await (const _ of stream) {
      // drain
    }
    assertChildOf(bedrock.last().headers.traceparent, TRACE_ID, PARENT_ID);
  });
});
