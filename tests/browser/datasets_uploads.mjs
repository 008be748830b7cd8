// Uploads on a dataset's page in Debian's Chromium, driven by playwright-core, when things go
// wrong:
//
// - a chunk's connection breaks: the page waits, asks the hub where the upload stands (HEAD)
//   and goes on from there, and the file arrives whole;
// - the page is reloaded in the middle of a file: the page offers the unfinished upload, and
//   choosing the same file again goes on from the bytes the hub has (not from 0); when the
//   browser forgot the upload (another browser, cleared storage), "Resume…" in the list of
//   unfinished uploads takes the file and goes on the same way;
// - a file over the owner's storage limit: the hub's 413 message is shown beside the file.
//
// Run by tests/tests/datasets_pages.rs (which sets a small [datasets] user_limit_gb, makes the
// files and the dataset, and checks the files and the message through the API).
// Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_DATASET (owner/name), XIJI_BROKEN (a file
//   whose first chunk's connection breaks), XIJI_RELOADED (a file of more than one chunk, cut
//   off by a reload), XIJI_FORGOTTEN (the same, with the browser's memory of it lost),
//   XIJI_TOO_BIG (a file over the limit), XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES, CHROMIUM
import path from 'node:path';
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const [owner, name] = env('XIJI_DATASET').split('/');
const brokenFile = env('XIJI_BROKEN');
const reloadedFile = env('XIJI_RELOADED');
const forgottenFile = env('XIJI_FORGOTTEN');
const tooBigFile = env('XIJI_TOO_BIG');
const CHUNK = 8 * 1024 * 1024;

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

/** The upload row of `file` once it is done (or failed: then its error). */
async function settled(p, file) {
  const row = p.locator(`#upload-list .ds-upload[data-path="${file}"]`);
  await p.waitForFunction((f) => {
    const r = document.querySelector(`#upload-list .ds-upload[data-path="${f}"]`);
    return r && (r.dataset.state === 'done' || r.dataset.state === 'failed');
  }, file, { timeout: 300_000 });
  return row;
}

try {
  page = await newPage();
  page.on('dialog', (dialog) => dialog.accept());
  // Every request to the uploads API, in order.
  const calls = [];
  page.on('request', (r) => {
    if (r.url().includes('/hub/api/uploads/') || r.url().endsWith('/uploads')) {
      calls.push({ method: r.method(), offset: r.headers()['upload-offset'] });
    }
  });
  // The offsets the hub answered to HEAD, in order.
  const heads = [];
  page.on('response', (r) => {
    if (r.request().method() === 'HEAD' && r.url().includes('/hub/api/uploads/')) {
      heads.push(r.headers()['upload-offset']);
    }
  });
  const datasetUrl = `${base}/hub/datasets/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;

  step(`log in as ${user} and open ${owner}/${name}`);
  await login(page, base, user, password);
  await page.goto(datasetUrl);
  await page.waitForSelector('#upload-card:not([hidden])');

  step('the first chunk\'s connection breaks; the page goes on after asking where it stands');
  let broken = 0;
  await page.route('**/hub/api/uploads/*', (route) => {
    if (route.request().method() === 'PATCH' && broken === 0) {
      broken += 1;
      return route.abort('connectionreset');
    }
    return route.continue();
  });
  const brokenName = path.basename(brokenFile);
  await page.setInputFiles('#pick-files', brokenFile);
  await page.waitForFunction((f) => /going on in|继续/.test(document.querySelector(`#upload-list .ds-upload[data-path="${f}"] .js-status`)?.textContent || '')
    || document.querySelector(`#upload-list .ds-upload[data-path="${f}"]`)?.dataset.state === 'done', brokenName);
  await screenshot(page, 'retrying');
  let row = await settled(page, brokenName);
  if ((await row.getAttribute('data-state')) !== 'done') throw new Error(`the broken upload failed: ${await row.innerText()}`);
  if (!calls.some((c) => c.method === 'HEAD')) throw new Error(`no HEAD after the broken chunk: ${JSON.stringify(calls)}`);
  await page.unroute('**/hub/api/uploads/*');
  await screenshot(page, 'retried');

  /** Starts uploading `file` and reloads the page while its second chunk is on the way
   *  (`forget`: the browser's memory of the upload is lost too, as in another browser). */
  const cutOffByReload = async (file, forget) => {
    let held = null;
    let patches = 0;
    await page.route('**/hub/api/uploads/*', (route) => {
      if (route.request().method() === 'PATCH') {
        patches += 1;
        // The first chunk arrives; the second is cut off by the reload (how much of it reaches
        // the hub is up to the network stack: the page must go on from what the hub has).
        if (patches >= 2) { held = route; return undefined; }
      }
      return route.continue();
    });
    await page.setInputFiles('#pick-files', file);
    for (let i = 0; i < 600 && !held; i += 1) await page.waitForTimeout(100);
    if (!held) throw new Error('the second chunk was never sent');
    await page.unroute('**/hub/api/uploads/*');
    if (forget) await page.evaluate(() => localStorage.clear());
    await page.reload();
    await page.waitForSelector('#resume-panel:not([hidden])');
  };

  /** Checks that the last upload went on from the offset the hub gave, without a new POST. */
  const wentOn = (what) => {
    const firstPatch = calls.find((c) => c.method === 'PATCH');
    if (!firstPatch || !heads.length || firstPatch.offset !== heads[0] || Number(heads[0]) < CHUNK) {
      throw new Error(`${what} did not go on from the hub's offset: ${JSON.stringify({ calls, heads })}`);
    }
    if (calls.some((c) => c.method === 'POST')) throw new Error(`${what} was declared again: ${JSON.stringify(calls)}`);
    step(`${what} went on from byte ${heads[0]}`);
  };

  step('a reload in the middle of a file; choosing it again goes on from the hub\'s offset');
  const reloadedName = path.basename(reloadedFile);
  await cutOffByReload(reloadedFile, false);
  const offered = page.locator(`#resume-list li[data-path="${reloadedName}"]`);
  await expectText(offered, /MB of 24 MB \((3[3-9]|[4-9]\d)%\)/, 'the unfinished upload');
  await screenshot(page, 'resume-offered');
  calls.length = 0;
  heads.length = 0;
  await page.setInputFiles('#pick-files', reloadedFile);
  row = await settled(page, reloadedName);
  if ((await row.getAttribute('data-state')) !== 'done') throw new Error(`the resumed upload failed: ${await row.innerText()}`);
  wentOn('the file chosen again');
  await page.waitForSelector('#resume-panel', { state: 'hidden' });
  await screenshot(page, 'resumed');

  step('the same after the browser forgot the upload: "Resume…" in the list takes the file');
  const forgottenName = path.basename(forgottenFile);
  await cutOffByReload(forgottenFile, true);
  calls.length = 0;
  heads.length = 0;
  const [chooser] = await Promise.all([
    page.waitForEvent('filechooser'),
    page.click(`#resume-list li[data-path="${forgottenName}"] .js-resume`),
  ]);
  await chooser.setFiles(forgottenFile);
  row = await settled(page, forgottenName);
  if ((await row.getAttribute('data-state')) !== 'done') throw new Error(`the resumed upload failed: ${await row.innerText()}`);
  wentOn('the upload resumed from the list');
  await page.waitForSelector('#resume-panel', { state: 'hidden' });

  step('a file over the storage limit: the hub\'s 413 message beside it');
  const tooBigName = path.basename(tooBigFile);
  calls.length = 0;
  await page.setInputFiles('#pick-files', tooBigFile);
  row = await settled(page, tooBigName);
  if ((await row.getAttribute('data-state')) !== 'failed') throw new Error('the file over the limit was accepted');
  if (calls.some((c) => c.method === 'PATCH')) throw new Error('bytes were sent before the limit was checked');
  const message = (await row.locator('.js-error').innerText()).trim();
  if (!message) throw new Error('no message beside the refused file');
  await expectText(page.locator('#upload-overall-text'), /1 failed/, 'the summary');
  await row.scrollIntoViewIfNeeded();
  await screenshot(page, 'over-limit');

  step('the tree lists the three files that arrived');
  await page.waitForFunction((names) => names.every((n) => document.querySelector(`#file-rows tr[data-name="${n}"]`)), [brokenName, reloadedName, forgottenName]);
  if (await page.locator(`#file-rows tr[data-name="${tooBigName}"]`).count()) throw new Error('the refused file is listed');
  console.log(JSON.stringify({ ok: true, limit_message: message }));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
