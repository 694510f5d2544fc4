import { ClientLeave, type ClientSignal } from './client-signal.ts';
import { WebHeaders } from './web.ts';

/**
 * The Request and Response the gateway makes, without undici. Touching the global `Request`,
 * `Response` or `Headers` loads undici (a large share of a cold start), and undici's constructors
 * (webidl checks, an AbortSignal per Request, URL parsing) cost CPU on every request; the types
 * here implement the same interfaces (`Request`, `Response`, and `WebHeaders` for `Headers`) and
 * are all the core and the shells make. A real web Request or Response (a test's, a caller-provided
 * fetch's) is read through the same helpers below, which tell the types apart without the globals.
 *
 * Bodies that are already whole travel as bytes, not as web streams. A web stream costs a
 * ReadableStream (and a reader, and a read per chunk) on each side of every hop; a small JSON
 * request or answer needs none of that. `.body` makes a web stream (node's, not undici's) the first
 * time someone asks for it, and `text()`, `json()`, `arrayBuffer()`, `bytes()`, `blob()` and
 * `clone()` work from the bytes. The shells and the body readers ask `requestBytes` /
 * `responseBytes` first and skip the stream.
 */

/** Bytes over a plain ArrayBuffer (what the web body types ask for). */
type Bytes = Uint8Array<ArrayBuffer>;

const EMPTY = new Uint8Array(0) as Bytes;

/** Bytes as UTF-8 text, without copying them into a Buffer first. */
export function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

function copy(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function bodyUsedError(): TypeError {
  return new TypeError('Body is unusable: Body has already been read');
}

/** Everything a reader gives, as one piece. */
async function readAll(reader: { read(): Promise<ReadableStreamReadResult<Uint8Array>> }): Promise<Bytes> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const r = await reader.read();
    if (r.done) return (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)) as Bytes;
    chunks.push(r.value);
  }
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
    if (this.bodyUsed) throw bodyUsedError();
    this.used = true;
    return this.bytes;
  }

  /** The bytes when nobody has read them (whole or through the stream), else undefined. */
  peek(): Bytes | undefined {
    return this.bodyUsed ? undefined : this.bytes;
  }
}

/** The body methods of every type here, from one read of the whole body (`whole`). */
abstract class WebBody {
  abstract readonly headers: Headers;
  abstract readonly body: ReadableStream<Bytes> | null;
  abstract readonly bodyUsed: boolean;
  /** The whole body, once (rejects with a TypeError when it was read already). */
  protected abstract whole(): Promise<Bytes>;

  arrayBuffer(): Promise<ArrayBuffer> {
    return this.whole().then(copy);
  }
  bytes(): Promise<Bytes> {
    return this.whole().then((b) => new Uint8Array(copy(b)));
  }
  text(): Promise<string> {
    return this.whole().then(utf8);
  }
  json(): Promise<any> {
    return this.text().then(JSON.parse);
  }
  blob(): Promise<Blob> {
    return this.whole().then((b) => new Blob([b], { type: this.headers.get('content-type') ?? '' }));
  }
  formData(): Promise<FormData> {
    return Promise.reject(new TypeError('formData() is not supported on the gateway\'s requests and responses'));
  }
}

/** Statuses whose responses carry no body. */
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** What the Responses here share: status, headers (made only when someone asks), the body methods. */
abstract class WebResponse extends WebBody implements Response {
  readonly status: number;
  readonly statusText: string;
  /** The headers, or what they are made from when someone asks: a record (`rebody`), or raw name/value pairs (an upstream socket's). */
  #headers: WebHeaders | Record<string, string> | string[] | undefined;

  constructor(init: ResponseInit | undefined, rawHeaders?: string[]) {
    super();
    const status = init?.status ?? 200;
    if (!(status >= 200 && status <= 599)) throw new RangeError('init["status"] must be in the range of 200 to 599, inclusive.');
    const text = init?.statusText ?? '';
    if (/[^\t\x20-\x7e\x80-\xff]/.test(text)) throw new TypeError('Invalid statusText');
    this.status = status;
    this.statusText = text;
    this.#headers = rawHeaders ?? (init?.headers === undefined ? undefined : new WebHeaders(init.headers));
  }

  get ok(): boolean {
    return this.status >= 200 && this.status <= 299;
  }
  get type(): ResponseType {
    return 'default';
  }
  get url(): string {
    return '';
  }
  get redirected(): boolean {
    return false;
  }
  get [Symbol.toStringTag](): string {
    return 'Response';
  }

  get headers(): Headers {
    const h = this.#headers;
    if (h instanceof WebHeaders) return h;
    return (this.#headers = h === undefined ? new WebHeaders() : Array.isArray(h) ? rawToHeaders(h) : new WebHeaders(h));
  }

  /** One header's value (lower-case `name`), read without making a Headers object. */
  header(name: string): string | null {
    const h = this.#headers;
    if (h === undefined) return null;
    if (h instanceof WebHeaders) return h.get(name);
    if (!Array.isArray(h)) {
      if (name in h) return h[name]!;
      for (const k in h) if (k.toLowerCase() === name) return h[k]!;
      return null;
    }
    return rawHeaderValue(h, name);
  }

  /** The headers as a plain record when they were given as one and nobody has asked for `.headers`. */
  plainHeaders(): Record<string, string> | undefined {
    const h = this.#headers;
    return h && !(h instanceof WebHeaders) && !Array.isArray(h) ? h : undefined;
  }

  /**
   * The parse of this response's whole JSON body, when the attempt runner checked it before commit
   * (`keepParsedJson`), so the relay need not parse it again. Held by the response itself: a WeakMap
   * keyed by the bytes kept every parse alive through the young generation's collections (V8's
   * scavenger keeps a WeakMap's values while their keys are young): 210-220 KB surviving each
   * scavenge one request at a time, and pauses of 1.4-1.5 ms instead of 0.7-1.0.
   */
  parsedJson: unknown;

  /** New headers in place (a record, made into Headers only when someone asks). */
  protected replaceHeaders(headers: Record<string, string>): void {
    this.#headers = headers;
  }

  abstract clone(): Response;
}

/** A Response whose body is whole bytes (a JSON answer, an error, a checked upstream answer), or none (`null`). */
export class BytesResponse extends WebResponse {
  readonly #held?: HeldBody;

  /** `rawHeaders`: name/value pairs as node:http gives them, used instead of `init.headers`. */
  constructor(bytes: Uint8Array | string | null, init?: ResponseInit, rawHeaders?: string[]) {
    super(init, rawHeaders);
    if (bytes !== null) this.#held = new HeldBody(typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
  }

  get body(): ReadableStream<Bytes> | null {
    return this.#held ? this.#held.webStream : null;
  }
  get bodyUsed(): boolean {
    return this.#held?.bodyUsed ?? false;
  }
  protected async whole(): Promise<Bytes> {
    return this.#held ? this.#held.take() : EMPTY;
  }
  clone(): BytesResponse {
    if (this.#held?.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.');
    return new BytesResponse(this.#held ? this.#held.bytes : null, { status: this.status, statusText: this.statusText, headers: this.headers });
  }

  /** The bytes, when no one has read the body or taken its stream. */
  peekBytes(): Uint8Array | undefined {
    return this.#held?.peek();
  }

  /** Whether there is a body (read or not), asked without making its stream. */
  get carriesBody(): boolean {
    return this.#held !== undefined;
  }
}

/** One header (lower-case `name`) of node's raw name/value pairs, repeats joined with ", " as node joins them; null when absent. */
export function rawHeaderValue(raw: string[], name: string): string | null {
  let value: string | null = null;
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) value = value === null ? raw[i + 1]! : `${value}, ${raw[i + 1]}`;
  return value;
}

/** Keep the parse of `res`'s whole JSON body on it (see `WebResponse.parsedJson`). */
export function keepParsedJson(res: Response, json: unknown): void {
  if (res instanceof WebResponse) res.parsedJson = json;
}

/** The parse kept on `res` by `keepParsedJson`, if any (undefined once its body was replaced). */
export function parsedJsonOf(res: Response): unknown {
  return res instanceof WebResponse ? res.parsedJson : undefined;
}

/** The whole body of a response that carries its bytes (and is unread), else undefined: the caller streams it. */
export function responseBytes(res: Response): Uint8Array | undefined {
  return res instanceof BytesResponse || res instanceof ReaderResponse ? res.peekBytes() : undefined;
}

/** `init` with a content-type when it names none (as fetch types a string body). */
function typed(init: ResponseInit | undefined, type: string): ResponseInit {
  const headers = new WebHeaders(init?.headers);
  if (!headers.has('content-type')) headers.set('content-type', type);
  return { ...init, headers };
}

/**
 * `new Response(body, init)` made without undici: a whole body (text, bytes) as a BytesResponse,
 * a stream as a ReaderResponse over it. Same rules as fetch's (a text body is typed
 * text/plain, a bodiless status refuses a body), except that bytes are not copied.
 */
export function webResponse(body: BodyInit | null | undefined, init?: ResponseInit): Response {
  if (body === null || body === undefined) return new BytesResponse(null, init);
  if (init?.status !== undefined && NULL_BODY_STATUS.has(init.status)) throw new TypeError(`Response constructor: Invalid response status code ${init.status}`);
  if (typeof body === 'string') return new BytesResponse(body, typed(init, 'text/plain;charset=UTF-8'));
  if (body instanceof Uint8Array) return new BytesResponse(body, init);
  if (body instanceof ArrayBuffer) return new BytesResponse(new Uint8Array(body), init);
  if (ArrayBuffer.isView(body)) return new BytesResponse(new Uint8Array(body.buffer as ArrayBuffer, body.byteOffset, body.byteLength), init);
  if (body instanceof ReadableStream) return new ReaderResponse(body, init);
  if (body instanceof URLSearchParams) return new BytesResponse(body.toString(), typed(init, 'application/x-www-form-urlencoded;charset=UTF-8'));
  if (body instanceof Blob) return new ReaderResponse(body.stream(), body.type ? typed(init, body.type) : init);
  throw new TypeError('The gateway makes responses from text, bytes or a stream.');
}

export interface ShellRequestInit {
  method: string;
  headers: Headers;
  /** The whole body, read by the shell (or undefined: `stream` or none). */
  bytes?: Uint8Array;
  /** A body that still streams (large or of unknown length). */
  stream?: ReadableStream<Uint8Array>;
  /** The client's leaving, when this request stands for another one (`reaimed`). */
  leaving?: ClientLeave;
}

/** Methods fetch writes in upper case whatever case they came in. */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A request method as fetch's Request takes it: a token, not CONNECT/TRACE/TRACK, the common ones upper-cased. */
function requestMethod(method: string): string {
  // What node's parser hands the local shell nearly always: nothing to check or change.
  if (method === 'POST' || method === 'GET') return method;
  if (!METHOD_TOKEN.test(method)) throw new TypeError(`'${method}' is not a valid HTTP method.`);
  const upper = method.toUpperCase();
  if (upper === 'CONNECT' || upper === 'TRACE' || upper === 'TRACK') throw new TypeError(`'${method}' HTTP method is unsupported.`);
  return NORMALIZED_METHODS.has(upper) ? upper : method;
}

/**
 * The Request a shell hands the core: a small body as bytes (no body stream unless someone asks
 * for `.body`), or a body that still streams; its URL and headers are the shell's own (not parsed
 * and copied again); the client's leaving is `leaving`, a `ClientLeave` (the core's attempt runner
 * listens to it: no AbortController per request), and `signal` is made from it only when someone asks.
 */
export class ShellRequest extends WebBody implements Request {
  readonly #held?: HeldBody;
  #stream?: ReadableStream<Uint8Array>;
  /** An absolute URL the shell built itself. */
  readonly url: string;
  readonly method: string;
  readonly headers: Headers;
  /** The client's leaving, for the core (`clientSignalOf`) without an AbortSignal. */
  readonly leaving: ClientLeave;

  /** `url`: an absolute URL the shell built (and so parsed) itself. */
  constructor(url: string, init: ShellRequestInit) {
    super();
    this.url = url;
    this.method = requestMethod(init.method);
    this.headers = init.headers;
    this.leaving = init.leaving ?? new ClientLeave();
    if ((init.bytes || init.stream) && (this.method === 'GET' || this.method === 'HEAD')) throw new TypeError('Request with GET/HEAD method cannot have body.');
    if (init.bytes) this.#held = new HeldBody(init.bytes);
    else this.#stream = init.stream;
  }

  get body(): ReadableStream<Bytes> | null {
    return this.#held ? this.#held.webStream : ((this.#stream as ReadableStream<Bytes>) ?? null);
  }
  get bodyUsed(): boolean {
    return this.#held ? this.#held.bodyUsed : (this.#stream?.locked ?? false);
  }
  get signal(): AbortSignal {
    return this.leaving.signal;
  }
  protected async whole(): Promise<Bytes> {
    if (this.#held) return this.#held.take();
    if (!this.#stream) return EMPTY;
    if (this.#stream.locked) throw bodyUsedError();
    return readAll(this.#stream.getReader());
  }
  clone(): ShellRequest {
    if (this.bodyUsed) throw new TypeError('Request.clone: Body has already been consumed.');
    let stream: ReadableStream<Uint8Array> | undefined;
    if (this.#stream) [this.#stream, stream] = this.#stream.tee();
    const twin = new ShellRequest(this.url, { method: this.method, headers: new WebHeaders(this.headers), bytes: this.#held?.bytes, stream });
    if (this.leaving.aborted) twin.leaving.leave();
    else this.leaving.addEventListener('abort', { handleEvent: () => twin.leaving.leave() });
    return twin;
  }

  // The same for every request no page made (set on the prototype below).
  declare readonly cache: RequestCache;
  declare readonly credentials: RequestCredentials;
  declare readonly destination: RequestDestination;
  declare readonly integrity: string;
  declare readonly keepalive: boolean;
  declare readonly mode: RequestMode;
  declare readonly redirect: RequestRedirect;
  declare readonly referrer: string;
  declare readonly referrerPolicy: ReferrerPolicy;
  declare readonly duplex: 'half';

  get [Symbol.toStringTag](): string {
    return 'Request';
  }

  /** This request at another URL, with the same body and leaving (this one is not to be read after). */
  at(url: string): ShellRequest {
    return new ShellRequest(url, { method: this.method, headers: this.headers, bytes: this.#held?.bytes, stream: this.#stream, leaving: this.leaving });
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

/** What fetch's Request gives for these on a request no page made: ShellRequest's, read-only. */
const REQUEST_DEFAULTS = { cache: 'default', credentials: 'same-origin', destination: '', integrity: '', keepalive: false, mode: 'cors', redirect: 'follow', referrer: 'about:client', referrerPolicy: '', duplex: 'half' };
for (const [name, value] of Object.entries(REQUEST_DEFAULTS)) Object.defineProperty(ShellRequest.prototype, name, { get: () => value, configurable: true });

/** The same request at another URL (the /iam prefix re-aims one): a shell's keeps its bytes, stream and leaving. */
export function reaimed(request: Request, url: string): Request {
  if (request instanceof ShellRequest) return request.at(url);
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && request.body !== null;
  return new Request(url, { method: request.method, headers: request.headers, body: hasBody ? request.body : undefined, signal: request.signal, ...(hasBody ? { duplex: 'half' } : {}) } as RequestInit);
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
  /** What `read()` would give now, when it is already in hand (no promise, nothing to wait on); else undefined. */
  readNow?(): ReadableStreamReadResult<Uint8Array> | undefined;
}

/** The reader's `readNow` when it is a pull source that has one (a web stream's reader has none), bound to it. */
export function readNowOf(reader: ReadableStreamDefaultReader<Uint8Array> | PullSource): (() => ReadableStreamReadResult<Uint8Array> | undefined) | undefined {
  const source = reader as { readNow?: PullSource['readNow'] };
  return source.readNow && (() => source.readNow!());
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

/** A pull source over a web stream, whose reader is taken on the first read. */
function streamSource(stream: ReadableStream<Uint8Array>): PullSource {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return {
    read: () => (reader ??= stream.getReader()).read(),
    cancel: (why) => (reader ? reader.cancel(why) : stream.cancel(why)),
  };
}

/**
 * A Response whose body comes from a `PullSource` (an upstream socket, the stream frame) or a web
 * stream: whoever reads it through `bodyReader` reads the source directly; `.body` makes a web
 * stream over a source only when someone asks. One reader either way, as with any body. `rebodied`
 * gives one a new body (and headers) in place, so an upstream answer goes on to the client as the
 * same object.
 */
export class ReaderResponse extends WebResponse {
  /** Undefined for whole bytes until something reads them as a source (most are handed on as bytes). */
  #source: PullSource | undefined;
  /** The whole body when the source is bytes in hand (`responseBytes` hands them out). */
  #bytes?: Uint8Array;
  #stream?: ReadableStream<Bytes>;
  #owner?: 'reader' | 'stream';

  /** `rawHeaders`: name/value pairs as node:http gives them, used instead of `init.headers` (no Headers built unless asked for). */
  constructor(source: PullSource | ReadableStream<Uint8Array>, init?: ResponseInit, rawHeaders?: string[]) {
    super(init, rawHeaders);
    if (source instanceof ReadableStream) {
      this.#stream = source as ReadableStream<Bytes>;
      this.#source = streamSource(source);
    } else this.#source = source;
  }

  /** A new body (the old one's reader has let it go) and, when given, new headers. */
  rebody(body: PullSource | Uint8Array, headers?: Record<string, string>): this {
    // A parse belongs to the body it was made from.
    this.parsedJson = undefined;
    this.#bytes = body instanceof Uint8Array ? body : undefined;
    this.#source = body instanceof Uint8Array ? undefined : body;
    this.#stream = this.#owner = undefined;
    if (headers) this.replaceHeaders(headers);
    return this;
  }

  get body(): ReadableStream<Bytes> {
    return (this.#stream ??= new ReadableStream<Bytes>(
      {
        pull: async (ctrl) => {
          if (this.#owner === 'reader') return ctrl.error(bodyUsedError());
          this.#owner = 'stream';
          try {
            const r = await this.source().read();
            if (r.done) ctrl.close();
            else ctrl.enqueue(r.value as Bytes);
          } catch (err) {
            ctrl.error(err);
          }
        },
        cancel: (why) => this.source().cancel(why),
      },
      { highWaterMark: 0 },
    ));
  }
  get bodyUsed(): boolean {
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
    const source = this.source();
    return { read: () => source.read(), cancel: (why?: unknown) => source.cancel(why), readNow: () => source.readNow?.(), releaseLock() {} } as unknown as ReadableStreamDefaultReader<Uint8Array>;
  }

  private source(): PullSource {
    return (this.#source ??= bytesSource(this.#bytes!));
  }

  protected async whole(): Promise<Bytes> {
    return readAll(bodyReader(this));
  }
  clone(): ReaderResponse {
    const [mine, theirs] = this.body.tee();
    this.#stream = mine;
    this.#source = streamSource(mine);
    this.#bytes = undefined;
    return new ReaderResponse(theirs, { status: this.status, statusText: this.statusText, headers: this.headers });
  }
}

/**
 * `res`, whose body its reader has taken, with a new body (a pull source, or whole bytes) and, when
 * given, new headers: the same object for a ReaderResponse (an upstream answer goes on without a
 * second Response), else a new Response.
 */
export function rebodied(res: Response, body: PullSource | Uint8Array, headers?: Record<string, string>): Response {
  if (res instanceof ReaderResponse) return res.rebody(body, headers);
  const init = { status: res.status, statusText: res.statusText, headers: headers ?? res.headers };
  return body instanceof Uint8Array ? new BytesResponse(body, init) : new ReaderResponse(body, init);
}

/**
 * Raw name/value pairs as node:http's parser gives them (`rawHeaders` of a request or a response)
 * as Headers. The parser refuses what the fetch Headers would (names that are not tokens, control
 * characters in values: a 400 before any handler runs) and trims the values, so they are not checked again.
 */
export function rawToHeaders(raw: string[]): WebHeaders {
  const headers = new WebHeaders();
  for (let i = 0; i + 1 < raw.length; i += 2) headers.appendParsed(raw[i]!, raw[i + 1]!);
  return headers;
}

/** One header of a response (lower-case `name`), without making a Headers object when it carries its own. */
export function headerOf(res: Response, name: string): string | null {
  return res instanceof WebResponse ? res.header(name) : res.headers.get(name);
}

/** Whether a response has a body, without making a web stream of one that travels as bytes or a source. */
export function hasBody(res: Response): boolean {
  if (res instanceof ReaderResponse) return true;
  if (res instanceof BytesResponse) return res.carriesBody;
  return res.body !== null;
}

/** A copy of a response's headers as a plain record (made without a Headers object when it carries a record). */
export function headerRecord(res: Response): Record<string, string> {
  const plain = res instanceof WebResponse ? res.plainHeaders() : undefined;
  // Object.assign, not a spread: V8 gives a spread copy that then gets a new key (content-length)
  // a new map each time, over a microsecond per response.
  if (plain) return Object.assign({}, plain);
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => (out[k] = v));
  return out;
}

/** A reader for a response's body: the source itself for an unread ReaderResponse (no web stream), else the body stream's reader. */
export function bodyReader(res: Response): ReadableStreamDefaultReader<Uint8Array> {
  return (res instanceof ReaderResponse ? res.takeReader() : undefined) ?? res.body!.getReader();
}
