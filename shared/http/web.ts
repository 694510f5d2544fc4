/**
 * The fetch `Headers` without undici. Touching the global `Headers` (or `Request`, `Response`,
 * `fetch`, even in an `instanceof`) makes Node load undici and what it pulls in (http2, zlib,
 * perf_hooks, worker_threads...), a large part of a cold start; undici's webidl checks also cost
 * CPU on every request. The request path builds these instead: the same interface and behaviour
 * (lower-cased names, iteration sorted by name, repeated values joined with ", " except
 * set-cookie, values trimmed of HTTP whitespace, a TypeError for a name or value fetch refuses,
 * as these come from clients and go to node:http).
 */

/** A header name: an HTTP token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What a header value may not hold: NUL, CR, LF, or a character that is not a byte. */
const BAD_VALUE = /[\0\r\n\u0100-\uffff]/;
/** HTTP whitespace at either end of a value (removed, as fetch does). */
const EDGE_SPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** The lower-cased name, or a TypeError as fetch's Headers throws. */
function headerName(name: string, op: string): string {
  name = String(name);
  if (!TOKEN.test(name)) throw new TypeError(`Headers.${op}: "${name}" is an invalid header name.`);
  return name.toLowerCase();
}

/** The value trimmed of HTTP whitespace, or a TypeError as fetch's Headers throws. */
function headerValue(value: string, op: string): string {
  value = String(value);
  if (value.length && (isSpace(value.charCodeAt(0)) || isSpace(value.charCodeAt(value.length - 1)))) value = value.replace(EDGE_SPACE, '');
  if (BAD_VALUE.test(value)) throw new TypeError(`Headers.${op}: "${value}" is an invalid header value.`);
  return value;
}

/** Names found to be lower-case tokens already (bounded): a lookup that misses under one of them needs no check. */
const LOWER_TOKENS = new Set<string>();

/** `headerName`, remembering a name that is its own lower-case form. */
function checkedLower(name: string, op: string): string {
  const key = headerName(name, op);
  if (key === name && LOWER_TOKENS.size < 1024) LOWER_TOKENS.add(key);
  return key;
}

/** Whether `x` is a fetch Headers (ours or undici's), told without touching the global. */
export function isHeaders(x: unknown): x is Headers {
  return x instanceof WebHeaders || (typeof x === 'object' && x !== null && Object.prototype.toString.call(x) === '[object Headers]');
}

export class WebHeaders implements Headers {
  /** Lower-cased name -> value (repeated values joined with ", "). */
  #map = new Map<string, string>();
  /** Each set-cookie value apart (never joined on iteration). */
  #cookies?: string[];
  /** The entries sorted by name, kept until the next change. */
  #sorted?: [string, string][];

  constructor(init?: HeadersInit | Iterable<readonly [string, string]> | null) {
    if (init === undefined) return;
    if (typeof init !== 'object' || init === null) throw new TypeError('Headers constructor: Argument 1 could not be converted to one of: sequence<sequence<ByteString>>, record<ByteString, ByteString>.');
    if (init instanceof WebHeaders) {
      this.#map = new Map(init.#map);
      if (init.#cookies) this.#cookies = [...init.#cookies];
      return;
    }
    if (typeof (init as Iterable<unknown>)[Symbol.iterator] === 'function') {
      for (const pair of init as Iterable<readonly string[]>) {
        if (pair.length !== 2) throw new TypeError(`Headers constructor: expected name/value pair to be length 2, found ${pair.length}.`);
        this.append(pair[0]!, pair[1]!);
      }
      return;
    }
    const record = init as Record<string, string>;
    for (const k of Object.keys(record)) this.append(k, record[k]!);
  }

  append(name: string, value: string): void {
    this.#add(headerName(name, 'append'), headerValue(value, 'append'));
  }

  /**
   * Append a pair as node's HTTP parser gave it (request or response): its parser already refused
   * names that are not tokens and values with control characters, and trimmed the values, so only
   * the name is lower-cased (the checks `append` makes cost more than the rest of it).
   */
  appendParsed(name: string, value: string): void {
    this.#add(name.toLowerCase(), value);
  }

  /** A checked, lower-cased name and its value, joined to an earlier value with ", " (set-cookie values also kept apart). */
  #add(key: string, value: string): void {
    const had = this.#map.get(key);
    this.#map.set(key, had === undefined ? value : `${had}, ${value}`);
    if (key === 'set-cookie') (this.#cookies ??= []).push(value);
    this.#sorted = undefined;
  }

  set(name: string, value: string): void {
    const key = headerName(name, 'set');
    const v = headerValue(value, 'set');
    this.#map.set(key, v);
    if (key === 'set-cookie') this.#cookies = [v];
    this.#sorted = undefined;
  }

  delete(name: string): void {
    const key = headerName(name, 'delete');
    if (!this.#map.delete(key)) return;
    if (key === 'set-cookie') this.#cookies = undefined;
    this.#sorted = undefined;
  }

  // A name found as given is a valid lower-case one: only a miss is checked and lower-cased, once
  // per name (the names code asks for are few; most requests lack most of them).
  get(name: string): string | null {
    const v = this.#map.get(name);
    if (v !== undefined) return v;
    if (LOWER_TOKENS.has(name)) return null;
    return this.#map.get(checkedLower(name, 'get')) ?? null;
  }

  has(name: string): boolean {
    return this.#map.has(name) || (!LOWER_TOKENS.has(name) && this.#map.has(checkedLower(name, 'has')));
  }

  getSetCookie(): string[] {
    return this.#cookies ? [...this.#cookies] : [];
  }

  /** Sorted by name; each set-cookie value on its own. */
  #entries(): [string, string][] {
    if (this.#sorted) return this.#sorted;
    const names = [...this.#map.keys()].sort();
    const out: [string, string][] = [];
    for (const k of names) {
      if (k === 'set-cookie' && this.#cookies) for (const c of this.#cookies) out.push([k, c]);
      else out.push([k, this.#map.get(k)!]);
    }
    return (this.#sorted = out);
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [k, v] of this.#entries()) callback.call(thisArg, v, k, this);
  }

  entries(): HeadersIterator<[string, string]> {
    return this.#entries().map((e): [string, string] => [e[0], e[1]])[Symbol.iterator]() as unknown as HeadersIterator<[string, string]>;
  }

  keys(): HeadersIterator<string> {
    return this.#entries().map((e) => e[0])[Symbol.iterator]() as unknown as HeadersIterator<string>;
  }

  values(): HeadersIterator<string> {
    return this.#entries().map((e) => e[1])[Symbol.iterator]() as unknown as HeadersIterator<string>;
  }

  [Symbol.iterator](): HeadersIterator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'Headers';
  }
}
