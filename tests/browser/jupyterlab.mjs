// A user's first session, in Debian's Chromium driven by playwright-core:
// log in at /hub/login, start the server from /hub/home, land in JupyterLab once it is ready,
// create a notebook, run print(6*7) and see 42. Screenshots go to $XIJI_ARTIFACTS.
//
// Run by tests/tests/browser.rs, which starts the hub and creates the user. Environment:
//   XIJI_URL (http://127.0.0.1:PORT), XIJI_USER, XIJI_PASSWORD, XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES (holds playwright-core), CHROMIUM (default /usr/bin/chromium)
import { env, launch, login, runInNewNotebook, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const { browser, screenshot, newPage } = await launch();
let page;
try {
  page = await newPage();

  step('log in');
  await page.goto(`${base}/hub/login`);
  await screenshot(page, 'login');
  await login(page, base, user, env('XIJI_PASSWORD'));
  await page.waitForURL('**/hub/home**');

  step('start the server: the page follows its progress, then lands in JupyterLab');
  await page.waitForSelector('#start', { state: 'visible' });
  await screenshot(page, 'home');
  await Promise.all([
    waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/lab`), 300_000),
    (async () => {
      await page.click('#start');
      await page.waitForSelector('#progress-bar', { state: 'attached' });
      await screenshot(page, 'started');
    })(),
  ]);
  await page.locator('.jp-LauncherCard[data-category="Notebook"]').first()
    .waitFor({ state: 'visible', timeout: 180_000 });
  await screenshot(page, 'jupyterlab');

  step('create a notebook and run print(6*7)');
  const text = await runInNewNotebook(page, 'print(6*7)', '42');
  await screenshot(page, 'output');
  if (text !== '42') throw new Error(`the output is ${JSON.stringify(text)}, not 42`);
  step('saw 42');
  console.log(JSON.stringify({ ok: true, output: text, url: page.url() }));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
