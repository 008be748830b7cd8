// "Save environment as image" in JupyterLab, in Debian's Chromium driven by playwright-core:
// log in at /hub/login, open the running node's JupyterLab, choose Xiji → "Save environment as
// image…", fill in name, tag and description, press "Save image", and wait until the progress
// notification says the image is saved. Screenshots go to $XIJI_ARTIFACTS.
//
// Run by tests/tests/save_image.rs, which starts the hub, the user's cluster and the registry.
// Environment: XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_ARTIFACTS, XIJI_IMAGE_NAME,
//   XIJI_IMAGE_TAG, XIJI_TEST_NODE_MODULES (holds playwright-core), CHROMIUM
import { env, launch, login, step } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const imageName = env('XIJI_IMAGE_NAME');
const imageTag = env('XIJI_IMAGE_TAG');
const { browser, screenshot, newPage } = await launch();
let page;
try {
  page = await newPage();

  step('log in');
  await login(page, base, user, password);

  step('open JupyterLab on node-0');
  await page.goto(`${base}/user/${encodeURIComponent(user)}/lab`);
  const xijiMenu = page.locator('.lm-MenuBar-itemLabel', { hasText: /^Xiji$/ }).first();
  await xijiMenu.waitFor({ state: 'visible', timeout: 180_000 });
  await screenshot(page, 'jupyterlab');

  step('Xiji → Save environment as image…');
  await xijiMenu.click();
  await page.locator('.lm-Menu-itemLabel', { hasText: 'Save environment as image' }).first().click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.locator('input[name="name"]').waitFor({ state: 'visible' });
  await dialog.locator('input[name="name"]').fill(imageName);
  await dialog.locator('input[name="tag"]').fill(imageTag);
  await dialog.locator('textarea[name="description"]').fill('Saved from JupyterLab by the browser test');
  await screenshot(page, 'dialog');
  await dialog.locator('button.jp-mod-accept').click();

  step('wait for the save to finish');
  const inProgress = page.getByText(/Saving .*:/).first();
  await inProgress.waitFor({ state: 'visible', timeout: 60_000 }).then(
    () => screenshot(page, 'progress'),
    () => step('the in-progress notification was not seen (the save may have been quicker)'),
  );
  const saved = page.getByText(/^Saved .* "My images"/).first();
  const failed = page.getByText(/The save of .* failed|The image was not saved|Cannot save the image/).first();
  await Promise.race([
    saved.waitFor({ state: 'visible', timeout: 600_000 }),
    failed.waitFor({ state: 'visible', timeout: 600_000 }).then(async () => {
      throw new Error(`the save failed: ${await failed.innerText()}`);
    }),
  ]);
  const text = (await saved.innerText()).trim();
  await screenshot(page, 'saved');
  step(`saw: ${text}`);
  console.log(JSON.stringify({ ok: true, message: text }));
} catch (error) {
  if (page) {
    await screenshot(page, 'failure').catch(() => {});
  }
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
