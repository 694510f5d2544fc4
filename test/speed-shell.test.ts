import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { daemonAddress, invocationTrace, udpEmitter, XraySpanRecorder } from '../functions/lib/xray.ts';
import { EmfMetricsSink, metricsDisabled } from '../shared/telemetry/metrics.ts';
import { LOG_SCHEMA_VERSION } from '../shared/telemetry/record.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';

/**
 * The parts issue #17 made lighter: the local shell's small-body path (a body of declared length
 * read whole before the Request is built), the X-Ray emitter that replaced the X-Ray SDK (the
 * daemon address forms and sampling; the documents themselves are checked end to end from the
 * Lambda entry in test/xray.test.ts) and the EMF writer's switches.
 */

describe('local shell: small bodies read whole', () => {
  let gw: TestGateway;
  // The helper starts its own mock upstream and closes it with the gateway.
  before(async () => {
    gw = await startTestGateway({});
  });
  after(() => gw?.close());

  it('a client that leaves in the middle of a small body: one log record, and the server keeps serving', async () => {
    const port = Number(new URL(gw.url).port);
    const body = JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'this body is cut short' }] });
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\nx-request-id: cut-small-body\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 20)}`);
    await new Promise((r) => setTimeout(r, 50));
    sock.destroy();
    await gw.waitForRecord('cut-small-body');
    // Anything else it had to log is logged by the time a later request's record is.
    const health = await fetch(`${gw.url}/health`, { headers: { 'x-request-id': 'after-cut' } });
    assert.equal(health.status, 200);
    await gw.waitForRecord('after-cut');
    const records = gw.recordsFor('cut-small-body');
    assert.equal(records.length, 1);
    // The client left: 499 client_closed, not a gateway failure.
    assert.equal(records[0]!.outcome, 'client_closed');
    assert.equal(records[0]!.status, 499);
  });

  it('a small JSON body is read and answered as before (content-length, keep-alive)', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'small-ok' },
      body: JSON.stringify({ model: 'mock', messages: [{ role: 'user', content: 'hello there' }] }),
    });
    assert.equal(res.status, 200);
    const json = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    assert.match(json.choices[0]!.message.content, /hello/);
    assert.equal((await gw.waitForRecord('small-ok')).outcome, 'ok');
  });
});

describe('X-Ray emitter', () => {
  let daemon: UdpSocket;
  const received: string[] = [];
  before(async () => {
    daemon = createSocket('udp4').on('message', (m) => received.push(m.toString('utf8')));
    await new Promise<void>((r) => daemon.bind(0, '127.0.0.1', r));
  });
  after(() => daemon?.close());

  it('reads the daemon address in both forms AWS sets, with the documented default', () => {
    assert.deepEqual(daemonAddress('169.254.79.129:2000'), { host: '169.254.79.129', port: 2000 });
    assert.deepEqual(daemonAddress('tcp:127.0.0.1:2000 udp:127.0.0.2:2001'), { host: '127.0.0.2', port: 2001 });
    assert.deepEqual(daemonAddress(undefined), { host: '127.0.0.1', port: 2000 });
  });

  it('follows the invocation trace header: unsampled or incomplete headers send nothing', async () => {
    assert.deepEqual(invocationTrace('Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1'), { traceId: '1-5759e988-bd862e3fe1be46a994272793', parentId: '53995c3f42cd8ad8' });
    assert.equal(invocationTrace('Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0'), undefined);
    assert.equal(invocationTrace('Root=1-5759e988-bd862e3fe1be46a994272793'), undefined);

    const port = (daemon.address() as AddressInfo).port;
    let header = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0';
    const recorder = new XraySpanRecorder(udpEmitter({ host: '127.0.0.1', port }), 'svc', () => header);
    recorder.start('unsampled').end();
    header = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1';
    const parent = recorder.start('sampled', { annotations: { status: 429 } });
    recorder.start('child', { parent, namespace: 'remote' }).end();
    parent.end();
    for (let i = 0; i < 200 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    const docs = received.map((m) => {
      const [head, doc] = [m.slice(0, m.indexOf('\n')), m.slice(m.indexOf('\n') + 1)];
      assert.deepEqual(JSON.parse(head), { format: 'json', version: 1 });
      return JSON.parse(doc) as Record<string, unknown>;
    });
    assert.deepEqual(docs.map((d) => d.name), ['child', 'sampled'], 'the child first, nothing from the unsampled invocation');
    const [child, top] = docs as [Record<string, unknown>, Record<string, unknown>];
    assert.equal(top.parent_id, '53995c3f42cd8ad8');
    assert.equal(child.parent_id, top.id);
    assert.deepEqual([top.type, top.trace_id, top.throttle, top.error], ['subsegment', '1-5759e988-bd862e3fe1be46a994272793', true, true]);
    assert.deepEqual(top.annotations, { Service: 'svc', ColdStart: true, status: 429 });
  });
});

describe('EMF metrics switches', () => {
  it('POWERTOOLS_METRICS_DISABLED wins over POWERTOOLS_DEV, which turns metrics off alone', () => {
    assert.equal(metricsDisabled({}), false);
    assert.equal(metricsDisabled({ POWERTOOLS_METRICS_DISABLED: 'true' }), true);
    assert.equal(metricsDisabled({ POWERTOOLS_DEV: 'true' }), true);
    assert.equal(metricsDisabled({ POWERTOOLS_METRICS_DISABLED: 'false', POWERTOOLS_DEV: 'true' }), false);
  });

  it('a disabled sink writes nothing', () => {
    const saved = process.env.POWERTOOLS_METRICS_DISABLED;
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const out: string[] = [];
    const write = process.stdout.write;
    try {
      const sink = new EmfMetricsSink({ serviceName: 'off' });
      process.stdout.write = ((c: string) => (out.push(String(c)), true)) as typeof process.stdout.write;
      sink.write({ schemaVersion: LOG_SCHEMA_VERSION, requestId: 'm', timestamp: new Date().toISOString(), method: 'POST', path: '/v1/chat/completions', status: 200, outcome: 'ok', latencyMs: 1 });
    } finally {
      process.stdout.write = write;
      if (saved === undefined) delete process.env.POWERTOOLS_METRICS_DISABLED;
      else process.env.POWERTOOLS_METRICS_DISABLED = saved;
    }
    assert.deepEqual(out, []);
  });
});
