// The last step of the datasets story, in Debian's Chromium driven by playwright-core: the user
// who found and starred another user's public dataset starts a 2-node cluster with it from the
// pages and reads it on node-1.
//
// 1. Log in, open the home page; the spawn form lists the dataset (owner/name) among the
//    datasets to mount: tick it, choose the test image and 2 nodes, press Start. The request the
//    page sends is recorded (its body is reported, so the test sees what the page asked for).
// 2. The page follows the start and lands in node-0's JupyterLab; back on the home page the
//    running cluster lists its nodes: open node-1's JupyterLab from its link.
// 3. In a new notebook on node-1, a cell reads the CSV at the dataset's mount path and prints
//    the host name, its size, its sha256 and its first lines; a second cell tries to write a
//    file beside it and prints the error ("Read-only file system").
//
// Run by tests/tests/datasets_pages.rs after tests/browser/datasets.mjs, on a hub with the
// docker backend; the test checks the report and stops the cluster. Screenshots go to
// $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_DATASET (owner/name), XIJI_IMAGE (the
//   library image's name), XIJI_CSV (the CSV's path in the dataset), XIJI_CSV_LOCAL (the file
//   that was dropped, whose sha256 the node must print), XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES, CHROMIUM
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { env, launch, login, runInNewNotebook, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const dataset = env('XIJI_DATASET');
const imageName = env('XIJI_IMAGE');
const csvPath = env('XIJI_CSV');
const csvSha256 = createHash('sha256').update(readFileSync(env('XIJI_CSV_LOCAL'))).digest('hex');
const mount = `/home/jovyan/datasets/${dataset}`;

const { browser, screenshot, newPage } = await launch();
let page;

/** In the open notebook: a new cell below the current one, `code` run in it (inserted as text,
 *  so the editor adds no indentation); the output that contains `expect` (its text). */
async function runInNewCell(p, code, expect) {
  const panel = '.jp-NotebookPanel:not(.lm-mod-hidden)';
  const cells = p.locator(`${panel} .jp-Cell`);
  const before = await cells.count();
  await p.keyboard.press('Escape');
  await p.keyboard.press('b');
  await p.waitForFunction(([sel, n]) => document.querySelectorAll(sel).length > n, [`${panel} .jp-Cell`, before]);
  const cell = cells.nth(before);
  const editor = cell.locator('.cm-content');
  await editor.click();
  await p.keyboard.insertText(code);
  const output = cell.locator('.jp-OutputArea-output').filter({ hasText: expect }).first();
  for (let attempt = 1; ; attempt += 1) {
    await editor.click();
    await p.keyboard.press('Control+Enter');
    try {
      await output.waitFor({ state: 'visible', timeout: 30_000 });
      break;
    } catch (error) {
      if (attempt >= 4) {
        const shown = await cell.locator('.jp-OutputArea').innerText().catch(() => '');
        throw new Error(`the cell printed ${JSON.stringify(shown)}, nothing with ${JSON.stringify(expect)}`);
      }
      step(`no output after run ${attempt}; running the cell again`);
    }
  }
  return (await output.innerText()).trim();
}

try {
  page = await newPage();
  step(`log in as ${user}; the home page's spawn form offers ${dataset}`);
  await login(page, base, user, password);
  await page.goto(`${base}/hub/home`);
  await page.waitForSelector('#start', { state: 'visible' });
  const box = page.locator(`#spawn-dataset-list input[name="dataset"][value="${dataset}"]`);
  await box.waitFor({ state: 'attached', timeout: 10_000 }).catch(async () => {
    const offered = await page.$$eval('#spawn-dataset-list input[name="dataset"]', (els) => els.map((e) => e.value));
    throw new Error(`the spawn form does not offer ${dataset}: it offers ${JSON.stringify(offered)}`);
  });
  if (await box.isChecked()) throw new Error('the dataset is ticked before the user ticks it');

  step(`tick ${dataset}, choose "${imageName}" and 2 nodes`);
  await page.locator('#spawn-images label.image-choice', { hasText: imageName }).locator('input[name="image"]').check();
  await page.fill('#spawn-nodes', '2');
  await box.check();
  await page.locator('#spawn-datasets').scrollIntoViewIfNeeded();
  await page.evaluate(() => {
    const el = document.querySelector('#spawn-datasets');
    window.scrollTo(0, el.getBoundingClientRect().bottom + window.scrollY - window.innerHeight + 40);
  });
  await screenshot(page, 'cluster-spawn-form');

  step('press Start; the page follows the start and lands in node-0\'s JupyterLab');
  const apiPath = `/hub/api/users/${encodeURIComponent(user)}/server`;
  const started = Date.now();
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === apiPath),
    page.click('#start'),
  ]);
  const sent = request.postDataJSON();
  step(`the page sent ${JSON.stringify(sent)}`);
  const response = await request.response();
  const answer = response ? `${response.status()} ${await response.text().catch(() => '')}` : 'no answer';
  step(`the hub answered ${answer}`);
  if (!response || ![201, 202].includes(response.status())) throw new Error(`the start was refused: ${answer}`);
  await page.waitForSelector('#progress-bar', { state: 'visible' }).catch(() => {});
  await screenshot(page, 'cluster-starting');
  await waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/lab`), 300_000);
  const startSeconds = Math.round((Date.now() - started) / 1000);
  step(`node-0's JupyterLab after ${startSeconds} s`);

  step('the home page lists the running cluster\'s nodes');
  await page.goto(`${base}/hub/home`);
  const node1 = page.locator('#open-node-1');
  await node1.waitFor({ state: 'visible' });
  const nodes = await page.$$eval('#cluster .node', (els) => els.map((e) => e.dataset.node));
  if (nodes.join(',') !== 'node-0,node-1') throw new Error(`the cluster lists ${JSON.stringify(nodes)}`);
  await screenshot(page, 'cluster-ready');

  step('open node-1\'s JupyterLab from its link');
  await Promise.all([
    waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/node-1/lab`), 120_000),
    node1.click(),
  ]);

  step(`read ${mount}/${csvPath} in a notebook on node-1`);
  const file = `${mount}/${csvPath}`;
  const read = await runInNewNotebook(
    page,
    'import hashlib, socket\n' +
      `data = open(${JSON.stringify(file)}, 'rb').read()\n` +
      'print(socket.gethostname(), len(data), hashlib.sha256(data).hexdigest())\n' +
      "print(data[:160].decode('utf-8'))",
    csvSha256,
  );
  step(`node-1 printed: ${JSON.stringify(read.slice(0, 300))}`);
  if (!read.startsWith('node-1 ')) throw new Error(`the cell did not run on node-1: ${read}`);

  step('try to write beside it');
  const target = `${mount}/${csvPath.replace(/[^/]*$/, '')}written-on-node-1.txt`;
  const write = await runInNewCell(
    page,
    `try: open(${JSON.stringify(target)}, 'w').write('x'); print('written')\n` +
      "except OSError as error: print('refused:', error)",
    /refused:|written/,
  );
  step(`node-1 printed: ${JSON.stringify(write)}`);
  await screenshot(page, 'cluster-notebook-output');
  if (!write.includes('Read-only file system')) throw new Error(`the write was not refused as read-only: ${write}`);
  console.log(JSON.stringify({ ok: true, sent, start_seconds: startSeconds, read, write }));
} catch (error) {
  if (page) await screenshot(page, 'cluster-failure').catch(() => {});
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
