import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventFrame } from './mock-bedrock.ts';

/**
 * The real Claude Code CLI (node_modules/.bin/claude, pinned in package.json) run headless against
 * a gateway on loopback, and scripted upstreams that drive its agentic loop: the first call (no tool
 * result yet, and the prompt asks for it) answers with a Bash tool call, the call after the tool
 * result answers with text. The upstreams decide by the request's content (not by call order), so
 * Claude Code's extra calls (model probes, count-tokens) do not disturb the loop.
 */

export const CLAUDE_BIN = new URL('../../node_modules/.bin/claude', import.meta.url).pathname;

/** The marker the scripted upstreams look for in the prompt, and the command the tool call runs. */
export const LOOP_MARKER = 'run-the-echo-tool';
export const ECHO_OUTPUT = 'gateway-loop-ok-7f3a';
export const FINAL_TEXT = 'The echo tool printed the marker.';

export interface CliRun {
  code: number | null;
  /** The stream-json lines Claude Code printed. */
  events: any[];
  stdout: string;
  stderr: string;
  /** The final `result` event. */
  result?: any;
  timedOut: boolean;
}

/** Run `claude -p <prompt>` headless in a fresh HOME and working folder, killed after `timeoutMs`. */
export async function runClaude(opts: { prompt: string; model: string; env: Record<string, string>; timeoutMs?: number; args?: string[] }): Promise<CliRun> {
  const home = mkdtempSync(join(tmpdir(), 'cc-home-'));
  const cwd = mkdtempSync(join(tmpdir(), 'cc-work-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    CLAUDE_CODE_MAX_RETRIES: '0',
    ...opts.env,
  };
  const args = ['-p', opts.prompt, '--model', opts.model, '--output-format', 'stream-json', '--verbose', '--allowedTools', 'Bash', ...(opts.args ?? [])];
  const child = spawn(CLAUDE_BIN, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 90_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  rmSync(home, { recursive: true, force: true });
  rmSync(cwd, { recursive: true, force: true });
  const events = stdout
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
  return { code, events, stdout, stderr, result: events.findLast((e) => e.type === 'result'), timedOut };
}

/** The Bash tool results Claude Code reported in its stream (tool_result blocks in user events). */
export function toolResults(run: CliRun): string[] {
  return run.events
    .filter((e) => e.type === 'user')
    .flatMap((e) => (Array.isArray(e.message?.content) ? e.message.content : []))
    .filter((b: any) => b?.type === 'tool_result')
    .map((b: any) => (typeof b.content === 'string' ? b.content : JSON.stringify(b.content)));
}

export interface Recorded {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: any;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((b: any) => (typeof b?.text === 'string' ? b.text : typeof b?.content === 'string' || Array.isArray(b?.content) ? textOf(b.content) : '')).join('\n');
}

/** What to answer: a Bash call, the final text, or a plain greeting. */
function decide(messages: any[]): { kind: 'tool' } | { kind: 'text'; text: string } {
  const all = JSON.stringify(messages);
  if (all.includes(ECHO_OUTPUT)) return { kind: 'text', text: FINAL_TEXT };
  const asked = messages.some((m) => (m?.role === 'user' || m?.role === 'system') && textOf(m.content).includes(LOOP_MARKER));
  if (asked) return { kind: 'tool' };
  return { kind: 'text', text: 'Hello from the scripted upstream.' };
}

const BASH_INPUT = { command: `echo ${ECHO_OUTPUT}`, description: 'Print the marker' };

interface Upstream {
  url: string;
  requests: Recorded[];
  close(): Promise<void>;
}

function listen(handler: (rec: Recorded, res: import('node:http').ServerResponse) => void): Promise<Upstream> {
  const requests: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      let body: any;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = raw;
      }
      const rec = { path: req.url ?? '', headers: req.headers, raw, body };
      requests.push(rec);
      handler(rec, res);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    }),
  );
}

/** A scripted Anthropic Messages upstream (base URL without /v1). */
export function startScriptedAnthropic(): Promise<Upstream> {
  return listen((rec, res) => {
    if (rec.path.startsWith('/v1/messages/count_tokens')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ input_tokens: 1234 }));
      return;
    }
    const body = rec.body ?? {};
    const d = decide(body.messages ?? []);
    const id = `msg_cli_${rec.path.length}${Date.now()}`;
    const usage = { input_tokens: 100, output_tokens: 10, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
    const content = d.kind === 'tool' ? [{ type: 'tool_use', id: `toolu_cli_${Date.now()}`, name: 'Bash', input: BASH_INPUT }] : [{ type: 'text', text: d.text }];
    const stop = d.kind === 'tool' ? 'tool_use' : 'end_turn';
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_cli' });
      res.end(JSON.stringify({ id, type: 'message', role: 'assistant', model: body.model, content, stop_reason: stop, stop_sequence: null, usage }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'request-id': 'req_cli' });
    const ev = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    ev('message_start', { type: 'message_start', message: { id, type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } });
    const block = content[0]!;
    if (block.type === 'tool_use') {
      ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { ...block, input: {} } });
      ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(BASH_INPUT) } });
    } else {
      ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
      ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: (block as { text: string }).text } });
    }
    ev('content_block_stop', { type: 'content_block_stop', index: 0 });
    ev('message_delta', { type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 10 } });
    ev('message_stop', { type: 'message_stop' });
    res.end();
  });
}

/** A scripted OpenAI Chat Completions upstream (base URL with /v1). */
export async function startScriptedOpenAI(): Promise<Upstream> {
  const up = await listen((rec, res) => {
    const body = rec.body ?? {};
    const messages: any[] = (body.messages ?? []).map((m: any) => (m.role === 'tool' ? { role: 'user', content: m.content } : m));
    const d = decide(messages);
    const base = { id: 'chatcmpl-cli', object: 'chat.completion.chunk', created: 1, model: body.model };
    const usage = { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 };
    if (!body.stream) {
      const message = d.kind === 'tool' ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_cli_1', type: 'function', function: { name: 'Bash', arguments: JSON.stringify(BASH_INPUT) } }] } : { role: 'assistant', content: d.text };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message, finish_reason: d.kind === 'tool' ? 'tool_calls' : 'stop' }], usage }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => res.write(`data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`);
    if (d.kind === 'tool') {
      chunk([{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: `call_cli_${Date.now()}`, type: 'function', function: { name: 'Bash', arguments: '' } }] }, finish_reason: null }]);
      chunk([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: JSON.stringify(BASH_INPUT) } }] }, finish_reason: null }]);
      chunk([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]);
    } else {
      chunk([{ index: 0, delta: { role: 'assistant', content: d.text }, finish_reason: null }]);
      chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]);
    }
    chunk([], { usage });
    res.write('data: [DONE]\n\n');
    res.end();
  });
  return { ...up, url: `${up.url}/v1` };
}

/**
 * A scripted Bedrock Runtime endpoint (for a `bedrock` provider's `endpoint`): ConverseStream and
 * Converse (any model), InvokeModel(WithResponseStream) for Claude, CountTokens.
 */
export function startScriptedBedrock(): Promise<Upstream> {
  return listen((rec, res) => {
    const m = /^\/model\/([^/]+)\/([a-z-]+)$/.exec(rec.path);
    const op = m?.[2];
    const body = rec.body ?? {};
    if (op === 'count-tokens') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ inputTokens: 4321 }));
      return;
    }
    if (op === 'converse' || op === 'converse-stream') {
      const messages = (body.messages ?? []).map((x: any) => ({ role: x.role, content: (x.content ?? []).map((b: any) => (b.text !== undefined ? { text: b.text } : b.toolResult ? { text: JSON.stringify(b.toolResult) } : {})) }));
      const d = decide(messages.map((x: any) => ({ role: x.role, content: x.content.map((b: any) => ({ text: b.text ?? '' })) })));
      const usage = { inputTokens: 100, outputTokens: 10, totalTokens: 110 };
      if (op === 'converse') {
        const content = d.kind === 'tool' ? [{ toolUse: { toolUseId: 'tooluse_cli_1', name: 'Bash', input: BASH_INPUT } }] : [{ text: d.text }];
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ output: { message: { role: 'assistant', content } }, stopReason: d.kind === 'tool' ? 'tool_use' : 'end_turn', usage, metrics: { latencyMs: 1 } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
      res.write(eventFrame('messageStart', { role: 'assistant' }));
      if (d.kind === 'tool') {
        res.write(eventFrame('contentBlockStart', { contentBlockIndex: 0, start: { toolUse: { toolUseId: `tooluse_cli_${Date.now()}`, name: 'Bash' } } }));
        res.write(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input: JSON.stringify(BASH_INPUT) } } }));
      } else res.write(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: d.text } }));
      res.write(eventFrame('contentBlockStop', { contentBlockIndex: 0 }));
      res.write(eventFrame('messageStop', { stopReason: d.kind === 'tool' ? 'tool_use' : 'end_turn' }));
      res.write(eventFrame('metadata', { usage, metrics: { latencyMs: 1 } }));
      res.end();
      return;
    }
    if (op === 'invoke' || op === 'invoke-with-response-stream') {
      // Claude on Bedrock: the Anthropic body as sent; the answer as Anthropic events in `chunk` frames.
      const d = decide(body.messages ?? []);
      const id = `msg_bdrk_${Date.now()}`;
      const usage = { input_tokens: 100, output_tokens: 10 };
      const stop = d.kind === 'tool' ? 'tool_use' : 'end_turn';
      const content = d.kind === 'tool' ? [{ type: 'tool_use', id: `toolu_bdrk_${Date.now()}`, name: 'Bash', input: BASH_INPUT }] : [{ type: 'text', text: d.text }];
      if (op === 'invoke') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content, stop_reason: stop, stop_sequence: null, usage }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
      const chunk = (data: unknown) => res.write(eventFrame('chunk', { bytes: Buffer.from(JSON.stringify(data)).toString('base64') }));
      chunk({ type: 'message_start', message: { id, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage } });
      const block = content[0]!;
      if (block.type === 'tool_use') {
        chunk({ type: 'content_block_start', index: 0, content_block: { ...block, input: {} } });
        chunk({ type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(BASH_INPUT) } });
      } else {
        chunk({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
        chunk({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: (block as { text: string }).text } });
      }
      chunk({ type: 'content_block_stop', index: 0 });
      chunk({ type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 10 } });
      chunk({ type: 'message_stop', 'amazon-bedrock-invocationMetrics': { inputTokenCount: 100, outputTokenCount: 10, invocationLatency: 1, firstByteLatency: 1 } });
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'UnknownOperationException' });
    res.end(JSON.stringify({ message: `no route for ${rec.path}` }));
  });
}
