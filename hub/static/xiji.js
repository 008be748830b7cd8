// Xiji's page script: server buttons with live spawn progress, tokens, and the admin page.
// Every action calls the hub's REST API with the login cookie and the X-XSRFToken header (the
// page's XSRF token, equal to the `_xsrf` cookie), which is what the API's cookie auth checks.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  var messagesEl = document.getElementById('xiji-messages');
  var MESSAGES = {};
  try { MESSAGES = JSON.parse(messagesEl ? messagesEl.textContent : '{}'); } catch (e) { MESSAGES = {}; }
  function t(key, vars) {
    var s = MESSAGES[key] || key;
    Object.keys(vars || {}).forEach(function (k) { s = s.split('{' + k + '}').join(String(vars[k])); });
    return s;
  }
  var xsrfMeta = document.querySelector('meta[name="xsrf-token"]');
  var XSRF = xsrfMeta ? xsrfMeta.getAttribute('content') : '';
  var MIN_PASSWORD = 8;

  // ---- helpers -----------------------------------------------------------------------------

  // Calls the API; `body` is JSON, or a Blob sent as it is (an image). Answers {status, data,
  // headers}; a failure is an Error with the API's message and `status`.
  function api(method, url, body) {
    var headers = { 'X-XSRFToken': XSRF, 'Accept': 'application/json' };
    var init = { method: method, credentials: 'same-origin', headers: headers };
    if (body instanceof Blob) {
      headers['Content-Type'] = body.type || 'application/octet-stream';
      init.body = body;
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        if (!r.ok) {
          var err = new Error((data && data.message) || (r.status + ' ' + r.statusText));
          err.status = r.status;
          throw err;
        }
        return { status: r.status, data: data, headers: r.headers };
      });
    });
  }

  function show(el, visible) { if (el) { el.hidden = !visible; } }

  function flash(message, kind) {
    var el = $('#flash');
    if (!el) { window.alert(message); return; }
    el.textContent = message;
    el.className = 'flash flash-' + (kind || 'error');
    el.hidden = false;
    if (kind === 'ok') {
      setTimeout(function () { if (el.textContent === message) { el.hidden = true; } }, 5000);
    }
    el.scrollIntoView({ block: 'nearest' });
  }

  // A message to show after a reload.
  function flashAfterReload(message) {
    try { sessionStorage.setItem('xiji-flash', message); } catch (e) { /* private mode */ }
    window.location.reload();
  }

  function showPendingFlash() {
    try {
      var m = sessionStorage.getItem('xiji-flash');
      if (m) { sessionStorage.removeItem('xiji-flash'); flash(m, 'ok'); }
    } catch (e) { /* private mode */ }
  }

  function busy(button, on) {
    if (!button) { return; }
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = t('working');
      button.disabled = true;
    } else {
      if (button.dataset.label) { button.textContent = button.dataset.label; }
      button.disabled = false;
    }
  }

  function localizeTimes(root) {
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(document.documentElement.lang, { dateStyle: 'medium', timeStyle: 'short' });
    } catch (e) { return; }
    $$('time[datetime]', root).forEach(function (el) {
      var iso = el.getAttribute('datetime').replace(/(\.\d{3})\d+/, '$1');
      var d = new Date(iso);
      if (!isNaN(d.getTime())) {
        el.textContent = fmt.format(d);
        el.title = el.getAttribute('datetime');
      }
    });
  }

  function sizeText(bytes) {
    var n = Number(bytes) || 0;
    var units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    var text = i === 0 ? String(n) : (n >= 100 ? n.toFixed(0) : n.toFixed(1).replace(/\.0$/, ''));
    return text + ' ' + units[i];
  }

  function fromTemplate(id) {
    var tpl = document.getElementById(id);
    return tpl.content.firstElementChild.cloneNode(true);
  }

  // A folder path as typed or read from the URL, without empty, `.` and `..` names.
  function cleanPath(path) {
    return String(path).split('/').filter(function (s) { return s && s !== '.' && s !== '..'; }).join('/');
  }

  // The helpers the other page scripts share (this script loads before them).
  window.Xiji = {
    t: t,
    api: api,
    show: show,
    flash: flash,
    busy: busy,
    sizeText: sizeText,
    fromTemplate: fromTemplate,
    cleanPath: cleanPath,
    xsrf: XSRF
  };

  // ---- spawn progress ----------------------------------------------------------------------

  // Follows a server's progress stream (server-sent events) and drives a progress bar.
  // `root` holds .js-progress-bar, .js-progress-fill, .js-progress-message, .js-progress-log.
  function ProgressView(root, progressUrl, handlers) {
    this.root = root;
    this.url = progressUrl;
    this.handlers = handlers;
    this.source = null;
    this.errors = 0;
    this.active = false;
    this.bar = $('.js-progress-bar', root);
    this.fill = $('.js-progress-fill', root);
    this.message = $('.js-progress-message', root);
    this.log = $('.js-progress-log', root);
  }

  ProgressView.prototype.set = function (pct, message, state) {
    pct = Math.max(0, Math.min(100, Number(pct) || 0));
    if (this.bar) {
      this.bar.setAttribute('aria-valuenow', String(pct));
      this.bar.classList.toggle('is-failed', state === 'failed');
      this.bar.classList.toggle('is-ready', state === 'ready');
      this.bar.classList.toggle('is-active', !state);
    }
    if (this.fill) { this.fill.style.width = pct + '%'; }
    if (message && this.message) { this.message.textContent = message; }
  };

  ProgressView.prototype.reset = function () {
    if (this.log) { this.log.textContent = ''; }
    this.set(0, t('progress_requested'));
  };

  ProgressView.prototype.stop = function () {
    this.active = false;
    if (this.source) { this.source.close(); this.source = null; }
  };

  ProgressView.prototype.follow = function () {
    var self = this;
    if (self.source) { self.source.close(); }
    self.active = true;
    var fresh = true;
    var es = new EventSource(self.url);
    self.source = es;
    es.onmessage = function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      self.errors = 0;
      if (fresh && self.log) { self.log.textContent = ''; }
      fresh = false;
      if (data.message && self.log) {
        var li = document.createElement('li');
        li.textContent = data.message;
        self.log.appendChild(li);
      }
      if (data.failed) {
        self.stop();
        self.set(100, t('progress_failed') + ' ' + (data.message || ''), 'failed');
        self.handlers.failed(data.message || '');
      } else if (data.ready) {
        self.stop();
        self.set(100, t('progress_ready'), 'ready');
        self.handlers.ready(data.url);
      } else {
        // The backend's messages are English; Chinese readers get the status and the
        // percentage, with the details in the event log.
        var zh = document.documentElement.lang.indexOf('zh') === 0;
        var line = zh ? t('status_pending') + ' ' + (Number(data.progress) || 0) + '%' : data.message;
        if (data.queue_position) { line = t('progress_queued', { position: data.queue_position }); }
        self.set(data.progress, line);
      }
    };
    es.onerror = function () {
      es.close();
      if (self.source === es) { self.source = null; }
      if (!self.active) { return; }
      self.errors += 1;
      // The stream ends after the last event or is refused (400) when nothing is starting:
      // after a few refusals, ask the API what the server is doing.
      if (self.errors > 5) {
        self.active = false;
        self.handlers.lost();
        return;
      }
      setTimeout(function () { if (self.active) { self.follow(); } }, 400 * self.errors);
    };
  };

  // ---- home page: one card per server ------------------------------------------------------

  function ServerCard(card, userApi) {
    var self = this;
    this.card = card;
    this.userApi = userApi;
    this.status = $('.js-status', card);
    this.buttons = {
      start: $('.js-start', card), stop: $('.js-stop', card),
      open: $('.js-open', card), del: $('.js-delete', card)
    };
    this.progressBox = $('.js-progress', card);
    // The default server's card holds the spawn form (image and sizes) and, when running, the
    // cluster's nodes.
    this.form = $('.js-spawn-form', card);
    this.optionsBox = $('.js-spawn-options', card);
    this.clusterBox = $('.js-cluster', card);
    this.spawnError = $('.js-spawn-error', card);
    this.progress = new ProgressView(card, card.dataset.progress, {
      ready: function (url) {
        // Started from this page: go where the server is (node-0 of a cluster), as JupyterHub's
        // spawn page does; the other nodes are listed here, one click away.
        if (self.openWhenReady && url) { window.location.assign(url); return; }
        self.setStatus('running'); self.loadCluster(); setTimeout(function () { if (self.card.dataset.status === 'running') { show(self.progressBox, false); } }, 4000);
      },
      failed: function () { self.failed = true; self.setStatus('stopped'); },
      lost: function () { self.refresh(); }
    });
    this.failed = false;
    if (this.form) {
      // The Start button submits the form (also with the Enter key in a field).
      this.form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        if (self.card.dataset.status === 'stopped') { self.start(spawnOptions(self.form)); }
      });
    } else if (this.buttons.start && this.buttons.start.tagName === 'BUTTON') {
      // A link (a named server's spawn page) just navigates.
      this.buttons.start.addEventListener('click', function () { self.start(); });
    }
    if (this.buttons.stop) { this.buttons.stop.addEventListener('click', function () { self.stop(); }); }
    if (this.buttons.del) { this.buttons.del.addEventListener('click', function () { self.remove(); }); }
    if (card.dataset.status === 'pending') { this.progress.follow(); }
  }

  ServerCard.prototype.name = function () { return this.card.dataset.server || ''; };

  ServerCard.prototype.setStatus = function (status) {
    this.card.dataset.status = status;
    if (this.status) {
      this.status.dataset.status = status;
      this.status.textContent = t('status_' + status);
    }
    show(this.buttons.start, status === 'stopped');
    show(this.buttons.open, status === 'running');
    show(this.buttons.stop, status === 'running');
    show(this.buttons.del, status === 'stopped');
    show(this.optionsBox, status === 'stopped');
    show(this.clusterBox, status === 'running');
    if (this.buttons.start) { busy(this.buttons.start, false); }
    if (this.buttons.stop) { busy(this.buttons.stop, false); }
    show(this.progressBox, status === 'pending' || (status === 'running' && !this.progressBox.hidden) || (status === 'stopped' && this.failed));
  };

  ServerCard.prototype.showSpawnError = function (message) {
    if (!this.spawnError) { return; }
    this.spawnError.textContent = message ? t('spawn_refused') + ' ' + message : '';
    show(this.spawnError, !!message);
  };

  // Re-reads the cluster's nodes (image, size, links) from the page once the server is ready.
  ServerCard.prototype.loadCluster = function () {
    var self = this;
    if (!self.clusterBox) { return; }
    fetch(window.location.pathname, { credentials: 'same-origin' })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = $$('.server', doc).filter(function (c) {
          return (c.dataset.server || '') === self.name() && !c.closest('template');
        })[0];
        var box = fresh && $('.js-cluster', fresh);
        if (box) { self.clusterBox.innerHTML = box.innerHTML; }
      })
      .catch(function () { /* the links appear on the next visit */ });
  };

  ServerCard.prototype.start = function (options) {
    var self = this;
    self.openWhenReady = true;
    self.failed = false;
    self.showSpawnError('');
    self.progress.reset();
    self.setStatus('pending');
    var answered = false;
    var body = options && Object.keys(options).length ? options : undefined;
    api('POST', self.card.dataset.api, body).then(function () {
      answered = true;
      // 201: ready already; 202: still starting. The stream says which, either way.
      if (!self.progress.active && self.card.dataset.status === 'pending') { self.progress.follow(); }
    }).catch(function (err) {
      answered = true;
      self.progress.stop();
      if (err.status === 400 && self.form) {
        // Refused before anything started: say why next to the form, values as typed.
        self.setStatus('stopped');
        show(self.progressBox, false);
        self.showSpawnError(err.message);
        if (self.spawnError) { self.spawnError.scrollIntoView({ block: 'nearest' }); }
        return;
      }
      self.failed = true;
      self.progress.set(100, t('progress_failed') + ' ' + err.message, 'failed');
      self.setStatus('stopped');
      self.refresh();
    });
    // Follow the stream while the start request is still waiting for the server.
    setTimeout(function () {
      if (!answered && self.card.dataset.status === 'pending') { self.progress.follow(); }
    }, 250);
  };

  ServerCard.prototype.stop = function () {
    var self = this;
    self.failed = false;
    self.setStatus('stopping');
    show(self.progressBox, false);
    api('DELETE', self.card.dataset.api).then(function (r) {
      if (r.status === 202) { return self.waitUntilStopped(60); }
      self.setStatus('stopped');
    }).catch(function (err) {
      flash(err.message);
      self.refresh();
    });
  };

  ServerCard.prototype.waitUntilStopped = function (tries) {
    var self = this;
    return self.refresh().then(function (status) {
      if (status === 'stopping' && tries > 0) {
        return new Promise(function (resolve) { setTimeout(resolve, 1000); }).then(function () {
          return self.waitUntilStopped(tries - 1);
        });
      }
      return status;
    });
  };

  ServerCard.prototype.remove = function () {
    var self = this;
    if (!window.confirm(t('confirm_delete_server', { name: self.name() }))) { return; }
    busy(self.buttons.del, true);
    api('DELETE', self.card.dataset.api, { remove: true }).then(function () {
      self.card.remove();
    }).catch(function (err) {
      busy(self.buttons.del, false);
      flash(err.message);
    });
  };

  // Asks the API for the server's state and shows it.
  ServerCard.prototype.refresh = function () {
    var self = this;
    return api('GET', self.userApi).then(function (r) {
      var servers = (r.data && r.data.servers) || {};
      var s = servers[self.name()];
      var status = 'stopped';
      if (s && s.ready) { status = 'running'; }
      else if (s && s.pending === 'stop') { status = 'stopping'; }
      else if (s && s.pending) { status = 'pending'; }
      self.setStatus(status);
      if (status === 'pending' && !self.progress.active) { self.progress.follow(); }
      return status;
    }).catch(function (err) { flash(err.message); return 'unknown'; });
  };

  function initHome() {
    var box = $('#servers');
    if (!box) { return; }
    var userApi = box.dataset.userApi;
    $$('.server', box).forEach(function (card) {
      if (!card.closest('template')) { new ServerCard(card, userApi); }
    });
    var form = $('#add-server-form');
    var tpl = $('#named-server-template');
    if (!form || !tpl) { return; }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var input = $('#server-name', form);
      var name = input.value.trim();
      if (!name) { return; }
      if (form.dataset.spawnBase) {
        // Clusters: the new server's spawn page asks for its image and sizes.
        window.location.assign(form.dataset.spawnBase + encodeURIComponent(name));
        return;
      }
      var existing = $$('.server', $('#named-servers')).filter(function (c) { return c.dataset.server === name; })[0];
      if (existing) { existing.scrollIntoView({ block: 'center' }); return; }
      var card = tpl.content.querySelector('.server').cloneNode(true);
      var quoted = encodeURIComponent(name);
      card.dataset.server = name;
      card.dataset.api = form.dataset.apiBase + quoted;
      card.dataset.progress = form.dataset.apiBase + quoted + '/progress';
      card.dataset.url = box.dataset.userPrefix + quoted + '/';
      $('h2 .mono', card).textContent = name;
      $('.js-open', card).setAttribute('href', card.dataset.url);
      $$('.server-meta .mono', card).forEach(function (el) { el.textContent = card.dataset.url; });
      var list = $('#named-servers');
      var empty = $('.empty', list);
      if (empty) { empty.remove(); }
      list.appendChild(card);
      input.value = '';
      new ServerCard(card, userApi).start();
    });
  }

  // ---- spawn form and cluster nodes ---------------------------------------------------------

  var OPTION_FIELDS = ['image', 'nodes', 'cpus', 'memory', 'gpus', 'storage', 'pool'];

  // The spawn form's filled-in fields, as the API's user_options.
  function spawnOptions(form) {
    var data = new FormData(form);
    var out = {};
    OPTION_FIELDS.forEach(function (k) {
      var v = data.get(k);
      if (typeof v === 'string' && v.trim()) { out[k] = v.trim(); }
    });
    // "Wait in line if the hardware is busy".
    if (data.get('wait')) { out.wait = true; }
    // The release policy chosen for this start.
    var release = data.get('release_policy');
    if (typeof release === 'string' && release) { out.release_policy = release; }
    // Every ticked dataset; none ticked is an empty list, not "as last time".
    if (data.has('datasets_offered')) { out.datasets = data.getAll('dataset'); }
    return out;
  }

  function initSpawnForms() {
    $$('.js-spawn-form').forEach(function (form) {
      // An image that needs a GPU asks for one.
      form.addEventListener('change', function (ev) {
        var radio = ev.target;
        if (radio.name !== 'image' || radio.dataset.needsGpu !== 'true') { return; }
        var gpus = form.elements.gpus;
        if (gpus && !gpus.disabled && (gpus.value === '' || gpus.value === '0')) { gpus.value = '1'; }
      });
    });
  }

  // "Save image" on a node: the save-image API starts a job; its progress shows beside the node.
  function initSaveImage() {
    document.addEventListener('click', function (ev) {
      var button = ev.target.closest('.js-save-image');
      if (!button) { return; }
      var node = button.closest('.node');
      var status = node ? $('.js-save-status', node) : null;
      var say = function (text) { if (status) { status.textContent = text; } else { flash(text, 'ok'); } };
      var name = window.prompt(t('save_image_prompt'), '');
      if (name === null || !name.trim()) { return; }
      busy(button, true);
      say(t('save_image_started'));
      api('POST', button.dataset.api, { node: button.dataset.node, name: name.trim() }).then(function (r) {
        var job = r.data || {};
        if (!job.id) { busy(button, false); say(t('save_image_started')); return; }
        followSaveJob(job.id, button, say, 0);
      }).catch(function (err) {
        busy(button, false);
        say(err.status === 404 || err.status === 405 ? t('save_image_unavailable') : t('save_image_failed', { reason: err.message }));
      });
    });
  }

  function followSaveJob(id, button, say, polls) {
    api('GET', '/hub/api/save-jobs/' + encodeURIComponent(id)).then(function (r) {
      var job = r.data || {};
      if (job.state === 'done') {
        busy(button, false);
        say(t('save_image_done', { image: job.image || job.name || '' }));
      } else if (job.state === 'failed' || job.state === 'cancelled') {
        busy(button, false);
        say(t('save_image_failed', { reason: job.reason || job.state }));
      } else if (polls < 3600) {
        say(t('save_image_progress', { percent: Math.round(Number(job.percent) || 0) }));
        setTimeout(function () { followSaveJob(id, button, say, polls + 1); }, 2000);
      } else {
        busy(button, false);
      }
    }).catch(function (err) {
      busy(button, false);
      say(t('save_image_failed', { reason: err.message }));
    });
  }

  // ---- image library forms -----------------------------------------------------------------

  function initImageForms() {
    // Desktop-only fields (start command, VNC password and port) follow the kind.
    var kind = $('#image-kind');
    if (kind) {
      kind.addEventListener('change', function () {
        $$('.js-desktop-only').forEach(function (el) { show(el, kind.value === 'desktop'); });
      });
    }
    document.addEventListener('submit', function (ev) {
      var form = ev.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        ev.preventDefault();
      }
    });
  }

  // ---- spawn-pending page ------------------------------------------------------------------

  function initPending() {
    var box = $('#pending');
    if (!box) { return; }
    var next = box.dataset.next;
    var view = new ProgressView(box, box.dataset.progress, {
      ready: function () { window.location.assign(next); },
      failed: function () { /* the message stays on the page */ },
      lost: function () { window.location.reload(); }
    });
    view.follow();
  }

  // ---- token page --------------------------------------------------------------------------

  function initToken() {
    var form = $('#token-form');
    if (!form) { return; }
    var base = form.dataset.api;
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var button = $('#token-create', form);
      var body = {};
      var note = $('#token-note', form).value.trim();
      if (note) { body.note = note; }
      var expires = parseInt($('#token-expires', form).value, 10);
      if (expires > 0) { body.expires_in = expires; }
      var scopes = $('#token-scopes', form).value.split(/[\s,]+/).filter(Boolean);
      if (scopes.length) { body.scopes = scopes; }
      busy(button, true);
      api('POST', base, body).then(function (r) {
        busy(button, false);
        $('#new-token-value').textContent = r.data.token;
        show($('#new-token'), true);
        form.reset();
        return reloadSection('#token-list');
      }).catch(function (err) {
        busy(button, false);
        flash(err.message);
      });
    });
    var copy = $('#copy-token');
    if (copy) {
      copy.addEventListener('click', function () {
        var text = $('#new-token-value').textContent;
        var done = function () { copy.textContent = t('copied'); setTimeout(function () { copy.textContent = t('btn_copy'); }, 2000); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText($('#new-token-value')); });
        } else {
          selectText($('#new-token-value'));
          try { if (document.execCommand('copy')) { done(); } } catch (e) { /* selected for manual copy */ }
        }
      });
    }
    document.addEventListener('click', function (ev) {
      var button = ev.target.closest('.js-revoke');
      if (!button) { return; }
      var row = button.closest('tr');
      if (!window.confirm(t('confirm_revoke'))) { return; }
      busy(button, true);
      api('DELETE', base + '/' + encodeURIComponent(row.dataset.tokenId)).then(function () {
        return reloadSection('#token-list');
      }).catch(function (err) {
        busy(button, false);
        flash(err.message);
      });
    });
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // Re-renders one section of the current page from the server.
  function reloadSection(selector) {
    return fetch(window.location.pathname + window.location.search, { credentials: 'same-origin' })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.querySelector(selector);
        var old = $(selector);
        if (fresh && old) {
          old.replaceWith(document.importNode(fresh, true));
          localizeTimes($(selector));
        }
      });
  }

  // ---- admin page --------------------------------------------------------------------------

  function initAdmin() {
    var form = $('#add-users-form');
    if (!form) { return; }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var button = $('#add-users', form);
      var names = $('#new-usernames', form).value.split(/[\s,;]+/).filter(Boolean);
      var password = $('#new-password', form).value;
      var role = $('#new-role', form).value;
      if (!names.length) { return; }
      if (password && password.length < MIN_PASSWORD) {
        flash(t('password_too_short', { min: MIN_PASSWORD }));
        return;
      }
      busy(button, true);
      api('POST', '/hub/api/users', { usernames: names, admin: role === 'admin' }).then(function (r) {
        var created = (r.data || []).map(function (u) { return u.name; });
        var patch = { account_role: role };
        if (password) { patch.password = password; }
        return Promise.all(created.map(function (name) {
          return api('PATCH', '/hub/api/users/' + encodeURIComponent(name), patch);
        })).then(function () { return created.length; });
      }).then(function (n) {
        flashAfterReload(t('admin_added', { n: n }));
      }).catch(function (err) {
        busy(button, false);
        flash(err.message);
      });
    });

    var table = $('#user-table');
    if (!table) { return; }
    table.addEventListener('change', function (ev) {
      var select = ev.target.closest('.js-role');
      if (!select) { return; }
      var row = select.closest('tr');
      select.disabled = true;
      api('PATCH', row.dataset.api, { account_role: select.value }).then(function () {
        select.disabled = false;
        flash(row.dataset.user + ': ' + select.options[select.selectedIndex].text, 'ok');
      }).catch(function (err) {
        select.disabled = false;
        flash(err.message);
      });
    });
    table.addEventListener('click', function (ev) {
      var button = ev.target.closest('button');
      if (!button) { return; }
      var row = button.closest('tr');
      var name = row.dataset.user;
      var call = null;
      if (button.classList.contains('js-toggle-admin')) {
        call = function () { return api('PATCH', row.dataset.api, { admin: row.dataset.admin !== 'true' }); };
      } else if (button.classList.contains('js-password')) {
        var pw = window.prompt(t('prompt_password', { name: name, min: MIN_PASSWORD }));
        if (pw === null) { return; }
        if (pw.length < MIN_PASSWORD) { flash(t('password_too_short', { min: MIN_PASSWORD })); return; }
        busy(button, true);
        api('PATCH', row.dataset.api, { password: pw }).then(function () {
          busy(button, false);
          flash(name + ': ' + t('password_set'), 'ok');
        }).catch(function (err) { busy(button, false); flash(err.message); });
        return;
      } else if (button.classList.contains('js-delete-user')) {
        if (!window.confirm(t('confirm_delete_user', { name: name }))) { return; }
        call = function () { return api('DELETE', row.dataset.api); };
      } else if (button.classList.contains('js-start-user')) {
        call = function () { return api('POST', row.dataset.serverApi); };
      } else if (button.classList.contains('js-stop-user')) {
        call = function () { return api('DELETE', row.dataset.serverApi); };
      }
      if (!call) { return; }
      busy(button, true);
      call().then(function () {
        window.location.reload();
      }).catch(function (err) {
        busy(button, false);
        flash(name + ': ' + err.message);
      });
    });
  }

  function init() {
    var minAttr = document.body.dataset.minPassword;
    if (minAttr) { MIN_PASSWORD = parseInt(minAttr, 10) || MIN_PASSWORD; }
    showPendingFlash();
    localizeTimes(document);
    initHome();
    initSpawnForms();
    initSaveImage();
    initImageForms();
    initPending();
    initToken();
    initAdmin();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
