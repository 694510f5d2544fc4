import type { DetectorName } from './schema.ts';

/**
 * Built-in detectors. Each is a regular expression that finds candidates plus, where the format
 * has one, a checksum that drops look-alikes: card numbers must pass the Luhn check, IBANs the
 * ISO 13616 mod-97 check. All are global, so `matchAll` walks every occurrence.
 */

export interface Detector {
  name: DetectorName;
  regex: RegExp;
  /** Extra check on a candidate; absent: every regex match counts. */
  valid?: (match: string) => boolean;
}

/** Luhn (mod 10) over the digits of `s`. */
export function luhnValid(s: string): boolean {
  const digits = s.replace(/\D/g, '');
  if (digits.length < 12 || digits.length > 19) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** IBAN check: move the first four characters to the end, letters to numbers (A=10), mod 97 == 1. */
export function ibanValid(s: string): boolean {
  const iban = s.replace(/[\s-]/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const moved = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (const ch of moved) {
    const v = ch >= 'A' ? ch.charCodeAt(0) - 55 : ch.charCodeAt(0) - 48;
    rem = v >= 10 ? (rem * 100 + v) % 97 : (rem * 10 + v) % 97;
  }
  return rem === 1;
}

function digitCount(s: string): number {
  let n = 0;
  for (const ch of s) if (ch >= '0' && ch <= '9') n++;
  return n;
}

export const DETECTOR_TABLE: Record<DetectorName, Detector> = {
  email: {
    name: 'email',
    regex: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g,
  },
  // An international number (+ and 8-15 digits, separators allowed) or a grouped national one
  // such as (555) 123-4567 / 555-123-4567 / 030 1234 5678: bare digit runs are not phones.
  phone: {
    name: 'phone',
    regex: /(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}|\(\d{2,4}\)[\s.-]?\d{3,4}[\s.-]?\d{3,4}|\d{3}[.-]\d{3}[.-]\d{4}|0\d{2,4}[\s/-]\d{3,4}[\s-]?\d{3,5})(?![\w])/g,
    valid: (m) => {
      const n = digitCount(m);
      return n >= 8 && n <= 15;
    },
  },
  card: {
    name: 'card',
    regex: /(?<![\d])\d(?:[ -]?\d){11,18}(?![\d])/g,
    valid: luhnValid,
  },
  iban: {
    name: 'iban',
    regex: /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g,
    valid: ibanValid,
  },
  aws_access_key: {
    name: 'aws_access_key',
    regex: /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}(?![A-Z0-9])/g,
  },
};

export interface Found {
  /** The rule (or detector) that matched. */
  rule: string;
  detector: string;
  start: number;
  end: number;
}

/** Every valid occurrence of `d` in `text`. */
export function findAll(d: { regex: RegExp; valid?: (m: string) => boolean }, text: string, rule: string, detector: string): Found[] {
  const out: Found[] = [];
  d.regex.lastIndex = 0;
  for (const m of text.matchAll(d.regex)) {
    if (m[0].length === 0) continue;
    if (d.valid && !d.valid(m[0])) continue;
    out.push({ rule, detector, start: m.index!, end: m.index! + m[0].length });
  }
  return out;
}
