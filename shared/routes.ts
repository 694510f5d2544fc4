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

interface Compiled<C> {
  route: Route<C>;
  pattern: RegExp;
  names: string[];
}

const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export class RouteTable<C> {
  private readonly routes: Compiled<C>[];
  /**
   * Literal paths (no parameters) whose first matching entry is a literal one: the entries for
   * that path, in order, so the common routes are a map lookup instead of a scan of the patterns.
   */
  private readonly literal = new Map<string, Route<C>[]>();

  constructor(routes: Route<C>[]) {
    this.routes = routes.map((route) => {
      const names: string[] = [];
      const source = route.path
        .split('/')
        .map((seg) => {
          const p = /^\{(\w+)(\+?)\}$/.exec(seg);
          if (!p) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
          names.push(p[1]!);
          return p[2] ? '(.+)' : '([^/]+)';
        })
        .join('/');
      return { route, pattern: new RegExp(`^${source}$`), names };
    });
    for (const { route, names } of this.routes) {
      if (names.length > 0 || this.literal.has(route.path)) continue;
      const all = this.routes.filter((c) => c.pattern.test(route.path));
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
    for (const { route, pattern, names } of this.routes) {
      const m = pattern.exec(path);
      if (!m) continue;
      if (route.methods === '*' || route.methods.includes(method)) {
        return { route, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)])) };
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
