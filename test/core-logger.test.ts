import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../shared/config/load.ts';
import { Gateway } from '../shared/gateway.ts';
import type { GatewayLogger } from '../shared/telemetry/logger.ts';
import { MemorySink } from './helpers/gateway.ts';

/**
 * The core writes its own operational messages through the logger it is given (Powertools' Logger
 * in Lambda), not to the console: here a response cache whose DynamoDB table cannot be reached.
 */
describe('the core logs through the injected logger', () => {
  it('a cache store failure goes to the logger (the request is still served), nothing to console.error', async () => {
    const config = parseConfig({
      providers: { mock: { type: 'mock', wordDelayMs: 0 } },
      models: { mock: { provider: 'mock', model: 'mock-echo-1' } },
      // Nothing listens on port 9: every cache read and write fails fast.
      store: { endpoint: 'http://127.0.0.1:9', region: 'us-east-1' },
      cache: { enabled: true, backend: 'dynamodb', models: { mock: {} } },
    });
    const logged: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
    const logger: GatewayLogger = {
      error: (message, fields) => logged.push({ level: 'error', message, fields }),
      warn: (message, fields) => logged.push({ level: 'warn', message, fields }),
    };
    const sink = new MemorySink();
    const env = { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'test-secret', AWS_REGION: 'us-east-1' };
    const gateway = new Gateway({ config, env, sinks: [sink], logger });
    const consoleErrors: unknown[][] = [];
    const realError = console.error;
    console.error = (...a: unknown[]) => void consoleErrors.push(a);
    const pending: Promise<unknown>[] = [];
    try {
      const res = await gateway.handle(
        new Request('http://gw.local/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mock', temperature: 0, messages: [{ role: 'user', content: 'hello cache' }] }) }),
        { waitUntil: (p) => void pending.push(p) },
      );
      assert.equal(res.status, 200);
      assert.match(await res.text(), /hello cache/);
      await Promise.allSettled(pending);
      for (let i = 0; i < 250 && !logged.length; i++) await new Promise((r) => setTimeout(r, 20));
    } finally {
      console.error = realError;
    }
    assert.ok(logged.some((l) => l.level === 'error' && l.message === 'response cache error' && typeof l.fields?.error === 'string'), JSON.stringify(logged));
    // (The AWS SDK may print its own Node-version notice there; none of the core's messages.)
    assert.deepEqual(consoleErrors.map(String).filter((l) => /cache error|"level":"ERROR"/.test(l)), []);
    assert.equal(sink.records.length, 1);
  });
});
