// Xiji's noVNC client: connects to the hub's VNC bridge (the hub authenticates to the VNC
// server; the browser is offered no VNC authentication), resizes the remote desktop to the
// window, syncs a clipboard panel, sets quality and compression, goes full screen, and
// reconnects with backoff after a drop. State is exposed on window.xijiDesktop for tests.
const config = JSON.parse(document.getElementById("desktop-config").textContent);
const t = (key, vars = {}) =>
  (config.messages[key] || key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
const $ = (id) => document.getElementById(id);

let RFB = null;
try {
  ({ default: RFB } = await import("/hub/desktop-static/novnc/core/rfb.js"));
} catch (e) {
  const el = $("status");
  el.className = "status disconnected";
  el.textContent = t("novnc_missing");
  throw e;
}

const state = {
  status: "connecting",
  connects: 0,
  disconnects: 0,
  attempt: 0,
  clipboard: "",
  rfb: null,
};
window.xijiDesktop = state;

const settingsKey = "xiji-desktop-settings";
function loadSettings() {
  try {
    const s = JSON.parse(localStorage.getItem(settingsKey) || "{}");
    const level = (v, d) => (Number.isInteger(v) && v >= 0 && v <= 9 ? v : d);
    // Sharper than noVNC's default (6/2): campus networks have the bandwidth.
    return { quality: level(s.quality, 8), compression: level(s.compression, 2) };
  } catch {
    return { quality: 8, compression: 2 };
  }
}
const settings = loadSettings();

// Labels.
$("name").textContent = `${config.user}${config.server ? "/" + config.server : ""} · ${config.node} · ${config.image}`;
$("reconnect").textContent = t("reconnect");
$("clipboard-toggle").textContent = t("clipboard");
$("settings-toggle").textContent = t("settings");
$("fullscreen").textContent = t("fullscreen");
$("lab").textContent = t("jupyterlab");
$("lab").href = config.lab;
$("home").textContent = t("home");
$("home").href = config.home;
$("language").textContent = t("language");
$("language").href = config.language_url;
$("clipboard-help").textContent = t("clipboard_help");
$("clipboard-send").textContent = t("send");
$("quality-label").textContent = t("quality");
$("compression-label").textContent = t("compression");
$("quality-help").textContent = t("quality_help");
$("no-audio").textContent = t("no_audio");
// Release policy `automatic`: closing the cluster's last page releases it, so ask first
// (browsers show their own words).
if (config.warn_on_leave) {
  window.addEventListener("beforeunload", (event) => {
    event.preventDefault();
    event.returnValue = t("leave_warning");
  });
}

function setStatus(status, text) {
  state.status = status;
  const el = $("status");
  el.className = `status ${status}`;
  el.textContent = text;
  $("reconnect").hidden = status === "connected";
}

// Panels.
for (const [button, panel] of [["clipboard-toggle", "clipboard-panel"], ["settings-toggle", "settings-panel"]]) {
  $(button).addEventListener("click", () => {
    const open = $(panel).hidden;
    $(panel).hidden = !open;
    $(button).setAttribute("aria-expanded", String(open));
  });
}

// Quality and compression, applied live and remembered.
for (const key of ["quality", "compression"]) {
  const input = $(key);
  input.value = String(settings[key]);
  $(`${key}-value`).textContent = input.value;
  input.addEventListener("input", () => {
    settings[key] = Number(input.value);
    $(`${key}-value`).textContent = input.value;
    localStorage.setItem(settingsKey, JSON.stringify(settings));
    if (state.rfb) {
      state.rfb[key === "quality" ? "qualityLevel" : "compressionLevel"] = settings[key];
    }
  });
}

// Clipboard: remote → panel; panel → remote on Send.
$("clipboard-send").addEventListener("click", () => {
  if (state.rfb) {
    state.rfb.clipboardPasteFrom($("clipboard-text").value);
    state.rfb.focus();
  }
});

$("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) {
    document.exitFullscreen();
  } else {
    document.documentElement.requestFullscreen().catch(() => {});
  }
});

// Connection with automatic reconnect: 1, 2, 4, 8, 16, then every 30 s (±20 %).
let retryTimer = null;
let countdownTimer = null;
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${config.websocket}`;

function connect() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  if (state.rfb) {
    const old = state.rfb;
    state.rfb = null;
    try { old.disconnect(); } catch { /* already closed */ }
  }
  setStatus("connecting", t("connecting"));
  const rfb = new RFB($("screen"), wsUrl, { wsProtocols: ["binary"], shared: true });
  rfb.resizeSession = true;
  rfb.scaleViewport = false;
  rfb.clipViewport = false;
  rfb.focusOnClick = true;
  rfb.qualityLevel = settings.quality;
  rfb.compressionLevel = settings.compression;
  rfb.addEventListener("connect", () => {
    if (state.rfb !== rfb) return;
    state.connects += 1;
    state.attempt = 0;
    setStatus("connected", t("connected"));
    rfb.focus();
  });
  rfb.addEventListener("disconnect", () => {
    if (state.rfb !== rfb) return;
    state.disconnects += 1;
    state.rfb = null;
    scheduleReconnect();
  });
  rfb.addEventListener("securityfailure", (e) => {
    setStatus("disconnected", `${t("disconnected")}: ${e.detail.reason || e.detail.status}`);
  });
  rfb.addEventListener("clipboard", (e) => {
    state.clipboard = e.detail.text;
    $("clipboard-text").value = e.detail.text;
  });
  state.rfb = rfb;
}

function scheduleReconnect() {
  state.attempt += 1;
  const base = Math.min(30, 2 ** (state.attempt - 1));
  let seconds = Math.max(1, Math.round(base * (0.8 + Math.random() * 0.4)));
  const show = () =>
    setStatus("disconnected", t("reconnecting", { s: seconds, n: state.attempt }));
  show();
  countdownTimer = setInterval(() => {
    seconds = Math.max(0, seconds - 1);
    show();
  }, 1000);
  retryTimer = setTimeout(connect, seconds * 1000);
}

$("reconnect").addEventListener("click", () => {
  state.attempt = 0;
  connect();
});

// A tab coming back online reconnects at once instead of waiting out the backoff.
window.addEventListener("online", () => {
  if (state.status !== "connected") connect();
});

connect();
