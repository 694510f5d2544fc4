import { request } from 'node:http';
import { pipeline } from 'node:stream';
import { startLoopback } from './loopback.ts';

/**
 * A loopback reverse proxy that sends each request to the upstream whose path prefix matches,
 * streaming both ways. It lets one provider `baseUrl` reach two scripted mocks (e.g. the mock
 * Chat Completions server for `/v1/chat/completions` and the mock Responses server for
 * `/v1/responses`). An upstream that cuts its connection gets the client's connection cut too,
 * so a broken upstream stays broken on the far side of the proxy.
 */
export interface PathProxy {
  /** The proxy's origin plus `/v1`, for a provider's `baseUrl`. */
  readonly baseUrl: string;
  close(): Promise<void>;
}

export async function startPathProxy(routes: { prefix: string; origin: string }[]): Promise<PathProxy> {
  const lb = await startLoopback((req, res) => {
    const path = req.url ?? '/';
    const route = routes.find((r) => path.startsWith(r.prefix));
    if (!route) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no route for ${path}`, type: 'invalid_request_error', param: null, code: null } }));
      return;
    }
    const target = new URL(path, route.origin);
    const up = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      res.flushHeaders();
      pipeline(upRes, res, (err) => {
        if (err) res.socket?.destroy();
      });
    });
    up.on('error', () => res.socket?.destroy());
    pipeline(req, up, () => {});
  });
  const { port } = lb;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    async close() {
      await lb.close();
    },
  };
}
