// The storage pools' administration page in Debian's Chromium, driven by playwright-core: the
// administrator logs in, opens Admin → Storage, sees the default pool's sizes, adds a GlusterFS
// pool with the form, is refused a pool whose declared type does not match its mount (and sees
// why), drains the new pool, removes it (it is empty), and looks at the page in Chinese.
// Screenshots go to $XIJI_ARTIFACTS.
//
// Run by tests/tests/storage_pools.rs, which mounts nothing itself (tests/setup-storage.sh did).
// Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_ARTIFACTS, XIJI_POOL_GLUSTER (a folder
//   on the GlusterFS volume), XIJI_POOL_LOCAL (a folder on a local filesystem),
//   XIJI_TEST_NODE_MODULES (holds playwright-core), CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const glusterPath = env('XIJI_POOL_GLUSTER');
const localPath = env('XIJI_POOL_LOCAL');
const { browser, screenshot, newPage } = await launch();
let page;
const expectText = async (locator, pattern, what) => {
  const text = (await locator.innerText()).trim();
  if (!pattern.test(text)) throw new Error(`${what}: ${JSON.stringify(text)} does not match ${pattern}`);
  return text;
};
try {
  page = await newPage();
  page.on('dialog', (dialog) => dialog.accept());

  step('log in as the administrator and open Admin → Storage');
  await login(page, base, user, password);
  await page.goto(`${base}/hub/admin`);
  await page.click('#admin-nav-storage');
  await page.waitForURL('**/hub/admin/storage');
  const defaultRow = page.locator('tr[data-pool-name="default"]');
  await expectText(defaultRow.locator('.pool-free'), /free$/, 'the default pool\'s free space');
  await screenshot(page, 'pools');

  step('add the GlusterFS pool');
  await page.fill('#pool-name', 'gluster-1');
  await page.fill('#pool-path', glusterPath);
  await page.selectOption('#pool-type', 'glusterfs');
  await page.fill('#pool-capacity', '0.1');
  await Promise.all([page.waitForURL('**/hub/admin/storage?done=added'), page.click('#add-pool')]);
  await expectText(page.locator('#pools-done'), /added/, 'the message after adding');
  const row = page.locator('tr[data-pool-name="gluster-1"]');
  await expectText(row, /fuse\.glusterfs/, 'the new pool\'s mount');
  await expectText(row.locator('.pool-used'), /of 102.4M used/, 'the capped size');
  // The bar is a <progress>: the page's CSP would drop an inline style's width.
  const bar = row.locator('.pool-space progress');
  const value = await bar.getAttribute('value');
  if (value === null || Number.isNaN(Number(value))) {
    throw new Error(`the pool's space bar has no value: ${value}`);
  }
  await screenshot(page, 'added');

  step('a local folder declared as GlusterFS is refused, with the reason');
  await page.fill('#pool-name', 'wrong-type');
  await page.fill('#pool-path', localPath);
  await page.selectOption('#pool-type', 'glusterfs');
  await page.fill('#pool-capacity', '');
  await page.click('#add-pool');
  await expectText(page.locator('#pool-error'), /not a GlusterFS volume/, 'the refusal');
  if ((await page.inputValue('#pool-path')) !== localPath) throw new Error('the typed path was lost');
  if (await page.locator('tr[data-pool-name="wrong-type"]').count()) throw new Error('the refused pool was added');
  await screenshot(page, 'refused');

  step('drain the new pool, then remove it');
  const id = await row.getAttribute('data-pool-id');
  await Promise.all([page.waitForURL('**/hub/admin/storage?done=drained'), page.click(`#drain-pool-${id}`)]);
  await expectText(page.locator('tr[data-pool-name="gluster-1"] .pill'), /Draining/, 'the state after draining');
  await screenshot(page, 'drained');
  await Promise.all([page.waitForURL('**/hub/admin/storage?done=removed'), page.click(`#remove-pool-${id}`)]);
  if (await page.locator('tr[data-pool-name="gluster-1"]').count()) throw new Error('the removed pool is still listed');
  await screenshot(page, 'removed');

  step('the page in Chinese');
  await page.goto(`${base}/hub/lang/zh?next=/hub/admin/storage`);
  await expectText(page.locator('h1'), /存储池管理/, 'the Chinese title');
  await screenshot(page, 'chinese');
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
