import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { parseConfig } from '../shared/config/load.ts';
import { startLocalServer, type LocalServer } from '../local/server.ts';
import { MemorySink } from './helpers/gateway.ts';
import { startMockAnthropic, type MockAnthropic } from './helpers/mock-anthropic.ts';
import { startMockBedrock, type MockBedrock } from './helpers/mock-bedrock.ts';
import { startMockOpenAI, type MockOpenAI } from './helpers/mock-openai.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';

useDummyAwsCredentials('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY');

const ANTHROPIC_KEY = 'sk-ant-upstream-structured';
const CLAUDE_ON_BEDROCK = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
const NOVA = 'amazon.nova-pro-v1:0';

const Weather = z.object({
  city: z.string(),
  celsius: z.number(),
  sunny: z.boolean(),
  wind: z.enum(['calm', 'breeze', 'storm']),
  hours: z.array(z.object({ hour: z.number().int(), note: z.string() })),
  alert: z.string().nullable(),
});

/**
 * Issue #18 item 2: structured output (`response_format` json_schema / json_object on Chat,
 * `text.format` on Responses) on every provider, through the official SDK's parse helpers.
 * Translated routes emulate it with a forced tool; the loopback upstreams answer that tool with
 * schema-valid input, as a model does, and the test checks they were asked with the forced tool.
 */
describe('structured output across providers', () => {
  let claude: MockAnthropic;
  let bedrock: MockBedrock;
  let oai: MockOpenAI;
  let srv: LocalServer;
  let client: OpenAI;

  before(async () => {
    [claude, bedrock, oai] = await Promise.all([startMockAnthropic({ apiKey: ANTHROPIC_KEY }), startMockBedrock(), startMockOpenAI()]);
    const config = parseConfig({
      providers: {
        mock: { type: 'mock' },
        anthropic: { type: 'anthropic', baseUrl: claude.baseUrl, apiKeyEnv: 'ANTHROPIC_API_KEY' },
        bedrock: { type: 'bedrock', region: 'us-east-1', endpoint: bedrock.endpoint },
        openai: { type: 'openai', baseUrl: oai.baseUrl, apiKeyEnv: 'OPENAI_API_KEY' },
      },
      models: {
        'mock-model': { targets: [{ provider: 'mock', model: 'mock-1' }] },
        claude: { targets: [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }] },
        'claude-bedrock': { targets: [{ provider: 'bedrock', model: CLAUDE_ON_BEDROCK }] },
        nova: { targets: [{ provider: 'bedrock', model: NOVA }] },
        gpt: { targets: [{ provider: 'openai', model: 'gpt-4o-mini-2024-07-18' }] },
      },
    });
    srv = await startLocalServer({ config, env: { ANTHROPIC_API_KEY: ANTHROPIC_KEY, OPENAI_API_KEY: 'sk-up' }, port: 0, sinks: [new MemorySink()] });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'client-key', maxRetries: 0, timeout: 20_000 });
  });
  after(async () => {
    await srv.close();
    await Promise.all([claude.close(), bedrock.close(), oai.close()]);
  });
  beforeEach(() => {
    claude.reset();
    bedrock.reset();
    oai.reset();
  });

  /** The forced tool the upstream was asked with, in its own wire format. */
  function assertForcedTool(model: string): void {
    if (model === 'claude') {
      const body = claude.lastMessageRequest().body;
      assert.deepEqual(body.tool_choice, { type: 'tool', name: 'weather' });
      const tool = body.tools.find((t: any) => t.name === 'weather');
      assert.deepEqual(Object.keys(tool.input_schema.properties).sort(), ['alert', 'celsius', 'city', 'hours', 'sunny', 'wind']);
      assert.equal(body.thinking, undefined);
    } else if (model === 'claude-bedrock' || model === 'nova') {
      const body = bedrock.last().body;
      assert.deepEqual(body.toolConfig.toolChoice, { tool: { name: 'weather' } });
      assert.ok(body.toolConfig.tools.some((t: any) => t.toolSpec.name === 'weather' && t.toolSpec.inputSchema.json.properties.wind.enum.length === 3));
    }
  }

  for (const model of ['mock-model', 'claude', 'claude-bedrock', 'nova']) {
    it(`${model}: chat.completions.parse with a zod json_schema gives a parsed answer`, async () => {
      const completion = await client.chat.completions.parse({
        model,
        messages: [{ role: 'user', content: 'The weather in Lisbon, please.' }],
        response_format: zodResponseFormat(Weather, 'weather'),
      });
      const choice = completion.choices[0]!;
      assert.equal(choice.finish_reason, 'stop');
      assert.equal(choice.message.tool_calls, undefined);
      assert.ok(choice.message.parsed, 'parsed answer');
      Weather.parse(choice.message.parsed);
      assert.equal(choice.message.parsed.wind, 'calm');
      assert.ok(completion.usage!.completion_tokens > 0);
      assertForcedTool(model);
    });

    it(`${model}: a streamed json_schema answer arrives as text deltas and parses`, async () => {
      const stream = client.chat.completions.stream({
        model,
        messages: [{ role: 'user', content: 'The weather in Porto, please.' }],
        response_format: zodResponseFormat(Weather, 'weather'),
        stream_options: { include_usage: true },
      });
      let deltas = 0;
      for await (const chunk of stream) {
        const d = chunk.choices[0]?.delta;
        if (d?.content) deltas++;
        assert.equal(d?.tool_calls, undefined, 'no tool call reaches the client');
      }
      const final = await stream.finalChatCompletion();
      assert.ok(deltas >= 1);
      assert.equal(final.choices[0]!.finish_reason, 'stop');
      Weather.parse(final.choices[0]!.message.parsed);
      assertForcedTool(model);
    });

    it(`${model}: responses.parse with zodTextFormat gives output_parsed`, async () => {
      const response = await client.responses.parse({
        model,
        input: 'The weather in Faro, please.',
        text: { format: zodTextFormat(Weather, 'weather') },
      });
      assert.equal(response.status, 'completed');
      Weather.parse(response.output_parsed);
      assert.ok(!response.output.some((o) => o.type === 'function_call'));
      assertForcedTool(model);
    });

    it(`${model}: a streamed Responses answer with zodTextFormat arrives as output_text deltas and parses`, async () => {
      const stream = client.responses.stream({ model, input: 'The weather in Braga, please.', text: { format: zodTextFormat(Weather, 'weather') } });
      let deltas = 0;
      for await (const ev of stream) if (ev.type === 'response.output_text.delta') deltas++;
      const final = await stream.finalResponse();
      assert.ok(deltas >= 1);
      Weather.parse(final.output_parsed);
      assertForcedTool(model);
    });
  }

  it('mock: json_object answers with a JSON object as the content', async () => {
    const res = await client.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'JSON please' }], response_format: { type: 'json_object' } });
    const parsed = JSON.parse(res.choices[0]!.message.content!);
    assert.equal(typeof parsed, 'object');
    assert.ok(!Array.isArray(parsed) && parsed !== null);
  });

  it("claude: with the client's tools, the answer tool is offered beside them and a client tool call still reaches the client", async () => {
    const res = await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'Look it up' }],
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] } } }],
      tool_choice: { type: 'function', function: { name: 'lookup' } },
      response_format: zodResponseFormat(Weather, 'weather'),
    });
    const body = claude.lastMessageRequest().body;
    assert.deepEqual(body.tools.map((t: any) => t.name), ['lookup', 'weather']);
    assert.deepEqual(body.tool_choice, { type: 'tool', name: 'lookup' });
    assert.equal(res.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(res.choices[0]!.message.tool_calls![0]!.type === 'function' && res.choices[0]!.message.tool_calls![0]!.function.name, 'lookup');
  });

  it('a json_schema whose root is not an object is refused on a translated route (400 naming it)', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_schema', json_schema: { name: 'list', schema: { type: 'array', items: { type: 'string' } } } } }),
      (err: any) => err.status === 400 && err.param === 'response_format',
    );
    assert.equal(claude.messageRequests().length, 0);
  });

  it("the Anthropic door passes output_format and the beta header through untouched to Anthropic", async () => {
    const outputFormat = { type: 'json_schema', schema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false } };
    const res = await fetch(`${srv.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'client-key', 'anthropic-version': '2023-06-01', 'anthropic-beta': 'structured-outputs-2025-11-13' },
      body: JSON.stringify({ model: 'claude', max_tokens: 100, messages: [{ role: 'user', content: 'Extract the name.' }], output_format: outputFormat }),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const sent = claude.lastMessageRequest();
    assert.deepEqual(sent.body.output_format, outputFormat);
    assert.equal(sent.body.tools, undefined);
    assert.match(String(sent.headers['anthropic-beta']), /structured-outputs-2025-11-13/);
  });

  it('the same-format OpenAI route passes response_format and n through untouched', async () => {
    const format = zodResponseFormat(Weather, 'weather');
    await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], response_format: format, n: 2 });
    const sent = oai.chatRequests()[0]!.body;
    assert.deepEqual(sent.response_format, JSON.parse(JSON.stringify(format)));
    assert.equal(sent.n, 2);
    assert.equal(sent.tools, undefined);
  });
});
