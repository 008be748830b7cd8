// The compute nodes' administration in Debian's Chromium, driven by playwright-core:
//
// 1. The administrator opens Admin → Compute nodes: the Docker host is listed, ready, in the pool
//    default, with one cluster node running and its CPU and memory bars showing that use.
// 2. A pool is defined with the form. The Docker host cannot move between pools (it is always in
//    default, as the page says), so the page offers neither Remove nor "Add a compute node"; the
//    pool is removed again.
// 3. The page in Chinese.
//
// Run by tests/tests/compute_nodes.rs, which starts the hub on the docker backend with a 1-node
// cluster running (0.5 cores, 512 MiB) and checks the result through the API afterwards.
// Screenshots go to $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_ADMIN, XIJI_ADMIN_PASSWORD, XIJI_HOST (the Docker host's name),
//   XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const admin = env('XIJI_ADMIN');
const adminPassword = env('XIJI_ADMIN_PASSWORD');
const host = env('XIJI_HOST');

const { browser, screenshot, newPage } = await launch();
let page;

/** Waits (up to 60 s) until `locator`'s text matches `pattern`. */
const expectText = async (locator, pattern, what) => {
  let text = '';
  for (let i = 0; i < 300; i += 1) {
    text = (await locator.innerText().catch(() => '')).trim();
    if (pattern.test(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: ${JSON.stringify(text)} does not match ${pattern}`);
};

try {
  step('the administrator opens the compute nodes');
  page = await newPage();
  page.on('dialog', (d) => d.accept());
  await login(page, base, admin, adminPassword);
  await page.click('#nav-admin');
  await page.waitForURL('**/hub/admin');
  await Promise.all([page.waitForURL('**/hub/admin/compute-nodes'), page.click('#admin-nav-compute')]);
  const row = page.locator(`#compute-node-table tr[data-node="${host}"]`);
  await row.waitFor();
  if ((await row.getAttribute('data-status')) !== 'ready') throw new Error('the host is not ready');
  await expectText(row.locator('.compute-pool'), /^default$/, 'the host\'s pool');
  await expectText(row.locator('.compute-status'), /^Ready$/, 'the host\'s status');
  await expectText(row.locator('.compute-clusters'), /^1$/, 'the running cluster node');
  await expectText(row.locator('.compute-cpu .quota-value'), /^0\.5 used of \d+(\.\d+)?$/, 'the CPU used');
  await expectText(row.locator('.compute-memory .quota-value'), /^512 MiB used of /, 'the memory used');
  const cpuBar = row.locator('.compute-cpu progress');
  if ((await cpuBar.getAttribute('value')) !== '500') throw new Error('the CPU bar does not show 500 thousandths');
  await expectText(row.locator('.compute-version'), /^Docker /, 'the version');
  await row.locator('.compute-conditions summary').click();
  await expectText(row.locator('[data-condition="Ready"]'), /Ready: True/, 'the Ready condition');
  if (await row.locator('[data-problem]').count()) throw new Error('a ready host shows a problem');
  // The CSP forbids inline styles: the bars are <progress> elements, not styled widths.
  if (await page.locator('main [style]').count()) throw new Error('an inline style on the page');
  await screenshot(page, 'compute-nodes-en');

  step('a pool is defined');
  await page.fill('#compute-pool-name', 'gpu');
  await page.fill('#compute-pool-description', 'A100 nodes');
  await Promise.all([page.waitForURL('**/compute-nodes?done=pool_added'), page.click('#compute-pool-add')]);
  await expectText(page.locator('#compute-done'), /pool was added/, 'the message');
  await page.locator('#compute-pool-table tr[data-pool="gpu"]').waitFor();

  step('a one-host backend offers no moves of its host');
  await expectText(page.locator('#compute-one-host'), /default/, 'the one-host note');
  if (await page.locator('#compute-add, #compute-add-form, .compute-remove').count()) {
    throw new Error('the Docker backend offers to add or remove its host');
  }
  await expectText(page.locator(`#compute-node-table tr[data-node="${host}"] .compute-pool`), /^default$/, 'the host\'s pool');

  step('the empty pool is removed');
  await Promise.all([
    page.waitForURL('**/compute-nodes?done=pool_removed'),
    page.click('#compute-pool-table tr[data-pool="gpu"] .compute-remove-pool'),
  ]);
  if (await page.locator('#compute-pool-table tr[data-pool="gpu"]').count()) throw new Error('the removed pool is listed');
  if (await page.locator('#compute-pool-table tr[data-pool="default"] .compute-remove-pool').count()) {
    throw new Error('default holds the host but offers Remove');
  }

  step('the page in Chinese');
  await page.goto(`${base}/hub/lang/zh?next=/hub/admin/compute-nodes`);
  await expectText(page.locator('h1'), /计算节点管理/, 'the Chinese title');
  await expectText(page.locator(`#compute-node-table tr[data-node="${host}"] .compute-status`), /就绪/, 'the Chinese status');
  await screenshot(page, 'compute-nodes-zh');
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
