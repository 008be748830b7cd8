// Web desktops in Debian's Chromium driven by playwright-core. For each node given:
// click its "Desktop" link on the home page (`{node url}desktop/`, which the node's Jupyter
// server redirects to the hub's desktop page),
// wait until the remote desktop is drawn, save a screenshot and check the canvas is not blank
// (pixel variance), type into the desktop's terminal a command that creates a file in the node's
// /tmp; for node-0 also drop the VNC connection on the server side and wait for the page to
// reconnect by itself; for the last node check the clipboard both ways (xclip in the desktop →
// the page's clipboard panel; the panel → pasted into the terminal). Then another user, logged
// in, must get 404 on the page and a refused websocket.
//
// Run by tests/tests/desktop.rs. Environment:
//   XIJI_URL, XIJI_USER, XIJI_PASSWORD, XIJI_OTHER_USER, XIJI_OTHER_PASSWORD,
//   XIJI_NODES (JSON: [{"url": "/user/erin/", "container": "<id>", "proof": "/tmp/…"}]),
//   XIJI_ARTIFACTS, XIJI_TEST_NODE_MODULES, CHROMIUM
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { env, launch, login as hubLogin } from './common.mjs';

const base = env('XIJI_URL');
const user = env('XIJI_USER');
const password = env('XIJI_PASSWORD');
const otherUser = env('XIJI_OTHER_USER');
const otherPassword = env('XIJI_OTHER_PASSWORD');
const nodes = JSON.parse(env('XIJI_NODES'));
const artifacts = env('XIJI_ARTIFACTS');

const step = (message) => console.log(`[desktop] ${new Date().toISOString()} ${message}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { browser } = await launch();

async function login(context, name, pass) {
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (e) => step(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') step(`console error: ${m.text()}`);
  });
  await hubLogin(page, base, name, pass);
  await page.waitForURL('**/hub/home**');
  return page;
}

// Mean and variance of the canvas's luminance, read in the page.
async function canvasStats(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || canvas.width === 0 || canvas.height === 0) return null;
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    let sum = 0;
    let sum2 = 0;
    for (let i = 0; i < data.length; i += 4 * 7) {
      const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      sum += y;
      sum2 += y * y;
      n += 1;
    }
    const mean = sum / n;
    return { width: canvas.width, height: canvas.height, mean, variance: sum2 / n - mean * mean };
  });
}

async function waitConnected(page, minConnects, timeoutMs) {
  await page.waitForFunction(
    (min) => window.xijiDesktop && window.xijiDesktop.status === 'connected' && window.xijiDesktop.connects >= min,
    minConnects,
    { timeout: timeoutMs, polling: 200 },
  );
}

// Waits until the desktop is drawn: the canvas's variance stays above a floor (a blank or
// single-colour screen has none) and the session has been resized to the page.
async function waitDrawn(page, label) {
  const deadline = Date.now() + 90_000;
  let stats = null;
  while (Date.now() < deadline) {
    stats = await canvasStats(page);
    if (stats && stats.variance > 100) return stats;
    await sleep(500);
  }
  throw new Error(`${label}: the desktop was not drawn within 90 s (last canvas stats ${JSON.stringify(stats)})`);
}

function docker(...args) {
  return execFileSync('docker', args, { encoding: 'utf8', timeout: 30_000 });
}

async function focusTerminal(page) {
  const canvas = page.locator('#screen canvas');
  const box = await canvas.boundingBox();
  // The terminal opens maximised; a click in the middle focuses it (and the canvas).
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await sleep(300);
}

async function typeInTerminal(page, command) {
  await focusTerminal(page);
  await page.keyboard.type(command, { delay: 30 });
  await page.keyboard.press('Enter');
}

async function waitForFile(container, file, label) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const out = docker('exec', container, 'cat', file).trim();
      if (out.length > 0) return out;
    } catch {
      // not there yet
    }
    await sleep(500);
  }
  throw new Error(`${label}: ${file} did not appear in the node within 30 s`);
}

let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 760 }, locale: 'en-US' });
  const page = await login(context, user, password);
  step(`logged in as ${user}`);

  for (const [index, node] of nodes.entries()) {
    const label = `node-${index}`;
    // The home page lists the running cluster's nodes with a "Desktop" link each, to
    // `{node url}desktop/`, which the node's Jupyter server redirects to the hub's desktop page.
    step(`${label}: click #desktop-${label} on the home page`);
    await page.goto(`${base}/hub/home`);
    const link = page.locator(`#desktop-${label}`);
    await link.waitFor({ state: 'visible', timeout: 30_000 });
    const href = await link.getAttribute('href');
    if (href !== `${node.url}desktop/`) throw new Error(`#desktop-${label} links to ${href}, not ${node.url}desktop/`);
    await Promise.all([page.waitForURL(`**/hub/desktop${node.url}`), link.click()]);
    await waitConnected(page, 1, 90_000);
    const stats = await waitDrawn(page, label);
    // The remote session follows the window (resizeSession): the canvas fills the screen area.
    const area = await page.locator('#screen').boundingBox();
    const resized = await page.waitForFunction(
      ([w, h]) => {
        const c = document.querySelector('#screen canvas');
        return c && Math.abs(c.width - w) <= 2 && Math.abs(c.height - h) <= 2;
      },
      [Math.round(area.width), Math.round(area.height)],
      { timeout: 30_000, polling: 250 },
    ).then(() => true, () => false);
    await sleep(1500);
    const file = path.join(artifacts, `desktop-${label}.png`);
    await page.screenshot({ path: file });
    const after = await canvasStats(page);
    step(`${label}: drawn ${JSON.stringify(after)}; resized to window: ${resized}; screenshot ${file}`);
    if (!resized) throw new Error(`${label}: the remote desktop was not resized to the window (${JSON.stringify(stats)}, area ${JSON.stringify(area)})`);

    step(`${label}: type into the terminal`);
    await typeInTerminal(page, `echo typed-in-${label} > ${node.proof}`);
    const content = await waitForFile(node.container, node.proof, label);
    step(`${label}: ${node.proof} says ${content}`);
    await page.screenshot({ path: path.join(artifacts, `desktop-${label}-typed.png`) });

    if (index === nodes.length - 1) {
      // Clipboard both ways: the desktop's clipboard reaches the panel; the panel's text is
      // pasted into the terminal.
      step(`${label}: clipboard`);
      await typeInTerminal(page, `printf from-desktop-${label} | xclip -selection clipboard`);
      await page.waitForFunction(
        (want) => window.xijiDesktop.clipboard === want,
        `from-desktop-${label}`,
        { timeout: 20_000 },
      );
      await page.click('#clipboard-toggle');
      await page.fill('#clipboard-text', `from-browser-${label}`);
      await page.click('#clipboard-send');
      await focusTerminal(page);
      await page.keyboard.type(`echo "`, { delay: 30 });
      await page.keyboard.press('Control+Shift+V');
      // The terminal asks the X clipboard for the text and inserts it when the answer comes;
      // keys typed before then would land ahead of it on a busy machine.
      await sleep(2_000);
      await page.keyboard.type(`" > ${node.proof}.clip`, { delay: 30 });
      await page.keyboard.press('Enter');
      const pasted = await waitForFile(node.container, `${node.proof}.clip`, `${label} clipboard`);
      if (pasted !== `from-browser-${label}`) throw new Error(`${label}: pasted ${JSON.stringify(pasted)}`);
      step(`${label}: clipboard works both ways`);
      await page.click('#clipboard-toggle');
    }

    if (index === 0) {
      step(`${label}: drop the connection on the VNC server's side`);
      const before = await page.evaluate(() => window.xijiDesktop.connects);
      docker('exec', '-e', 'DISPLAY=:1', node.container, 'vncconfig', '-display', ':1', '-disconnect');
      await page.waitForFunction(() => window.xijiDesktop.status !== 'connected', null, { timeout: 30_000 });
      step(`${label}: dropped; waiting for the automatic reconnect`);
      await waitConnected(page, before + 1, 60_000);
      await waitDrawn(page, `${label} after reconnect`);
      const reconnected = await page.evaluate(() => ({ ...window.xijiDesktop, rfb: undefined }));
      step(`${label}: reconnected ${JSON.stringify(reconnected)}`);
      await typeInTerminal(page, `echo after-reconnect > ${node.proof}.2`);
      await waitForFile(node.container, `${node.proof}.2`, `${label} after reconnect`);
      step(`${label}: typing works after the reconnect`);
    }
  }

  step(`log in as ${otherUser}`);
  const otherContext = await browser.newContext({ viewport: { width: 1000, height: 700 }, locale: 'en-US' });
  const other = await login(otherContext, otherUser, otherPassword);
  for (const node of nodes) {
    const response = await other.goto(`${base}/hub/desktop${node.url}`);
    step(`${otherUser} opens ${user}'s desktop ${node.url}: ${response.status()}`);
    if (![403, 404].includes(response.status())) {
      throw new Error(`another user got ${response.status()} for ${node.url}'s desktop page`);
    }
    const ws = await other.evaluate(async (url) => new Promise((resolve) => {
      const socket = new WebSocket(url);
      socket.onopen = () => { socket.close(); resolve('opened'); };
      socket.onerror = () => resolve('refused');
      setTimeout(() => resolve('timeout'), 10_000);
    }), `${base.replace(/^http/, 'ws')}/hub/desktop${node.url}websockify`);
    step(`${otherUser}'s websocket to ${node.url}: ${ws}`);
    if (ws !== 'refused') throw new Error(`another user's websocket to ${node.url} was ${ws}`);
  }
  await other.screenshot({ path: path.join(artifacts, 'desktop-other-user.png') });
  step('done');
} catch (e) {
  failed = true;
  step(`FAILED: ${e.stack || e}`);
  for (const [i, ctx] of browser.contexts().entries()) {
    for (const [j, p] of ctx.pages().entries()) {
      await p.screenshot({ path: path.join(artifacts, `desktop-failure-${i}-${j}.png`) }).catch(() => {});
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
