import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { BedrockModelIndex, parseBedrockPath } from '../shared/wire/bedrock-invoke/door.ts';
import type { RequestRecord } from '../shared/telemetry/record.ts';
import { useDummyAwsCredentials } from './helpers/aws-env.ts';
import { ECHO_OUTPUT, FINAL_TEXT, LOOP_MARKER, runClaude, startScriptedAnthropic, startScriptedBedrock, startScriptedOpenAI, toolResults, type CliRun, type Recorded } from './helpers/claude-cli.ts';
import { startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

/**
 * The real Claude Code CLI (the pinned devDependency, run headless with `-p`) through a local
 * gateway on loopback, on both paths (ANTHROPIC_BASE_URL, and CLAUDE_CODE_USE_BEDROCK with the
 * gateway as the Bedrock endpoint), with the shipped configuration's model aliases pointed at
 * scripted loopback upstreams (Anthropic Messages, OpenAI Chat Completions, Bedrock Runtime) that
 * answer a Bash tool call and then text, so the whole agentic loop runs; and with `mock`.
 * Each run asserts: Claude Code finished without error, the loop completed (the tool ran and its
 * output reached the model), the upstream got Claude Code's fields, roles and betas, one log record
 * per request with the session id, and no 400 in the log. Runs are sequential with a kill timer.
 */

useDummyAwsCredentials('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY');

const RUN_TIMEOUT_MS = 120_000;
const LOOP_PROMPT = `Please ${LOOP_MARKER} now and tell me what it printed.`;

let anthropicUp: Awaited<ReturnType<typeof startScriptedAnthropic>>;
let openaiUp: Awaited<ReturnType<typeof startScriptedOpenAI>>;
let bedrockUp: Awaited<ReturnType<typeof startScriptedBedrock>>;
let gw: KeyedGateway;
let key: string;

/** The shipped gateway.config.yaml, its providers pointed at the loopback upstreams. */
function shippedConfig(): Record<string, any> {
  const shipped = parseYaml(readFileSync(new URL('../gateway.config.yaml', import.meta.url), 'utf8')) as Record<string, any>;
  const providers = shipped.providers as Record<string, any>;
  providers.anthropic = { ...providers.anthropic, baseUrl: anthropicUp.url, apiKeyEnv: 'TEST_UPSTREAM_KEY' };
  providers.openai = { ...providers.openai, baseUrl: openaiUp.url, apiKeyEnv: 'TEST_UPSTREAM_KEY' };
  providers.bedrock = { ...providers.bedrock, region: 'us-east-1', endpoint: bedrockUp.url };
  // Models beyond the shipped ones: Claude on Bedrock first, for the InvokeModel pass-through.
  // And a dated Claude name (what Claude Code takes for a known Claude: no system-role messages).
  const models = {
    ...shipped.models,
    'claude-on-bedrock': { provider: 'bedrock', model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' },
    'claude-sonnet-4-5-20250929': { provider: 'anthropic', model: 'claude-sonnet-4-5-20250929' },
  };
  return { server: { maxBodyBytes: 4 * 1024 * 1024 }, providers, models, pricing: shipped.pricing, routing: { retry: { retries: 0 } } };
}

/** The aliases of the shipped configuration that chat (titan-embed is an embedding model). */
function shippedChatAliases(): string[] {
  const shipped = parseYaml(readFileSync(new URL('../gateway.config.yaml', import.meta.url), 'utf8')) as { models: Record<string, { model?: string }> };
  return Object.entries(shipped.models)
    .filter(([, m]) => !/embed/.test(m.model ?? ''))
    .map(([name]) => name);
}

before(async () => {
  [anthropicUp, openaiUp, bedrockUp] = await Promise.all([startScriptedAnthropic(), startScriptedOpenAI(), startScriptedBedrock()]);
  gw = await startKeyedGateway({ config: shippedConfig(), upstreamBaseUrl: openaiUp.url });
  ({ key } = await gw.createKey({ name: 'claude-code-cli' }));
});

after(async () => {
  await gw?.close();
  await Promise.all([anthropicUp?.close(), openaiUp?.close(), bedrockUp?.close()]);
});

const anthropicEnv = () => ({ ANTHROPIC_BASE_URL: gw.url, ANTHROPIC_AUTH_TOKEN: key });
const bedrockEnv = () => ({ CLAUDE_CODE_USE_BEDROCK: '1', ANTHROPIC_BEDROCK_BASE_URL: `${gw.url}/bedrock`, AWS_BEARER_TOKEN_BEDROCK: key, AWS_REGION: 'us-east-1' });

interface Measured {
  run: CliRun;
  records: RequestRecord[];
  anthropic: Recorded[];
  openai: Recorded[];
  bedrock: Recorded[];
}

/** Run the CLI and collect what the gateway logged and what each upstream received meanwhile. */
async function measure(model: string, prompt: string, env: Record<string, string>): Promise<Measured> {
  const marks = { records: gw.sink.records.length, a: anthropicUp.requests.length, o: openaiUp.requests.length, b: bedrockUp.requests.length };
  const run = await runClaude({ prompt, model, env, timeoutMs: RUN_TIMEOUT_MS });
  // Records are written when a response ends; give the last one a moment (bounded).
  for (let i = 0; i < 50 && gw.sink.records.length === marks.records; i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100));
  return {
    run,
    records: gw.sink.records.slice(marks.records),
    anthropic: anthropicUp.requests.slice(marks.a),
    openai: openaiUp.requests.slice(marks.o),
    bedrock: bedrockUp.requests.slice(marks.b),
  };
}

function describeRun(m: Measured): string {
  const recs = m.records.map((r) => `${r.method} ${r.path} ${r.status} ${r.errorCode ?? ''} ${r.errorMessage ?? ''}`).join('\n  ');
  return `exit ${m.run.code}${m.run.timedOut ? ' (killed)' : ''}; result: ${JSON.stringify(m.run.result?.result ?? m.run.result)?.slice(0, 400)}\n  stderr: ${m.run.stderr.slice(-600)}\n  records:\n  ${recs}`;
}

/** What every run must show: a clean end, no 4xx/5xx in the log, the session id on every model call. */
function assertClean(m: Measured, allowed: (r: RequestRecord) => boolean = () => false): string {
  const info = describeRun(m);
  assert.equal(m.run.timedOut, false, `Claude Code did not finish in time: ${info}`);
  assert.equal(m.run.code, 0, info);
  assert.ok(m.run.result, `no result event: ${info}`);
  assert.equal(m.run.result.is_error, false, info);
  assert.equal(m.run.result.subtype, 'success', info);
  const session = m.run.result.session_id as string;
  assert.ok(session, 'Claude Code names its session');
  // The one error Claude Code provokes on purpose: on the Bedrock path it probes a dozen Claude
  // model ids (non-streaming invoke, max_tokens 1) to see which exist, and ids the configuration does
  // not serve get Bedrock's own answer (400 ValidationException, "The provided model identifier is
  // invalid."), as they would from Bedrock. Nothing else may fail.
  const index = new BedrockModelIndex(gw.config);
  const unservedProbe = (r: RequestRecord) => {
    const route = parseBedrockPath(r.path);
    return r.status === 400 && route?.operation === 'invoke' && index.resolve(route.modelId) === undefined && r.errorCode === 'model_not_found';
  };
  assert.deepEqual(
    m.records.filter((r) => r.status >= 400 && !unservedProbe(r) && !allowed(r)).map((r) => `${r.path} ${r.status} ${r.errorMessage}`),
    [],
    'no error in the log',
  );
  // Model calls carry the session id (token counts on the Bedrock path do not: Claude Code sends them without it).
  const calls = m.records.filter((r) => (r.path.startsWith('/v1/messages') || r.path.startsWith('/bedrock/model/')) && !/count[-_]tokens$/.test(r.path));
  for (const r of calls) assert.equal(r.sessionId, session, `record of ${r.path} carries the session id`);
  assert.equal(new Set(calls.map((r) => r.requestId)).size, calls.length, 'one record per request');
  return session;
}

function assertLoop(m: Measured): void {
  const info = describeRun(m);
  assert.ok(
    toolResults(m.run).some((t) => t.includes(ECHO_OUTPUT)),
    `the Bash tool ran: ${JSON.stringify(toolResults(m.run))} ${info}`,
  );
  assert.equal(m.run.result.result.trim(), FINAL_TEXT, info);
}

/** Chat records that reached an upstream, by the upstream requests that were made: one each. */
function assertOneRecordPerUpstreamCall(m: Measured, upstream: Recorded[], pathPrefix: string): void {
  const served = m.records.filter((r) => r.path.startsWith(pathPrefix) && r.attempts === 1 && r.provider !== 'mock');
  assert.equal(served.length, upstream.filter((u) => !u.path.includes('count')).length, describeRun(m));
}

describe('Claude Code CLI on the Anthropic path (ANTHROPIC_BASE_URL)', () => {
  it('mock: "Say hello" completes with tools offered, answered without a tool call', async () => {
    const m = await measure('mock', 'Say hello', anthropicEnv());
    assertClean(m);
    assert.equal(m.run.result.result.trim(), 'Say hello');
    assert.equal(toolResults(m.run).length, 0);
  });

  it('mock: a `call Bash {json}` directive runs the tool loop', async () => {
    const m = await measure('mock', `call Bash {"command":"echo ${ECHO_OUTPUT}","description":"Print the marker"}`, anthropicEnv());
    assertClean(m);
    assert.ok(toolResults(m.run).some((t) => t.includes(ECHO_OUTPUT)), describeRun(m));
    assert.match(m.run.result.result, new RegExp(`Bash returned: ${ECHO_OUTPUT}`));
  });

  it('a dated Claude name to Anthropic: the tool loop completes, Anthropic gets the Claude Code body and betas', async () => {
    const m = await measure('claude-sonnet-4-5-20250929', LOOP_PROMPT, anthropicEnv());
    assertClean(m);
    assertLoop(m);
    assertOneRecordPerUpstreamCall(m, m.anthropic, '/v1/messages');
    const up = m.anthropic.find((r) => r.path.startsWith('/v1/messages?'))!;
    assert.equal(up.body.model, 'claude-sonnet-4-5-20250929');
    assert.match(String(up.headers['anthropic-beta']), /claude-code-20250219/);
  });

  for (const alias of shippedChatAliases().filter((a) => a !== 'mock')) {
    it(`shipped alias ${alias}: the tool loop completes`, async () => {
      const m = await measure(alias, LOOP_PROMPT, anthropicEnv());
      const session = assertClean(m);
      assertLoop(m);
      if (alias === 'claude-sonnet') {
        // Same format: Claude Code's body as sent (system-role messages, deferred tools, betas...).
        assertOneRecordPerUpstreamCall(m, m.anthropic, '/v1/messages');
        const up = m.anthropic.find((r) => r.path.startsWith('/v1/messages?'))!;
        assert.ok(up, 'the Anthropic upstream was called');
        assert.equal(up.body.model, 'claude-sonnet-4-5');
        assert.ok(up.body.messages.some((x: any) => x.role === 'system'), 'system-role messages reach the upstream as sent');
        assert.ok(up.body.tools.some((t: any) => t.defer_loading === true), 'defer_loading reaches the upstream');
        for (const f of ['context_management', 'output_config', 'thinking', 'metadata']) assert.ok(f in up.body, `${f} reaches the upstream`);
        assert.match(String(up.headers['anthropic-beta']), /claude-code-20250219/);
        assert.equal(up.headers['x-claude-code-session-id'], session);
        assert.equal(up.headers.authorization, undefined);
        assert.ok(!JSON.stringify(up.headers).includes(key), 'the gateway key never goes upstream');
      } else if (alias.startsWith('gpt')) {
        // Cross-format: the system-role message stays a system message at its position; deferred tools are withheld.
        assertOneRecordPerUpstreamCall(m, m.openai, '/v1/messages');
        const up = m.openai.find((r) => r.path.endsWith('/chat/completions'))!;
        const roles: string[] = up.body.messages.map((x: any) => x.role);
        assert.equal(roles[0], 'system');
        assert.ok(roles.indexOf('system', 1) > roles.indexOf('user'), `a system message after the first user turn: ${roles.join(',')}`);
        const names: string[] = up.body.tools.map((t: any) => t.function.name);
        assert.ok(names.includes('Bash'));
        assert.ok(!names.includes('DeferredToolPlaceholder'), 'a deferred tool is not offered');
      } else if (alias === 'nova-lite') {
        const up = m.bedrock.find((r) => r.path.endsWith('/converse-stream'))!;
        assert.ok(up, 'ConverseStream was called');
        assert.ok(JSON.stringify(up.body.messages).includes('<system-message>'), 'the system-role message is a marked text turn');
      }
    });
  }
});

describe('Claude Code CLI on the Bedrock path (CLAUDE_CODE_USE_BEDROCK)', () => {
  it('mock: "Say hello" completes (model probes included) with the key as a Bedrock bearer token', async () => {
    const m = await measure('mock', 'Say hello', bedrockEnv());
    assertClean(m);
    assert.equal(m.run.result.result.trim(), 'Say hello');
  });

  it('claude-on-bedrock: the tool loop through InvokeModel with the body as sent', async () => {
    const m = await measure('claude-on-bedrock', LOOP_PROMPT, bedrockEnv());
    assertClean(m);
    assertLoop(m);
    const streams = m.bedrock.filter((r) => r.path.endsWith('/invoke-with-response-stream'));
    assert.ok(streams.length >= 2, describeRun(m));
    const body = streams[0]!.body;
    assert.equal(body.anthropic_version, 'bedrock-2023-05-31');
    assert.ok(Array.isArray(body.anthropic_beta) && body.anthropic_beta.length > 0, 'betas reach Bedrock');
    assert.ok(body.messages.some((x: any) => x.role === 'system'), 'system-role messages reach Bedrock as sent');
  });

  it('a Bedrock Claude id (the one claude-sonnet falls back to): the tool loop completes', async () => {
    const m = await measure('us.anthropic.claude-sonnet-4-5-20250929-v1:0', LOOP_PROMPT, bedrockEnv());
    assertClean(m);
    assertLoop(m);
  });

  for (const alias of shippedChatAliases().filter((a) => a !== 'mock')) {
    it(`shipped alias ${alias}: the tool loop completes`, async () => {
      const m = await measure(alias, LOOP_PROMPT, bedrockEnv());
      assertClean(m);
      assertLoop(m);
    });
  }

  it('/context: token counts through POST /bedrock/model/{id}/count-tokens, exact, no error', async () => {
    const m = await measure('claude-on-bedrock', '/context', bedrockEnv());
    assertClean(m);
    const counts = m.records.filter((r) => parseBedrockPath(r.path)?.operation === 'count-tokens');
    assert.ok(counts.length >= 1, `Claude Code counted tokens: ${describeRun(m)}`);
    for (const r of counts) assert.equal(r.status, 200);
    assert.match(m.run.result.result, /Context Usage/);
  });

  it('/context with CLAUDE_CODE_SKIP_BEDROCK_AUTH: count-tokens comes without a key and gets 401; Claude Code still answers', async () => {
    const { AWS_BEARER_TOKEN_BEDROCK: _t, ...env } = bedrockEnv();
    const m = await measure('claude-on-bedrock', '/context', { ...env, CLAUDE_CODE_SKIP_BEDROCK_AUTH: '1', ANTHROPIC_CUSTOM_HEADERS: `x-api-key: ${key}` });
    const counts = m.records.filter((r) => parseBedrockPath(r.path)?.operation === 'count-tokens');
    assertClean(m, (r) => counts.includes(r) && r.status === 401);
    assert.ok(counts.length >= 1, describeRun(m));
    for (const r of counts) assert.equal(r.status, 401);
    assert.match(m.run.result.result, /Context Usage/);
  });

  it('CLAUDE_CODE_SKIP_BEDROCK_AUTH with the key in ANTHROPIC_CUSTOM_HEADERS: the loop completes', async () => {
    const { AWS_BEARER_TOKEN_BEDROCK: _t, ...env } = bedrockEnv();
    const m = await measure('claude-sonnet', LOOP_PROMPT, { ...env, CLAUDE_CODE_SKIP_BEDROCK_AUTH: '1', ANTHROPIC_CUSTOM_HEADERS: `x-api-key: ${key}` });
    assertClean(m);
    assertLoop(m);
  });
});
