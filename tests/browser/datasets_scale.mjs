// A folder of 5,000 small files dropped on a dataset's page in Debian's Chromium, driven by
// playwright-core: one real drag of a folder on disk (Chromium's own drop, through the DevTools
// protocol, so the page walks the folders with webkitGetAsEntry), the overall bar followed until
// it says every file arrived, no file showing an error, and then the file tree paged through the
// biggest folder with its Next button to the last page.
//
// Run by tests/tests/datasets_scale.rs, which makes the files on disk and the dataset, and checks
// every file through the API afterwards. Prints one JSON line: `ok`, the timings of each phase,
// what the page's main thread spent them on (DevTools' Performance metrics) and the requests it
// made (Resource Timing), so a slow run can be told apart: the hub, the page, or the machine.
// Screenshots go to $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_DATASET (owner/name), XIJI_DROP (the
//   folder dropped, itself), XIJI_FILES (how many files it holds), XIJI_BIG_FOLDER (the path in
//   the dataset of the folder to page through), XIJI_BIG_COUNT (its files), XIJI_BIG_PREFIX and
//   XIJI_BIG_DIGITS (its files are PREFIX + zero-padded index + XIJI_BIG_SUFFIX),
//   XIJI_HUB_PID (optional: the hub's process, whose CPU time is reported), XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES, CHROMIUM
import { readdirSync, readFileSync } from 'node:fs';
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const [owner, name] = env('XIJI_DATASET').split('/');
const dropDir = env('XIJI_DROP');
const files = Number(env('XIJI_FILES'));
const bigFolder = env('XIJI_BIG_FOLDER');
const bigCount = Number(env('XIJI_BIG_COUNT'));
const bigPrefix = env('XIJI_BIG_PREFIX');
const bigDigits = Number(env('XIJI_BIG_DIGITS'));
const bigSuffix = env('XIJI_BIG_SUFFIX');
const TREE_PAGE = 100;
const hubPid = Number(process.env.XIJI_HUB_PID || 0);

const { browser, screenshot, newPage } = await launch();
let page;

const seconds = (ms) => Math.round(ms / 100) / 10;

/** Waits (up to 30 s) until `locator`'s text matches `pattern`. */
const expectText = async (locator, pattern, what) => {
  let text = '';
  for (let i = 0; i < 150; i += 1) {
    text = (await locator.innerText()).trim();
    if (pattern.test(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: ${JSON.stringify(text)} does not match ${pattern}`);
};

/** Drags `paths` (files and folders on disk) from outside the browser onto `selector`, as a user
 *  drags them from a file manager: Chromium's own drop, whose items give directory entries. */
async function dropFromDisk(p, selector, paths) {
  const target = p.locator(selector);
  await target.scrollIntoViewIfNeeded();
  const box = await target.boundingBox();
  if (!box) throw new Error(`${selector} is not visible`);
  const x = box.x + box.width / 2;
  const y = box.y + box.height / 2;
  const cdp = await p.context().newCDPSession(p);
  const data = { items: [], files: paths, dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop']) {
    await cdp.send('Input.dispatchDragEvent', { type, x, y, data });
  }
  await cdp.detach();
}

/** Scrolls `selector` to the top of the window, below the sticky bar (for screenshots). */
const scrollToTop = (p, selector) => p.evaluate((sel) => {
  const el = document.querySelector(sel);
  window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 70);
}, selector);

/** What the page's main thread spent its time on so far (seconds), from DevTools. */
async function metrics(cdp) {
  const { metrics: list } = await cdp.send('Performance.getMetrics');
  const m = Object.fromEntries(list.map((e) => [e.name, e.value]));
  return {
    task: m.TaskDuration, script: m.ScriptDuration, layout: m.LayoutDuration,
    style: m.RecalcStyleDuration, nodes: m.Nodes, heap_mb: Math.round(m.JSHeapUsedSize / 1048576),
  };
}

const spent = (before, after) => Object.fromEntries(['task', 'script', 'layout', 'style']
  .map((k) => [k, Math.round((after[k] - before[k]) * 10) / 10]));

/** CPU seconds (user + system) a process has used, from /proc; 0 when it is gone. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, the 14th and 15th fields, in clock ticks (100 a second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The processes below this one (Chromium's browser, renderers, GPU and utility processes). */
function descendants(root) {
  const parent = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const below = [];
  let layer = [root];
  while (layer.length) {
    layer = [...parent].filter(([, ppid]) => layer.includes(ppid)).map(([pid]) => pid);
    below.push(...layer);
  }
  return below;
}

/** CPU seconds used so far by the hub, by Chromium and by this script. */
const cpu = () => ({
  hub: hubPid ? cpuSeconds(hubPid) : null,
  chromium: descendants(process.pid).reduce((sum, pid) => sum + cpuSeconds(pid), 0),
  node: cpuSeconds(process.pid),
});

const cpuSpent = (before, after) => Object.fromEntries(Object.keys(after)
  .map((k) => [k, after[k] === null ? null : Math.round((after[k] - before[k]) * 10) / 10]));

/** The page's requests since it was loaded, by kind: how many, and the mean of their whole time,
 *  of the hub's part (from the request sent to the first byte of the answer) and of the wait
 *  in the browser before the request went out (ms); the longest whole time. */
const requests = (p) => p.evaluate(() => {
  const kinds = {};
  for (const e of performance.getEntriesByType('resource')) {
    const u = new URL(e.name);
    let kind = 'other';
    if (/^\/hub\/api\/uploads\/[^/]+$/.test(u.pathname)) kind = 'send (PATCH)';
    else if (/\/uploads$/.test(u.pathname)) kind = 'declare (POST)';
    else if (/\/tree$/.test(u.pathname)) kind = 'tree';
    else if (/^\/hub\/api\/datasets\/[^/]+\/[^/]+$/.test(u.pathname)) kind = 'dataset';
    const k = kinds[kind] || (kinds[kind] = { n: 0, ms: 0, hub: 0, queued: 0, max_ms: 0 });
    k.n += 1;
    k.ms += e.duration;
    k.hub += e.responseStart - e.requestStart;
    k.queued += e.requestStart - e.startTime;
    k.max_ms = Math.max(k.max_ms, e.duration);
  }
  for (const k of Object.values(kinds)) {
    k.mean_ms = Math.round(k.ms / k.n);
    k.hub_ms = Math.round(k.hub / k.n);
    k.queued_ms = Math.round(k.queued / k.n);
    k.max_ms = Math.round(k.max_ms);
    delete k.ms;
    delete k.hub;
    delete k.queued;
  }
  return kinds;
});

/** The names in the open folder's page, in order. */
const listed = (p) => p.$$eval('#file-rows tr', (rows) => rows.map((r) => r.dataset.name));

try {
  const report = { ok: false, files };
  page = await newPage();
  page.on('dialog', (dialog) => dialog.accept());
  // Resource Timing keeps 250 entries unless told otherwise: keep every request of the run.
  await page.addInitScript(() => performance.setResourceTimingBufferSize(100000));
  const datasetUrl = `${base}/hub/datasets/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;

  step(`log in as ${user} and open ${owner}/${name}`);
  await login(page, base, user, password);
  await page.goto(datasetUrl);
  await page.waitForSelector('#upload-card:not([hidden])');
  await expectText(page.locator('#dataset-file-count'), /^0$/, 'the new dataset\'s file count');
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');

  step(`drop the folder ${dropDir} (${files} files)`);
  const before = await metrics(cdp);
  const cpuBefore = cpu();
  const t0 = Date.now();
  await dropFromDisk(page, '#dropzone', [dropDir]);
  // The page has walked the folder when the overall bar counts every file.
  await page.waitForFunction((n) => new RegExp(`\\bof ${n} files\\b|\\b${n} files uploaded`).test(
    document.querySelector('#upload-overall-text')?.textContent || ''), files, { timeout: 120_000, polling: 250 });
  const walked = Date.now() - t0;
  step(`the page counts ${files} files after ${seconds(walked)} s`);

  // During the upload: once a tenth of the files are in.
  await page.waitForFunction((n) => {
    const m = /^(\d+) of (\d+) files/.exec(document.querySelector('#upload-overall-text')?.textContent || '');
    return (m && Number(m[1]) >= n) || document.querySelector('#uploads')?.dataset.state;
  }, Math.floor(files / 10), { timeout: 300_000, polling: 500 });
  const during = (await page.innerText('#upload-overall-text')).trim();
  const note = (await page.innerText('#upload-note')).trim();
  const rowsDuring = await page.$$eval('#upload-list .ds-upload', (rows) => rows.length);
  await scrollToTop(page, '#upload-card');
  await screenshot(page, 'uploading');
  step(`during the upload: ${during}; ${note}; ${rowsDuring} rows`);
  if (!new RegExp(`^\\d+ of ${files} files`).test(during)) throw new Error(`no progress shown during the upload: ${JSON.stringify(during)}`);
  // Thousands of files are not listed one by one: only those being sent (4 at a time).
  if (!/^\d+ more files are waiting\./.test(note)) throw new Error(`the waiting files are not counted: ${JSON.stringify(note)}`);
  if (rowsDuring > 4) throw new Error(`${rowsDuring} files are listed during the upload`);

  // The overall bar says when the batch is over (done, or some failed).
  await page.waitForFunction(() => !!document.querySelector('#uploads')?.dataset.state, null,
    { timeout: 900_000, polling: 1000 });
  const uploaded = Date.now() - t0;
  const after = await metrics(cdp);
  const cpuAfter = cpu();
  const overall = (await page.innerText('#upload-overall-text')).trim();
  const state = await page.getAttribute('#uploads', 'data-state');
  step(`after ${seconds(uploaded)} s: ${state}, "${overall}"`);
  const failed = await page.$$eval('#upload-list .ds-upload[data-state="failed"]',
    (rows) => rows.slice(0, 5).map((r) => `${r.dataset.path}: ${r.querySelector('.js-error')?.textContent}`));
  const errors = await page.$$eval('#upload-list .js-error:not([hidden])', (els) => els.length);
  if (state !== 'done' || failed.length || errors) {
    await screenshot(page, 'upload-failed');
    throw new Error(`the upload did not end well (${state}, "${overall}"): ${JSON.stringify(failed)}`);
  }
  if (overall !== `${files} files uploaded.`) throw new Error(`the overall bar says ${JSON.stringify(overall)}`);
  const pct = await page.getAttribute('#upload-overall', 'aria-valuenow');
  if (pct !== '100') throw new Error(`the overall bar is at ${pct}%`);
  if (!(await page.isHidden('#resume-panel'))) throw new Error('unfinished uploads are offered after a complete drop');
  if (!(await page.isHidden('#upload-note'))) throw new Error('files are still said to wait');
  await expectText(page.locator('#dataset-file-count'), new RegExp(`^${files}$`), 'the file count');
  await scrollToTop(page, '#upload-card');
  await screenshot(page, 'uploaded');
  report.upload = {
    walk_s: seconds(walked),
    upload_s: seconds(uploaded),
    files_per_s: Math.round(files / (uploaded / 1000)),
    cpu_s: cpuSpent(cpuBefore, cpuAfter),
    main_thread_s: spent(before, after),
    dom_nodes: after.nodes,
    heap_mb: after.heap_mb,
    requests: await requests(page),
    rows_left: await page.$$eval('#upload-list .ds-upload', (rows) => rows.length),
  };
  step(`upload: ${JSON.stringify(report.upload)}`);

  step(`page through ${bigFolder} (${bigCount} files, ${TREE_PAGE} a page) to its last page`);
  const t1 = Date.now();
  const parts = bigFolder.split('/');
  for (const [i, part] of parts.entries()) {
    await page.click(`#file-rows tr[data-name="${part}"] a.js-name`);
    await page.waitForURL((url) => url.searchParams.get('path') === parts.slice(0, i + 1).join('/'));
    await page.waitForFunction((p) => document.querySelector('#files-card')?.dataset.path === p, parts.slice(0, i + 1).join('/'));
  }
  const pages = Math.ceil(bigCount / TREE_PAGE);
  const want = (i) => `${bigPrefix}${String(i).padStart(bigDigits, '0')}${bigSuffix}`;
  const seen = [];
  for (let n = 0; n < pages; n += 1) {
    const from = n * TREE_PAGE;
    const to = Math.min(bigCount, from + TREE_PAGE);
    const info = `${from + 1}–${to} of ${bigCount}`;
    await expectText(page.locator('#tree-page-info'), new RegExp(`^${info}$`), `page ${n + 1}'s info`);
    await page.waitForFunction((first) => document.querySelector('#file-rows tr')?.dataset.name === first, want(from));
    const names = await listed(page);
    if (names.length !== to - from) throw new Error(`page ${n + 1} lists ${names.length} names`);
    seen.push(...names);
    if (n === 0) {
      if (await page.isVisible('#tree-prev')) throw new Error('the first page offers Previous');
      await scrollToTop(page, '#dataset-tabs');
      await screenshot(page, 'tree-first-page');
    }
    if (n < pages - 1) {
      await page.click('#tree-next');
      await page.waitForURL((url) => url.searchParams.get('offset') === String(to));
    }
  }
  const wanted = Array.from({ length: bigCount }, (_, i) => want(i));
  const missing = wanted.filter((n, i) => seen[i] !== n);
  if (seen.length !== bigCount || missing.length) {
    throw new Error(`the pages listed ${seen.length} names; not in place: ${missing.slice(0, 5)}`);
  }
  const last = await listed(page);
  const lastFrom = (pages - 1) * TREE_PAGE;
  if (last[0] !== want(lastFrom) || last[last.length - 1] !== want(bigCount - 1)) {
    throw new Error(`the last page lists ${last[0]} … ${last[last.length - 1]}`);
  }
  if (await page.isVisible('#tree-next')) throw new Error('the last page offers Next');
  if (!(await page.isVisible('#tree-prev'))) throw new Error('the last page offers no Previous');
  const lastInfo = (await page.innerText('#tree-page-info')).trim();
  await page.locator(`#file-rows tr[data-name="${want(bigCount - 1)}"]`).scrollIntoViewIfNeeded();
  await screenshot(page, 'tree-last-page');
  step(`the last page: ${lastInfo}, ${last[0]} … ${last[last.length - 1]}`);

  step('back one page; the parent folder shows the big folder\'s file count');
  await page.click('#tree-prev');
  await expectText(page.locator('#tree-page-info'), new RegExp(`^${lastFrom - TREE_PAGE + 1}–${lastFrom} of ${bigCount}$`), 'the page before the last');
  const parent = parts.slice(0, -1).join('/');
  await page.click(`#breadcrumbs a[data-path="${parent}"]`);
  await page.waitForFunction((p) => document.querySelector('#files-card')?.dataset.path === p, parent);
  const folderCount = (await page.innerText(`#file-rows tr[data-name="${parts[parts.length - 1]}"] .js-size`)).trim();
  if (!folderCount.startsWith(`${bigCount} files`)) throw new Error(`the big folder's row says ${JSON.stringify(folderCount)}`);
  report.tree = { pages, seconds: seconds(Date.now() - t1), last_page: lastInfo, first: last[0], last: last[last.length - 1], folder_row: folderCount };
  report.ok = true;
  console.log(JSON.stringify(report));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
