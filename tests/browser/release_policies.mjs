// Release policies in Debian's Chromium, driven by playwright-core. One scenario per run
// (XIJI_MODE), each on a hub of its own started by tests/tests/release_policies.rs:
//
//   automatic  the user starts JupyterLab from the home page; the proxy counts its websockets;
//              the tab is closed and the same JupyterLab opened again within the grace period
//              (a reload that took a while): the cluster is kept; the tab is closed for good:
//              the cluster is released after the grace period, and the home page says so.
//   manual     JupyterLab is closed: the cluster still runs after the grace period; the home
//              page's Release button releases it.
//   on_logout  logging out releases the cluster.
//   forced     an administrator releases the user's running cluster from /hub/admin/release with
//              a reason; the user's home page shows the reason.
//
// Environment: XIJI_URL, XIJI_MODE, XIJI_USER, XIJI_PASSWORD, XIJI_ADMIN_TOKEN (for reading the
// server's state), XIJI_GRACE (seconds), XIJI_ADMIN_USER and XIJI_ADMIN_PASSWORD (forced),
// XIJI_REASON (forced), XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM.
import { env, launch, login, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const mode = env('XIJI_MODE');
const user = env('XIJI_USER');
const token = env('XIJI_ADMIN_TOKEN');
const grace = Number(env('XIJI_GRACE'));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(path) {
  const response = await fetch(`${base}/hub/api${path}`, { headers: { Authorization: `token ${token}` } });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** 'running', 'spawn', 'stop' (pending) or 'stopped', as the API says. */
async function serverState() {
  const model = await api(`/users/${encodeURIComponent(user)}`);
  const server = (model.servers || {})[''];
  if (!server) return 'stopped';
  return server.ready ? 'running' : (server.pending || 'pending');
}

/** The open websockets the proxy reports for the user's route (null: no route). */
async function openWebsockets() {
  const routes = await api('/proxy');
  const route = routes[`/user/${encodeURIComponent(user)}/`];
  return route ? route.data.open_websockets : null;
}

async function waitFor(what, check, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`);
    await sleep(250);
  }
}

async function waitForLauncher(page) {
  await page.locator('.jp-LauncherCard').first().waitFor({ state: 'visible', timeout: 180_000 });
}

/** Logs in, presses Start on the home page and waits for JupyterLab. */
async function startInBrowser(page, screenshot) {
  await login(page, base, user, env('XIJI_PASSWORD'));
  await page.waitForURL('**/hub/home**');
  await page.waitForSelector('#start', { state: 'visible' });
  await page.waitForSelector('#release-policy');
  await screenshot(page, `${mode}-home`);
  await Promise.all([
    waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/lab`), 300_000),
    page.click('#start'),
  ]);
  await waitForLauncher(page);
  await screenshot(page, `${mode}-jupyterlab`);
}

const { browser, screenshot, newPage } = await launch();
let page;
const result = { ok: false, mode };
try {
  page = await newPage();
  const context = page.context();
  const lab = `${base}/user/${encodeURIComponent(user)}/lab`;

  if (mode === 'automatic') {
    step('start JupyterLab; the proxy counts its websockets');
    await startInBrowser(page, screenshot);
    result.websockets = await waitFor('an open websocket on the route', async () => {
      const n = await openWebsockets();
      return n > 0 ? n : null;
    }, 60);
    step(`${result.websockets} websocket(s) open through the route`);

    step('close the tab, open JupyterLab again within the grace period');
    await page.close();
    await sleep((grace * 1000) / 2);
    page = await context.newPage();
    await page.goto(lab);
    await waitForLauncher(page);
    await screenshot(page, 'automatic-reopened');
    await sleep((grace + 4) * 1000);
    result.kept_after_reopening = await serverState();
    if (result.kept_after_reopening !== 'running') throw new Error(`reopened within the grace, the cluster is ${result.kept_after_reopening}`);

    step('close the tab for good: the cluster is released after the grace period');
    await page.close();
    const closed = Date.now();
    await waitFor('the release', async () => (await serverState()) === 'stopped', grace + 60);
    result.released_after = (Date.now() - closed) / 1000;
    step(`released ${result.released_after} s after the last page closed`);
    page = await context.newPage();
    await page.goto(`${base}/hub/home`);
    await page.locator('.release-notice[data-cause="automatic"]').waitFor({ state: 'visible' });
    await screenshot(page, 'automatic-released-notice');
    result.notice = (await page.locator('.release-notice').first().innerText()).trim();
  } else if (mode === 'manual') {
    step('start JupyterLab, then close it');
    await startInBrowser(page, screenshot);
    await waitFor('an open websocket on the route', async () => (await openWebsockets()) > 0, 60);
    await page.close();
    await sleep((grace + 6) * 1000);
    result.after_grace = await serverState();
    if (result.after_grace !== 'running') throw new Error(`closed under manual, the cluster is ${result.after_grace}`);

    step('the home page still shows it running; Release releases it');
    page = await context.newPage();
    await page.goto(`${base}/hub/home`);
    const release = page.locator('#stop');
    await release.waitFor({ state: 'visible' });
    result.button = (await release.innerText()).trim();
    await screenshot(page, 'manual-still-running');
    await release.click();
    await page.waitForSelector('#start', { state: 'visible', timeout: 60_000 });
    await waitFor('the release', async () => (await serverState()) === 'stopped', 60);
    result.after_release = 'stopped';
    await screenshot(page, 'manual-released');
  } else if (mode === 'on_logout') {
    step('start JupyterLab, then log out');
    await startInBrowser(page, screenshot);
    const before = Date.now();
    await page.goto(`${base}/hub/logout`);
    await page.waitForURL('**/hub/login**');
    await waitFor('the release on logout', async () => (await serverState()) === 'stopped', 60);
    result.released_after = (Date.now() - before) / 1000;
    await screenshot(page, 'on-logout-released');
  } else if (mode === 'forced') {
    step('the administrator releases the cluster with a reason');
    const reason = env('XIJI_REASON');
    await login(page, base, env('XIJI_ADMIN_USER'), env('XIJI_ADMIN_PASSWORD'));
    await page.goto(`${base}/hub/admin/release`);
    const row = page.locator(`#release-clusters tr[data-user="${user}"]`);
    await row.waitFor({ state: 'visible' });
    await row.locator('input[name="reason"]').fill(reason);
    await screenshot(page, 'forced-admin-page');
    page.once('dialog', (dialog) => dialog.accept());
    await Promise.all([page.waitForURL('**/hub/admin/release?done=released'), row.locator('.js-force-release').click()]);
    await page.locator('#release-done').waitFor({ state: 'visible' });
    await screenshot(page, 'forced-admin-done');
    await waitFor('the release', async () => (await serverState()) === 'stopped', 60);

    step('the user sees the reason on their home page');
    const userPage = await newPage();
    await login(userPage, base, user, env('XIJI_PASSWORD'));
    await userPage.goto(`${base}/hub/home`);
    const notice = userPage.locator('.release-notice[data-cause="forced"]');
    await notice.waitFor({ state: 'visible' });
    result.reason_shown = (await notice.locator('.js-release-reason').innerText()).trim();
    await screenshot(userPage, 'forced-user-sees-reason');
  } else {
    throw new Error(`unknown XIJI_MODE ${mode}`);
  }
  result.ok = true;
  console.log(JSON.stringify(result));
} catch (error) {
  if (page && !page.isClosed()) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  console.log(JSON.stringify(result));
  process.exitCode = 1;
} finally {
  await browser.close();
}
