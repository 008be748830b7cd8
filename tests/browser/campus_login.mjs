// Campus login in Debian's Chromium: click "Log in with Campus" on /hub/login, sign in on the
// identity provider's own page (npm oidc-provider, tests/oidc/provider.mjs), land on the hub's
// home page, start the server and reach JupyterLab, then log out: the provider asks to confirm
// its own sign-out and sends the browser back to the hub's login page.
//
// Run by tests/tests/campus_login.rs, which starts the hub and the provider. Environment:
//   XIJI_URL, XIJI_USER (a user the provider knows), XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES,
//   CHROMIUM
import { env, launch, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const { browser, screenshot, newPage } = await launch();
let page;
try {
  page = await newPage();

  step('the login page offers the campus provider');
  await page.goto(`${base}/hub/login`);
  await page.waitForSelector('#campus-login', { state: 'visible' });
  await screenshot(page, 'login');

  step('click "Log in with Campus" and sign in at the provider');
  await Promise.all([page.waitForURL('**/interaction/**'), page.click('#campus-login')]);
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', 'any password');
  await screenshot(page, 'provider');
  await Promise.all([
    waitForUrl(page, /\/hub\/home/, 60_000),
    page.click('button[type="submit"]'),
  ]);
  await page.waitForSelector('#start', { state: 'visible' });
  const home = await page.content();
  if (!home.includes(user)) throw new Error(`the home page does not name ${user}`);
  await screenshot(page, 'home');

  step('start the server: the page follows its progress, then lands in JupyterLab');
  await Promise.all([
    waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/lab`), 300_000),
    page.click('#start'),
  ]);
  await page.locator('.jp-LauncherCard').first().waitFor({ state: 'visible', timeout: 180_000 });
  await screenshot(page, 'jupyterlab');

  step('log out: the hub, then the provider after its confirmation');
  await page.goto(`${base}/hub/home`);
  await Promise.all([page.waitForURL('**/session/end**'), page.click('#logout')]);
  await screenshot(page, 'provider-logout');
  await Promise.all([
    waitForUrl(page, /\/hub\/login/, 60_000),
    page.click('button[name="logout"]'),
  ]);
  await page.waitForSelector('#campus-login', { state: 'visible' });
  await screenshot(page, 'logged-out');
  console.log(JSON.stringify({ ok: true, url: page.url() }));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
    step(`failed at ${page.url()}`);
  }
  throw error;
} finally {
  await browser.close();
}
