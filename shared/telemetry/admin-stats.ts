import { adminAuthorized } from '../admin/api.ts';
import { GatewayError, jsonResponse } from '../http/errors.ts';
import { readLocalRecords, statsWindow, summarize } from './stats.ts';
import { webResponse } from '../http/bytes.ts';

/**
 * `GET /admin/stats` (admin only: `Authorization: Bearer $GATEWAY_ADMIN_TOKEN`, or the IAM caller
 * in AWS) summarises the local request logs; `GET /admin/dashboard` is a self-contained HTML page
 * (no external scripts) that asks for the admin token and charts /admin/stats. Both need the local
 * NDJSON logs: where there are none (Lambda), /admin/stats answers 404 and points at Athena and the
 * CloudWatch dashboard. The page also shows each team's spend against its budget for today and this
 * month, from the usage report (`GET /admin/report`, shared/admin/api.ts).
 */

// In a module of their own, so the gateway routes to /admin/stats without loading this one.

export interface StatsRouteContext {
  adminToken?: string;
  /** Where the admin token comes from, for the 401's hint (default: the value of GATEWAY_ADMIN_TOKEN). */
  adminTokenSource?: string;
  adminPrincipal?: string;
  /** The local log folder (where the file sink writes), or undefined when records are not kept locally. */
  logDir?: string;
  /** Make buffered records visible before reading (the file sink's flush). */
  flush?: () => Promise<void>;
  now?: () => number;
}

export async function handleStatsRoute(request: Request, path: string, ctx: StatsRouteContext): Promise<Response> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    throw new GatewayError('invalid_request', `Method ${request.method} is not allowed on ${path}; use GET.`, { status: 405, code: 'method_not_allowed' });
  }
  if (path === '/admin/dashboard') {
    return webResponse(request.method === 'HEAD' ? null : DASHBOARD_HTML, {
      status: 200,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        // Everything is inline; the page may only talk to this origin.
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      },
    });
  }
  if (!adminAuthorized(request, ctx)) {
    throw new GatewayError(
      'authentication',
      ctx.adminToken ? `/admin/stats needs \`Authorization: Bearer <admin token>\` (${ctx.adminTokenSource ?? 'the value of GATEWAY_ADMIN_TOKEN'}).` : '/admin/stats is not enabled here: set GATEWAY_ADMIN_TOKEN.',
      { code: 'admin_unauthorized' },
    );
  }
  if (!ctx.logDir) {
    throw new GatewayError('not_found', 'Request logs are not kept locally here: in AWS, query them with Athena (the gateway workgroup has saved queries) and see the CloudWatch dashboard.', { code: 'stats_unavailable' });
  }
  const url = new URL(request.url);
  const window = statsWindow(url.searchParams, (ctx.now ?? Date.now)());
  if ('error' in window) throw new GatewayError('invalid_request', window.error, { param: window.param, code: 'invalid_value' });
  await ctx.flush?.();
  const records = await readLocalRecords(ctx.logDir, window.from, window.to);
  return jsonResponse(summarize(records, window.from, window.to), 200, { 'cache-control': 'no-store' });
}

/** The dashboard: plain HTML, CSS and inline SVG charts drawn from /admin/stats. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LLM gateway - local dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2430; background: #f7f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin-bottom: 1rem; }
  input, select, button { font: inherit; padding: .3rem .5rem; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .75rem; margin-bottom: 1rem; }
  .card { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .6rem .8rem; }
  .card b { display: block; font-size: 1.25rem; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 1rem; }
  .chart { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .6rem; }
  .chart h2 { font-size: 1rem; margin: 0 0 .3rem; }
  svg { width: 100%; height: auto; }
  .legend span { margin-right: .8rem; }
  .legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .25rem; vertical-align: -1px; }
  table { border-collapse: collapse; width: 100%; background: #fff; margin-top: 1rem; }
  th, td { border: 1px solid #dde1e7; padding: .3rem .5rem; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  #status, #budget-note { color: #a33; }
  h2.section { font-size: 1.05rem; margin: 1.2rem 0 .3rem; }
  .bar { display: inline-block; height: .6rem; background: #059669; vertical-align: middle; margin-right: .3rem; }
  .bar.over { background: #dc2626; }
</style>
</head>
<body>
<h1>LLM gateway - local request logs</h1>
<form id="f">
  <label>Admin token <input id="token" type="password" autocomplete="off" placeholder="GATEWAY_ADMIN_TOKEN"></label>
  <label>Window <select id="hours"><option value="6">6 h</option><option value="24" selected>24 h</option><option value="168">7 days</option><option value="720">30 days</option></select></label>
  <button type="submit">Load</button>
  <span id="status"></span>
</form>
<div class="cards" id="cards"></div>
<div class="charts">
  <div class="chart"><h2>Requests per hour</h2><div id="c-req"></div></div>
  <div class="chart"><h2>Latency (ms)</h2><div id="c-lat"></div></div>
  <div class="chart"><h2>Tokens per hour</h2><div id="c-tok"></div></div>
  <div class="chart"><h2>Spend per hour (USD)</h2><div id="c-cost"></div></div>
</div>
<table id="models"></table>
<h2 class="section">Spend per team against budget (UTC day and month, from the usage report)</h2>
<span id="budget-note"></span>
<table id="budgets"></table>
<script>
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var tokenInput = $('token');
  tokenInput.value = sessionStorage.getItem('gatewayAdminToken') || '';
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; }); }
  function fmt(n, d) { return n === null || n === undefined ? '-' : Number(n).toLocaleString(undefined, { maximumFractionDigits: d === undefined ? 0 : d }); }
  // One chart: x = hours, series = [{ name, color, values, bars? }].
  function chart(el, hours, series, digits) {
    var W = 440, H = 200, L = 48, B = 22, T = 8, R = 8;
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v > max) max = v; }); });
    if (max <= 0) max = 1;
    var n = hours.length || 1, step = (W - L - R) / n;
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    var svg = '<svg viewBox="0 0 ' + W + ' ' + H + '" role="img">';
    for (var g = 0; g <= 4; g++) {
      var gv = max * g / 4, gy = y(gv);
      svg += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + gy + '" y2="' + gy + '" stroke="#e6e9ee"/>';
      svg += '<text x="' + (L - 4) + '" y="' + (gy + 4) + '" font-size="10" text-anchor="end" fill="#667">' + esc(fmt(gv, digits)) + '</text>';
    }
    var label = Math.max(1, Math.ceil(n / 8));
    hours.forEach(function (h, i) {
      if (i % label === 0) svg += '<text x="' + (L + i * step + step / 2) + '" y="' + (H - 6) + '" font-size="10" text-anchor="middle" fill="#667">' + esc(h.slice(11, 13)) + 'h</text>';
    });
    var bars = series.filter(function (s) { return s.bars; });
    bars.forEach(function (s, k) {
      var bw = Math.max(1, step * 0.8 / bars.length);
      s.values.forEach(function (v, i) {
        var x = L + i * step + step * 0.1 + k * bw;
        svg += '<rect x="' + x + '" y="' + y(v) + '" width="' + bw + '" height="' + Math.max(0, H - B - y(v)) + '" fill="' + s.color + '"><title>' + esc(hours[i] + ' ' + s.name + ': ' + fmt(v, digits)) + '</title></rect>';
      });
    });
    series.filter(function (s) { return !s.bars; }).forEach(function (s) {
      var pts = [];
      s.values.forEach(function (v, i) { if (v !== null) pts.push((L + i * step + step / 2) + ',' + y(v)); });
      if (pts.length) svg += '<polyline fill="none" stroke="' + s.color + '" stroke-width="2" points="' + pts.join(' ') + '"/>';
    });
    svg += '</svg><div class="legend">' + series.map(function (s) { return '<span><i style="background:' + s.color + '"></i>' + esc(s.name) + '</span>'; }).join('') + '</div>';
    el.innerHTML = svg;
  }
  function render(s) {
    var t = s.totals;
    var cards = [
      ['Requests', fmt(t.requests)], ['4xx', fmt(t.errors['4xx'])], ['5xx', fmt(t.errors['5xx'])],
      ['Stream errors', fmt(t.errors.streamError)], ['p50 / p99 latency', fmt(t.latencyMs.p50) + ' / ' + fmt(t.latencyMs.p99) + ' ms'],
      ['p50 TTFB', fmt(t.ttfbMs.p50) + ' ms'], ['Tokens in / out', fmt(t.inputTokens) + ' / ' + fmt(t.outputTokens)],
      ['Spend', '$' + fmt(t.costUsd, 4)], ['Cache hits', fmt(t.cacheHits)], ['Fallbacks', fmt(t.fallbacks)], ['Rate-limited', fmt(t.rateLimited)]
    ];
    $('cards').innerHTML = cards.map(function (c) { return '<div class="card">' + esc(c[0]) + '<b>' + esc(c[1]) + '</b></div>'; }).join('');
    var hrs = s.byHour.map(function (h) { return h.hour; });
    var col = function (f) { return s.byHour.map(f); };
    chart($('c-req'), hrs, [
      { name: 'ok', color: '#3b82f6', bars: true, values: col(function (h) { return h.ok; }) },
      { name: '4xx', color: '#f59e0b', bars: true, values: col(function (h) { return h.errors['4xx']; }) },
      { name: '5xx + stream errors', color: '#dc2626', bars: true, values: col(function (h) { return h.errors['5xx'] + h.errors.streamError; }) }
    ]);
    chart($('c-lat'), hrs, [
      { name: 'p50', color: '#3b82f6', values: col(function (h) { return h.latencyMs.p50; }) },
      { name: 'p95', color: '#f59e0b', values: col(function (h) { return h.latencyMs.p95; }) },
      { name: 'p99', color: '#dc2626', values: col(function (h) { return h.latencyMs.p99; }) },
      { name: 'TTFB p50', color: '#10b981', values: col(function (h) { return h.ttfbMs.p50; }) }
    ]);
    chart($('c-tok'), hrs, [
      { name: 'input', color: '#6366f1', bars: true, values: col(function (h) { return h.inputTokens; }) },
      { name: 'output', color: '#14b8a6', bars: true, values: col(function (h) { return h.outputTokens; }) }
    ]);
    chart($('c-cost'), hrs, [{ name: 'USD', color: '#059669', bars: true, values: col(function (h) { return h.costUsd; }) }], 4);
    var head = '<tr><th>Model</th><th>Requests</th><th>4xx</th><th>5xx</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>TTFB p50</th><th>Tokens in</th><th>Tokens out</th><th>USD</th></tr>';
    $('models').innerHTML = head + s.byModel.map(function (m) {
      return '<tr><td>' + esc(m.model) + '</td><td>' + [m.requests, m.errors['4xx'], m.errors['5xx'], m.latencyMs.p50, m.latencyMs.p95, m.latencyMs.p99, m.ttfbMs.p50, m.inputTokens, m.outputTokens].map(function (v) { return esc(fmt(v)); }).join('</td><td>') + '</td><td>' + esc(fmt(m.costUsd, 4)) + '</td></tr>';
    }).join('');
  }
  // Spend per team (or key without a team) against its USD budget, today and this month.
  function used(spent, budget) {
    if (!budget) return '<td>' + esc(fmt(spent, 4)) + '</td><td>-</td><td></td>';
    var pct = spent / budget * 100;
    return '<td>' + esc(fmt(spent, 4)) + '</td><td>' + esc(fmt(budget, 2)) + '</td><td><span class="bar' + (pct >= 100 ? ' over' : '') + '" style="width:' + Math.min(100, pct).toFixed(1) + 'px"></span>' + esc(fmt(pct, 1)) + '%</td>';
  }
  function renderBudgets(day, month) {
    var teams = {};
    var add = function (r, which) {
      var name = r.team === null ? 'key ' + r.keyId : r.team;
      teams[name] = teams[name] || { day: { costUsd: 0, budgetUsd: null }, month: { costUsd: 0, budgetUsd: null } };
      teams[name][which] = r;
    };
    day.byTeam.forEach(function (r) { add(r, 'day'); });
    month.byTeam.forEach(function (r) { add(r, 'month'); });
    var head = '<tr><th>Team</th><th>Today USD</th><th>Day budget</th><th>Used</th><th>Month USD</th><th>Month budget</th><th>Used</th></tr>';
    $('budgets').innerHTML = head + Object.keys(teams).sort().map(function (name) {
      var t = teams[name];
      return '<tr><td>' + esc(name) + '</td>' + used(t.day.costUsd, t.day.budgetUsd) + used(t.month.costUsd, t.month.budgetUsd) + '</tr>';
    }).join('');
  }
  function json(r) {
    return r.json().then(function (j) { if (!r.ok) throw new Error((j.error && j.error.message) || r.status); return j; });
  }
  function loadBudgets(headers) {
    var today = new Date().toISOString();
    Promise.all([fetch('report?day=' + today.slice(0, 10), { headers: headers }).then(json), fetch('report?period=' + today.slice(0, 7), { headers: headers }).then(json)])
      .then(function (r) { $('budget-note').textContent = ''; renderBudgets(r[0], r[1]); })
      .catch(function (e) { $('budget-note').textContent = String(e.message || e); });
  }
  function load() {
    var token = tokenInput.value.trim();
    sessionStorage.setItem('gatewayAdminToken', token);
    $('status').textContent = 'loading...';
    var headers = token ? { authorization: 'Bearer ' + token } : {};
    fetch('stats?hours=' + encodeURIComponent($('hours').value), { headers: headers })
      .then(json)
      .then(function (j) { $('status').textContent = ''; render(j); })
      .catch(function (e) { $('status').textContent = String(e.message || e); });
    loadBudgets(headers);
  }
  $('f').addEventListener('submit', function (e) { e.preventDefault(); load(); });
  if (tokenInput.value) load();
})();
</script>
</body>
</html>
`;
