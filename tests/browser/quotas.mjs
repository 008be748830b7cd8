// The quotas' administration and the home page's quota card in Debian's Chromium, driven by
// playwright-core:
//
// 1. The administrator opens Admin → Quotas: the user with an exception is listed. A bad value
//    shows the API's message; then the students' defaults are saved (3 clusters, 6 nodes, 2
//    cores, 8G), the user is found and given an exception of 2.5 cores, and the capacity is
//    capped at 12 nodes.
// 2. The user sees "Your quota" on the home page: their running server against 3 clusters, and
//    2.5 cores.
//
// Run by tests/tests/quotas.rs, which makes the users, starts the user's server and checks the
// result through the API afterwards. Screenshots go to $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_ADMIN, XIJI_ADMIN_PASSWORD, XIJI_USER, XIJI_USER_PASSWORD,
//   XIJI_LISTED (a user with an exception), XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const admin = env('XIJI_ADMIN');
const adminPassword = env('XIJI_ADMIN_PASSWORD');
const user = env('XIJI_USER');
const userPassword = env('XIJI_USER_PASSWORD');
const listed = env('XIJI_LISTED');

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

/** Clicks `selector`, which saves and reloads the page, and waits for the reload's message. */
const saveAndReload = async (selector, message) => {
  await Promise.all([page.waitForEvent('load'), page.click(selector)]);
  await expectText(page.locator('#flash'), message, 'the saved message');
};

try {
  // ---- 1. The administrator ----
  step('the administrator opens the quotas page');
  page = await newPage();
  page.on('dialog', (d) => d.accept());
  await login(page, base, admin, adminPassword);
  await page.click('#nav-admin');
  await page.waitForURL('**/hub/admin');
  await Promise.all([page.waitForURL('**/hub/admin/quotas'), page.click('#admin-nav-quotas')]);
  await page.locator(`#user-quota-table tr[data-user="${listed}"]`).waitFor();
  if ((await page.inputValue(`#user-${listed}-gpus`)) !== '2') throw new Error('the listed exception lost its GPUs');
  await screenshot(page, 'admin-quotas');

  step('a bad value shows what to write');
  await page.fill('#role-student-nodes', '-1');
  await page.click('#save-role-student');
  await expectText(page.locator('#quota-error'), /nodes cannot be negative/, 'the refusal');

  step('the students\' defaults are saved');
  await page.fill('#role-student-clusters', '3');
  await page.fill('#role-student-nodes', '6');
  await page.fill('#role-student-cpus', '2');
  await page.fill('#role-student-memory', '8G');
  await saveAndReload('#save-role-student', /quota of Student is saved/);
  if ((await page.inputValue('#role-student-memory')) !== '8G') throw new Error('the memory was not kept as typed');

  step('the user is found and given an exception');
  await page.fill('#quota-user', user);
  await page.click('#quota-find');
  const row = page.locator(`#user-quota-table tr[data-user="${user}"]`);
  await row.waitFor();
  if ((await row.locator('input[name="cpus"]').getAttribute('placeholder')) !== '2') {
    throw new Error('the role\'s cores are not the placeholder');
  }
  await row.locator('input[name="cpus"]').fill('2.5');
  await saveAndReload(`#user-quota-table tr[data-user="${user}"] .js-save-user`, /exception of .* is saved/);
  if ((await page.inputValue(`#user-${user}-cpus`)) !== '2.5') throw new Error('the exception is not listed');

  step('the capacity is capped');
  await page.fill('#cap-nodes', '12');
  await saveAndReload('#save-caps', /capacity caps are saved/);
  await expectText(page.locator('#capacity-table tr[data-field="nodes"] .capacity-effective'), /^12$/, 'the nodes in effect');
  await screenshot(page, 'admin-quotas-saved');

  // ---- 2. The user ----
  step('the user sees their quota on the home page');
  page = await newPage();
  await login(page, base, user, userPassword);
  await page.goto(`${base}/hub/home`);
  const card = page.locator('#home-quota');
  await card.scrollIntoViewIfNeeded();
  await expectText(card.locator('[data-quantity="clusters"] .quota-value'), /^1 of 3$/, 'clusters');
  await expectText(card.locator('[data-quantity="cpus"] .quota-value'), /of 2\.5$/, 'cores');
  await expectText(card.locator('[data-quantity="memory"] .quota-value'), /of 8 GiB$/, 'memory');
  await expectText(card.locator('[data-quantity="gpus"] .quota-value'), /no limit/, 'GPUs');
  await card.locator('#home-quota-exception').waitFor();
  await screenshot(page, 'home-quota');

  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  if (page) await screenshot(page, 'failure').catch(() => {});
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
