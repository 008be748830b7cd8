// One node of a virtual cluster in JupyterLab, in Debian's Chromium: log in at /hub/login, open
// the running cluster's node from the home page's link (`open-node-<k>`), land in that node's
// JupyterLab through the proxy, and run a cell that prints the node's host name.
//
// Run by tests/tests/clusters.rs, which starts the hub and the user's cluster. Environment:
//   XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_NODE (e.g. 1), XIJI_ARTIFACTS,
//   XIJI_TEST_NODE_MODULES, CHROMIUM
import { env, launch, login, runInNewNotebook, step, waitForUrl } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const node = env('XIJI_NODE');
const { browser, screenshot, newPage } = await launch();
let page;
try {
  page = await newPage();
  step('log in');
  await login(page, base, user, env('XIJI_PASSWORD'));
  await page.goto(`${base}/hub/home`);
  const link = page.locator(`#open-node-${node}`);
  await link.waitFor({ state: 'visible' });
  await screenshot(page, 'home-with-cluster');

  step(`open node-${node}'s JupyterLab`);
  const href = await link.getAttribute('href');
  await page.goto(new URL(href, base).toString());
  await waitForUrl(page, new RegExp(`/user/${encodeURIComponent(user)}/node-${node}/lab`), 120_000);

  step('run a cell');
  const text = await runInNewNotebook(page, 'import socket; print(socket.gethostname())', `node-${node}`);
  await screenshot(page, 'output');
  if (text !== `node-${node}`) throw new Error(`the cell printed ${JSON.stringify(text)}, not node-${node}`);
  step(`saw node-${node}`);
  console.log(JSON.stringify({ ok: true, output: text, url: page.url() }));
} catch (error) {
  if (page) await screenshot(page, 'failure').catch(() => {});
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
