// The home page's administration and the projects' administration in Debian's Chromium,
// driven by playwright-core:
//
// 1. The administrator opens Admin → Home page, writes the title, content and footer in English
//    and in Chinese and saves.
// 2. A user sees them on the home page in English (the content's Markdown rendered), with the
//    starred public project and dataset under "Popular projects" / "Popular datasets" and never
//    the private project; then in Chinese; the footer is on other pages too.
// 3. The administrator opens Admin → Projects, searches for a project a user is running, and
//    deletes it with "Release and delete": the row is gone.
//
// Run by tests/tests/home_page.rs, which makes the users, projects and dataset, starts the
// project's cluster and checks the result through the API afterwards. Screenshots go to
// $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_ADMIN, XIJI_ADMIN_PASSWORD, XIJI_READER, XIJI_READER_PASSWORD,
//   XIJI_PROJECT, XIJI_PRIVATE_PROJECT, XIJI_DATASET, XIJI_DOOMED (each owner/name), XIJI_RUNNER,
//   XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const admin = env('XIJI_ADMIN');
const adminPassword = env('XIJI_ADMIN_PASSWORD');
const reader = env('XIJI_READER');
const readerPassword = env('XIJI_READER_PASSWORD');
const project = env('XIJI_PROJECT');
const privateProject = env('XIJI_PRIVATE_PROJECT');
const dataset = env('XIJI_DATASET');
const doomed = env('XIJI_DOOMED');
const runner = env('XIJI_RUNNER');

const TEXTS = {
  en: {
    title: 'Welcome to the physics cluster',
    content: 'Start a **cluster** under *My servers*, or open a [project](/hub/projects).\n\n- GPUs: ask the lab',
    footer: '© Physics Department · [Help](https://example.org/help)',
  },
  zh: {
    title: '欢迎使用物理系计算平台',
    content: '在**我的服务器**中启动集群，或打开[项目](/hub/projects)。',
    footer: '© 物理系 · [帮助](https://example.org/help)',
  },
};

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

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

try {
  // ---- 1. The administrator writes the home page ----
  step('the administrator writes the home page in both languages');
  page = await newPage();
  page.on('dialog', (d) => d.accept());
  await login(page, base, admin, adminPassword);
  await page.click('#nav-admin');
  await page.waitForURL('**/hub/admin');
  await Promise.all([page.waitForURL('**/hub/admin/home-page'), page.click('#admin-nav-home-page')]);
  for (const lang of ['en', 'zh']) {
    await page.fill(`#home-${lang}-title`, TEXTS[lang].title);
    await page.fill(`#home-${lang}-content`, TEXTS[lang].content);
    await page.fill(`#home-${lang}-footer`, TEXTS[lang].footer);
  }
  await Promise.all([page.waitForURL('**/hub/admin/home-page?done=saved'), page.click('#home-page-save')]);
  await expectText(page.locator('#home-page-saved'), /saved/, 'the saved message');
  await expectText(page.locator('#home-page-updated'), new RegExp(`by ${admin}`), 'who saved');
  if ((await page.inputValue('#home-zh-title')) !== TEXTS.zh.title) throw new Error('the form lost the Chinese title');
  await screenshot(page, 'admin-home-page-saved');

  // ---- 2. A user sees it ----
  step('a user sees the home page in English');
  const readerPage = await newPage();
  await login(readerPage, base, reader, readerPassword);
  await readerPage.goto(`${base}/hub/home`);
  await expectText(readerPage.locator('#home-title'), new RegExp(`^${escape(TEXTS.en.title)}$`), 'the English title');
  await expectText(readerPage.locator('#home-content strong'), /^cluster$/, 'the rendered content');
  const contentLink = await readerPage.locator('#home-content a').getAttribute('href');
  if (contentLink !== '/hub/projects') throw new Error(`the content's link is ${contentLink}`);
  await expectText(readerPage.locator('#site-footer'), /© Physics Department · Help/, 'the English footer');
  const topProject = readerPage.locator(`#home-top-projects [data-project="${project}"]`);
  await expectText(topProject.locator('.home-stars'), /★ 1/, 'the popular project\'s stars');
  const topDataset = readerPage.locator(`#home-top-datasets [data-dataset="${dataset}"]`);
  await expectText(topDataset.locator('.home-stars'), /★ 1/, 'the popular dataset\'s stars');
  if (await readerPage.locator(`[data-project="${privateProject}"]`).count()) {
    throw new Error('a private project is listed on another user\'s home page');
  }
  await expectText(readerPage.locator('#home-recent-projects'), /no projects yet/, 'the reader\'s recent projects');
  await screenshot(readerPage, 'home-en');
  await readerPage.locator('#home-top-projects').scrollIntoViewIfNeeded();
  await screenshot(readerPage, 'home-en-lists');
  await Promise.all([
    readerPage.waitForURL(`**/hub/projects/${project}`),
    topProject.locator('.ds-card-title a').click(),
  ]);

  step('the same in Chinese');
  await readerPage.goto(`${base}/hub/lang/zh?next=${encodeURIComponent('/hub/home')}`);
  await expectText(readerPage.locator('#home-title'), new RegExp(`^${TEXTS.zh.title}$`), 'the Chinese title');
  await expectText(readerPage.locator('#home-content strong'), /^我的服务器$/, 'the Chinese content');
  await expectText(readerPage.locator('#site-footer'), /© 物理系 · 帮助/, 'the Chinese footer');
  await expectText(readerPage.locator('#home-top-projects h2'), /^热门项目$/, 'the popular projects\' heading');
  await readerPage.locator(`#home-top-datasets [data-dataset="${dataset}"]`).waitFor();
  await screenshot(readerPage, 'home-zh');
  await readerPage.goto(`${base}/hub/datasets`);
  await expectText(readerPage.locator('#site-footer'), /© 物理系 · 帮助/, 'the footer of another page');
  await readerPage.locator('#site-footer').scrollIntoViewIfNeeded();
  await screenshot(readerPage, 'footer-elsewhere');
  await readerPage.context().close();

  // ---- 3. The administrator deletes a running project ----
  step('the administrator releases and deletes a running project');
  await Promise.all([page.waitForURL('**/hub/admin/projects'), page.click('#admin-nav-projects')]);
  const [, doomedName] = doomed.split('/');
  await page.fill('#admin-project-q', doomedName);
  await Promise.all([page.waitForURL(`**/hub/admin/projects?q=${doomedName}`), page.click('#admin-project-search')]);
  const row = page.locator(`#admin-project-table tr[data-project="${doomed}"]`);
  await expectText(row.locator('.admin-project-running'), new RegExp(runner), 'who runs it');
  await expectText(row.locator('.js-delete-project'), /^Release and delete$/, 'the delete button');
  const exportHref = await row.locator('.js-export').getAttribute('href');
  if (!exportHref.endsWith(`/hub/api/projects/${doomed}/export`)) throw new Error(`the export link is ${exportHref}`);
  await screenshot(page, 'admin-projects');
  await row.locator('.js-delete-project').click();
  await expectText(page.locator('#flash'), new RegExp(`${escape(doomed)} is deleted`), 'the deleted message');
  if (await page.locator(`tr[data-project="${doomed}"]`).count()) throw new Error('the deleted project is still listed');
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, 'admin-projects-deleted');
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
