import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { startGateway, type StartedGateway } from './helpers/gateway.ts';
import { anthropicErrorJson, startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

const ANTHROPIC_KEY = 'sk-ant-upstream-choices';

/**
 * Issue #18 item 3: `n > 1` on translated routes, served by n parallel upstream calls merged into
 * `choices[]` (usage summed, each call a metered attempt, one log record), streamed with each
 * choice's `index`.
 */
describe('n choices on translated routes', () => {
  let claude: MockAnthropic;
  let srv: StartedGateway;
  let client: OpenAI;

  before(async () => {
    claude = await startMockAnthropic({ apiKey: ANTHROPIC_KEY });
    srv = await startGateway({
      providers: {
        mock: { type: 'mock' },
        anthropic: { type: 'anthropic', baseUrl: claude.baseUrl, apiKeyEnv: 'ANTHROPIC_API_KEY' },
      },
      models: {
        'mock-model': { targets: [{ provider: 'mock', model: 'mock-1' }] },
        claude: { targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] },
      },
      config: { routing: { retry: { retries: 1, baseDelayMs: 0, maxDelayMs: 0 }, cooldown: { failures: 1000, windowMs: 60_000, cooldownMs: 0 } } },
      env: { ANTHROPIC_API_KEY: ANTHROPIC_KEY },
    });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
  });
  after(async () => {
    await srv.close();
    await claude.close();
  });
  beforeEach(() => claude.reset());

  /** Every record of a request: its first, then a moment for a second one (which must not come) to show up. */
  async function recordsOf(id: string | null): Promise<RequestRecord[]> {
    await srv.recordOf(id);
    await new Promise((r) => setTimeout(r, 20));
    return srv.recordsFor(id!);
  }

  const prompt = 'three little words';

  for (const model of ['mock-model', 'claude']) {
    it(`${model}: n=3 non-streamed gives choices 0..2, usage summed, one record with 3 attempts`, async () => {
      const single = await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }] });
      claude.reset();
      const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], n: 3 }).withResponse();
      assert.deepEqual(data.choices.map((c) => c.index), [0, 1, 2]);
      for (const c of data.choices) {
        assert.equal(c.message.content, single.choices[0]!.message.content);
        assert.equal(c.finish_reason, 'stop');
      }
      assert.equal(data.usage!.prompt_tokens, 3 * single.usage!.prompt_tokens);
      assert.equal(data.usage!.completion_tokens, 3 * single.usage!.completion_tokens);
      if (model === 'claude') {
        assert.equal(claude.messageRequests().length, 3);
        for (const r of claude.messageRequests()) assert.equal(r.body.n, undefined);
      }
      const records = await recordsOf(response.headers.get('x-request-id'));
      assert.equal(records.length, 1);
      assert.equal(records[0]!.attempts, 3);
      assert.equal(records[0]!.attemptLog!.length, 3);
      assert.equal(records[0]!.outputTokens, data.usage!.completion_tokens);
      assert.equal(records[0]!.status, 200);
    });

    it(`${model}: n=3 streamed interleaves chunks with each choice's index and one usage chunk`, async () => {
      const { data: stream, response } = await client.chat.completions
        .create({ model, messages: [{ role: 'user', content: prompt }], n: 3, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      const text = ['', '', ''];
      const finish: (string | null)[] = [null, null, null];
      const roles = new Set<number>();
      let usageChunks = 0;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        if (chunk.usage) {
          usageChunks++;
          usage = chunk.usage;
          assert.equal(chunk.choices.length, 0);
        }
        for (const c of chunk.choices) {
          assert.ok(c.index >= 0 && c.index < 3, `index ${c.index}`);
          if (c.delta.role) roles.add(c.index);
          text[c.index] += c.delta.content ?? '';
          if (c.finish_reason) finish[c.index] = c.finish_reason;
        }
      }
      assert.deepEqual(text, [prompt, prompt, prompt]);
      assert.deepEqual(finish, ['stop', 'stop', 'stop']);
      assert.equal(roles.size, 3);
      assert.equal(usageChunks, 1);
      const records = await recordsOf(response.headers.get('x-request-id'));
      assert.equal(records.length, 1);
      assert.equal(records[0]!.attempts, 3);
      assert.equal(records[0]!.outputTokens, usage!.completion_tokens);
      assert.equal(records[0]!.inputTokens, usage!.prompt_tokens);
    });
  }

  it('claude: a choice whose call fails before its first byte is retried like any attempt; the record lists every attempt', async () => {
    claude.script({ type: 'error', status: 529, body: anthropicErrorJson('overloaded_error', 'Overloaded') });
    const { data, response } = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: prompt }], n: 3 }).withResponse();
    assert.equal(data.choices.length, 3);
    assert.equal(claude.messageRequests().length, 4);
    const [record] = await recordsOf(response.headers.get('x-request-id'));
    assert.equal(record!.attempts, 4);
    assert.deepEqual(record!.attemptLog!.map((a) => a.status).sort(), [200, 200, 200, 503]);
  });

  it('claude: a choice that fails for good fails the request in OpenAI format, with one record', async () => {
    claude.script({ type: 'error', status: 400, body: anthropicErrorJson('invalid_request_error', 'bad thing') });
    await assert.rejects(client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: prompt }], n: 2 }), (err: any) => err.status === 400 && /bad thing/.test(err.message));
    await new Promise((r) => setTimeout(r, 50));
    const last = srv.records[srv.records.length - 1]!;
    assert.equal(last.status, 400);
    assert.equal(srv.records.filter((r) => r.requestId === last.requestId).length, 1);
  });

  it('claude: a choice whose upstream sends an error event after the answer started ends the stream with an error event, one record', async () => {
    claude.script({ type: 'text', pieces: ['one ', 'two ', 'three'], errorAfter: { after: 1, type: 'overloaded_error', message: 'Overloaded' } });
    const res = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer client-key', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude', messages: [{ role: 'user', content: prompt }], n: 3, stream: true }),
    });
    assert.equal(res.status, 200);
    const body = await res.text();
    const events = body.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.notEqual(events[events.length - 1], '[DONE]');
    assert.ok(JSON.parse(events[events.length - 1]!).error, 'the stream ends with an error event');
    const [record] = await recordsOf(res.headers.get('x-request-id'));
    assert.equal(record!.outcome, 'stream_error');
  });

  it('mock: n=3 with a json_schema gives three parsed choices', async () => {
    const Answer = z.object({ word: z.string(), count: z.number() });
    const completion = await client.chat.completions.parse({ model: 'mock-model', messages: [{ role: 'user', content: prompt }], n: 3, response_format: zodResponseFormat(Answer, 'answer') });
    assert.equal(completion.choices.length, 3);
    for (const c of completion.choices) Answer.parse(c.message.parsed);
  });
});

describe('n choices: limits reserve for every choice', () => {
  let g: KeyedGateway;
  before(async () => {
    g = await startKeyedGateway();
  });
  after(() => g.close());

  it('the token reservation of n=3 is three times that of one choice (x-ratelimit-remaining-tokens at admission)', async () => {
    const reserved = async (n: number) => {
      const { key } = await g.createKey({ name: `tpm-n${n}`, limits: { tpm: 10_000 } });
      const res = await fetch(`${g.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mock', max_tokens: 20, n, messages: [{ role: 'user', content: 'hello there' }] }),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { choices: unknown[] };
      assert.equal(body.choices.length, n);
      return 10_000 - Number(res.headers.get('x-ratelimit-remaining-tokens'));
    };
    const one = await reserved(1);
    assert.ok(one >= 20, `one choice reserves ${one}`);
    assert.equal(await reserved(3), 3 * one);
  });
});
