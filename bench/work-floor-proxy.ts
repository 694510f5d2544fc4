import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveChild } from './child.ts';

/**
 * The work floor: the bare proxy (floor-proxy.ts) plus the least work any gateway that routes by
 * model and accounts usage must do per request, written as directly as Node allows. It reads the
 * request body whole and parses it (the model decides the route), sends the body re-serialised
 * with the upstream model name, reads the answer whole and parses it (usage comes from it), answers
 * with a content-length, and appends one NDJSON log line per request (buffered per event-loop turn,
 * as our file sink does). No keys, limits, retries, deadlines, tracing or error shapes.
 *
 * It separates what the benchmark's goals ask of any gateway from what our pipeline adds: where
 * this target misses a goal against the floor, no gateway doing this work in Node meets it here.
 * BENCH_UPSTREAM names the upstream's base URL.
 */

const upstream = new URL(process.env.BENCH_UPSTREAM ?? 'http://127.0.0.1:1');
const agent = new Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo' });
const logDir = mkdtempSync(join(tmpdir(), 'gw-bench-work-floor-'));
const logFile = join(logDir, 'requests.ndjson');

let lines: string[] = [];
function log(line: string): void {
  if (lines.length === 0) setImmediate(flush);
  lines.push(line);
}
function flush(): void {
  const text = lines.join('');
  lines = [];
  appendFileSync(logFile, text);
}

function readWhole(msg: IncomingMessage, done: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  msg.on('data', (c: Buffer) => chunks.push(c));
  msg.on('end', () => done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
}

function answerHeaders(h: IncomingHttpHeaders, length: number): Record<string, string> {
  return { 'content-type': String(h['content-type'] ?? 'application/json'), 'content-length': String(length) };
}

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const started = performance.now();
  readWhole(req, (raw) => {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"invalid JSON"}}');
      return;
    }
    const model = String(body.model);
    body.model = model === 'gpt-4o-mini' ? 'gpt-4o-mini-2024-07-18' : model;
    const out = Buffer.from(JSON.stringify(body));
    const headers = { 'content-type': 'application/json', 'content-length': String(out.byteLength), host: upstream.host };
    const up = request({ host: upstream.hostname, port: upstream.port, method: 'POST', path: req.url, headers, agent }, (ures) => {
      readWhole(ures, (answer) => {
        let usage: unknown;
        try {
          usage = (JSON.parse(answer.toString('utf8')) as { usage?: unknown }).usage;
        } catch {
          usage = undefined;
        }
        res.writeHead(ures.statusCode ?? 502, answerHeaders(ures.headers, answer.byteLength));
        res.end(answer);
        log(`${JSON.stringify({ ts: new Date().toISOString(), model, upstreamModel: body.model, status: ures.statusCode, usage, durationMs: performance.now() - started })}\n`);
      });
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end();
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    up.end(out);
  });
});

serveChild(server, () => {
  agent.destroy();
  rmSync(logDir, { recursive: true, force: true });
});
