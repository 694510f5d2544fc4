import net from 'node:net';

/** HTTP/1.1 over a bare socket, for tests that must send bytes fetch would refuse or fix up. */

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Parse the HTTP/1.1 responses in `raw` (content-length or chunked bodies). */
export function parseResponses(raw: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  const text = raw.toString('latin1');
  while (at < text.length) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const [statusLine, ...lines] = text.slice(at, headEnd).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1] ?? NaN);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let p = headEnd + 4;
    let body = '';
    if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const lineEnd = text.indexOf('\r\n', p);
        if (lineEnd < 0) return out;
        const size = parseInt(text.slice(p, lineEnd), 16);
        p = lineEnd + 2;
        if (!size) {
          p += 2;
          break;
        }
        body += text.slice(p, p + size);
        p += size + 2;
      }
    } else {
      const len = Number(headers['content-length'] ?? 0);
      body = text.slice(p, p + len);
      p += len;
    }
    out.push({ status, headers, body: Buffer.from(body, 'latin1').toString('utf8') });
    at = p;
  }
  return out;
}

/**
 * Send raw bytes on one connection and collect what comes back until the server closes it or
 * `responses` answers have arrived (then the client closes). Bounded by a safety timer.
 */
export function rawExchange(port: number, data: Buffer | string | (Buffer | string)[], responses = 1): Promise<{ responses: RawResponse[]; closedByServer: boolean; error?: string }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    let closedByServer = false;
    let error: string | undefined;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ responses: parseResponses(Buffer.concat(chunks)), closedByServer, error });
    };
    // Safety net only (no assertion depends on it): a hung connection ends the exchange.
    const timer = setTimeout(finish, 10_000);
    socket.on('data', (d) => {
      chunks.push(d);
      if (parseResponses(Buffer.concat(chunks)).length >= responses) finish();
    });
    socket.on('end', () => {
      closedByServer = true;
      finish();
    });
    socket.on('error', (e) => {
      error = e.message;
      finish();
    });
    for (const d of Array.isArray(data) ? data : [data]) socket.write(d);
  });
}


/** The server still answers `/health` with 200 (after hostile input). */
export async function assertStillUp(url: string): Promise<void> {
  const res = await fetch(`${url}/health`);
  if (res.status !== 200) throw new Error(`/health answered ${res.status} after the hostile input`);
  await res.text();
}
