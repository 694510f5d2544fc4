import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../shared/config/load.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import { RouteTable } from '../shared/routes.ts';

/**
 * The route table (issue #20): 405 and `Allow` come from its entries for every route, the Bedrock
 * CountTokens route and multi-segment model ids included (before the table, `GET .../count-tokens`
 * was a 404); an unknown Bedrock operation is a 404 `unknown_route` in Bedrock's error shape; a
 * new route is one entry, its parameters decoded.
 */
describe('route table', () => {
  let srv: LocalServer;
  before(async () => {
    const config = parseConfig({ providers: { mock: { type: 'mock', wordDelayMs: 0 } }, models: { mock: { provider: 'mock', model: 'mock-echo-1' } } });
    srv = await startLocalServer({ config, env: {}, port: 0, host: '127.0.0.1', sinks: [] });
  });
  after(() => srv.close());

  it('answers other methods 405 with the Allow the table derives', async () => {
    for (const [method, path, allow] of [
      ['GET', '/bedrock/model/mock/count-tokens', 'POST'],
      ['GET', '/bedrock/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc/converse', 'POST'],
      ['DELETE', '/v1/models/mock', 'GET'],
      ['HEAD', '/v1/models', 'GET'],
      ['PUT', '/', 'GET, HEAD'],
    ]) {
      const res = await fetch(`${srv.url}${path}`, { method });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(res.headers.get('allow'), allow, `${method} ${path}`);
      await res.body?.cancel();
    }
  });

  it('answers an unknown Bedrock operation 404 unknown_route in Bedrock shape', async () => {
    const res = await fetch(`${srv.url}/bedrock/model/mock/summon`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(res.status, 404);
    assert.ok(res.headers.get('x-amzn-errortype'), 'a Bedrock error type header');
    const body = (await res.json()) as { message: string };
    assert.match(body.message, /Unknown route: POST \/bedrock\/model\/mock\/summon/);
  });

  it('matches an added entry with decoded parameters, and a prefix entry for every method', () => {
    const table = new RouteTable<string>([
      { methods: ['GET', 'DELETE'], path: '/v1/responses/{id}', handler: () => new Response('one') },
      { methods: ['GET'], path: '/v1/responses/{id}/input_items', handler: () => new Response('items') },
      { methods: '*', path: '/iam/{rest+}', handler: () => new Response('iam') },
    ]);
    const hit = table.match('DELETE', '/v1/responses/resp%20a');
    assert.deepEqual(hit.route && hit.params, { id: 'resp a' });
    assert.equal(table.match('GET', '/v1/responses/r1/input_items').route?.path, '/v1/responses/{id}/input_items');
    assert.deepEqual(table.match('POST', '/v1/responses/r1'), { allow: 'GET, DELETE' });
    const iam = table.match('PATCH', '/iam/v1/chat/completions');
    assert.deepEqual(iam.route && iam.params, { rest: 'v1/chat/completions' });
    assert.equal(table.allowed('/iam/x'), undefined);
    assert.deepEqual(table.match('GET', '/v1/nothing'), { allow: undefined });
  });

  it('matches as the regular expressions it replaced would, on 20,000 seeded random paths', () => {
    const paths = ['/v1/models', '/v1/models/{model}', '/bedrock/model/{modelId+}/converse', '/bedrock/model/{modelId+}/invoke', '/iam/{rest+}', '/a/{x}/b/{y}', '/a/{x}/{z+}/c'];
    const table = new RouteTable<string>(paths.map((path) => ({ methods: ['POST'], path, handler: () => new Response(path) })));
    // The oracle: each pattern as a regular expression, `{name}` one segment, `{name+}` one or more.
    const oracle = paths.map((path) => {
      const names: string[] = [];
      const source = path
        .split('/')
        .map((seg) => {
          const p = /^\{(\w+)(\+?)\}$/.exec(seg);
          if (!p) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
          names.push(p[1]!);
          return p[2] ? '(.+)' : '([^/]+)';
        })
        .join('/');
      return { path, re: new RegExp(`^${source}$`), names };
    });
    const parts = ['', 'a', 'b', 'c', 'v1', 'models', 'bedrock', 'model', 'converse', 'invoke', 'iam', 'x%2Fy', 'm:1', '%20'];
    let seed = 17;
    const next = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 20_000; i++) {
      const path = `/${Array.from({ length: 1 + next(6) }, () => parts[next(parts.length)]).join('/')}`;
      const hit = oracle.find((o) => o.re.test(path));
      const want = hit && { path: hit.path, params: Object.fromEntries(hit.names.map((n, k) => [n, decodeURIComponent(hit.re.exec(path)![k + 1]!)])) };
      const got = table.match('POST', path);
      assert.deepEqual(got.route && { path: got.route.path, params: { ...got.params } }, want, path);
    }
  });
});
