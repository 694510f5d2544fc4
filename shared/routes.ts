/**
 * The gateway's route table: (methods, path pattern, handler) entries, matched in order. A path
 * pattern is literal segments and parameters: `{name}` is one segment, `{name+}` one or more
 * (`/v1/models/{id+}` takes `openai/gpt-4o`); parameters reach the handler percent-decoded.
 * Methods `'*'`: the handler answers every method itself (the admin API, MCP). A path that some
 * entry matches with other methods is a 405 with those methods as `Allow`; no entry, a 404.
 */
export interface Route<C> {
  methods: readonly string[] | '*';
  path: string;
  /**
   * Open to callers without a gateway key (liveness, Bedrock's control-plane listing); the admin
   * API and MCP check their callers themselves. Default: the key check runs first.
   */
  open?: boolean;
  handler: (ctx: C) => Promise<Response> | Response;
}

export type RouteMatch<C> = { route: Route<C>; params: Record<string, string> } | { route?: undefined; allow?: string };

/** One segment of a path pattern: a literal, `{name}` (one segment) or `{name+}` (one or more). */
type Segment = { literal: string } | { name: string; rest: boolean };

interface Compiled<C> {
  route: Route<C>;
  segments: Segment[];
  /** Where its `{name+}` segment is (at most one), else -1. */
  rest: number;
  names: string[];
}

const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** The pattern's parameters taken from a path split at `/`, undecoded; undefined if it does not match. */
function matchSegments(c: { segments: Segment[]; rest: number }, parts: string[]): string[] | undefined {
  const { segments, rest } = c;
  if (rest < 0 ? parts.length !== segments.length : parts.length < segments.length) return undefined;
  const values: string[] = [];
  // The segments after `{name+}` take the path's last parts; it takes what is between (as a greedy `(.+)` would).
  const tail = parts.length - segments.length;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (i === rest) {
      const value = parts.slice(i, i + tail + 1).join('/');
      if (value === '') return undefined;
      values.push(value);
      continue;
    }
    const part = parts[rest >= 0 && i > rest ? i + tail : i]!;
    if ('literal' in seg) {
      if (part !== seg.literal) return undefined;
    } else if (part === '') return undefined;
    else values.push(part);
  }
  return values;
}

export class RouteTable<C> {
  private readonly routes: Compiled<C>[];
  /**
   * Literal paths (no parameters) whose first matching entry is a literal one: the entries for
   * that path, in order, so the common routes are a map lookup instead of a scan of the patterns.
   */
  private readonly literal = new Map<string, Route<C>[]>();

  constructor(routes: Route<C>[]) {
    // Segments compared as strings: no regular expression to compile at cold start or to run per request.
    this.routes = routes.map((route) => {
      const names: string[] = [];
      const segments = route.path.split('/').map((seg): Segment => {
        if (!(seg.startsWith('{') && seg.endsWith('}'))) return { literal: seg };
        const rest = seg.endsWith('+}');
        const name = seg.slice(1, rest ? -2 : -1);
        names.push(name);
        return { name, rest };
      });
      const rests = segments.flatMap((seg, i) => ('rest' in seg && seg.rest ? [i] : []));
      if (rests.length > 1) throw new Error(`Route ${route.path}: at most one {name+} parameter`);
      return { route, segments, rest: rests[0] ?? -1, names };
    });
    for (const { route, names } of this.routes) {
      if (names.length > 0 || this.literal.has(route.path)) continue;
      const parts = route.path.split('/');
      const all = this.routes.filter((c) => matchSegments(c, parts));
      if (all.every((c) => c.names.length === 0)) this.literal.set(route.path, all.map((c) => c.route));
    }
  }

  /** The entry for a request, with its parameters; else the methods the path takes (405), if any. */
  match(method: string, path: string): RouteMatch<C> {
    const exact = this.literal.get(path);
    if (exact) {
      for (const route of exact) if (route.methods === '*' || route.methods.includes(method)) return { route, params: NO_PARAMS };
    }
    let allow: string[] | undefined;
    const parts = path.split('/');
    for (const c of this.routes) {
      const values = matchSegments(c, parts);
      if (!values) continue;
      const { route, names } = c;
      if (route.methods === '*' || route.methods.includes(method)) {
        return { route, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(values[i]!)])) };
      }
      allow = [...new Set([...(allow ?? []), ...route.methods])];
    }
    return { allow: allow?.join(', ') };
  }

  /** The methods a path takes (for `Allow` on a 405 the shell already decided), or undefined. */
  allowed(path: string): string | undefined {
    const m = this.match('', path);
    return m.route ? undefined : m.allow;
  }
}
