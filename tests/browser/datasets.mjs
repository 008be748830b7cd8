// The datasets pages in Debian's Chromium, driven by playwright-core, as two users use them:
//
// 1. The owner logs in, creates a dataset with a cover image (a real PNG made here), drops a
//    folder of 50 files on the page (a real drag of files on disk, through the DevTools
//    protocol, so the page walks the folders with webkitGetAsEntry) including 数据/训练集.csv,
//    watches every progress bar reach 100%, browses into 数据/, adds a folder with the folder
//    picker (<input webkitdirectory>), renames a file and deletes another, shares the dataset and
//    takes the share back, and makes it public.
// 2. A second user finds it by a word of its description, opens it and stars it (1 star).
// 3. The same pages in Chinese show Chinese labels.
//
// Run by tests/tests/datasets_pages.rs, which makes the files on disk and checks the result
// through the API afterwards; on a hub with the docker backend, tests/browser/datasets_cluster.mjs
// then goes on with the second user starting a cluster with the dataset. Screenshots go to
// $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_OWNER, XIJI_OWNER_PASSWORD, XIJI_READER, XIJI_READER_PASSWORD,
//   XIJI_DATASET (its name), XIJI_DROP (a folder: what is dropped is everything in it),
//   XIJI_PICK_FOLDER (a folder for the folder picker), XIJI_COVER (where to write the PNG),
//   XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const owner = env('XIJI_OWNER');
const ownerPassword = env('XIJI_OWNER_PASSWORD');
const reader = env('XIJI_READER');
const readerPassword = env('XIJI_READER_PASSWORD');
const datasetName = env('XIJI_DATASET');
const dropDir = env('XIJI_DROP');
const pickFolder = env('XIJI_PICK_FOLDER');
const coverPath = env('XIJI_COVER');

const { browser, screenshot, newPage } = await launch();
let page;

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

/** A real PNG: a w×h gradient, RGB, written with zlib. */
function makePng(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < h; y += 1) {
    const row = Buffer.alloc(1 + 3 * w);
    for (let x = 0; x < w; x += 1) {
      row[1 + 3 * x] = Math.round(60 + 140 * (x / w));
      row[2 + 3 * x] = Math.round(80 + 120 * (y / h));
      row[3 + 3 * x] = 220;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

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

/** Waits until `n` uploads are done and the overall bar is at 100%. */
async function waitForUploads(p, n) {
  await p.waitForFunction((want) => {
    const rows = document.querySelectorAll('#upload-list .ds-upload');
    const failed = document.querySelector('#upload-list .ds-upload[data-state="failed"]');
    if (failed) return true;
    return rows.length >= want && document.querySelectorAll('#upload-list .ds-upload[data-state="done"]').length === rows.length;
  }, n, { timeout: 300_000 });
  const failed = p.locator('#upload-list .ds-upload[data-state="failed"]');
  if (await failed.count()) {
    throw new Error(`an upload failed: ${await failed.first().innerText()}`);
  }
  const overall = await p.getAttribute('#upload-overall', 'aria-valuenow');
  if (overall !== '100') throw new Error(`the overall bar is at ${overall}%`);
  const bars = await p.$$eval('#upload-list .js-bar', (els) => els.map((e) => e.getAttribute('aria-valuenow')));
  if (bars.some((v) => v !== '100')) throw new Error(`file bars not at 100%: ${bars.join(',')}`);
  return bars.length;
}

/** The names in the open folder. */
const listed = (p) => p.$$eval('#file-rows tr', (rows) => rows.map((r) => r.dataset.name));

async function waitForListing(p, names) {
  await p.waitForFunction((want) => {
    const have = Array.from(document.querySelectorAll('#file-rows tr')).map((r) => r.dataset.name);
    return want.every((n) => have.includes(n));
  }, names, { timeout: 30_000 }).catch(async () => {
    throw new Error(`the folder lists ${JSON.stringify(await listed(p))}, not all of ${JSON.stringify(names)}`);
  });
}

const countFiles = (dir) => readdirSync(dir, { withFileTypes: true })
  .reduce((n, e) => n + (e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1), 0);

try {
  writeFileSync(coverPath, makePng(320, 180));
  const dropped = readdirSync(dropDir).map((n) => path.join(dropDir, n));
  const droppedFiles = countFiles(dropDir);
  const pickedFiles = countFiles(pickFolder);

  // ---- 1. the owner -------------------------------------------------------------------------
  page = await newPage();
  page.on('dialog', (dialog) => dialog.accept());
  step(`log in as ${owner} and open Datasets`);
  await login(page, base, owner, ownerPassword);
  await page.click('#nav-datasets');
  await page.waitForURL('**/hub/datasets');
  await page.waitForSelector('#dataset-list[aria-busy="false"]', { state: 'attached' });
  if (!(await page.isVisible('#dataset-empty'))) throw new Error('a new user sees datasets');
  await screenshot(page, 'list-empty');

  step('create a dataset with a cover image');
  await page.click('#new-dataset');
  await page.waitForURL('**/hub/datasets/new');
  await page.fill('#dataset-name', datasetName);
  await page.fill('#dataset-description-input',
    '# Rooftop weather\n\nHourly **temperature** and humidity readings from the school\'s rooftop station.\n\n' +
    '校园气象站的逐时观测数据。\n\n- `数据/训练集.csv`: the training part\n- <script>alert(1)</script> stays text\n');
  await page.fill('#dataset-tags', 'weather, csv 教学');
  await page.fill('#dataset-license', 'CC-BY-4.0');
  await page.setInputFiles('#dataset-cover', coverPath);
  await page.waitForSelector('#dataset-cover-preview-img:not([hidden])');
  await screenshot(page, 'new-form');
  await Promise.all([
    page.waitForURL((url) => url.pathname === `/hub/datasets/${encodeURIComponent(owner)}/${encodeURIComponent(datasetName)}`),
    page.click('#dataset-create'),
  ]);
  await page.waitForSelector('#dataset-header:not([hidden])');
  await expectText(page.locator('#dataset-title'), new RegExp(`^${datasetName}$`), 'the title');
  await expectText(page.locator('#dataset-visibility'), /^Private$/, 'the new dataset\'s visibility');
  await expectText(page.locator('#dataset-description h1'), /Rooftop weather/, 'the rendered Markdown');
  await expectText(page.locator('#dataset-description strong'), /temperature/, 'the bold word');
  if (await page.locator('#dataset-description script').count()) throw new Error('a script tag reached the page');
  await page.waitForFunction(() => {
    const img = document.querySelector('#dataset-cover-img');
    return img && !img.hidden && img.complete && img.naturalWidth === 320;
  });
  const tags = await page.$$eval('#dataset-tags-list .ds-tag', (els) => els.map((e) => e.textContent));
  if (tags.join(',') !== 'weather,csv,教学') throw new Error(`tags: ${tags}`);
  await page.waitForSelector('#upload-card:not([hidden])');
  await screenshot(page, 'created');

  step(`drop a folder of ${droppedFiles} files (${dropped.map((p) => path.basename(p)).join(', ')})`);
  await dropFromDisk(page, '#dropzone', dropped);
  await page.waitForFunction((n) => document.querySelectorAll('#upload-list .ds-upload').length === n, droppedFiles);
  await scrollToTop(page, '#upload-card');
  await screenshot(page, 'uploading');
  const paths = await page.$$eval('#upload-list .ds-upload', (els) => els.map((e) => e.dataset.path));
  if (!paths.includes('数据/训练集.csv')) throw new Error(`the drop did not keep folders: ${paths.slice(0, 8)}`);
  const bars = await waitForUploads(page, droppedFiles);
  step(`${bars} progress bars at 100%`);
  await expectText(page.locator('#upload-overall-text'), new RegExp(`${droppedFiles} files uploaded`), 'the summary');
  await waitForListing(page, ['数据', 'README.md', 'labels.txt']);
  await expectText(page.locator('#dataset-file-count'), new RegExp(`^${droppedFiles}$`), 'the file count');
  await scrollToTop(page, '#dataset-tabs');
  await screenshot(page, 'uploaded');

  step('browse into 数据/');
  await page.click('#file-rows tr[data-name="数据"] a.js-name');
  await page.waitForURL((url) => url.searchParams.get('path') === '数据');
  await waitForListing(page, ['训练集.csv']);
  await expectText(page.locator('#breadcrumbs'), new RegExp(`${datasetName}\\s*/\\s*数据`), 'the breadcrumbs');
  const csvRow = page.locator('#file-rows tr[data-name="训练集.csv"]');
  const href = await csvRow.locator('a.js-download').getAttribute('href');
  const expectHref = `/hub/api/datasets/${encodeURIComponent(owner)}/${encodeURIComponent(datasetName)}/files/${encodeURIComponent('数据')}/${encodeURIComponent('训练集.csv')}`;
  if (href !== expectHref) throw new Error(`download link ${href}, not ${expectHref}`);
  const csv = await page.request.get(`${base}${href}`);
  if (!csv.ok() || !(await csv.text()).startsWith('time,temperature,humidity')) throw new Error(`the CSV download: ${csv.status()}`);
  const zipHref = await page.getAttribute('#zip-link', 'href');
  const zip = await page.request.get(`${base}${zipHref}`);
  const zipBytes = await zip.body();
  if (!zip.ok() || zipBytes.subarray(0, 2).toString() !== 'PK') throw new Error(`the folder's ZIP: ${zip.status()}`);
  await scrollToTop(page, '#dataset-tabs');
  await screenshot(page, 'folder');

  step('back to the top with the breadcrumbs; add a folder with the folder picker');
  await page.click('#breadcrumbs a[data-path=""]');
  await waitForListing(page, ['数据', 'README.md']);
  await page.setInputFiles('#pick-folder', pickFolder);
  await waitForUploads(page, pickedFiles);
  await waitForListing(page, [path.basename(pickFolder)]);

  step('rename README.md into docs/, delete labels.txt');
  page.removeAllListeners('dialog');
  page.once('dialog', (dialog) => dialog.accept('docs/README.md'));
  await page.click('#file-rows tr[data-name="README.md"] .js-move');
  await waitForListing(page, ['docs']);
  page.once('dialog', (dialog) => dialog.accept());
  await page.click('#file-rows tr[data-name="labels.txt"] .js-delete');
  await page.waitForFunction(() => !document.querySelector('#file-rows tr[data-name="labels.txt"]') && !document.querySelector('#file-rows tr[data-name="README.md"]'));
  const total = droppedFiles + pickedFiles - 1;
  await page.waitForFunction((n) => document.querySelector('#dataset-file-count').textContent === String(n), total);
  page.on('dialog', (dialog) => dialog.accept());

  step('settings: share with the reader, take it back, make the dataset public');
  await page.click('#tab-settings');
  await page.waitForSelector('#settings-panel:not([hidden])');
  if ((await page.inputValue('#settings-form #dataset-name')) !== datasetName) throw new Error('the settings form is not filled in');
  await page.fill('#share-name', reader);
  await page.selectOption('#share-access', 'read');
  await page.click('#share-add');
  await page.waitForSelector(`#share-rows tr[data-name="${reader}"]`);
  await screenshot(page, 'shared');
  await page.click(`#share-rows tr[data-name="${reader}"] .js-remove`);
  await page.waitForSelector('#shares-none:not([hidden])');
  await page.check('#settings-form #dataset-visibility-public');
  await page.click('#settings-save');
  await expectText(page.locator('#dataset-visibility'), /^Public$/, 'the visibility after saving');
  await screenshot(page, 'public');

  step('the owner\'s "Mine" tab lists it');
  await page.goto(`${base}/hub/datasets?filter=mine`);
  await page.waitForSelector('#dataset-list[aria-busy="false"]', { state: 'attached' });
  await page.waitForSelector(`.ds-card[data-dataset="${owner}/${datasetName}"]`);
  await screenshot(page, 'list-mine');
  await page.context().close();

  // ---- 2. another user ----------------------------------------------------------------------
  page = await newPage();
  page.on('dialog', (dialog) => dialog.accept());
  step(`log in as ${reader}, search for "rooftop"`);
  await login(page, base, reader, readerPassword);
  await page.goto(`${base}/hub/datasets`);
  await page.fill('#dataset-q', 'rooftop');
  await Promise.all([page.waitForURL((url) => url.searchParams.get('q') === 'rooftop'), page.click('#dataset-search-button')]);
  await page.waitForSelector('#dataset-list[aria-busy="false"]', { state: 'attached' });
  const card = page.locator(`.ds-card[data-dataset="${owner}/${datasetName}"]`);
  await card.waitFor();
  if ((await page.locator('.ds-card').count()) !== 1) throw new Error('the search found more than the dataset');
  await expectText(card.locator('.js-excerpt'), /rooftop station/, 'the excerpt');
  await expectText(card.locator('.js-files'), new RegExp(`^${total} files$`), 'the card\'s file count');
  await screenshot(page, 'search');
  await page.fill('#dataset-q', 'no-such-word-anywhere');
  await Promise.all([page.waitForURL((url) => url.searchParams.get('q') === 'no-such-word-anywhere'), page.click('#dataset-search-button')]);
  await page.waitForSelector('#dataset-empty:not([hidden])');
  await page.goBack();
  await page.waitForSelector(`.ds-card[data-dataset="${owner}/${datasetName}"]`);

  step('open it and star it');
  await Promise.all([page.waitForURL((url) => url.pathname.startsWith(`/hub/datasets/${encodeURIComponent(owner)}/`)), card.locator('h3 a').click()]);
  await page.waitForSelector('#dataset-header:not([hidden])');
  if (await page.isVisible('#upload-card')) throw new Error('a reader sees the upload area');
  if (await page.isVisible('#tab-settings')) throw new Error('a reader sees the settings');
  if (await page.locator('#file-rows .js-delete:visible').count()) throw new Error('a reader sees delete buttons');
  await expectText(page.locator('#star-count'), /^0$/, 'the stars before');
  await page.click('#star-button');
  await expectText(page.locator('#star-count'), /^1$/, 'the stars after starring');
  await expectText(page.locator('#star-label'), /^Unstar$/, 'the button after starring');
  await screenshot(page, 'starred');
  await page.goto(`${base}/hub/datasets?filter=starred`);
  await page.waitForSelector(`.ds-card[data-dataset="${owner}/${datasetName}"] .js-stars.is-starred`);

  // ---- 3. in Chinese ------------------------------------------------------------------------
  step('the pages in Chinese');
  await page.goto(`${base}/hub/lang/zh?next=${encodeURIComponent('/hub/datasets')}`);
  await expectText(page.locator('h1'), /^数据集$/, 'the list\'s title');
  await expectText(page.locator('#new-dataset'), /^新建数据集$/, 'the new button');
  await expectText(page.locator('#datasets-tab-starred'), /^已收藏$/, 'the starred tab');
  await page.waitForSelector(`.ds-card[data-dataset="${owner}/${datasetName}"]`);
  await expectText(page.locator('.ds-card .js-files').first(), new RegExp(`^${total} 个文件$`), 'the file count in Chinese');
  await screenshot(page, 'zh-list');
  await page.goto(`${base}/hub/datasets/${encodeURIComponent(owner)}/${encodeURIComponent(datasetName)}?path=${encodeURIComponent('数据')}`);
  await page.waitForSelector('#dataset-header:not([hidden])');
  await expectText(page.locator('#star-label'), /^取消收藏$/, 'the star button');
  await expectText(page.locator('#tab-files'), /^文件$/, 'the files tab');
  await expectText(page.locator('#zip-link'), /^打包下载 ZIP$/, 'the ZIP button');
  await expectText(page.locator('#dataset-visibility'), /^公开$/, 'the visibility');
  await waitForListing(page, ['训练集.csv']);
  await screenshot(page, 'zh-dataset');
  await page.goto(`${base}/hub/datasets/new`);
  await expectText(page.locator('h1'), /^新建数据集$/, 'the new form\'s title');
  await expectText(page.locator('#dataset-create'), /^创建数据集$/, 'the create button');
  await screenshot(page, 'zh-new');
  console.log(JSON.stringify({ ok: true, files: total }));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
