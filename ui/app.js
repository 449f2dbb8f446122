// The HourglassDB web UI: a table browser, a SQL editor, a result grid
// that pages, a chart that zooms, and the server's state. It talks to the
// same HTTP API as every client (POST /query, GET /api/catalog, /metrics,
// /health), with the credentials the login form took.
'use strict';

const PAGE_ROWS = 100;
const HISTORY_KEY = 'hourglass.history';
const HISTORY_MAX = 50;
const AUTH_KEY = 'hourglass.auth';

const $ = (id) => document.getElementById(id);
const ui = {
  database: localStorage.getItem('hourglass.database') || 'default',
  query: '',          // the statement as written (what a zoom rewrites)
  shown: '',          // the statement whose rows are shown (a zoom's)
  page: 0,
  paged: true,        // pages come from the server (LIMIT/OFFSET); else all rows are here
  rows: [],
  allRows: null,      // the whole result, when the server could not page it
  columns: [],
  chart: null,
  view: 'grid',
  serverTimer: null,
  metricsBefore: null,
};

// --- the API ---------------------------------------------------------------

class Unauthorized extends Error {}

/** A statement the server refused to plan (400): another form may run. */
class Refused extends Error {}

/** The headers of every API request: the credentials, and the mark that
 * keeps the browser's own login dialog away (the server then sends no
 * WWW-Authenticate). */
function authHeader() {
  const stored = sessionStorage.getItem(AUTH_KEY);
  const headers = { 'X-Hourglass-Client': 'ui' };
  if (stored) headers.Authorization = 'Basic ' + stored;
  return headers;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, authHeader());
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    showLogin();
    throw new Unauthorized('log in to continue');
  }
  return response;
}

/** Runs `query` on the current database; the JSON rows, or an Error with the server's message. */
async function runSql(query, format = 'json') {
  const path = `/query?db=${encodeURIComponent(ui.database)}&format=${format}`;
  const response = await api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON */ }
    throw response.status === 400 ? new Refused(message) : new Error(message);
  }
  if (format !== 'json') return response.blob();
  const body = await response.json();
  return body.results || [];
}

// --- login -----------------------------------------------------------------

function showLogin() {
  $('login').hidden = false;
  $('login-user').focus();
}

async function login(event) {
  event.preventDefault();
  const user = $('login-user').value;
  const password = $('login-password').value;
  const encoded = btoa(unescape(encodeURIComponent(`${user}:${password}`)));
  sessionStorage.setItem(AUTH_KEY, encoded);
  let response;
  try {
    response = await fetch('/api/catalog', { headers: authHeader() });
  } catch (e) {
    sessionStorage.removeItem(AUTH_KEY);
    $('login-error').textContent = `The server cannot be reached: ${e.message}`;
    return;
  }
  if (!response.ok) {
    sessionStorage.removeItem(AUTH_KEY);
    const reason = await response.json().then((b) => b.error, () => '');
    $('login-error').textContent = response.status === 401
      ? 'The server refused these credentials.'
      : `The server answered ${response.status}${reason ? ': ' + reason : ''}`;
    return;
  }
  $('login-error').textContent = '';
  $('login').hidden = true;
  $('who').textContent = user ? `as ${user}` : '';
  $('logout').hidden = false;
  await loadCatalog();
}

/** Forgets the credentials, and the queries and draft this browser kept. */
function logout() {
  sessionStorage.removeItem(AUTH_KEY);
  localStorage.removeItem(HISTORY_KEY);
  localStorage.removeItem('hourglass.draft');
  location.reload();
}

// --- the table browser -----------------------------------------------------

let catalog = [];

async function loadCatalog() {
  let response;
  try {
    response = await api('/api/catalog');
  } catch (e) {
    if (!(e instanceof Unauthorized)) setStatus(e.message, true);
    return;
  }
  if (!response.ok) {
    setStatus(`reading the catalog: ${(await response.text()) || response.status}`, true);
    return;
  }
  catalog = (await response.json()).databases || [];
  const select = $('database');
  select.innerHTML = '';
  for (const db of catalog) select.add(new Option(db.name, db.name));
  if (!catalog.some((db) => db.name === ui.database) && catalog.length) ui.database = catalog[0].name;
  select.value = ui.database;
  renderTables();
}

function renderTables() {
  const list = $('tables');
  list.innerHTML = '';
  $('table-detail').innerHTML = '';
  const db = catalog.find((d) => d.name === ui.database);
  if (!db) return;
  const entries = db.tables.map((t) => ({ name: t.name, kind: 'measurement', table: t }))
    .concat((db.relations || []).map((r) => ({ name: r.name, kind: r.kind, table: null })));
  if (!entries.length) {
    list.innerHTML = '<li class="empty">No tables yet: write some line protocol.</li>';
    return;
  }
  for (const entry of entries) {
    const item = document.createElement('li');
    item.dataset.table = entry.name;
    const name = document.createElement('span');
    name.textContent = entry.name;
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = entry.kind === 'measurement' ? formatCount(entry.table.rows) : entry.kind;
    item.append(name, kind);
    item.addEventListener('click', () => selectTable(entry, item));
    list.append(item);
  }
}

function selectTable(entry, item) {
  for (const li of $('tables').children) li.classList.toggle('selected', li === item);
  const detail = $('table-detail');
  detail.innerHTML = '';
  const title = document.createElement('strong');
  title.textContent = entry.name;
  detail.append(title);
  // Relations outside `public` are listed as schema.name.
  const quoted = quoteIdent(entry.name, !entry.table);
  if (entry.table) {
    const t = entry.table;
    const stats = document.createElement('div');
    stats.className = 'stats';
    const range = t.min_time ? `${t.min_time} to ${t.max_time}` : 'no files yet';
    stats.textContent = `${formatCount(t.rows)} rows in files, ${t.files} files in ${t.partitions} hour partitions, ` +
      `${formatBytes(t.bytes)}; ${range}`;
    detail.append(stats);
    const columns = document.createElement('table');
    for (const c of t.columns) {
      const row = columns.insertRow();
      row.insertCell().textContent = c.name;
      const kind = row.insertCell();
      kind.textContent = c.kind;
      kind.className = c.kind;
      row.insertCell().textContent = c.type;
    }
    detail.append(columns);
  }
  const use = document.createElement('button');
  use.className = 'link';
  use.textContent = 'Query it';
  use.addEventListener('click', () => {
    const timed = entry.table && entry.table.columns.some((c) => c.name === 'time');
    editor.setValue(timed
      ? `SELECT *\nFROM ${quoted}\nWHERE time > now() - INTERVAL '1 hour'\nORDER BY time DESC`
      : `SELECT * FROM ${quoted}`);
    editor.focus();
  });
  detail.append(use);
}

/** A name as SQL writes it, every part quoted (`schema.view` is two). */
function quoteIdent(name, qualified = false) {
  const parts = qualified ? name.split('.') : [name];
  return parts.map((part) => `"${part.replace(/"/g, '""')}"`).join('.');
}

// --- running queries -------------------------------------------------------

const editor = CodeMirror($('editor'), {
  mode: 'text/x-pgsql',
  lineNumbers: true,
  lineWrapping: true,
  indentWithTabs: false,
  value: localStorage.getItem('hourglass.draft') || 'SHOW TABLES',
  extraKeys: { 'Ctrl-Enter': () => run(), 'Cmd-Enter': () => run() },
});
editor.on('change', () => localStorage.setItem('hourglass.draft', editor.getValue()));

function setStatus(text, isError = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('error', isError);
}

/** Whether a statement can be wrapped as a subquery to page it on the server. */
function pageable(statement) {
  return /^\s*(select|with|values)\b/i.test(statement);
}

function withoutSemicolon(statement) {
  return statement.trim().replace(/;+\s*$/, '');
}

async function run(statement) {
  ui.query = withoutSemicolon(statement === undefined ? editor.getValue() : statement);
  if (!ui.query) return;
  remember(ui.query);
  ui.zoomed = false;
  $('zoom-out').disabled = true;
  await show(ui.query, 0);
}

/** Runs `statement` for page `page` and shows it. */
async function show(statement, page) {
  ui.shown = statement;
  ui.page = page;
  setStatus('running...');
  $('run').disabled = true;
  const started = performance.now();
  try {
    if (pageable(statement)) {
      // One row more than a page says whether there is a next one. Added
      // to the statement itself, where its ORDER BY holds (a subquery's
      // order is not kept), unless it has a LIMIT of its own.
      const window = `LIMIT ${PAGE_ROWS + 1} OFFSET ${page * PAGE_ROWS}`;
      const paged = /\blimit\s+\d+(\s+offset\s+\d+)?\s*$/i.test(statement)
        ? `SELECT * FROM (\n${statement}\n) AS _page ${window}`
        : `${statement}\n${window}`;
      try {
        ui.rows = await runSql(paged);
        ui.paged = true;
        ui.allRows = null;
      } catch (e) {
        // Only a statement that cannot take the LIMIT (400) is run whole,
        // paged here; a busy server or a timeout is an answer of its own.
        if (!(e instanceof Refused)) throw e;
        ui.allRows = await runSql(statement);
        ui.paged = false;
        ui.rows = ui.allRows.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS + 1);
      }
    } else {
      ui.allRows = await runSql(statement);
      ui.paged = false;
      ui.rows = ui.allRows.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS + 1);
      if (/^\s*(create|drop|alter|insert|delete)\b/i.test(statement)) loadCatalog();
    }
    const took = performance.now() - started;
    const more = ui.rows.length > PAGE_ROWS;
    const shown = ui.rows.slice(0, PAGE_ROWS);
    ui.columns = columnsOf(shown);
    const total = ui.allRows ? `${formatCount(ui.allRows.length)} rows` :
      `rows ${formatCount(page * PAGE_ROWS + Math.min(1, shown.length))}-${formatCount(page * PAGE_ROWS + shown.length)}${more ? ' of more' : ''}`;
    setStatus(`${total} in ${formatMs(took)}`);
    renderGrid(shown, more);
    if (ui.view === 'chart') renderChart();
    $('export-csv').disabled = false;
    $('export-parquet').disabled = false;
  } catch (e) {
    if (!(e instanceof Unauthorized)) setStatus(e.message, true);
    renderGrid([], false);
  } finally {
    $('run').disabled = false;
  }
}

function columnsOf(rows) {
  const seen = [];
  for (const row of rows.slice(0, 50)) {
    for (const key of Object.keys(row)) if (!seen.includes(key)) seen.push(key);
  }
  return seen;
}

function renderGrid(rows, more) {
  const grid = $('grid');
  grid.innerHTML = '';
  $('prev-page').disabled = ui.page === 0;
  $('next-page').disabled = !more;
  $('page-info').textContent = rows.length ? `page ${ui.page + 1}` : '';
  if (!rows.length) return;
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  for (const column of ui.columns) {
    const th = document.createElement('th');
    th.textContent = column;
    head.append(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const column of ui.columns) {
      const td = tr.insertCell();
      const value = row[column];
      if (value === null || value === undefined) {
        td.textContent = 'NULL';
        td.className = 'null';
      } else if (typeof value === 'number') {
        td.textContent = String(value);
        td.className = 'num';
      } else {
        td.textContent = typeof value === 'object' ? JSON.stringify(value) : String(value);
      }
    }
  }
  grid.append(table);
}

// --- history ---------------------------------------------------------------

function history() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
  } catch (_) {
    return [];
  }
}

function remember(statement) {
  const kept = [statement].concat(history().filter((q) => q !== statement)).slice(0, HISTORY_MAX);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(kept));
  renderHistory();
}

function renderHistory() {
  const select = $('history');
  select.length = 1;
  for (const statement of history()) {
    const label = statement.replace(/\s+/g, ' ');
    select.add(new Option(label.length > 80 ? label.slice(0, 77) + '...' : label, statement));
  }
}

// --- the chart -------------------------------------------------------------

const TIME_TEXT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Seconds since the epoch of an RFC 3339 time; the fraction cut to
 * milliseconds first, which every browser's Date.parse reads. */
function epochSeconds(text) {
  return Date.parse(String(text).replace(/(\.\d{3})\d+/, '$1')) / 1000;
}

/** At most this many series: more lines than this tell nothing. */
const MAX_SERIES = 50;

/** The rows the chart draws: the whole result when it is here, else the page. */
function chartRows() {
  return ui.allRows || ui.rows.slice(0, PAGE_ROWS);
}

/** The time column: `time` if there is one, else the first column holding RFC 3339 times. */
function timeColumn(rows) {
  if (!rows.length) return null;
  if (ui.columns.includes('time') && TIME_TEXT.test(String(rows[0].time))) return 'time';
  return ui.columns.find((c) => typeof rows[0][c] === 'string' && TIME_TEXT.test(rows[0][c])) || null;
}

function renderChart() {
  const target = $('chart');
  if (ui.chart) {
    ui.chart.destroy();
    ui.chart = null;
  }
  target.innerHTML = '';
  const rows = chartRows();
  const time = timeColumn(rows);
  if (!time) {
    target.textContent = 'The result has no time column to chart.';
    return;
  }
  const values = ui.columns.filter((c) => c !== time && rows.some((r) => typeof r[c] === 'number'));
  // Text columns with few values are the series' tags; free text is not.
  const labels = ui.columns.filter((c) => c !== time && !values.includes(c)
    && rows.every((r) => r[c] === null || typeof r[c] === 'string')
    && new Set(rows.map((r) => r[c])).size <= MAX_SERIES);
  if (!values.length) {
    target.textContent = 'The result has no numeric column to chart.';
    return;
  }
  // One line per value column and combination of the text columns (a series).
  const times = [...new Set(rows.map((r) => epochSeconds(r[time])))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const series = new Map();
  for (const row of rows) {
    const key = labels.map((l) => `${l}=${row[l]}`).join(', ');
    for (const value of values) {
      const name = key ? `${value} {${key}}` : value;
      if (!series.has(name)) series.set(name, new Array(times.length).fill(null));
      series.get(name)[at.get(epochSeconds(row[time]))] = row[value];
    }
  }
  if (series.size > MAX_SERIES) {
    target.textContent = `The result has ${series.size} series: the chart draws at most ${MAX_SERIES}. Narrow the query.`;
    return;
  }
  const palette = ['#1f6feb', '#d1242f', '#1a7f37', '#8250df', '#bf8700', '#0a7ea4', '#cf222e', '#6e7781'];
  const names = [...series.keys()];
  const options = {
    width: Math.max(300, target.clientWidth - 2),
    height: Math.max(260, target.clientHeight - 40),
    scales: { x: { time: true } },
    series: [{}].concat(names.map((name, i) => ({ label: name, stroke: palette[i % palette.length], width: 1.5, spanGaps: false }))),
    cursor: { drag: { x: true, y: false } },
    hooks: { setSelect: [(u) => zoomTo(u)] },
  };
  ui.chart = new uPlot(options, [times].concat(names.map((n) => series.get(n))), target);
}

/** A drag across the chart: the query runs again on the time range selected. */
function zoomTo(u) {
  if (u.select.width < 2) return;
  const column = timeColumn(chartRows()) || 'time';
  const from = u.posToVal(u.select.left, 'x');
  const to = u.posToVal(u.select.left + u.select.width, 'x');
  u.setSelect({ left: 0, width: 0 }, false);
  const iso = (seconds) => new Date(seconds * 1000).toISOString();
  const zoomed = withTimeRange(ui.query, iso(from), iso(to), column);
  ui.zoomed = true;
  $('zoom-out').disabled = false;
  editor.setValue(zoomed);
  show(zoomed, 0);
}

/**
 * `statement` with its time filter on [from, to]: the bounds of its
 * `time >= / > / <= / < / BETWEEN` comparisons replaced, or, when it has
 * none, the whole statement filtered on its time column.
 */
function withTimeRange(statement, from, to, column) {
  const value = "(?:'[^']*'|now\\(\\)(?:\\s*[-+]\\s*interval\\s*'[^']*')?|[0-9]+)";
  let changed = false;
  let out = statement.replace(new RegExp(`\\btime\\s+between\\s+${value}\\s+and\\s+${value}`, 'ig'), () => {
    changed = true;
    return `time BETWEEN '${from}' AND '${to}'`;
  });
  out = out.replace(new RegExp(`\\btime\\s*(>=|>)\\s*${value}`, 'ig'), (_, op) => {
    changed = true;
    return `time ${op} '${from}'`;
  });
  let upper = false;
  out = out.replace(new RegExp(`\\btime\\s*(<=|<)\\s*${value}`, 'ig'), (_, op) => {
    upper = true;
    return `time ${op} '${to}'`;
  });
  const escaped = (text) => text.replace(/[.]/g, '\\.');
  if (changed && !upper) {
    // Only a lower bound: add the upper one beside it.
    out = out.replace(new RegExp(`\\btime\\s*(>=|>)\\s*'${escaped(from)}'`, 'i'), (m) => `${m} AND time <= '${to}'`);
  } else if (upper && !changed) {
    // Only an upper bound: add the lower one beside it.
    out = out.replace(new RegExp(`\\btime\\s*(<=|<)\\s*'${escaped(to)}'`, 'i'), (m) => `time >= '${from}' AND ${m}`);
  }
  if (changed || upper) return out;
  return `SELECT * FROM (\n${statement}\n) AS _zoom\nWHERE ${quoteIdent(column)} BETWEEN '${from}' AND '${to}'`;
}

// --- exports ---------------------------------------------------------------

async function exportAs(format) {
  const statement = ui.shown;
  try {
    const blob = await runSql(statement, format);
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `result.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) {
    if (!(e instanceof Unauthorized)) setStatus(`export: ${e.message}`, true);
  }
}

// --- the server page -------------------------------------------------------

function parseMetrics(text) {
  const metrics = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (match) metrics[match[1] + (match[2] || '')] = Number(match[3]);
  }
  return metrics;
}

async function refreshServer() {
  try {
    const [metricsResponse, readyResponse] = await Promise.all([api('/metrics'), fetch('/ready')]);
    if (!metricsResponse.ok) throw new Error((await metricsResponse.text()) || String(metricsResponse.status));
    const metrics = parseMetrics(await metricsResponse.text());
    const ready = await readyResponse.json().catch(() => ({}));
    const now = performance.now();
    const before = ui.metricsBefore;
    ui.metricsBefore = { at: now, metrics };
    const rate = (name) => before && metrics[name] !== undefined
      ? `${formatCount(Math.max(0, (metrics[name] - (before.metrics[name] || 0)) / ((now - before.at) / 1000)))}/s` : '...';
    $('server-mode').textContent = ready.mode ? `(${ready.mode} mode)` : '';
    const problems = (ready.checks || []).map((c) => c.message).join('; ');
    $('server-health').textContent = ready.status ? `Status: ${ready.status}${problems ? ': ' + problems : ''}` : '';
    const cards = [
      ['Rows written', rate('hourglass_rows_written_total'), `${formatCount(metrics.hourglass_rows_written_total || 0)} in all`],
      ['Write buffer', formatBytes(metrics.hourglass_buffered_bytes || 0), `write path holds ${formatBytes(metrics.hourglass_write_held_bytes || 0)}`],
      ['WAL', rate('hourglass_wal_bytes_total').replace(/\/s$/, ' B/s'), `${formatCount(metrics.hourglass_wal_fsyncs_total || 0)} fsyncs, ${formatCount(metrics.hourglass_wal_records_total || 0)} records`],
      ['Persisted', `${formatCount(metrics.hourglass_persisted_files_total || 0)} files`, `${formatBytes(metrics.hourglass_persisted_bytes_total || 0)}, ${formatCount(metrics.hourglass_persist_errors_total || 0)} errors`],
      ['Compactions', `${formatCount(metrics.hourglass_merges_total || 0)} merges`, `${formatCount(metrics.hourglass_merged_files_total || 0)} files merged, ${formatCount(metrics.hourglass_layer_moves_total || 0)} moves, ${formatCount(metrics.hourglass_compaction_errors_total || 0)} errors`],
      ['Queries', `${metrics.hourglass_queries_running || 0} running`, `${metrics.hourglass_queries_queued || 0} waiting`],
      ['Deletes', formatCount(metrics.hourglass_deletes_total || 0), ''],
    ];
    const target = $('server-cards');
    target.innerHTML = '';
    for (const [label, value, note] of cards) {
      const card = document.createElement('div');
      card.className = 'card';
      card.innerHTML = '<div class="label"></div><div class="value"></div><div class="label"></div>';
      card.children[0].textContent = label;
      card.children[1].textContent = value;
      card.children[2].textContent = note;
      target.append(card);
    }
    const levels = Object.entries(metrics)
      .map(([key, value]) => [key.match(/^hourglass_files\{level="(\d+)"\}$/), value])
      .filter(([m]) => m)
      .map(([m, value]) => [Number(m[1]), value, metrics[`hourglass_file_bytes{level="${m[1]}"}`] || 0])
      .sort((a, b) => a[0] - b[0]);
    const table = $('server-levels');
    table.innerHTML = '<tr><th>Level</th><th>Files</th><th>Bytes</th></tr>';
    for (const [level, files, bytes] of levels) {
      const row = table.insertRow();
      row.insertCell().textContent = level;
      row.insertCell().textContent = formatCount(files);
      row.insertCell().textContent = formatBytes(bytes);
    }
  } catch (e) {
    if (!(e instanceof Unauthorized)) $('server-health').textContent = `cannot read the server's state: ${e.message}`;
  }
}

// --- formatting ------------------------------------------------------------

function formatCount(n) {
  if (n === null || n === undefined) return '';
  return Number.isInteger(n) ? n.toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function formatMs(ms) {
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// --- wiring ----------------------------------------------------------------

function showPage(page) {
  for (const tab of document.querySelectorAll('header .tab')) tab.classList.toggle('active', tab.dataset.page === page);
  $('page-query').hidden = page !== 'query';
  $('page-server').hidden = page !== 'server';
  clearInterval(ui.serverTimer);
  if (page === 'server') {
    refreshServer();
    ui.serverTimer = setInterval(refreshServer, 2000);
  } else {
    editor.refresh();
  }
}

function showView(view) {
  ui.view = view;
  $('show-grid').classList.toggle('active', view === 'grid');
  $('show-chart').classList.toggle('active', view === 'chart');
  $('grid-view').hidden = view !== 'grid';
  $('chart-view').hidden = view !== 'chart';
  if (view === 'chart') renderChart();
}

$('run').addEventListener('click', () => run());
$('history').addEventListener('change', (e) => {
  if (e.target.value) editor.setValue(e.target.value);
  e.target.value = '';
});
$('prev-page').addEventListener('click', () => pageTo(ui.page - 1));
$('next-page').addEventListener('click', () => pageTo(ui.page + 1));
$('show-grid').addEventListener('click', () => showView('grid'));
$('show-chart').addEventListener('click', () => showView('chart'));
$('zoom-out').addEventListener('click', () => {
  editor.setValue(ui.query);
  run(ui.query);
});
$('export-csv').addEventListener('click', () => exportAs('csv'));
$('export-parquet').addEventListener('click', () => exportAs('parquet'));
$('database').addEventListener('change', (e) => {
  ui.database = e.target.value;
  localStorage.setItem('hourglass.database', ui.database);
  renderTables();
});
$('refresh-tables').addEventListener('click', () => loadCatalog());
$('login-form').addEventListener('submit', login);
$('logout').addEventListener('click', logout);
for (const tab of document.querySelectorAll('header .tab')) tab.addEventListener('click', () => showPage(tab.dataset.page));

function pageTo(page) {
  if (page < 0) return;
  if (!ui.paged && ui.allRows) {
    ui.page = page;
    const rows = ui.allRows.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS + 1);
    renderGrid(rows.slice(0, PAGE_ROWS), rows.length > PAGE_ROWS);
    return;
  }
  show(ui.shown, page);
}

if (sessionStorage.getItem(AUTH_KEY)) $('logout').hidden = false;
renderHistory();
loadCatalog();
