import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { ProviderSecrets, secretEnvNames } from '../infra/constructs/secrets.ts';
import { SseSplitter } from '../shared/http/sse.ts';
import { eventData, replaceEventData } from '../shared/mcp/relay.ts';
import { parseConfig } from '../shared/config/load.ts';
import { createDynamoStore, type DynamoStore } from '../shared/store/dynamodb.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import type { LocalDynamo } from '../local/dynamodb.ts';
import { MemorySink } from './helpers/gateway.ts';
import { ADMIN_TOKEN, eventually, startDynamo, TestClock } from './helpers/keys.ts';
import { startMcpUpstream, type McpUpstream } from './helpers/mcp-upstream.ts';

/**
 * MCP tool servers behind the gateway, end to end with the official MCP SDK on both sides: its
 * McpServer over StreamableHTTPServerTransport as the upstream (on loopback, with its own token),
 * and its Client over StreamableHTTPClientTransport as the caller, authenticating with a gateway key.
 * Keys live in a real DynamoDB API (dynalite).
 */

const UPSTREAM_TOKEN = 'mcp-upstream-token-9c1e4b7a2f';
const JSON_UPSTREAM_TOKEN = 'mcp-json-token-3d8f0a6b1c';

interface Setup {
  url: string;
  server: LocalServer;
  sink: MemorySink;
  tools: McpUpstream;
  jsonsrv: McpUpstream;
  hugesrv: McpUpstream;
  dynamo: LocalDynamo;
  store: DynamoStore;
  createKey(body: Record<string, unknown>): Promise<string>;
}

async function setup(): Promise<Setup> {
  const tools = await startMcpUpstream({ token: UPSTREAM_TOKEN });
  const jsonsrv = await startMcpUpstream({ token: JSON_UPSTREAM_TOKEN, jsonResponse: true });
  // Its tools/list answer is past the 16 MiB the gateway reads whole to filter.
  const hugesrv = await startMcpUpstream({ token: JSON_UPSTREAM_TOKEN, jsonResponse: true, hugeToolBytes: 17 * 1024 * 1024 });
  const { dynamo, settings } = await startDynamo();
  const store = createDynamoStore(settings);
  const config = parseConfig(
    {
      server: { maxBodyBytes: 64 * 1024 },
      providers: { mock: { type: 'mock', wordDelayMs: 0 } },
      models: { mock: { provider: 'mock', model: 'mock-echo-1' } },
      auth: { required: true, cacheTtlSeconds: 5 },
      logging: { localDir: 'data/test-logs-unused' },
      mcp: {
        maxBatch: 3,
        servers: {
          tools: { url: tools.url, apiKeyEnv: 'TEST_MCP_TOKEN' },
          // Its own `tools` narrows what any key can see there.
          jsonsrv: { url: jsonsrv.url, apiKeyEnv: 'TEST_MCP_JSON_TOKEN', tools: ['echo', 'add', 'secret_*'] },
          hugesrv: { url: hugesrv.url, apiKeyEnv: 'TEST_MCP_JSON_TOKEN', tools: ['echo'] },
          // The upstream refuses this one's credential; the other has none set.
          badcred: { url: tools.url, apiKeyEnv: 'TEST_MCP_WRONG_TOKEN' },
          nocred: { url: tools.url, apiKeyEnv: 'TEST_MCP_UNSET_TOKEN' },
        },
      },
    },
    'mcp test configuration',
  );
  const sink = new MemorySink();
  const clock = new TestClock();
  const server = await startLocalServer({
    config,
    env: { GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, TEST_MCP_TOKEN: UPSTREAM_TOKEN, TEST_MCP_JSON_TOKEN: JSON_UPSTREAM_TOKEN, TEST_MCP_WRONG_TOKEN: 'not-the-upstream-token' },
    port: 0,
    host: '127.0.0.1',
    sinks: [sink],
    store,
    now: clock.now,
  });
  return {
    url: server.url,
    server,
    sink,
    tools,
    jsonsrv,
    hugesrv,
    dynamo,
    store,
    async createKey(body) {
      const res = await fetch(`${server.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const json = (await res.json()) as { key: string };
      assert.equal(res.status, 201, JSON.stringify(json));
      return json.key;
    },
  };
}

function mcpClient(url: string, key: string, header: 'bearer' | 'x-api-key' = 'bearer'): { client: Client; transport: StreamableHTTPClientTransport } {
  const headers: Record<string, string> = header === 'bearer' ? { authorization: `Bearer ${key}` } : { 'x-api-key': key };
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: 'gateway-test-client', version: '1.0.0' });
  return { client, transport };
}

function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

function mcpRecords(sink: MemorySink, server: string): RequestRecord[] {
  return sink.records.filter((r) => r.mcpServer === server);
}

async function rawPost(url: string, key: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}

describe('MCP tool servers behind the gateway', () => {
  let s: Setup;
  let key: string;
  before(async () => {
    s = await setup();
    key = await s.createKey({ name: 'agent', team: 'tools-team', mcp: ['tools/echo', 'tools/add', 'tools/progress_*', 'jsonsrv/*', 'hugesrv/*', 'badcred', 'nocred'] });
  });
  after(async () => {
    await s.server.close();
    s.store.close();
    await s.dynamo.close();
    await s.tools.close();
    await s.jsonsrv.close();
    await s.hugesrv.close();
  });

  test('initialize, filtered tools/list, an allowed call, a refused call that never reaches the server, session id round trip, DELETE', async () => {
    const { client, transport } = mcpClient(`${s.url}/mcp/tools`, key);
    await client.connect(transport);
    try {
      // initialize went through; the session id is the upstream's own.
      assert.ok(transport.sessionId, 'the client got an Mcp-Session-Id');
      assert.ok(s.tools.sessionsOpened.includes(transport.sessionId!), 'the session id is the one the upstream issued');
      assert.equal(client.getServerVersion()?.name, 'test-upstream');

      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['add', 'echo', 'progress_count'], 'secret_delete is filtered out');

      const echoed = await client.callTool({ name: 'echo', arguments: { text: 'hello through the gateway' } });
      assert.equal(textOf(echoed), 'echo: hello through the gateway');
      assert.equal(s.tools.calls.get('echo'), 1);

      const before = s.tools.requests.length;
      await assert.rejects(client.callTool({ name: 'secret_delete', arguments: { path: '/etc' } }), (err: unknown) => {
        assert.ok(err instanceof McpError, `an McpError, got ${String(err)}`);
        assert.equal(err.code, -32003);
        assert.match(err.message, /secret_delete/);
        return true;
      });
      assert.equal(s.tools.calls.get('secret_delete'), undefined, 'the refused tool never ran');
      assert.equal(s.tools.requests.length, before, 'the refused call never reached the upstream');

      // Every upstream request carried the upstream's token, never the gateway key; later requests
      // carried the session id and protocol version the client sent.
      for (const r of s.tools.requests) {
        assert.equal(r.headers.authorization, `Bearer ${UPSTREAM_TOKEN}`);
        assert.equal(r.headers['x-api-key'], undefined);
        assert.ok(!JSON.stringify(r.headers).includes(key), 'the gateway key never reaches the upstream');
      }
      const later = s.tools.requests.filter((r) => r.headers['mcp-session-id'] === transport.sessionId);
      assert.ok(later.length >= 2, 'requests after initialize carry the session id');
      assert.ok(later.every((r) => typeof r.headers['mcp-protocol-version'] === 'string' && r.headers['mcp-protocol-version'].length > 0), 'and the protocol version');

      // GET: the client opened the server's stream through the gateway; a server-initiated
      // notification on it reaches the client.
      const sid = transport.sessionId!;
      await eventually(async () => s.tools.requests.some((r) => r.method === 'GET' && r.headers['mcp-session-id'] === sid), 'the GET stream to reach the upstream');
      let notified = false;
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        notified = true;
      });
      // Sent again until it arrives: the upstream may take a moment to register the stream it just got.
      await eventually(async () => {
        if (!notified) s.tools.servers.get(sid)!.sendToolListChanged();
        await new Promise((r) => setTimeout(r, 50));
        return notified;
      }, 'a notification over the GET stream');

      // DELETE ends the session at the upstream.
      await transport.terminateSession();
      await eventually(async () => s.tools.sessionsClosed.includes(sid), 'the upstream to close the session');
      assert.ok(s.tools.requests.some((r) => r.method === 'DELETE' && r.headers['mcp-session-id'] === sid));
    } finally {
      await client.close();
    }

    // One record per JSON-RPC request, with server, method, tool, status, sizes.
    const recs = mcpRecords(s.sink, 'tools');
    const call = recs.find((r) => r.mcpMethod === 'tools/call' && r.mcpTool === 'echo')!;
    assert.ok(call, 'a record for the echo call');
    assert.equal(call.status, 200);
    assert.equal(call.outcome, 'ok');
    assert.ok(call.keyId);
    assert.equal(call.team, 'tools-team');
    assert.ok(call.requestBytes! > 0 && call.responseBytes! > 0);
    assert.ok(call.latencyMs >= 0);
    assert.equal(call.requestBody, undefined, 'no arguments in the log without body logging');
    const refused = recs.find((r) => r.mcpTool === 'secret_delete')!;
    assert.equal(refused.errorCode, 'tool_not_allowed');
    assert.equal(refused.mcpErrorCode, -32003);
    assert.ok(recs.some((r) => r.mcpMethod === 'initialize'));
    assert.ok(recs.some((r) => r.mcpMethod === 'tools/list'));
    assert.ok(recs.some((r) => r.method === 'DELETE'));
  });

  test('a tool call answered as an event stream is relayed event by event (progress arrives while the call runs)', async () => {
    const { client, transport } = mcpClient(`${s.url}/mcp/tools`, key, 'x-api-key');
    await client.connect(transport);
    try {
      const progress: number[] = [];
      const result = await client.callTool({ name: 'progress_count', arguments: { n: 3 } }, undefined, {
        onprogress: (p) => {
          progress.push(p.progress);
          s.tools.progressSeen.resolve?.();
        },
      });
      assert.equal(textOf(result), 'counted to 3', 'the first progress event reached the client before the call finished');
      assert.deepEqual(progress, [1, 2, 3]);
    } finally {
      await client.close();
    }
    const rec = mcpRecords(s.sink, 'tools').find((r) => r.mcpTool === 'progress_count')!;
    assert.equal(rec.stream, true);
    assert.ok(rec.ttfbMs !== undefined);
  });

  test('an upstream answering application/json: tools/list is filtered by the key and the server config', async () => {
    const { client, transport } = mcpClient(`${s.url}/mcp/jsonsrv`, key);
    await client.connect(transport);
    try {
      const { tools } = await client.listTools();
      // Config allows echo, add, secret_*; the key allows jsonsrv/*: progress_count is hidden by config.
      assert.deepEqual(tools.map((t) => t.name).sort(), ['add', 'echo', 'secret_delete']);
      const sum = await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
      assert.equal(textOf(sum), '42');
      await assert.rejects(client.callTool({ name: 'progress_count', arguments: { n: 1 } }), /progress_count/);
      assert.equal(s.jsonsrv.calls.get('progress_count'), undefined);
    } finally {
      await client.close();
    }
  });

  test('a tools/list answer too large to filter is refused (502, JSON-RPC error), never passed on cut short or unfiltered', async () => {
    const { client, transport } = mcpClient(`${s.url}/mcp/hugesrv`, key);
    await client.connect(transport);
    try {
      await assert.rejects(client.listTools(), /tools\/list answer larger than 16777216 bytes/);
    } finally {
      await client.close();
    }
    const rec = mcpRecords(s.sink, 'hugesrv').find((r) => r.mcpMethod === 'tools/list')!;
    assert.equal(rec.status, 502);
    assert.equal(rec.errorCode, 'mcp_answer_too_large');
  });

  test('a bad key is refused with 401 before anything reaches the upstream', async () => {
    const before = s.tools.requests.length;
    const { client, transport } = mcpClient(`${s.url}/mcp/tools`, 'gwk_aaaaaaaaaaaaaaaaaaaa_' + 'A'.repeat(43));
    await assert.rejects(client.connect(transport));
    const raw = await rawPost(`${s.url}/mcp/tools`, 'not-a-key', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    assert.equal(raw.status, 401);
    assert.equal(raw.json.jsonrpc, '2.0');
    assert.equal(raw.json.error.code, -32001);
    assert.equal(s.tools.requests.length, before);
  });

  test('a key whose list leaves out a server gets 403 there; an empty list allows no server', async () => {
    const only = await s.createKey({ name: 'json-only', mcp: ['jsonsrv'] });
    const none = await s.createKey({ name: 'no-mcp', mcp: [] });
    const before = s.tools.requests.length;
    for (const k of [only, none]) {
      const r = await rawPost(`${s.url}/mcp/tools`, k, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }));
      assert.equal(r.status, 403);
      assert.equal(r.json.error.code, -32003);
      assert.match(r.json.error.message, /tools/);
    }
    assert.equal(s.tools.requests.length, before);
  });

  test('bad input gets a JSON-RPC error with the right status and nothing is forwarded', async () => {
    const before = s.tools.requests.length + s.jsonsrv.requests.length;
    const url = `${s.url}/mcp/tools`;
    const notJson = await rawPost(url, key, '{"jsonrpc": "2.0", "id": 1, ');
    assert.equal(notJson.status, 400);
    assert.equal(notJson.json.error.code, -32700);
    assert.equal(notJson.json.id, null);

    const notRpc = await rawPost(url, key, JSON.stringify({ id: 1, method: 'tools/list' }));
    assert.equal(notRpc.status, 400);
    assert.equal(notRpc.json.error.code, -32600);

    const badId = await rawPost(url, key, JSON.stringify({ jsonrpc: '2.0', id: { x: 1 }, method: 'tools/list' }));
    assert.equal(badId.status, 400);
    assert.equal(badId.json.error.code, -32600);

    const msg = (i: number) => ({ jsonrpc: '2.0', id: i, method: 'tools/list' });
    const big = await rawPost(url, key, JSON.stringify([msg(1), msg(2), msg(3), msg(4)]));
    assert.equal(big.status, 400);
    assert.equal(big.json.error.code, -32600);
    assert.match(big.json.error.message, /at most 3/);

    const empty = await rawPost(url, key, '[]');
    assert.equal(empty.status, 400);

    const unknown = await rawPost(`${s.url}/mcp/nope`, key, JSON.stringify(msg(1)));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, -32004);
    assert.match(unknown.json.error.message, /nope/);

    const wrongType = await rawPost(url, key, JSON.stringify(msg(1)), { 'content-type': 'text/plain' });
    assert.equal(wrongType.status, 415);

    const put = await fetch(url, { method: 'PUT', headers: { authorization: `Bearer ${key}` } });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, POST, DELETE');
    await put.text();

    const tooLarge = await rawPost(url, key, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(70 * 1024) } } }));
    assert.equal(tooLarge.status, 413);

    assert.equal(s.tools.requests.length + s.jsonsrv.requests.length, before, 'nothing was forwarded');
    const recs = s.sink.records.filter((r) => r.path.startsWith('/mcp/') && r.status >= 400);
    assert.ok(recs.some((r) => r.mcpErrorCode === -32700));
    assert.ok(recs.some((r) => r.errorCode === 'batch_too_large'));
  });

  test('a batch holding a refused tool call is answered whole by the gateway; each request gets a record', async () => {
    const before = s.tools.requests.length;
    const body = JSON.stringify([
      { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } },
      { jsonrpc: '2.0', id: 'b', method: 'tools/call', params: { name: 'secret_delete', arguments: { path: '/' } } },
    ]);
    const r = await rawPost(`${s.url}/mcp/tools`, key, body);
    assert.equal(r.status, 200);
    assert.equal(r.json.length, 2);
    assert.deepEqual(r.json.map((m: any) => m.id), ['a', 'b']);
    assert.match(r.json[1].error.message, /secret_delete/);
    assert.equal(s.tools.requests.length, before);
    const id = r.headers.get('x-request-id')!;
    const recs = s.sink.records.filter((x) => x.requestId === id || x.requestId === `${id}.2`);
    assert.equal(recs.length, 2);
    assert.deepEqual(recs.map((x) => x.mcpTool).sort(), ['echo', 'secret_delete']);
  });

  test('tool calls count against the key rate limit (requests per minute); other methods do not', async () => {
    const limited = await s.createKey({ name: 'limited', mcp: ['tools'], limits: { rpm: 2 } });
    const { client, transport } = mcpClient(`${s.url}/mcp/tools`, limited);
    await client.connect(transport);
    try {
      await client.listTools();
      await client.listTools();
      const before = s.tools.calls.get('add') ?? 0;
      assert.equal(textOf(await client.callTool({ name: 'add', arguments: { a: 1, b: 1 } })), '2');
      assert.equal(textOf(await client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })), '3');
      await assert.rejects(client.callTool({ name: 'add', arguments: { a: 1, b: 3 } }), /429|Rate limit/);
      assert.equal(s.tools.calls.get('add'), before + 2, 'the limited call never ran');
    } finally {
      await client.close();
    }
    const rec = s.sink.records.filter((r) => r.mcpTool === 'add' && r.rateLimit === 'limited');
    assert.equal(rec.length, 1);
    assert.equal(rec[0]!.status, 429);
  });

  test('an upstream that refuses the gateway credential is a 502 to the client; a missing credential a 503', async () => {
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
    const before = s.tools.requests.length;
    const bad = await rawPost(`${s.url}/mcp/badcred`, key, init);
    assert.equal(bad.status, 502);
    assert.equal(bad.json.error.code, -32000);
    assert.equal(bad.json.id, 1);
    assert.ok(!JSON.stringify(bad.json).includes('upstream says'), 'the upstream auth challenge is not relayed');
    assert.equal(bad.headers.get('www-authenticate'), null);
    assert.equal(s.tools.requests.length, before + 1);
    const none = await rawPost(`${s.url}/mcp/nocred`, key, init);
    assert.equal(none.status, 503);
    assert.equal(s.tools.requests.length, before + 1, 'nothing sent without a credential');
  });

  test('the admin API shows and changes a key\'s MCP allow list', async () => {
    const res = await fetch(`${s.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'acl', mcp: ['tools/echo'] }) });
    const created = (await res.json()) as { id: string; mcp: string[] };
    assert.deepEqual(created.mcp, ['tools/echo']);
    const patched = await fetch(`${s.url}/admin/keys/${created.id}`, { method: 'PATCH', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ mcp: null }) });
    assert.equal(((await patched.json()) as { mcp: unknown }).mcp, null);
    const bad = await fetch(`${s.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x', mcp: ['Not Valid'] }) });
    assert.equal(bad.status, 400);
    await bad.text();
  });
});

describe('MCP pieces', () => {
  test('event streams are split into whole events across chunk boundaries, and rewritten keeping id/event lines', () => {
    const text = 'event: message\r\nid: 7\r\ndata: {"a":\r\n\r\ndata: {"jsonrpc":"2.0"}\n\n: comment\n\ndata: tail';
    const bytes = new TextEncoder().encode(text);
    const sp = new SseSplitter({ bareCr: true });
    const events: string[] = [];
    // One byte at a time: the worst split a network can make.
    for (const b of bytes) events.push(...sp.push(new Uint8Array([b])));
    assert.equal(events.length, 3);
    assert.equal(eventData(events[0]!), '{"a":');
    assert.equal(eventData(events[1]!), '{"jsonrpc":"2.0"}');
    assert.equal(eventData(events[2]!), undefined, 'a comment has no data');
    assert.equal(sp.end(), 'data: tail');
    assert.equal(replaceEventData(events[0]!, '{"b":1}'), 'event: message\nid: 7\ndata: {"b":1}\n\n');
  });

  test('the mcp section is validated with the bad field named', () => {
    const base = { providers: { mock: { type: 'mock' } }, models: { mock: { provider: 'mock', model: 'm' } } };
    const bad = (mcp: unknown) => {
      try {
        parseConfig({ ...base, mcp }, 'mcp config');
      } catch (err) {
        return (err as Error).message;
      }
      assert.fail('expected a configuration error');
    };
    assert.match(bad({ servers: { GitHub: { url: 'https://x.example/mcp' } } }), /mcp\.servers\.GitHub/);
    assert.match(bad({ servers: { gh: { url: 'ftp://x.example/mcp' } } }), /mcp\.servers\.gh\.url/);
    assert.match(bad({ servers: { gh: { url: 'https://x.example/mcp', apiKeyEnv: 'lower' } } }), /mcp\.servers\.gh\.apiKeyEnv/);
    assert.match(bad({ servers: { gh: { url: 'https://x.example/mcp', headers: { 'Mcp-Session-Id': 'x' } } } }), /mcp\.servers\.gh\.headers/);
    assert.match(bad({ servers: { gh: { url: 'https://x.example/mcp', extra: 1 } } }), /mcp\.servers\.gh/);
    const ok = parseConfig({ ...base, mcp: { servers: { gh: { url: 'https://x.example/mcp', apiKeyHeader: 'X-API-Key' } } } }, 'mcp config');
    assert.equal(ok.mcp.servers.gh!.apiKeyHeader, 'x-api-key');
    assert.equal(ok.mcp.maxBatch, 20);
    assert.deepEqual(parseConfig(base, 'no mcp').mcp.servers, {});
  });

  test('in AWS an MCP server credential becomes a Secrets Manager secret handed to the function like a provider key', () => {
    const config = parseConfig(
      {
        providers: { mock: { type: 'mock' } },
        models: { mock: { provider: 'mock', model: 'm' } },
        mcp: { servers: { github: { url: 'https://example.com/mcp', apiKeyEnv: 'GITHUB_MCP_TOKEN' } } },
      },
      'infra check',
    );
    assert.ok(secretEnvNames(config).includes('GITHUB_MCP_TOKEN'));
    const stack = new Stack(new App(), 'McpSecrets');
    const secrets = new ProviderSecrets(stack, 'S', config);
    assert.ok(Object.keys(secrets.environment).includes('GITHUB_MCP_TOKEN_SECRET_ARN'), 'the function gets <NAME>_SECRET_ARN, read at cold start');
    Template.fromStack(stack).hasResourceProperties('AWS::SecretsManager::Secret', { Description: Match.stringLikeRegexp('GITHUB_MCP_TOKEN') });
  });
});
