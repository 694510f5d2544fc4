import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { BPE_BUDGET_CHARS, clearTokenizerMemo, EXACT_CHARS, loadEncoder, MAX_BPE_PIECE, mergeCount, TokenCounter } from '../shared/policy/tokenizer.ts';

/**
 * The count_tokens tokenizer (issue #15): js-tiktoken's byte-pair merge is quadratic in a piece's
 * length and a run of one character is one piece, so a 12 KB prompt of 'x' took 26 s of CPU.
 * These tests assert on work counted (what reaches the merge), never on elapsed time.
 */

describe('tokenizer: bounded work, exact for ordinary text', () => {
  it('counts ordinary text exactly as js-tiktoken does', async () => {
    const enc = await loadEncoder();
    const texts = [
      readFileSync('README.md', 'utf8'),
      readFileSync('shared/gateway.ts', 'utf8'),
      readFileSync('docs/limits.md', 'utf8'),
      'Grüße aus München! 日本語のテキストです。 Ελληνικά. emoji 😀👍🏽 Donaudampfschifffahrtsgesellschaftskapitän',
      'hello <|endoftext|> world <|fim_prefix|>',
    ];
    for (const t of texts) assert.equal(new TokenCounter(enc).count(t), enc.encode(t, [], []).length, t.slice(0, 40));
  });

  it('merges exactly as js-tiktoken does (random short pieces)', async () => {
    const enc = await loadEncoder();
    const alphabet = [...'abcdefghijklmnopqrstuvwxyzABC0123456789+/=xxxxéü日😀 '];
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const utf8 = new TextEncoder();
    for (let k = 0; k < 500; k++) {
      let s = '';
      for (let i = 0, n = 1 + Math.floor(rand() * 40); i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
      let mine = 0;
      for (const m of s.matchAll(new RegExp(enc.patStr!, 'ug'))) {
        const b = utf8.encode(m[0]);
        mine += enc.rankMap!.has(b.join(',')) ? 1 : mergeCount(b, enc.rankMap!);
      }
      assert.equal(mine, enc.encode(s, [], []).length, JSON.stringify(s));
    }
  });

  it('never hands the merge a piece longer than MAX_BPE_PIECE, and bounds the total merged', async () => {
    const enc = await loadEncoder();
    clearTokenizerMemo();
    let seed = 3;
    const letter = () => String.fromCharCode(97 + ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 26));
    const random = Array.from({ length: 400_000 }, letter).join('');
    for (const text of ['x'.repeat(12_000), 'x'.repeat(4_000_000), random, ` ${'=-'.repeat(100_000)}`, ' '.repeat(200_000)]) {
      const c = new TokenCounter(enc);
      const n = c.count(text);
      assert.ok(n > 0);
      assert.ok(c.longestMerged <= MAX_BPE_PIECE + 1, `longest merged piece ${c.longestMerged}`);
      assert.ok(c.merged <= BPE_BUDGET_CHARS, `merged ${c.merged} characters`);
    }
  });

  it('a 12 KB run of one character: about what js-tiktoken says (the run is cut, not counted differently)', async () => {
    const enc = await loadEncoder();
    const c = new TokenCounter(enc).count('x'.repeat(12_000));
    assert.equal(c, 1500, 'cl100k_base counts 8 x per token');
  });

  it('4 MB of text: counted (extrapolated past EXACT_CHARS) within the test timeout', { timeout: 20_000 }, async () => {
    const enc = await loadEncoder();
    const readme = readFileSync('README.md', 'utf8');
    const text = readme.repeat(Math.ceil(4_000_000 / readme.length)).slice(0, 4_000_000);
    const c = new TokenCounter(enc);
    const n = c.count(text);
    const head = new TokenCounter(enc).count(text.slice(0, EXACT_CHARS));
    const expected = (head * text.length) / EXACT_CHARS;
    assert.ok(Math.abs(n - expected) / expected < 0.01, `${n} vs ${expected}`);
  });
});
