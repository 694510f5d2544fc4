import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { schemaProblems } from '../shared/telemetry/validate.ts';
import { installAwsLambdaGlobal, lambdaContext, ResponseStreamStandIn } from './helpers/awslambda.ts';
import { startMockFirehose, type MockFirehose } from './helpers/mock-firehose.ts';

/**
 * The Lambda entry with LOG_STREAM_NAME set, as the stack deploys it: its own FirehoseClient (no
 * test double; the endpoint is redirected with AWS_ENDPOINT_URL_FIREHOSE to a loopback Firehose)
 * sends the request's record only after the whole response has gone to the client.
 */

const recorded: APIGatewayProxyEvent = JSON.parse(readFileSync(new URL('./fixtures/apigw-rest-chat-event.json', import.meta.url), 'utf8'));
type Invoke = (event: APIGatewayProxyEvent, stream: ResponseStreamStandIn, context: unknown) => Promise<void>;

const ENV = {
  GATEWAY_CONFIG_JSON: JSON.stringify({ providers: { mock: { type: 'mock', wordDelayMs: 2 } }, models: { mock: { provider: 'mock', model: 'mock-echo-1' } } }),
  LOG_STREAM_NAME: 'gateway-request-logs',
  AWS_REGION: 'eu-west-1',
  AWS_ACCESS_KEY_ID: 'AKIDLAMBDATEST',
  AWS_SECRET_ACCESS_KEY: 'lambda-test-secret',
  POWERTOOLS_METRICS_DISABLED: 'true',
};

describe('Lambda entry: request records to Firehose after the response', () => {
  let firehose: MockFirehose;
  let handler: Invoke;
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    firehose = await startMockFirehose();
    for (const [k, v] of Object.entries({ ...ENV, AWS_ENDPOINT_URL_FIREHOSE: firehose.endpoint })) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    installAwsLambdaGlobal();
    ({ handler } = (await import('../functions/gateway.ts')) as unknown as { handler: Invoke });
  });
  after(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await firehose?.close();
  });

  for (const stream of [true, false]) {
    it(`${stream ? 'streaming' : 'non-streaming'}: nothing is sent while the client gets its bytes; one record after`, async () => {
      firehose.calls.length = 0;
      const body = JSON.stringify({ model: 'mock', stream, messages: [{ role: 'user', content: 'five words for the log' }] });
      let chunks = 0;
      const out = new ResponseStreamStandIn(() => {
        chunks++;
        assert.equal(firehose.calls.length, 0, 'no PutRecordBatch while the response is being written');
      });
      await handler({ ...structuredClone(recorded), body }, out, lambdaContext());
      const { metadata, body: text } = out.parsed();
      assert.equal(metadata.statusCode, 200);
      assert.ok(chunks >= (stream ? 3 : 1));
      if (stream) assert.ok(text.trimEnd().endsWith('data: [DONE]'));
      // The invocation ended only after the queue was flushed.
      assert.equal(firehose.calls.length, 1);
      const call = firehose.calls[0]!;
      assert.equal(call.body.DeliveryStreamName, 'gateway-request-logs');
      assert.equal(call.lines.length, 1);
      const record = JSON.parse(call.lines[0]!) as RequestRecord;
      assert.ok(call.lines[0]!.endsWith('}\n'));
      assert.deepEqual(schemaProblems(record), []);
      assert.equal(record.requestId, metadata.headers['x-request-id']);
      assert.equal(record.stream, stream);
      assert.equal(record.status, 200);
      assert.equal(record.outcome, 'ok');
      assert.equal(record.provider, 'mock');
      assert.equal(record.outputTokens, 5);
    });
  }
});
