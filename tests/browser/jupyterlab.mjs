// A user's first session, in Debian's Chromium driven by playwright-core:
// log in at /hub/login, start the server from /hub/home, open it, land in JupyterLab,
// create a notebook, run print(6*7) and see 42. Screenshots go to $XIJI_ARTIFACTS.
//
// Run by tests/tests/browser.rs, which starts the hub and creates the user. Environment:
//   XIJI_URL (http://127.0.0.1:PORT), XIJI_USER, XIJI_PASSWORD, XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES (holds playwright-core), CHROMIUM (default /usr/bin/chromium)
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (!value) throw new Error(`${name} is not set (run tests/setup-env.sh; tests/run sets everything)`);
  return value;
};
const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const artifacts = env('XIJI_ARTIFACTS');
const { chromium } = require(path.join(env('XIJI_TEST_NODE_MODULES'), 'playwright-core'));
mkdirSync(artifacts, { recursive: true });

const step = (message) => console.log(`[browser] ${new Date().toISOString()} ${message}`);
let shot = 0;
const screenshot = async (page, name) => {
  shot += 1;
  const file = path.join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  step(`screenshot ${file}`);
};

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-dev-shm-usage',
  ],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
  page = await context.newPage();
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (e) => step(`page error: ${e.message}`));

  step('log in');
  await page.goto(`${base}/hub/login`);
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await screenshot(page, 'login');
  await Promise.all([page.waitForURL('**/hub/home**'), page.click('#login')]);

  step('start the server');
  await page.waitForSelector('#start', { state: 'visible' });
  await screenshot(page, 'home');
  await page.click('#start');
  await page.waitForSelector('#progress-bar', { state: 'attached' });
  await page.waitForSelector('#open', { state: 'visible', timeout: 180_000 });
  await screenshot(page, 'started');

  step('open JupyterLab');
  await Promise.all([
    page.waitForURL(new RegExp(`/user/${encodeURIComponent(user)}/lab`), { timeout: 120_000 }),
    page.click('#open'),
  ]);
  // The launcher is JupyterLab's first screen in a fresh home directory.
  const notebookCard = page.locator('.jp-LauncherCard[data-category="Notebook"]').first();
  await notebookCard.waitFor({ state: 'visible', timeout: 180_000 });
  await screenshot(page, 'jupyterlab');

  step('create a notebook');
  await notebookCard.click();
  // Some versions ask for a kernel; accept the proposed one.
  const kernelDialog = page.locator('.jp-Dialog .jp-mod-accept');
  const editor = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content').first();
  await Promise.race([
    editor.waitFor({ state: 'visible', timeout: 120_000 }),
    kernelDialog.waitFor({ state: 'visible', timeout: 120_000 }).then(() => kernelDialog.click()),
  ]);
  await editor.waitFor({ state: 'visible', timeout: 120_000 });
  // Wait until the kernel is connected and idle, as a user would see it in the status bar
  // ("Python 3 (ipykernel) | Idle"); a cell run before that is dropped.
  await page
    .locator('#jp-main-statusbar')
    .getByText(/\|\s*Idle/)
    .first()
    .waitFor({ state: 'visible', timeout: 120_000 });
  await screenshot(page, 'notebook');

  step('run print(6*7)');
  const firstCell = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').first();
  const output = firstCell.locator('.jp-OutputArea-output').filter({ hasText: '42' }).first();
  await editor.click();
  await page.keyboard.type('print(6*7)');
  await page.keyboard.press('Shift+Enter');
  await output.waitFor({ state: 'visible', timeout: 120_000 });
  const text = (await output.innerText()).trim();
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
