// A cluster started from the home page's spawn form on the compute pool the user chooses, in
// Debian's Chromium driven by playwright-core, on the kubernetes backend:
//
// The user logs in, sees the form's "Compute pool" choice with the defined pools, asks for one
// node in the pool $XIJI_POOL, presses Start and lands in JupyterLab. Run by
// tests/tests/kubernetes.rs, which checks afterwards which Kubernetes node the pod went to.
// Screenshots go to $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_USER, XIJI_USER_PASSWORD, XIJI_POOL, XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_USER_PASSWORD');
const pool = env('XIJI_POOL');

const { browser, screenshot, newPage } = await launch();
let page;
try {
  page = await newPage();
  await login(page, base, user, password);
  await page.goto(`${base}/hub/home`);
  step('the form offers the compute pools');
  const offered = await page.locator('#spawn-pool option').evaluateAll(
    (options) => options.map((o) => o.value),
  );
  if (!offered.includes(pool) || !offered.includes('')) {
    throw new Error(`the pool choice offers ${JSON.stringify(offered)}, not ${pool} and the default`);
  }
  await page.fill('#spawn-nodes', '1');
  await page.fill('#spawn-memory', '1G');
  await page.selectOption('#spawn-pool', pool);
  await screenshot(page, 'form');
  step(`start on the pool ${pool}`);
  await page.click('#start');
  await waitForUrl(page, new RegExp(`/user/${user}/lab`), 120_000);
  await page.locator('.jp-LauncherCard').first().waitFor({ timeout: 60_000 });
  await screenshot(page, 'lab');
  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  if (page) await screenshot(page, 'failure').catch(() => {});
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
