import { ClientLeave, type ClientSignal } from './client-signal.ts';

/**
 * Bodies that are already whole travel as bytes, not as web streams. A web stream costs a
 * ReadableStream (and a reader, and a read per chunk) on each side of every hop; a small JSON
 * request or answer needs none of that. Both classes below are standard Request/Response objects
 * to everyone outside: `.body` makes a web stream over the bytes the first time someone asks for
 * it, and `text()`, `json()`, `arrayBuffer()`, `blob()` and `clone()` work from the bytes.
 * The shells and the body readers ask `requestBytes` / `responseBytes` first and skip the stream.
 */

/** Bytes over a plain ArrayBuffer (what the web body types ask for). */
type Bytes = Uint8Array<ArrayBuffer>;

function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

function copy(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/**
 * One message body held as bytes: read once (like any body), either whole or through a web stream
 * made on demand. Asking for the stream does not use the body up; reading from it does.
 */
class HeldBody {
  private stream?: ReadableStream<Bytes>;
  private used = false;
  readonly bytes: Bytes;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes as Bytes;
  }

  get webStream(): ReadableStream<Bytes> {
    return (this.stream ??= new ReadableStream<Bytes>(
      {
        pull: (ctrl) => {
          if (!this.used && this.bytes.byteLength) ctrl.enqueue(this.bytes);
          this.used = true;
          ctrl.close();
        },
        cancel: () => {
          this.used = true;
        },
      },
      { highWaterMark: 0 },
    ));
  }

  get bodyUsed(): boolean {
    return this.used || (this.stream?.locked ?? false);
  }

  /** The bytes, once: a second read fails as it would on a web body. */
  take(): Bytes {
    if (this.bodyUsed) throw new TypeError('Body is unusable: Body has already been read');
    this.used = true;
    return this.bytes;
  }

  /** The bytes when nobody has read them (whole or through the stream), else undefined. */
  peek(): Bytes | undefined {
    return this.bodyUsed ? undefined : this.bytes;
  }
}

/** A Response whose body is whole bytes (a JSON answer, an error, a checked upstream answer). */
export class BytesResponse extends Response {
  readonly #held: HeldBody;

  constructor(bytes: Uint8Array | string, init?: ResponseInit) {
    super(null, init);
    this.#held = new HeldBody(typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
  }

  override get body(): ReadableStream<Bytes> {
    return this.#held.webStream;
  }
  override get bodyUsed(): boolean {
    return this.#held.bodyUsed;
  }
  override async arrayBuffer(): Promise<ArrayBuffer> {
    return copy(this.#held.take());
  }
  override async text(): Promise<string> {
    return utf8(this.#held.take());
  }
  override async json(): Promise<any> {
    return JSON.parse(utf8(this.#held.take()));
  }
  override async blob(): Promise<Blob> {
    return new Blob([this.#held.take()], { type: this.headers.get('content-type') ?? '' });
  }
  override clone(): BytesResponse {
    if (this.#held.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.');
    return new BytesResponse(this.#held.bytes, { status: this.status, statusText: this.statusText, headers: new Headers(this.headers) });
  }

  /** The bytes, when no one has read the body or taken its stream. */
  peekBytes(): Uint8Array | undefined {
    return this.#held.peek();
  }
}

/** The whole body of a response that carries its bytes (and is unread), else undefined: the caller streams it. */
export function responseBytes(res: Response): Uint8Array | undefined {
  return res instanceof BytesResponse || res instanceof ReaderResponse ? res.peekBytes() : undefined;
}

export interface ShellRequestInit {
  method: string;
  headers: Headers;
  /** The whole body, read by the shell (or undefined: `stream` or none). */
  bytes?: Uint8Array;
  /** A body that still streams (large or of unknown length). */
  stream?: ReadableStream<Uint8Array>;
}

/** The URL the undici Request under a ShellRequest is given (its own `url` is the shell's). */
const SHELL_BASE = 'http://gateway.local/';

/**
 * The Request a shell hands the core: a small body as bytes (no body stream unless someone asks
 * for `.body`); its URL and headers are the shell's own (undici's Request underneath is given
 * neither, so they are not parsed and copied again); the client's leaving is `leaving`, a
 * `ClientLeave` (the core's attempt runner listens to it: no AbortController per request), and
 * `signal` is made from it only when someone asks.
 */
export class ShellRequest extends Request {
  readonly #held?: HeldBody;
  readonly #url: string;
  readonly #headers: Headers;
  /** The client's leaving, for the core (`clientSignalOf`) without an AbortSignal. */
  readonly leaving = new ClientLeave();

  /** `url`: an absolute URL the shell built (and so parsed) itself. */
  constructor(url: string, init: ShellRequestInit) {
    // @ts-expect-error duplex is required by Node's fetch for streamed bodies but missing from the DOM types
    super(SHELL_BASE, init.stream ? { method: init.method, body: init.stream, duplex: 'half' } : { method: init.method });
    this.#url = url;
    this.#headers = init.headers;
    if (init.bytes) this.#held = new HeldBody(init.bytes);
  }

  override get url(): string {
    return this.#url;
  }
  override get headers(): Headers {
    return this.#headers;
  }

  override get body(): ReadableStream<Bytes> | null {
    return this.#held ? this.#held.webStream : super.body;
  }
  override get bodyUsed(): boolean {
    return this.#held ? this.#held.bodyUsed : super.bodyUsed;
  }
  override get signal(): AbortSignal {
    return this.leaving.signal;
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    return this.#held ? Promise.resolve().then(() => copy(this.#held!.take())) : super.arrayBuffer();
  }
  override text(): Promise<string> {
    return this.#held ? Promise.resolve().then(() => utf8(this.#held!.take())) : super.text();
  }
  override json(): Promise<any> {
    return this.#held ? this.text().then(JSON.parse) : super.json();
  }
  override blob(): Promise<Blob> {
    return this.arrayBuffer().then((b) => new Blob([b], { type: this.#headers.get('content-type') ?? '' }));
  }
  override clone(): Request {
    // A streamed body: undici tees it; the twin gets this request's URL and headers.
    // @ts-expect-error duplex is required by Node's fetch for streamed bodies but missing from the DOM types
    if (!this.#held) return new Request(this.#url, { method: this.method, headers: new Headers(this.#headers), body: super.clone().body, duplex: 'half', signal: this.signal });
    if (this.#held.bodyUsed) throw new TypeError('Request.clone: Body has already been consumed.');
    const twin = new ShellRequest(this.url, { method: this.method, headers: new Headers(this.headers), bytes: this.#held.bytes });
    if (this.leaving.aborted) twin.leaving.leave();
    return twin;
  }

  /** The whole body, when the shell read it and no one has read it since, else undefined. */
  peekBytes(): Uint8Array | undefined {
    return this.#held?.peek();
  }

  /** The whole body, marked read (a second read of the body then fails, as on any Request). */
  takeBytes(): Uint8Array | undefined {
    return this.#held?.take();
  }
}

/** The client's leaving for a request: the shell's cheap one, else the Request's own signal. */
export function clientSignalOf(request: Request): ClientSignal {
  return request instanceof ShellRequest ? request.leaving : request.signal;
}

/** The bytes a shell read whole for this request (marked read), or undefined when the body is to be streamed. */
export function takeRequestBytes(request: Request): Uint8Array | undefined {
  return request instanceof ShellRequest && request.peekBytes() ? request.takeBytes() : undefined;
}

/** A body read piece by piece without a web stream: what `bodyReader` hands out (a web reader's read and cancel). */
export interface PullSource {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(why?: unknown): Promise<void>;
}

/** A pull source over whole bytes: one read gives them, the next ends. */
function bytesSource(bytes: Uint8Array): PullSource {
  let given = bytes.byteLength === 0;
  return {
    read: () => {
      if (given) return Promise.resolve({ done: true, value: undefined });
      given = true;
      return Promise.resolve({ done: false, value: bytes });
    },
    cancel: () => {
      given = true;
      return Promise.resolve();
    },
  };
}

/**
 * A Response whose body comes from a `PullSource` (an upstream socket, the stream frame): whoever
 * reads it through `bodyReader` reads the source directly; `.body` makes a web stream over it only
 * when someone asks. One reader either way, as with any body. `rebodied` gives one a new body (and
 * headers) in place, so an upstream answer can go on to the client without a second undici Response.
 */
export class ReaderResponse extends Response {
  #source: PullSource;
  /** The whole body when the source is bytes in hand (`responseBytes` hands them out). */
  #bytes?: Uint8Array;
  /** Headers given in place of undici's: a record (`rebody`), or raw name/value pairs (an upstream socket's), made into Headers when someone asks. */
  #headers?: Headers | Record<string, string> | string[];
  #stream?: ReadableStream<Bytes>;
  #owner?: 'reader' | 'stream';

  /** `rawHeaders`: name/value pairs as node:http gives them, used instead of `init.headers` (no Headers built unless asked for). */
  constructor(source: PullSource, init?: ResponseInit, rawHeaders?: string[]) {
    super(null, init);
    this.#source = source;
    this.#headers = rawHeaders;
  }

  /** A new body (the old one's reader has let it go) and, when given, new headers. */
  rebody(body: PullSource | Uint8Array, headers?: Record<string, string>): this {
    this.#bytes = body instanceof Uint8Array ? body : undefined;
    this.#source = body instanceof Uint8Array ? bytesSource(body) : body;
    this.#stream = this.#owner = undefined;
    if (headers) this.#headers = headers;
    return this;
  }

  override get headers(): Headers {
    const h = this.#headers;
    if (!h) return super.headers;
    return h instanceof Headers ? h : (this.#headers = Array.isArray(h) ? rawToHeaders(h) : new Headers(h));
  }

  /** One header's value (lower-case `name`), read without making a Headers object. */
  header(name: string): string | null {
    const h = this.#headers;
    if (!h || h instanceof Headers) return this.headers.get(name);
    if (!Array.isArray(h)) {
      if (name in h) return h[name]!;
      for (const k in h) if (k.toLowerCase() === name) return h[k]!;
      return null;
    }
    let value: string | null = null;
    for (let i = 0; i + 1 < h.length; i += 2) if (h[i]!.length === name.length && h[i]!.toLowerCase() === name) value = value === null ? h[i + 1]! : `${value}, ${h[i + 1]}`;
    return value;
  }

  /** The headers as a plain record when they were given as one and nobody has asked for `.headers`. */
  plainHeaders(): Record<string, string> | undefined {
    const h = this.#headers;
    return h && !(h instanceof Headers) && !Array.isArray(h) ? h : undefined;
  }

  override get body(): ReadableStream<Bytes> {
    return (this.#stream ??= new ReadableStream<Bytes>(
      {
        pull: async (ctrl) => {
          if (this.#owner === 'reader') return ctrl.error(new TypeError('Body is unusable: Body has already been read'));
          this.#owner = 'stream';
          try {
            const r = await this.#source.read();
            if (r.done) ctrl.close();
            else ctrl.enqueue(r.value as Bytes);
          } catch (err) {
            ctrl.error(err);
          }
        },
        cancel: (why) => this.#source.cancel(why),
      },
      { highWaterMark: 0 },
    ));
  }
  override get bodyUsed(): boolean {
    return this.#owner !== undefined || (this.#stream?.locked ?? false);
  }

  /** The bytes, when the body is whole bytes that no one has read or taken a stream of. */
  peekBytes(): Uint8Array | undefined {
    return this.#bytes && !this.bodyUsed ? this.#bytes : undefined;
  }

  /** The source as a reader, once, when no one has started reading the body; else undefined. */
  takeReader(): ReadableStreamDefaultReader<Uint8Array> | undefined {
    if (this.bodyUsed) return undefined;
    this.#owner = 'reader';
    const source = this.#source;
    return { read: () => source.read(), cancel: (why?: unknown) => source.cancel(why), releaseLock() {} } as unknown as ReadableStreamDefaultReader<Uint8Array>;
  }

  async #whole(): Promise<Bytes> {
    const reader = bodyReader(this);
    const chunks: Uint8Array[] = [];
    for (;;) {
      const r = await reader.read();
      if (r.done) return (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)) as Bytes;
      chunks.push(r.value);
    }
  }
  override async arrayBuffer(): Promise<ArrayBuffer> {
    return copy(await this.#whole());
  }
  override async text(): Promise<string> {
    return utf8(await this.#whole());
  }
  override async json(): Promise<any> {
    return JSON.parse(await this.text());
  }
  override async blob(): Promise<Blob> {
    return new Blob([await this.#whole()], { type: this.headers.get('content-type') ?? '' });
  }
  override clone(): Response {
    const [mine, theirs] = this.body.tee();
    this.#stream = mine;
    return new Response(theirs, { status: this.status, statusText: this.statusText, headers: new Headers(this.headers) });
  }
}

/**
 * `res`, whose body its reader has taken, with a new body (a pull source, or whole bytes) and, when
 * given, new headers: the same object for a ReaderResponse (an upstream answer goes on without a
 * second undici Response), else a new Response.
 */
export function rebodied(res: Response, body: PullSource | Uint8Array, headers?: Record<string, string>): Response {
  if (res instanceof ReaderResponse) return res.rebody(body, headers);
  const init = { status: res.status, statusText: res.statusText, headers: headers ?? res.headers };
  return body instanceof Uint8Array ? new BytesResponse(body, init) : new ReaderResponse(body, init);
}

/** Raw name/value pairs as Headers, leaving out any the fetch Headers refuses (control characters). */
export function rawToHeaders(raw: string[]): Headers {
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i]!, raw[i + 1]!);
    } catch {
      // a name or value fetch cannot represent: dropped
    }
  }
  return headers;
}

/** One header of a response (lower-case `name`), without making a Headers object when it carries its own. */
export function headerOf(res: Response, name: string): string | null {
  return res instanceof ReaderResponse ? res.header(name) : res.headers.get(name);
}

/** Whether a response has a body, without making a web stream of one that travels as bytes or a source. */
export function hasBody(res: Response): boolean {
  return res instanceof ReaderResponse || res instanceof BytesResponse || res.body !== null;
}

/** A copy of a response's headers as a plain record (made without a Headers object when it carries a record). */
export function headerRecord(res: Response): Record<string, string> {
  const plain = res instanceof ReaderResponse ? res.plainHeaders() : undefined;
  if (plain) return { ...plain };
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => (out[k] = v));
  return out;
}

/** A reader for a response's body: the source itself for an unread ReaderResponse (no web stream), else the body stream's reader. */
export function bodyReader(res: Response): ReadableStreamDefaultReader<Uint8Array> {
  return (res instanceof ReaderResponse ? res.takeReader() : undefined) ?? res.body!.getReader();
}
