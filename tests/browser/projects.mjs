// The projects pages in Debian's Chromium, driven by playwright-core, as two users use them:
//
// 1. The owner logs in, creates a project from the "New project" form with a public dataset of
//    theirs ticked, sees it in the list, opens it (the dataset is a link to its page), runs it
//    with 1 node, waits until the server is ready and sees the link to open it and themselves
//    under "who runs it now"; deleting it meanwhile shows the hub's 409 message; they make it
//    public from the settings.
// 2. A second user finds it by a word of its description, opens it, stars it (1 star), forks it
//    under a new name and lands on the fork's page, which says "forked from" the original and
//    offers Run once the files are copied.
// 3. The same pages in Chinese show Chinese labels.
//
// Run by tests/tests/projects_pages.rs, which makes the users and the dataset and checks the
// result through the API afterwards. Screenshots go to $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_OWNER, XIJI_OWNER_PASSWORD, XIJI_READER, XIJI_READER_PASSWORD,
//   XIJI_PROJECT, XIJI_FORK, XIJI_DATASET (owner/name), XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES,
//   CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const owner = env('XIJI_OWNER');
const ownerPassword = env('XIJI_OWNER_PASSWORD');
const reader = env('XIJI_READER');
const readerPassword = env('XIJI_READER_PASSWORD');
const projectName = env('XIJI_PROJECT');
const forkName = env('XIJI_FORK');
const dataset = env('XIJI_DATASET');

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

const projectUrl = (o, n) => `${base}/hub/projects/${encodeURIComponent(o)}/${encodeURIComponent(n)}`;

try {
  // ---- 1. The owner ----
  step('the owner creates a project');
  page = await newPage();
  page.on('dialog', (d) => d.accept());
  await login(page, base, owner, ownerPassword);
  await page.goto(`${base}/hub/projects`);
  await expectText(page.locator('#nav-projects'), /^Projects$/, 'the nav link');
  await page.waitForSelector('#project-list[aria-busy="false"]', { state: 'attached' });
  await screenshot(page, 'list-empty');
  await page.click('#new-project');
  await page.waitForURL('**/hub/projects/new');
  await page.fill('#project-name', projectName);
  await page.fill('#project-description-input', 'A **rainfall** model for the rooftop station.\n\n- trains on the weather data');
  await page.fill('#project-tags', 'weather, 教学');
  const box = page.locator(`input[name="datasets"][value="${dataset}"]`);
  await box.waitFor();
  await box.check();
  await screenshot(page, 'new-form');
  await Promise.all([page.waitForURL(`**/hub/projects/${owner}/${projectName}`), page.click('#project-create')]);
  await page.waitForSelector('#project-header:not([hidden])');
  await expectText(page.locator('#project-description strong'), /^rainfall$/, 'the rendered description');
  const datasetLink = page.locator('#project-dataset-links a');
  await expectText(datasetLink, new RegExp(`^${dataset}$`), 'the dataset link');
  const href = await datasetLink.getAttribute('href');
  if (!href.startsWith('/hub/datasets/')) throw new Error(`the dataset links to ${href}`);
  await expectText(page.locator('#project-visibility'), /^Private$/, 'the visibility');
  await screenshot(page, 'created');

  step('the list shows it');
  await page.goto(`${base}/hub/projects?filter=mine`);
  const card = page.locator(`.pj-card[data-project="${owner}/${projectName}"]`);
  await card.waitFor();
  await expectText(card.locator('.js-excerpt'), /rainfall model/, 'the card\'s excerpt');
  await expectText(card.locator('.js-tags'), /教学/, 'the card\'s tags');
  await screenshot(page, 'list');
  await Promise.all([page.waitForURL(`**/hub/projects/${owner}/${projectName}`), card.locator('.ds-card-title a').click()]);
  await page.waitForSelector('#project-header:not([hidden])');

  step('the owner runs it with 1 node');
  await page.waitForSelector('#run-card:not([hidden])');
  await page.fill('#run-nodes', '1');
  await page.click('#run-button');
  await page.locator('#run-ready').waitFor({ state: 'visible', timeout: 180_000 });
  const open = await page.locator('#run-open').getAttribute('href');
  if (!new RegExp(`^/user/${owner}/project-\\d+/$`).test(open)) throw new Error(`the open link is ${open}`);
  await expectText(page.locator('#running-list'), new RegExp(`${owner}\\s+ready`), 'who runs it now');
  await page.locator('#run-ready').scrollIntoViewIfNeeded();
  await screenshot(page, 'running');

  step('deleting it while it runs is refused with the hub\'s message');
  await page.click('#delete-project');
  await expectText(page.locator('#delete-error'), new RegExp(owner), 'the 409 message');
  await screenshot(page, 'delete-refused');

  step('the owner makes it public');
  await page.check('#settings-form #project-visibility-public');
  await page.click('#settings-save');
  await expectText(page.locator('#project-visibility'), /^Public$/, 'the visibility');
  await page.context().close();

  // ---- 2. The second user ----
  step('a second user finds it, stars it and forks it');
  page = await newPage();
  await login(page, base, reader, readerPassword);
  await page.goto(`${base}/hub/projects`);
  await page.fill('#project-q', 'rainfall');
  await Promise.all([page.waitForURL('**/hub/projects?q=rainfall**'), page.click('#project-search-button')]);
  const found = page.locator(`.pj-card[data-project="${owner}/${projectName}"]`);
  await found.waitFor();
  await screenshot(page, 'search');
  await Promise.all([page.waitForURL(`**/hub/projects/${owner}/${projectName}`), found.locator('.ds-card-title a').click()]);
  await page.waitForSelector('#project-header:not([hidden])');
  if (await page.locator('#run-card').isVisible()) throw new Error('a stranger sees the run form');
  if (await page.locator('#owner-panel').isVisible()) throw new Error('a stranger sees the settings');
  await expectText(page.locator('#running-list'), new RegExp(owner), 'who runs it now, for the reader');
  await page.click('#star-button');
  await expectText(page.locator('#star-count'), /^1$/, 'the star count');
  await expectText(page.locator('#star-label'), /^Unstar$/, 'the star button');
  await screenshot(page, 'starred');
  await page.click('#fork-button');
  await page.fill('#fork-name', forkName);
  await screenshot(page, 'fork-form');
  await Promise.all([page.waitForURL(`**/hub/projects/${reader}/${forkName}`), page.click('#fork-submit')]);
  // The files are copied in the background; the page offers Run once they are all there.
  await page.waitForSelector('#run-card:not([hidden])', { timeout: 60000 });
  await page.waitForSelector('#project-header:not([hidden])');
  if (await page.locator('#fork-status').isVisible()) throw new Error('the copy\'s progress is still shown once it is done');
  await expectText(page.locator('#project-forked'), new RegExp(`Forked from\\s+${owner}/${projectName}`), 'forked from');
  await expectText(page.locator('#project-visibility'), /^Private$/, 'the fork\'s visibility');
  await screenshot(page, 'fork');

  // ---- 3. Chinese ----
  step('the pages in Chinese');
  await page.goto(`${base}/hub/lang/zh?next=${encodeURIComponent('/hub/projects')}`);
  await expectText(page.locator('h1'), /^项目$/, 'the list\'s title');
  await expectText(page.locator('#nav-projects'), /^项目$/, 'the nav link');
  await expectText(page.locator('#new-project'), /^新建项目$/, 'the new button');
  await expectText(page.locator('#projects-tab-starred'), /^已收藏$/, 'the starred tab');
  await page.locator(`.pj-card[data-project="${owner}/${projectName}"]`).waitFor();
  await screenshot(page, 'zh-list');
  await page.goto(projectUrl(owner, projectName));
  await page.waitForSelector('#project-header:not([hidden])');
  await expectText(page.locator('#star-label'), /^取消收藏$/, 'the star button');
  await expectText(page.locator('#fork-button'), /^复刻$/, 'the fork button');
  await expectText(page.locator('#project-visibility'), /^公开$/, 'the visibility');
  await expectText(page.locator('#running-card h2'), /^正在运行的人$/, 'who runs it');
  await screenshot(page, 'zh-project');
  await page.goto(`${base}/hub/projects/new`);
  await expectText(page.locator('h1'), /^新建项目$/, 'the new form\'s title');
  await expectText(page.locator('#project-create'), /^创建项目$/, 'the create button');
  await screenshot(page, 'zh-new');
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
