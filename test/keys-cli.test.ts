import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SignatureV4 } from '@smithy/signature-v4';
import OpenAI from 'openai';
import { CliError, NodeSha256, run as runCli } from '../scripts/keys.ts';
import { ADMIN_TOKEN, startKeyedGateway, type KeyedGateway } from './helpers/keys.ts';

/**
 * `npm run keys` as a user runs it: a child process talking to the admin API of a running gateway
 * (local server + dynalite), with the admin token from the environment; and, pointed at AWS, a
 * request signed with SigV4 from the caller's AWS credentials.
 */

const run = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run the CLI in a child process: through `npm run keys --` (exactly as documented) or, to keep the
 * suite fast, the same script with node and tsx directly (what the npm script runs).
 */
async function keys(args: string[], env: Record<string, string>, viaNpm = false): Promise<CliResult> {
  const [cmd, argv] = viaNpm ? ['npm', ['run', '--silent', 'keys', '--', ...args]] : [process.execPath, ['--import', 'tsx', 'scripts/keys.ts', ...args]];
  try {
    const { stdout, stderr } = await run(cmd as string, argv as string[], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const hello = [{ role: 'user' as const, content: 'Hello gateway' }];

describe('the keys CLI (npm run keys) against the local admin API', () => {
  let g: KeyedGateway;
  let env: Record<string, string>;
  before(async () => {
    g = await startKeyedGateway();
    env = { GATEWAY_URL: g.url, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN };
  });
  after(() => g.close());

  test('create, list and revoke a key; the created key works within its limits until revoked', async () => {
    const created = await keys(['create', '--name', 'cli-svc', '--team', 'cli', '--rpm', '60', '--models', 'mock', '--usd-per-day', '5', '--tag', 'owner=alice'], env, true);
    assert.equal(created.code, 0, created.stderr);
    const key = /^(gwk_[a-z2-7]{20}_[A-Za-z0-9_-]{43})$/m.exec(created.stdout)?.[1];
    const id = /^Created key ([a-z2-7]{20}) \(cli-svc\)$/m.exec(created.stdout)?.[1];
    assert.ok(key && id, created.stdout);
    assert.ok(key.includes(id));

    const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: key, maxRetries: 0 });
    const ok = await client.chat.completions.create({ model: 'mock', messages: hello }).withResponse();
    assert.equal(ok.data.choices[0]!.message.content, 'Hello gateway');
    assert.equal(ok.response.headers.get('x-ratelimit-limit-requests'), '60');
    assert.equal(ok.response.headers.get('x-gateway-budget-remaining-usd'), '5');
    await assert.rejects(client.chat.completions.create({ model: 'mock-2', messages: hello }), (e: { status?: number }) => e.status === 403);

    const listed = await keys(['list'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const line = listed.stdout.split('\n').find((l) => l.startsWith(id));
    assert.ok(line, listed.stdout);
    assert.match(line, /active\s+cli-svc\s+team=cli\s+models=mock\s+rpm=60 usdPerDay=5/);
    assert.ok(!listed.stdout.includes(key), 'list never shows a key');

    const revoked = await keys(['revoke', id], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`Revoked key ${id} \\(cli-svc\\)`));
    await assert.rejects(client.chat.completions.create({ model: 'mock', messages: hello }), (e: { status?: number; code?: string }) => e.status === 401 && e.code === 'revoked_api_key');
    const rec = await g.admin('GET', `/admin/keys/${id}`);
    assert.equal(rec.json.status, 'revoked');
    assert.deepEqual(rec.json.metadata, { owner: 'alice' });
  });

  test('errors: a wrong admin token exits 1 with the status; a missing --name is caught before any call', async () => {
    const badToken = await keys(['list'], { ...env, GATEWAY_ADMIN_TOKEN: 'wrong' });
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /\(401\)/);
    // The same entry point in-process (no child needed for argument checks).
    await assert.rejects(
      runCli(['create', '--rpm', '5'], env, () => {}),
      (e: Error) => e instanceof CliError && /Missing --name/.test(e.message),
    );
    await assert.rejects(
      runCli(['create', '--name', 'x', '--rpm', 'fast'], env, () => {}),
      (e: Error) => e instanceof CliError && /--rpm must be a positive integer/.test(e.message),
    );
  });
});

describe('the keys CLI against AWS signs with SigV4', () => {
  const seen: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  let url = '';
  let server: ReturnType<typeof createServer>;
  before(async () => {
    // Stands in for API Gateway's IAM check: records the signed request and answers like the admin API.
    server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(parts).toString('utf8') });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ data: [], next_cursor: null }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/prod/`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('the Authorization header is a valid SigV4 signature of the request that went over the wire', async () => {
    const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
    const res = await keys(['list', '--team', 'ml', '--url', url, '--aws', '--region', 'eu-west-1'], {
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: '',
      AWS_PROFILE: '',
      GATEWAY_ADMIN_TOKEN: '',
    });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(seen.length, 1);
    const req = seen[0]!;
    assert.equal(req.method, 'GET');
    assert.equal(req.url, '/prod/admin/keys?team=ml');
    const auth = String(req.headers.authorization);
    assert.match(auth, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/);
    assert.ok(!auth.includes('Bearer'));

    // Sign the request as received, at the same time, and compare signatures.
    const signedNames = /SignedHeaders=([^,]+)/.exec(auth)![1]!.split(';');
    const headers: Record<string, string> = {};
    for (const n of signedNames) headers[n] = String(req.headers[n]);
    const u = new URL(req.url, url);
    const xAmzDate = String(req.headers['x-amz-date']);
    const signingDate = new Date(`${xAmzDate.slice(0, 4)}-${xAmzDate.slice(4, 6)}-${xAmzDate.slice(6, 8)}T${xAmzDate.slice(9, 11)}:${xAmzDate.slice(11, 13)}:${xAmzDate.slice(13, 15)}Z`);
    const signer = new SignatureV4({ service: 'execute-api', region: 'eu-west-1', credentials: creds, sha256: NodeSha256 });
    const expected = await signer.sign(
      { method: req.method, protocol: 'http:', hostname: u.hostname, port: Number(u.port), path: u.pathname, query: Object.fromEntries(u.searchParams), headers, body: req.body || undefined },
      { signingDate },
    );
    assert.equal(/Signature=([0-9a-f]{64})/.exec(auth)![1], /Signature=([0-9a-f]{64})/.exec(String(expected.headers.authorization))![1]);
  });
});
