// The HTML report in a real headless Chromium (make report-check):
//
//     CHROMIUM=$(command -v chromium) node report/check.mjs <report.html>
//
// Opens the page from its file and fails unless it loads with no console error, no uncaught
// exception, no dialog and no network request (it must work offline: plotly.js is inlined),
// draws as many Plotly charts as its <body data-charts> says, and each chart has a trace with
// at least one point. First it checks itself on a page written to fail every one of those
// checks (a console error, an exception, a chart missing, a chart with no data) and fails
// unless it finds each problem, so a checker that sees nothing cannot pass. Every wait is
// bounded; the browser is killed at the end, and by a watchdog if the whole run hangs. A
// screenshot of the report goes next to it (.png), to look at.

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';

const WAIT_MS = 15_000;
const WATCHDOG_MS = 25_000;
const FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'];

// A page that fails each check, with the problem each must report.
const BAD_PAGE = `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body data-charts="2">
<div id="empty" class="plotly-graph-div js-plotly-plot"><svg class="main-svg"></svg></div>
<script>document.getElementById('empty').data = [{type: 'bar', x: [], y: []}];
console.error('x'); throw new Error('y');</script></body></html>`;
const BAD_PAGE_PROBLEMS = [
  /^console error: x$/,
  /^uncaught exception: .*y/,
  /^1 charts drawn, the page has 2$/,
  /^empty: no trace has a point$/,
];

// In the page: how many charts it says it has, and per chart its id and its traces' points
// (finite numbers among x, y and values: bars, lines and treemaps alike).
function charts() {
  const finite = (v) => (v ? Array.from(v).filter((n) => Number.isFinite(n)).length : 0);
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  return {
    expected: Number(document.body.dataset.charts),
    charts: divs.map((d) => ({
      id: d.id,
      points: (d.data || []).map((t) => Math.max(finite(t.x), finite(t.y), finite(t.values))),
    })),
  };
}

// In the page: every chart has been drawn (Plotly's class and its SVG are there).
function drawn() {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  return divs.every((d) => d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg'));
}

// The problems with one page: what the browser reported while it loaded and drew it, and
// what is wrong with its charts.
async function inspect(browser, file, screenshot) {
  const url = pathToFileURL(path.resolve(file)).href;
  const problems = [];
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.setViewport({ width: 1280, height: 900 });
  page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`uncaught exception: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    if (r.url() === url || /^(data|blob):/.test(r.url())) return r.continue();
    problems.push(`network request: ${r.url()}`);
    return r.abort();
  });
  await page.goto(url, { waitUntil: 'load', timeout: WAIT_MS });
  await page
    .waitForFunction(drawn, { timeout: WAIT_MS })
    .catch(() => problems.push(`charts not drawn in ${WAIT_MS / 1000} s`));
  const found = await page.evaluate(charts);
  if (found.charts.length !== found.expected) {
    problems.push(`${found.charts.length} charts drawn, the page has ${found.expected}`);
  }
  for (const c of found.charts) {
    if (!c.points.some((n) => n > 0)) problems.push(`${c.id}: no trace has a point`);
  }
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();
  return { problems, found };
}

// The checker on the bad page: it must report every problem planted there.
async function selfCheck(browser, dir) {
  const bad = path.join(dir, 'check-self-test.html');
  writeFileSync(bad, BAD_PAGE);
  const { problems } = await inspect(browser, bad);
  const missed = BAD_PAGE_PROBLEMS.filter((re) => !problems.some((p) => re.test(p)));
  if (missed.length) {
    const found = problems.join('; ');
    throw new Error(`the checker missed ${missed.join(', ')} on ${bad} (found: ${found})`);
  }
  console.log(`report-check: the checker fails a broken page (${problems.length} problems found)`);
}

async function main() {
  const [file] = process.argv.slice(2);
  const executablePath = process.env.CHROMIUM;
  if (!file || !executablePath) {
    throw new Error('usage: CHROMIUM=<chromium> node report/check.mjs <report.html>');
  }
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args: FLAGS,
    timeout: WAIT_MS,
    protocolTimeout: WAIT_MS,
  });
  const watchdog = setTimeout(() => {
    console.error(`report-check: no verdict after ${WATCHDOG_MS / 1000} s`);
    browser.process()?.kill('SIGKILL');
    process.exit(2);
  }, WATCHDOG_MS);
  try {
    await selfCheck(browser, path.dirname(file));
    const { problems, found } = await inspect(browser, file, file.replace(/(\.html)?$/, '.png'));
    for (const c of found.charts) {
      const points = c.points.reduce((a, b) => a + b, 0);
      console.log(`  ${c.id}: ${c.points.length} traces, ${points} points`);
    }
    if (problems.length) throw new Error(`${file}:\n  ${problems.join('\n  ')}`);
    const n = found.charts.length;
    console.log(`report-check: ${file} loads offline with no error, ${n} charts with data`);
  } finally {
    clearTimeout(watchdog);
    await browser.close().catch(() => {});
    browser.process()?.kill('SIGKILL');
  }
}

main().catch((e) => {
  console.error(`report-check FAILED: ${e.message}`);
  process.exit(1);
});
