/**
 * `(a, b) => a + sep + b`, giving the same string for the same pair: a key built per lookup costs a
 * copy and a hash each time, a kept one neither (at most 10,000 pairs kept per `a`, and 10,000 `a`s).
 */
export function joiner(sep: string): (a: string, b: string) => string {
  const byA = new Map<string, Map<string, string>>();
  return (a, b) => {
    let byB = byA.get(a);
    if (!byB) {
      if (byA.size >= 10_000) byA.clear();
      byA.set(a, (byB = new Map()));
    }
    let s = byB.get(b);
    if (s === undefined) {
      if (byB.size >= 10_000) byB.clear();
      byB.set(b, (s = a + sep + b));
    }
    return s;
  };
}
