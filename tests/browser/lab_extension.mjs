// The JupyterLab extension's status bar item and Release command, in Debian's Chromium driven by
// playwright-core:
//
// 1. log in, open the running server's JupyterLab: the status bar shows the cluster's running
//    time and its cost so far;
// 2. an administrator gives the user a budget of 0 (used up at once): within a refresh (15 s)
//    the item turns to its danger style and says when the cluster will be released;
// 3. "Release this cluster…" is in the command palette; from the Xiji menu, after the
//    confirmation, the cluster is released and the page goes to the hub's home page.
//
// Run by tests/tests/lab_extension.rs, which installs the extension, starts the user's server
// and checks through the API that it stopped. Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD,
//   XIJI_ADMIN_TOKEN, XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, settleLab, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const adminToken = env('XIJI_ADMIN_TOKEN');
const { browser, screenshot, newPage } = await launch();
let page;

/** Waits (up to `seconds`) until `locator`'s text matches `pattern`. */
const expectText = async (locator, pattern, what, seconds = 60) => {
  let text = '';
  for (let i = 0; i < seconds * 5; i += 1) {
    text = (await locator.innerText().catch(() => '')).trim();
    if (pattern.test(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: ${JSON.stringify(text)} does not match ${pattern}`);
};

try {
  page = await newPage();
  step('log in and open JupyterLab');
  await login(page, base, user, env('XIJI_PASSWORD'));
  await page.goto(`${base}/user/${encodeURIComponent(user)}/lab`);
  await waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/lab`), 120_000);
  await settleLab(page, page.locator('.jp-LauncherCard[data-category="Notebook"]').first());

  step('the status bar shows the running time and the cost');
  const item = page.locator('#xiji-usage-status');
  const first = await expectText(item, /^Running \d+:\d\d(:\d\d)? · [\d.]+ spent$/, 'the usage item');
  step(`status bar: ${first}`);
  if ((await item.getAttribute('data-state')) !== 'none') throw new Error('a budget where none is set');
  // The running time ticks.
  await page.waitForTimeout(2_500);
  const later = await item.innerText();
  if (later === first) throw new Error(`the running time does not move: ${later}`);
  await screenshot(page, 'status-bar');

  step('under the automatic release policy, leaving JupyterLab asks first');
  // Browsers ask only on a page the user has touched.
  await item.click();
  let asked = null;
  page.once('dialog', async (dialog) => { asked = dialog.type(); await dialog.dismiss(); });
  await page.evaluate(() => { setTimeout(() => { window.location.href = '/hub/home'; }, 0); });
  for (let i = 0; i < 50 && asked === null; i++) { await page.waitForTimeout(100); }
  if (asked !== 'beforeunload') throw new Error(`leaving the page asked nothing (${asked})`);
  await page.waitForTimeout(500);
  if (!/\/lab/.test(page.url())) throw new Error(`the page left after all: ${page.url()}`);

  step('an administrator sets a budget that is used up');
  const resp = await fetch(`${base}/hub/api/budgets`, {
    method: 'POST',
    headers: { Authorization: `token ${adminToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ kind: 'user', target: user, limit: 0, note: 'used up' }),
  });
  if (!resp.ok) throw new Error(`POST /hub/api/budgets: ${resp.status} ${await resp.text()}`);
  await expectText(item, /budget used up: release at \d\d?:\d\d/, 'the used-up budget', 40);
  if ((await item.getAttribute('data-state')) !== 'exceeded') throw new Error('not in the exceeded state');
  const classes = await item.getAttribute('class');
  if (!/xiji-mod-exceeded/.test(classes)) throw new Error(`no danger style: ${classes}`);
  await screenshot(page, 'budget-used-up');

  step('"Release this cluster…" is in the command palette');
  await page.keyboard.press('Control+Shift+C');
  await page.locator('.lm-CommandPalette-input').fill('Release this cluster');
  await page.locator('.lm-CommandPalette-item', { hasText: 'Release this cluster' }).first().waitFor();
  await page.keyboard.press('Escape');

  step('Xiji → Release this cluster…, confirmed');
  await page.locator('.lm-MenuBar-itemLabel', { hasText: 'Xiji' }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: 'Release this cluster' }).first().click();
  const dialog = page.locator('.jp-Dialog');
  await expectText(dialog.locator('.jp-Dialog-header'), /Release this cluster\?/, 'the confirmation');
  await screenshot(page, 'release-confirm');
  await Promise.all([
    waitForUrl(page, /\/hub\/home/, 120_000),
    dialog.locator('button.jp-mod-warn', { hasText: 'Release' }).click(),
  ]);
  await page.locator('#servers').waitFor();
  await screenshot(page, 'released');
  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
