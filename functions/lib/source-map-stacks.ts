import type { SourceMap } from 'node:module';

/**
 * Stack traces through the bundle's source maps, without `--enable-source-maps`: that flag makes
 * Node read and parse every file's map while loading it, at every cold start (about a third of
 * the import time of the bundle). Here nothing is read until a stack is formatted: the first
 * error whose `.stack` is used reads the maps of the files in its frames (`<file>.map`, written
 * beside each output file by infra/bundling.ts) and keeps them; frames in other files are left as
 * V8 prints them. Injected by the bundler at the top of every Lambda bundle (not used elsewhere).
 * The built-ins it needs are taken when a stack is formatted, not imported: a cold start makes no
 * ES module facade for node:fs, node:module, node:path or node:url on its account.
 */

const fileURLToPath = (url: string) => process.getBuiltinModule('node:url').fileURLToPath(url);

const maps = new Map<string, { map: SourceMap; dir: string } | null>();

function mapFor(file: string): { map: SourceMap; dir: string } | null {
  let map = maps.get(file);
  if (map !== undefined) return map;
  map = null;
  try {
    if (file.startsWith('file:') || file.startsWith('/')) {
      const path = file.startsWith('file:') ? fileURLToPath(file) : file;
      // Sources are named relative to the map: printed as absolute paths, as Node does.
      if (/\.m?js$/.test(path)) map = { map: new (process.getBuiltinModule('node:module').SourceMap)(JSON.parse(process.getBuiltinModule('node:fs').readFileSync(`${path}.map`, 'utf8'))), dir: process.getBuiltinModule('node:path').dirname(path) };
    }
  } catch {
    map = null; // no map beside it (not one of ours) or unreadable: print the frame as it is
  }
  maps.set(file, map);
  return map;
}

type Site = NodeJS.CallSite & { getEnclosingLineNumber?(): number | null; getEnclosingColumnNumber?(): number | null };

function frame(site: Site, next: Site | undefined): string {
  const file = site.getFileName() ?? site.getScriptNameOrSourceURL?.();
  const line = site.getLineNumber();
  const column = site.getColumnNumber();
  const found = file && line && column ? mapFor(file) : null;
  if (!found) return site.toString();
  const { map, dir } = found;
  const entry = map.findEntry(line! - 1, column! - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number };
  if (!entry?.originalSource) return site.toString();
  const source = entry.originalSource.startsWith('file:') ? fileURLToPath(entry.originalSource) : process.getBuiltinModule('node:path').resolve(dir, entry.originalSource);
  const where = `${source}:${entry.originalLine! + 1}:${entry.originalColumn! + 1}`;
  // The function's own name: the map's name at the function's start, else at the caller's call site.
  let name: string | undefined;
  const el = site.getEnclosingLineNumber?.();
  const ec = site.getEnclosingColumnNumber?.();
  if (el && ec) name = (map.findEntry(el - 1, ec - 1) as { name?: string }).name;
  if (!name && next && next.getFileName() === file && next.getLineNumber() && next.getColumnNumber()) {
    name = (map.findEntry(next.getLineNumber()! - 1, next.getColumnNumber()! - 1) as { name?: string }).name;
  }
  name ??= site.getFunctionName() ?? undefined;
  const prefix = `${site.isAsync?.() ? 'async ' : ''}${site.isConstructor() ? 'new ' : ''}`;
  return name ? `${prefix}${name} (${where})` : `${prefix}${where}`;
}

function header(error: unknown): string {
  try {
    return Error.prototype.toString.call(error);
  } catch {
    return 'Error';
  }
}

/** Installed once per process (every chunk of a bundle may carry this module; the first wins). */
const INSTALLED = Symbol.for('llm-gateway.source-map-stacks');
const g = globalThis as Record<symbol, unknown>;
if (!g[INSTALLED] && !process.execArgv.includes('--enable-source-maps') && !/--enable-source-maps/.test(process.env.NODE_OPTIONS ?? '')) {
  g[INSTALLED] = true;
  Error.prepareStackTrace = (error, sites) => {
    try {
      return header(error) + sites.map((s, i) => `\n    at ${frame(s as Site, sites[i + 1] as Site | undefined)}`).join('');
    } catch {
      return header(error) + sites.map((s) => `\n    at ${s.toString()}`).join('');
    }
  };
}
