// A project's whole life on a Docker cluster, in Debian's Chromium driven by playwright-core:
//
// 1. The owner creates a project from the "New project" form with the library's Jupyter image
//    and another user's public dataset ticked, uploads a notebook from the upload card (the
//    file input), runs the project with 2 nodes from its page, opens node-0's JupyterLab from
//    the "Open" link, opens the notebook in the file browser and runs it (Run → Run All Cells):
//    it reads the dataset's CSV at its mount path and writes result.txt into /home/jovyan/work.
//    They save it, stop the cluster from the home page, and find result.txt in the project's
//    Files card (downloaded from there: what the notebook printed); they make it public.
// 2. A second user forks it, waits for the fork's copy, runs the fork (1 node), finds the
//    notebook and result.txt in its Files card and in JupyterLab's file browser, writes a new
//    file and changes result.txt from a notebook there, stops it; the fork's Files card shows
//    the new file, and the original's still holds only the notebook and the owner's result.
//
// Run by tests/tests/projects_cluster.rs, which makes the users, the dataset (with its CSV) and
// the notebook, and checks the result through the API and on the disk. Screenshots go to
// $XIJI_ARTIFACTS.
// Environment: XIJI_URL, XIJI_OWNER, XIJI_OWNER_PASSWORD, XIJI_FORKER, XIJI_FORKER_PASSWORD,
//   XIJI_PROJECT, XIJI_FORK, XIJI_DATASET (owner/name), XIJI_IMAGE (the library image's name),
//   XIJI_NOTEBOOK (the .ipynb to upload), XIJI_RESULT (the line the notebook writes on node-0),
//   XIJI_FORK_NOTE (the file written in the fork), XIJI_KEEP_NOTEBOOK (where to keep the
//   original's notebook as it is before the fork), XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES,
//   CHROMIUM
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { env, launch, login, runInNewNotebook, step } from './common.mjs';

const base = env('XIJI_URL');
const owner = env('XIJI_OWNER');
const ownerPassword = env('XIJI_OWNER_PASSWORD');
const forker = env('XIJI_FORKER');
const forkerPassword = env('XIJI_FORKER_PASSWORD');
const projectName = env('XIJI_PROJECT');
const forkName = env('XIJI_FORK');
const dataset = env('XIJI_DATASET');
const imageName = env('XIJI_IMAGE');
const notebookFile = env('XIJI_NOTEBOOK');
const notebook = path.basename(notebookFile);
const result = env('XIJI_RESULT');
const forkNote = env('XIJI_FORK_NOTE');
const keepNotebook = env('XIJI_KEEP_NOTEBOOK');

const { browser, screenshot, newPage } = await launch();
let page;
let lab;

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
const fileRow = (p, name) => p.locator(`#pf-rows tr[data-path="${name}"]`);

/** The paths the Files card lists (its open folder). */
const filesListed = (p) => p.$$eval('#pf-rows tr[data-path]', (rows) => rows.map((r) => r.dataset.path).sort());

/** A GET of the hub's API from the page (its cookie): status and text. */
const apiGet = (p, url) => p.evaluate(async (u) => {
  const r = await fetch(u, { credentials: 'same-origin' });
  return { status: r.status, text: await r.text() };
}, url);

/** On the project page: Run with `nodes` nodes; waits until the cluster is ready and answers the
 *  "Open" link's path (node-0's server). */
async function run(p, user, nodes, shot) {
  await p.waitForSelector('#run-card:not([hidden])');
  await p.fill('#run-nodes', String(nodes));
  await p.locator('#run-card').scrollIntoViewIfNeeded();
  if (shot) await screenshot(p, shot);
  const started = Date.now();
  await p.click('#run-button');
  await p.locator('#run-ready').waitFor({ state: 'visible', timeout: 300_000 }).catch(async (error) => {
    const message = await p.locator('#run-message').innerText().catch(() => '');
    throw new Error(`the cluster was not ready: ${JSON.stringify(message)} (${error.message})`);
  });
  step(`${user}'s ${nodes}-node cluster ready after ${Math.round((Date.now() - started) / 1000)} s`);
  const open = await p.locator('#run-open').getAttribute('href');
  if (!new RegExp(`^/user/${user}/project-\\d+/$`).test(open)) throw new Error(`the open link is ${open}`);
  await expectText(p.locator('#running-list'), new RegExp(`${user}\\s+Ready`, 'i'), 'who runs it now');
  return open;
}

/** Opens node-0's JupyterLab from the project page's "Open" link (a new tab). */
async function openLab(p, open) {
  const [tab] = await Promise.all([p.context().waitForEvent('page'), p.click('#run-open')]);
  tab.setDefaultTimeout(60_000);
  tab.on('pageerror', (e) => step(`lab page error: ${e.message}`));
  await tab.waitForURL(new RegExp(`${open}lab`), { timeout: 180_000 });
  step(`JupyterLab at ${tab.url()}`);
  return tab;
}

/** JupyterLab's file browser lists `name` (it re-reads the folder every few seconds). */
const listed = (p, name) => p.locator('.jp-DirListing-item', { has: p.locator('.jp-DirListing-itemText', { hasText: new RegExp(`^${name.replace(/\./g, '\\.')}$`) }) });

/** The current tab of JupyterLab's main area. */
const mainTab = '#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current';

/** The open notebook's output that contains `expect`, after Run → Run All Cells (again, when a
 *  run request was lost while the kernel's websocket settled). */
async function runAll(p, expect) {
  const panel = '.jp-NotebookPanel:not(.lm-mod-hidden)';
  const output = p.locator(`${panel} .jp-OutputArea-output`).filter({ hasText: expect }).first();
  for (let attempt = 1; ; attempt += 1) {
    // A kernel that went away meanwhile (a loaded machine) leaves JupyterLab asking which
    // kernel to start: take the notebook's own, as a user would.
    const dialog = p.locator('.jp-Dialog');
    if (await dialog.isVisible().catch(() => false)) {
      step(`JupyterLab asks: ${(await dialog.innerText().catch(() => '')).replace(/\s+/g, ' ')}; accepting`);
      await dialog.locator('.jp-mod-accept').click();
      await dialog.waitFor({ state: 'hidden' });
    }
    await p.locator('.lm-MenuBar-item').filter({ hasText: /^Run$/ }).click();
    await p.locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ }).click();
    try {
      await output.waitFor({ state: 'visible', timeout: 30_000 });
      break;
    } catch (error) {
      if (attempt >= 4) {
        const shown = await p.locator(`${panel} .jp-OutputArea`).allInnerTexts().catch(() => []);
        throw new Error(`the notebook printed ${JSON.stringify(shown)}, nothing with ${JSON.stringify(expect)}`);
      }
      step(`no output after Run All ${attempt}; running all again`);
    }
  }
  return (await output.innerText()).trim();
}

/** On the home page: Stop on the card of the named server `server`; waits until it stopped. */
async function stopFromHome(p, server) {
  await p.goto(`${base}/hub/home`);
  const card = p.locator(`article.server[data-server="${server}"]`);
  await card.waitFor();
  await card.locator('.node').first().waitFor({ state: 'visible' });
  const nodes = await card.locator('.node').evaluateAll((els) => els.map((e) => e.dataset.node));
  await card.locator('.js-stop').click();
  await p.waitForSelector(`article.server[data-server="${server}"][data-status="stopped"]`, { timeout: 90_000 });
  return nodes;
}

try {
  // ---- 1. The owner ----
  page = await newPage();
  page.on('dialog', (d) => d.accept());
  step(`${owner} creates ${projectName} with "${imageName}" and ${dataset}`);
  await login(page, base, owner, ownerPassword);
  await page.goto(`${base}/hub/projects/new`);
  await page.locator('#project-image option', { hasText: imageName }).waitFor({ state: 'attached' });
  await page.fill('#project-name', projectName);
  await page.fill('#project-description-input', 'Daily **rain** on the rooftop, summed by a notebook.');
  await page.selectOption('#project-image', { label: imageName });
  const box = page.locator(`input[name="datasets"][value="${dataset}"]`);
  await box.waitFor();
  await box.check();
  await screenshot(page, 'new-form');
  await Promise.all([page.waitForURL(`**/hub/projects/${owner}/${projectName}`), page.click('#project-create')]);
  await page.waitForSelector('#project-header:not([hidden])');
  await expectText(page.locator('#project-image-name'), new RegExp(`^${imageName}$`), 'the image');
  await expectText(page.locator('#project-dataset-links'), new RegExp(`^${dataset}$`), 'the dataset');
  await page.waitForSelector('#project-files-card:not([hidden])');
  await page.waitForSelector('#pf-empty:not([hidden])');
  await screenshot(page, 'created');

  step(`upload ${notebook} from the upload card`);
  await page.waitForSelector('#upload-card:not([hidden])');
  await page.setInputFiles('#pick-files', notebookFile);
  await fileRow(page, notebook).waitFor({ timeout: 60_000 });
  await page.locator('#project-files-card').scrollIntoViewIfNeeded();
  await screenshot(page, 'uploaded');

  step('run it with 2 nodes');
  const open = await run(page, owner, 2, 'run-form');
  const server = open.split('/')[3];
  await page.locator('#run-ready').scrollIntoViewIfNeeded();
  await screenshot(page, 'running');

  step('open node-0\'s JupyterLab, open the notebook and run all its cells');
  lab = await openLab(page, open);
  const item = listed(lab, notebook);
  await item.waitFor({ state: 'visible', timeout: 180_000 });
  await item.dblclick();
  const panel = '.jp-NotebookPanel:not(.lm-mod-hidden)';
  const kernelDialog = lab.locator('.jp-Dialog .jp-mod-accept');
  await Promise.race([
    lab.locator(`${panel} .jp-Cell`).first().waitFor({ state: 'visible', timeout: 120_000 }),
    kernelDialog.waitFor({ state: 'visible', timeout: 120_000 }).then(() => kernelDialog.click()),
  ]);
  await lab.locator(`${panel} .jp-Notebook-ExecutionIndicator[data-status="idle"]`).first()
    .waitFor({ state: 'attached', timeout: 120_000 })
    .catch(() => step('no idle indicator found; running anyway'));
  await lab.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, `${panel} .jp-CodeCell .cm-content`, { timeout: 60_000 });
  const tab = await lab.locator(`${mainTab} .lm-TabBar-tabLabel`).first().innerText();
  if (tab.trim() !== notebook) throw new Error(`the open tab is ${JSON.stringify(tab)}, not ${notebook}`);
  await screenshot(lab, 'lab-notebook');
  // An uploaded file the nodes' user may not write opens read-only (and cannot be saved).
  const toolbar = await lab.locator(`${panel} .jp-NotebookPanel-toolbar`).innerText();
  if (/read-only/i.test(toolbar)) throw new Error(`the uploaded notebook opens read-only in JupyterLab: ${JSON.stringify(toolbar)}`);
  const output = await runAll(lab, 'result.txt:');
  step(`the notebook printed ${JSON.stringify(output)}`);
  if (output !== `result.txt: ${result}`) throw new Error(`the notebook printed ${JSON.stringify(output)}, not "result.txt: ${result}"`);

  step('save the notebook');
  await lab.locator(`${panel} .jp-Cell`).first().click();
  await lab.keyboard.press('Escape');
  await lab.keyboard.press('Control+s');
  const saveError = lab.locator('.jp-Dialog', { hasText: /error/i });
  const saved = await Promise.race([
    lab.waitForFunction((sel) => {
      const t = document.querySelector(sel);
      return t && !t.classList.contains('jp-mod-dirty');
    }, mainTab, { timeout: 20_000 }).then(() => true),
    saveError.waitFor({ state: 'visible', timeout: 20_000 }).then(() => false),
  ]);
  await listed(lab, 'result.txt').waitFor({ state: 'visible', timeout: 30_000 });
  await screenshot(lab, 'lab-output');
  if (!saved) throw new Error(`saving the notebook failed: ${JSON.stringify(await saveError.innerText())}`);
  await lab.close();
  lab = null;

  step('stop the cluster from the home page');
  const nodes = await stopFromHome(page, server);
  if (nodes.join(',') !== 'node-0,node-1') throw new Error(`the cluster listed the nodes ${JSON.stringify(nodes)}`);
  await screenshot(page, 'stopped');

  step('result.txt is in the project\'s Files card');
  await page.goto(projectUrl(owner, projectName));
  await page.waitForSelector('#project-header:not([hidden])');
  await fileRow(page, 'result.txt').waitFor();
  await page.waitForSelector('#running-none:not([hidden])');
  const ownerFiles = await filesListed(page);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    fileRow(page, 'result.txt').locator('.js-download').click(),
  ]);
  const downloaded = readFileSync(await download.path(), 'utf8');
  if (downloaded !== `${result}\n`) throw new Error(`result.txt downloaded from the Files card is ${JSON.stringify(downloaded)}`);
  await page.locator('#project-files-card').scrollIntoViewIfNeeded();
  await screenshot(page, 'files-result');
  // The notebook as the owner left it: the test compares it with the original's at the end.
  const kept = await apiGet(page, `/hub/api/projects/${owner}/${projectName}/files/${notebook}`);
  if (kept.status !== 200) throw new Error(`GET the notebook: ${kept.status}`);
  writeFileSync(keepNotebook, kept.text);

  step('make it public');
  await page.check('#settings-form #project-visibility-public');
  await page.click('#settings-save');
  await expectText(page.locator('#project-visibility'), /^Public$/, 'the visibility');
  await page.locator('#project-header').scrollIntoViewIfNeeded();
  await screenshot(page, 'public');
  await page.context().close();

  // ---- 2. The second user ----
  step(`${forker} forks it as ${forkName}`);
  page = await newPage();
  page.on('dialog', (d) => d.accept());
  await login(page, base, forker, forkerPassword);
  await page.goto(projectUrl(owner, projectName));
  await page.waitForSelector('#project-header:not([hidden])');
  await page.click('#fork-button');
  await page.fill('#fork-name', forkName);
  await Promise.all([page.waitForURL(`**/hub/projects/${forker}/${forkName}`), page.click('#fork-submit')]);
  // The files are copied in the background; the page offers Run once they are all there.
  await page.waitForSelector('#run-card:not([hidden])', { timeout: 60_000 });
  await expectText(page.locator('#project-forked'), new RegExp(`Forked from\\s+${owner}/${projectName}`), 'forked from');
  await fileRow(page, notebook).waitFor();
  await fileRow(page, 'result.txt').waitFor();
  await page.locator('#project-files-card').scrollIntoViewIfNeeded();
  await screenshot(page, 'fork-copied');

  step('run the fork');
  const forkOpen = await run(page, forker, 1, null);
  const forkServer = forkOpen.split('/')[3];
  await page.locator('#run-ready').scrollIntoViewIfNeeded();
  await screenshot(page, 'fork-running');
  lab = await openLab(page, forkOpen);
  await listed(lab, notebook).waitFor({ state: 'visible', timeout: 180_000 });
  await listed(lab, 'result.txt').waitFor({ state: 'visible' });
  await screenshot(lab, 'fork-lab-files');

  step(`write ${forkNote} and change result.txt in the fork`);
  const written = await runInNewNotebook(
    lab,
    // The project's folder, ~/work on every node.
    "import os; work = os.path.join(os.path.expanduser('~'), 'work'); " +
    `open(os.path.join(work, '${forkNote}'), 'w').write('${forker} wrote this in the fork\\n'); ` +
      "open(os.path.join(work, 'result.txt'), 'a').write('changed in the fork\\n'); " +
      `print('written', 'by', '${forker}')`,
    `written by ${forker}`,
  );
  step(`the fork's notebook printed ${JSON.stringify(written)}`);
  await listed(lab, forkNote).waitFor({ state: 'visible', timeout: 30_000 });
  await screenshot(lab, 'fork-lab-written');
  await lab.close();
  lab = null;

  step('stop the fork; its Files card shows what was written');
  await stopFromHome(page, forkServer);
  await page.goto(projectUrl(forker, forkName));
  await page.waitForSelector('#project-header:not([hidden])');
  await fileRow(page, forkNote).waitFor();
  const forkFiles = await filesListed(page);
  await page.locator('#project-files-card').scrollIntoViewIfNeeded();
  await screenshot(page, 'fork-files');

  step('the original is unchanged');
  await page.goto(projectUrl(owner, projectName));
  await page.waitForSelector('#project-header:not([hidden])');
  await fileRow(page, 'result.txt').waitFor();
  const originalFiles = await filesListed(page);
  if (JSON.stringify(originalFiles) !== JSON.stringify(ownerFiles)) {
    throw new Error(`the original lists ${JSON.stringify(originalFiles)}; its owner left ${JSON.stringify(ownerFiles)}`);
  }
  const originalResult = await apiGet(page, `/hub/api/projects/${owner}/${projectName}/files/result.txt`);
  if (originalResult.text !== `${result}\n`) throw new Error(`the original's result.txt is now ${JSON.stringify(originalResult.text)}`);
  await page.locator('#project-files-card').scrollIntoViewIfNeeded();
  await screenshot(page, 'original-files');
  console.log(JSON.stringify({ ok: true, output, written, owner_files: ownerFiles, fork_files: forkFiles, original_files: originalFiles }));
} catch (error) {
  if (lab) await screenshot(lab, 'failure-lab').catch(() => {});
  if (page) await screenshot(page, 'failure').catch(() => {});
  console.error(`[browser] FAILED: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
