// What every browser test shares: its environment, Debian's Chromium through playwright-core,
// numbered screenshots, logging in at /hub/login, and running a cell in a JupyterLab notebook.
//
// Environment: XIJI_URL (http://127.0.0.1:PORT), XIJI_ARTIFACTS (screenshots),
// XIJI_TEST_NODE_MODULES (holds playwright-core), CHROMIUM (default /usr/bin/chromium).
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** A required environment variable (or the fallback). */
export const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (!value) throw new Error(`${name} is not set (run tests/setup-env.sh; tests/run sets everything)`);
  return value;
};

export const step = (message) => console.log(`[browser] ${new Date().toISOString()} ${message}`);

/** Chromium with the flags this machine needs, and a page helper with numbered screenshots. */
export async function launch() {
  const artifacts = env('XIJI_ARTIFACTS');
  mkdirSync(artifacts, { recursive: true });
  const { chromium } = require(path.join(env('XIJI_TEST_NODE_MODULES'), 'playwright-core'));
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-dev-shm-usage'],
  });
  let shot = 0;
  const screenshot = async (page, name) => {
    shot += 1;
    const file = path.join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file, fullPage: false });
    step(`screenshot ${file}`);
  };
  const newPage = async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    page.on('pageerror', (e) => step(`page error: ${e.message}`));
    return page;
  };
  return { browser, screenshot, newPage };
}

/** Waits until the page is at a URL matching `pattern` and loaded. A load aborted on the way
 *  (`net::ERR_ABORTED`: the page went on to the next URL of a redirect before the last one
 *  loaded, or Chromium dropped the load when Docker added a network interface) is not a failure:
 *  it waits on, up to `timeout` in all, and loads the page again if it stopped on a match. */
export async function waitForUrl(page, pattern, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      await page.waitForURL(pattern, { timeout: Math.max(1_000, deadline - Date.now()) });
      return;
    } catch (error) {
      const aborted = /ERR_ABORTED|ERR_NETWORK_CHANGED|frame was detached/.test(String(error));
      if (!aborted || Date.now() > deadline) throw error;
      step(`a load was aborted on the way (${String(error).split('\n')[0]}); waiting on`);
      await page.waitForTimeout(500);
      if (pattern.test(page.url())) {
        await page.reload({ timeout: Math.max(1_000, deadline - Date.now()) }).catch(() => {});
      }
    }
  }
}

/** Logs in at /hub/login and waits until the hub has moved on from the login page. */
export async function login(page, base, user, password) {
  await page.goto(`${base}/hub/login`);
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForURL('**/hub/**'), page.click('#login')]);
}

/** Waits for JupyterLab's launcher card `card`. When one of JupyterLab's own files failed to
 *  load (Chromium drops the loads in flight when Docker adds a network interface on this
 *  machine, as another test's cluster starts), JupyterLab shows a modal error over the page:
 *  the page is loaded again, up to three times. */
export async function settleLab(page, card) {
  for (let attempt = 1; ; attempt += 1) {
    await card.waitFor({ state: 'visible', timeout: 180_000 });
    await page.waitForTimeout(500);
    const failed = page.locator('.jp-Dialog[aria-label^="Error"]');
    if (!(await failed.count()) || attempt > 3) return;
    step(`JupyterLab failed to load part of itself (${await failed.first().getAttribute('aria-label')}); loading it again`);
    await page.reload();
  }
}

/** In an open JupyterLab: a new notebook from the launcher, `code` run in its first cell; the
 *  output that contains `expect` is returned (its text). */
export async function runInNewNotebook(page, code, expect) {
  const notebookCard = page.locator('.jp-LauncherCard[data-category="Notebook"]').first();
  await settleLab(page, notebookCard);
  await notebookCard.click();
  // Some versions ask for a kernel; accept the proposed one.
  const kernelDialog = page.locator('.jp-Dialog .jp-mod-accept');
  const editor = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content').first();
  await Promise.race([
    editor.waitFor({ state: 'visible', timeout: 120_000 }),
    kernelDialog.waitFor({ state: 'visible', timeout: 120_000 }).then(() => kernelDialog.click()),
  ]);
  await editor.waitFor({ state: 'visible', timeout: 120_000 });
  // A cell run before the kernel is idle can be dropped: wait for the status bar's "Idle".
  await page
    .locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')
    .first()
    .waitFor({ state: 'attached', timeout: 120_000 })
    .catch(() => step('no idle indicator found; running anyway'));
  await editor.click();
  await page.keyboard.type(code);
  const output = page
    .locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')
    .filter({ hasText: expect })
    .first();
  // An execute request sent while the kernel's websocket is still settling can be lost (the cell
  // keeps its empty prompt): run the cell again, in place, until its output shows.
  for (let attempt = 1; ; attempt += 1) {
    await editor.click();
    await page.keyboard.press('Control+Enter');
    try {
      await output.waitFor({ state: 'visible', timeout: 30_000 });
      break;
    } catch (error) {
      if (attempt >= 4) throw error;
      step(`no output after run ${attempt}; running the cell again`);
    }
  }
  return (await output.innerText()).trim();
}
