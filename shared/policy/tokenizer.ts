/**
 * A BPE token count (cl100k_base, from js-tiktoken) whose work is linear in the text's length.
 *
 * js-tiktoken's `encode` splits the text with the encoding's regex and runs a byte-pair merge on
 * every piece that is not itself a token. That merge is quadratic in the piece's length (each
 * merge rescans the whole piece), and a run of one character is a single piece: `'x'.repeat(4000)`
 * costs seconds, 12 KB tens of seconds, and the process serves nothing else meanwhile. Here the
 * split is done first and:
 *
 * - a piece that is a token counts 1 (the common case for ordinary text);
 * - a piece longer than `MAX_BPE_PIECE` characters is cut into pieces of that size (pieces this
 *   long are runs of one class of character: repeated characters, base64, hex; the cut moves the
 *   count by at most a token per cut);
 * - the merge itself runs on at most `BPE_BUDGET_CHARS` characters per count (results are
 *   memoized, so repeated pieces cost nothing); past that budget the remaining pieces are counted
 *   at the tokens-per-character ratio seen so far.
 *
 * - past `EXACT_CHARS` characters (more than a 200k-token context holds), the rest of the text is
 *   counted at the ratio seen so far, without looking at it.
 *
 * So no piece longer than `MAX_BPE_PIECE` ever reaches the merge, the total merge work per count is
 * bounded, and the rest (the regex split and map lookups) is linear and bounded too: a 4 MB body
 * costs about what 1 MB of text does. For ordinary text the count is the same as
 * `encode(text).length` (words longer than `MAX_BPE_PIECE` may move it by a token).
 */

/** Longest piece (in UTF-16 units) handed to the byte-pair merge. */
export const MAX_BPE_PIECE = 64;
/** Characters per count that may go through the byte-pair merge; past it pieces are estimated. */
export const BPE_BUDGET_CHARS = 64 * 1024;
/** Characters per count split and looked up piece by piece (about 250k tokens); the rest is extrapolated. */
export const EXACT_CHARS = 1024 * 1024;

/** The part of js-tiktoken's Tiktoken this module uses (`rankMap` and `patStr` are its internals). */
export interface Encoder {
  encode(text: string, allowedSpecial?: string[] | 'all', disallowedSpecial?: string[] | 'all'): number[];
  rankMap?: Map<string, number>;
  patStr?: string;
}

let encoderPromise: Promise<Encoder> | undefined;

/** The tokenizer, loaded on first use (its ranks are ~1 MB, so cold starts that never count skip them). */
export function loadEncoder(): Promise<Encoder> {
  encoderPromise ??= Promise.all([import('js-tiktoken/lite'), import('js-tiktoken/ranks/cl100k_base')]).then(([lite, ranks]) => new lite.Tiktoken(ranks.default) as unknown as Encoder);
  return encoderPromise;
}

const memo = new Map<string, number>();
const MEMO_MAX = 50_000;
const utf8 = new TextEncoder();
const regexes = new WeakMap<Encoder, RegExp>();

/** Counts several texts with one merge budget (one request's worth). */
export class TokenCounter {
  /** Characters that went through the merge, the tokens they gave, and the longest piece merged. */
  merged = 0;
  private mergedTokens = 0;
  longestMerged = 0;

  constructor(private readonly enc: Encoder) {}

  /** Characters counted piece by piece so far, and the tokens they gave. */
  private scanned = 0;
  private scannedTokens = 0;

  /**
   * Tokens of `text`, special-token look-alikes counted as ordinary text. Past `EXACT_CHARS`
   * characters per counter, the rest is counted at the tokens-per-character ratio seen so far.
   */
  count(text: string): number {
    if (!text) return 0;
    const room = EXACT_CHARS - this.scanned;
    if (text.length > room) {
      let cut = Math.max(0, room);
      if (cut > 0 && isHighSurrogate(text.charCodeAt(cut - 1))) cut--;
      const head = cut > 0 ? this.count(text.slice(0, cut)) : 0;
      const ratio = this.scanned ? this.scannedTokens / this.scanned : 0.25;
      return head + Math.ceil((text.length - cut) * ratio);
    }
    const n = this.scan(text);
    this.scanned += text.length;
    this.scannedTokens += n;
    return n;
  }

  private scan(text: string): number {
    const enc = this.enc;
    if (!enc.rankMap || !enc.patStr) return this.chunks(text); // not js-tiktoken's class: no split available
    let re = regexes.get(enc);
    if (!re) regexes.set(enc, (re = new RegExp(enc.patStr, 'ug')));
    re.lastIndex = 0;
    let n = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const piece = m[0];
      if (piece.length === 0) {
        re.lastIndex++;
        continue;
      }
      const known = memo.get(piece);
      if (known !== undefined) {
        n += known;
        continue;
      }
      if (piece.length <= MAX_BPE_PIECE && enc.rankMap.has(utf8.encode(piece).join(','))) {
        remember(piece, 1);
        n++;
        continue;
      }
      n += this.chunks(piece);
    }
    return n;
  }

  /** A piece through the merge in chunks of at most `MAX_BPE_PIECE` characters. */
  private chunks(piece: string): number {
    let n = 0;
    for (let i = 0; i < piece.length; ) {
      let end = Math.min(piece.length, i + MAX_BPE_PIECE);
      // never cut a surrogate pair
      if (end < piece.length && isHighSurrogate(piece.charCodeAt(end - 1))) end++;
      n += this.bpe(piece.slice(i, end));
      i = end;
    }
    return n;
  }

  /** The merge for one bounded piece, memoized, within the budget. */
  private bpe(piece: string): number {
    const known = memo.get(piece);
    if (known !== undefined) return known;
    if (this.merged + piece.length > BPE_BUDGET_CHARS) {
      // Budget spent: estimate at the ratio seen so far (about 1 token per 2.5 characters for the
      // character soup that gets here), never less than one token per piece.
      const ratio = this.merged ? this.mergedTokens / this.merged : 0.4;
      return Math.max(1, Math.ceil(piece.length * ratio));
    }
    this.merged += piece.length;
    this.longestMerged = Math.max(this.longestMerged, piece.length);
    const t = this.enc.rankMap ? mergeCount(utf8.encode(piece), this.enc.rankMap) : this.enc.encode(piece, [], []).length;
    this.mergedTokens += t;
    remember(piece, t);
    return t;
  }
}

/**
 * The number of tokens byte-pair merging gives `bytes`: the same merges as js-tiktoken's (always
 * the lowest-ranked adjacent pair, the leftmost on ties), but each step looks up only the two
 * pairs the last merge changed, as tiktoken's own Rust implementation does.
 */
export function mergeCount(bytes: Uint8Array, ranks: Map<string, number>): number {
  const n = bytes.length;
  if (n <= 1) return n;
  const key = (a: number, b: number) => {
    let k = String(bytes[a]);
    for (let i = a + 1; i < b; i++) k += ',' + bytes[i];
    return k;
  };
  // starts[i]: where part i begins (last entry: the end); pair[i]: rank of part i joined with part i + 1.
  const starts: number[] = [];
  for (let i = 0; i <= n; i++) starts.push(i);
  const rankOf = (i: number) => (i + 2 < starts.length ? (ranks.get(key(starts[i]!, starts[i + 2]!)) ?? Infinity) : Infinity);
  const pair: number[] = [];
  for (let i = 0; i < n; i++) pair.push(rankOf(i));
  while (pair.length > 1) {
    let min = Infinity;
    let at = -1;
    for (let i = 0; i < pair.length - 1; i++) {
      if (pair[i]! < min) {
        min = pair[i]!;
        at = i;
      }
    }
    if (at < 0) break;
    starts.splice(at + 1, 1);
    pair.splice(at + 1, 1);
    pair[at] = rankOf(at);
    if (at > 0) pair[at - 1] = rankOf(at - 1);
  }
  return pair.length;
}

function remember(piece: string, tokens: number): void {
  if (piece.length > MAX_BPE_PIECE) return;
  if (memo.size >= MEMO_MAX) memo.clear();
  memo.set(piece, tokens);
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/** Forget memoized pieces (tests that count what reaches the merge). */
export function clearTokenizerMemo(): void {
  memo.clear();
}
