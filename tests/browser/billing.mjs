// The usage page and the spawn form's cost in Debian's Chromium, driven by playwright-core:
//
// 1. The user opens Usage for March 2026: the total, the stacked bar chart (a bar per resource
//    and used day, none on idle days) and the per-day table; the per-day costs add up to the
//    total shown; the budget banner warns (80 % of a budget is used this month).
// 2. On the home page, the spawn form's projected cost per hour follows the sizes typed (at the
//    test's prices), and "Wait in line if the hardware is busy" is offered.
// 3. The administrator opens Admin → Prices & budgets and sees the budget and the prices.
//
// Run by tests/tests/billing.rs, which writes the ledger rows, the prices and the budget.
// Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_ADMIN, XIJI_ADMIN_PASSWORD, XIJI_TOTAL
//   (the month's cost as the page shows it), XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const admin = env('XIJI_ADMIN');
const adminPassword = env('XIJI_ADMIN_PASSWORD');
const total = env('XIJI_TOTAL');

const { browser, screenshot, newPage } = await launch();
const fail = (message) => { throw new Error(message); };

try {
  let page = await newPage();
  await login(page, base, user, password);
  step('the usage page of March 2026');
  await page.goto(`${base}/hub/usage?month=2026-03`);
  await page.waitForSelector('#usage-chart');
  const shown = (await page.innerText('#usage-total-cost')).trim();
  if (shown !== total) fail(`the total is ${shown}, not ${total}`);
  const bars = await page.locator('#usage-chart rect.usage-bar').count();
  const barDays = await page.$$eval('#usage-chart rect.usage-bar', (rs) => [...new Set(rs.map((r) => r.getAttribute('data-day')))]);
  step(`${bars} bars on ${barDays.join(', ')}`);
  if (barDays.length !== 3 || bars < 4) fail(`expected bars on 3 days (one with a GPU part): ${bars} on ${barDays}`);
  const box = await page.locator('#usage-chart').boundingBox();
  if (!box || box.width < 300 || box.height < 80) fail(`the chart is not drawn: ${JSON.stringify(box)}`);
  const micros = await page.$$eval('#usage-days tbody tr', (rows) => rows.map((r) => Number(r.dataset.costMicros)));
  const sum = micros.reduce((a, b) => a + b, 0);
  const totalMicros = Number(await page.getAttribute('#usage-total-cost', 'data-micros'));
  if (sum !== totalMicros) fail(`the days add up to ${sum}, the total is ${totalMicros}`);
  const banner = await page.locator('#budget-banner');
  if (!(await banner.isVisible())) fail('no budget banner at 80 %');
  step(`banner: ${(await banner.innerText()).trim()}`);
  await page.locator('#usage-per-day').scrollIntoViewIfNeeded();
  await screenshot(page, 'usage-chart');
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, 'usage-top');

  step('the spawn form on the home page projects the cost per hour');
  await page.goto(`${base}/hub/home`);
  const cost = page.locator('#spawn-cost-value');
  await page.fill('#spawn-nodes', '2');
  await page.fill('#spawn-cpus', '1.5');
  await page.fill('#spawn-memory', '4G');
  await page.fill('#spawn-gpus', '0');
  // 2 × (1.5 × 2 + 4 × 0.25) = 8 units an hour.
  let text = (await cost.innerText()).trim();
  if (text !== '8.00') fail(`projected ${text}, want 8.00`);
  await page.fill('#spawn-memory', '512M');
  // 2 × (1.5 × 2 + 0.5 × 0.25) = 6.25
  text = (await cost.innerText()).trim();
  if (text !== '6.25') fail(`projected ${text} after a change of memory, want 6.25`);
  await page.locator('#spawn-cost').scrollIntoViewIfNeeded();
  if (!(await page.locator('#spawn-wait').isVisible())) fail('no "wait in line" checkbox');
  await screenshot(page, 'spawn-cost');
  await page.context().close();

  step('the administrator sees prices and budgets');
  page = await newPage();
  await login(page, base, admin, adminPassword);
  await page.goto(`${base}/hub/admin/billing`);
  const budgetRows = await page.locator('#budget-table tbody tr').count();
  if (budgetRows < 1) fail('no budget listed');
  const state = await page.getAttribute('#budget-table tbody tr', 'data-state');
  if (state !== 'warning') fail(`the budget is ${state}, not warning`);
  await screenshot(page, 'admin-billing');
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
