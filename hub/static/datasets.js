// Xiji's datasets pages: the list (search, sort, tabs, pages), the new-dataset form, and a
// dataset's page (description, star, file tree, uploads, the owner's settings and shares).
// Everything goes through /hub/api/datasets with the login cookie and the X-XSRFToken header
// (the page's XSRF token, equal to the `_xsrf` cookie), as xiji.js calls the API.
//
// Uploads are resumable (the core of tus 1.0.0): POST …/uploads declares a file, then PATCH
// /hub/api/uploads/{id} sends it in 8 MiB chunks from `Upload-Offset`. A broken connection is
// retried after a pause from the offset a HEAD gives; an upload cut off by a reload goes on when
// the same file is dropped or chosen again (its URL is kept in localStorage under the dataset,
// the path, the size and the file's modification time), or from the "unfinished uploads" list.
//
// A batch of up to LIST_ALL files lists every file with its own bar. A bigger one (a folder of
// thousands of files) lists only the files being sent and those that failed, with a line saying
// how many wait: a row per file, each redrawn as its bytes go, would keep the browser busier
// drawing than sending. Its bars are redrawn a few times a second, still (no moving stripes, no
// sliding): animating them costs the browser a third of its time over thousands of files. The
// overall bar counts every file either way, and is exact when the batch ends.
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

  // A file goes in chunks that start at CHUNK and double after each one that arrives, up to
  // MAX_CHUNK: small first (a broken link is noticed soon), then big (fewer requests, the hub's
  // disk speed). Progress comes from the request's own upload events, whatever the size.
  var CHUNK = 8 * 1024 * 1024;
  var MAX_CHUNK = 64 * 1024 * 1024;
  var PARALLEL = 4;
  var LIST_ALL = 200;
  var COMPACT_REDRAW_MS = 250;
  var COMPACT_REFRESH_MS = 3000;
  var TREE_PAGE = 100;
  var STORE_PREFIX = 'xiji-upload:';

  // ---- helpers -----------------------------------------------------------------------------

  // Calls the API; `body` is JSON, or a Blob sent as it is (a cover image).
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

  // A message for the next page (xiji.js shows it there).
  function flashNext(message) {
    try { sessionStorage.setItem('xiji-flash', message); } catch (e) { /* private mode */ }
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

  function sizeText(bytes) {
    var n = Number(bytes) || 0;
    var units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    var text = i === 0 ? String(n) : (n >= 100 ? n.toFixed(0) : n.toFixed(1).replace(/\.0$/, ''));
    return text + ' ' + units[i];
  }

  var dateFormat = null;
  function dateText(iso) {
    if (!iso) { return ''; }
    var d = new Date(String(iso).replace(/(\.\d{3})\d+/, '$1'));
    if (isNaN(d.getTime())) { return String(iso); }
    try {
      dateFormat = dateFormat || new Intl.DateTimeFormat(document.documentElement.lang, { dateStyle: 'medium', timeStyle: 'short' });
      return dateFormat.format(d);
    } catch (e) { return d.toISOString().slice(0, 16).replace('T', ' '); }
  }

  function timeEl(iso) {
    var el = document.createElement('time');
    if (iso) { el.setAttribute('datetime', iso); el.title = iso; }
    el.textContent = dateText(iso);
    return el;
  }

  // A dataset path in a URL: each segment quoted, the slashes kept.
  function encodePath(path) { return String(path).split('/').map(encodeURIComponent).join('/'); }

  function datasetApi(owner, name) {
    return '/hub/api/datasets/' + encodeURIComponent(owner) + '/' + encodeURIComponent(name);
  }

  function datasetPage(owner, name) {
    return '/hub/datasets/' + encodeURIComponent(owner) + '/' + encodeURIComponent(name);
  }

  // The text of the server's (already sanitized) description HTML, for an excerpt. A template's
  // content is inert: nothing in it loads or runs.
  function htmlText(html) {
    var tpl = document.createElement('template');
    tpl.innerHTML = html || '';
    return (tpl.content.textContent || '').replace(/\s+/g, ' ').trim();
  }

  function excerpt(text, n) {
    var chars = Array.from(text);
    return chars.length > n ? chars.slice(0, n).join('') + '…' : text;
  }

  // "a, b  c，d" → ["a", "b", "c", "d"], each once.
  function parseTags(text) {
    var seen = {};
    return String(text || '').split(/[\s,，、;；]+/).filter(function (w) {
      if (!w || seen[w]) { return false; }
      seen[w] = true;
      return true;
    });
  }

  function tagLink(tag) {
    var a = document.createElement('a');
    a.className = 'ds-tag';
    a.href = '/hub/datasets?' + new URLSearchParams({ tag: tag }).toString();
    a.textContent = tag;
    return a;
  }

  function fromTemplate(id) {
    var tpl = document.getElementById(id);
    return tpl.content.firstElementChild.cloneNode(true);
  }

  // Why `file` (from `input`) cannot be a cover, or '' (the hub checks it again).
  function coverProblem(input, file) {
    var max = Number(input.dataset.maxBytes) || 0;
    if (max && file.size > max) {
      return Promise.resolve(t('dataset_cover_too_big', { max: input.dataset.max, size: sizeText(file.size) }));
    }
    return looksLikeImage(file).then(function (ok) { return ok ? '' : t('dataset_cover_not_image'); });
  }

  // Whether a file starts like a PNG, JPEG or WebP image (what the hub accepts as a cover).
  function looksLikeImage(file) {
    return file.slice(0, 12).arrayBuffer().then(function (buf) {
      var b = new Uint8Array(buf);
      var png = b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
      var jpeg = b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
      var webp = b.length >= 12 && String.fromCharCode(b[0], b[1], b[2], b[3]) === 'RIFF' &&
        String.fromCharCode(b[8], b[9], b[10], b[11]) === 'WEBP';
      return png || jpeg || webp;
    });
  }

  // Shows `file` in `img` (a data: URL, which the pages' content policy allows).
  function preview(file, img, none) {
    if (!file) { show(img, false); show(none, true); return; }
    var reader = new FileReader();
    reader.onload = function () { img.src = reader.result; show(img, true); show(none, false); };
    reader.readAsDataURL(file);
  }

  function fallbackInitial(el, name) {
    el.textContent = (Array.from(String(name || '?'))[0] || '?').toUpperCase();
  }

  function visibilityPill(el, visibility) {
    el.dataset.visibility = visibility;
    el.textContent = t(visibility === 'public' ? 'dataset_visibility_public' : 'dataset_visibility_private');
  }

  // The fields of dataset_fields.html as the API's body.
  function fieldsBody(form) {
    var checked = $('input[name="visibility"]:checked', form);
    return {
      name: form.elements.name.value.trim(),
      description: form.elements.description.value,
      tags: parseTags(form.elements.tags.value),
      license: form.elements.license.value.trim(),
      visibility: checked ? checked.value : 'private'
    };
  }

  function fillFields(form, ds) {
    form.elements.name.value = ds.name || '';
    form.elements.description.value = ds.description || '';
    form.elements.tags.value = (ds.tags || []).join(', ');
    form.elements.license.value = ds.license || '';
    var radio = $('input[name="visibility"][value="' + (ds.visibility === 'public' ? 'public' : 'private') + '"]', form);
    if (radio) { radio.checked = true; }
  }

  // ---- the list ----------------------------------------------------------------------------

  function initList() {
    var box = $('#dataset-list');
    if (!box) { return; }
    var d = box.dataset;
    var limit = parseInt(d.limit, 10) || 24;
    var offset = Math.max(0, parseInt(d.offset, 10) || 0);
    var query = new URLSearchParams();
    if (d.q) { query.set('q', d.q); }
    query.set('sort', d.sort || 'updated');
    if (d.filter === 'mine') { query.set('owner', d.user); } else if (d.owner) { query.set('owner', d.owner); }
    if (d.filter === 'starred') { query.set('starred', 'true'); }
    if (d.tag) { query.set('tag', d.tag); }
    query.set('offset', String(offset));
    query.set('limit', String(limit));

    var sort = $('#dataset-sort');
    if (sort) { sort.addEventListener('change', function () { sort.form.submit(); }); }

    api('GET', '/hub/api/datasets?' + query.toString()).then(function (r) {
      var data = r.data || {};
      var items = data.items || [];
      box.textContent = '';
      items.forEach(function (ds) { box.appendChild(datasetCard(ds)); });
      box.setAttribute('aria-busy', 'false');
      box.dataset.total = String(data.total || 0);
      show($('#dataset-empty'), items.length === 0);
      listPager(Number(data.total) || 0, offset, limit, items.length);
    }).catch(function (err) {
      box.setAttribute('aria-busy', 'false');
      flash(err.message);
    });
  }

  function datasetCard(ds) {
    var card = fromTemplate('dataset-card-template');
    var url = ds.url || datasetPage(ds.owner, ds.name);
    card.dataset.dataset = ds.owner + '/' + ds.name;
    $$('.js-link', card).forEach(function (a) { a.href = url; });
    var img = $('.js-cover', card);
    if (ds.has_cover && ds.cover_url) {
      img.src = ds.cover_url + (ds.cover_url.indexOf('?') < 0 ? '?' : '&') + 'v=' + encodeURIComponent(ds.updated || '');
      show(img, true);
      show($('.js-initial', card), false);
    } else {
      fallbackInitial($('.js-initial', card), ds.name);
    }
    $('.js-owner', card).textContent = ds.owner;
    $('.js-name', card).textContent = ds.name;
    var text = htmlText(ds.description_html) || '';
    $('.js-excerpt', card).textContent = excerpt(text, 140) || t('dataset_no_description');
    var tags = $('.js-tags', card);
    (ds.tags || []).forEach(function (tag) { tags.appendChild(tagLink(tag)); });
    visibilityPill($('.js-visibility', card), ds.visibility);
    $('.js-size', card).textContent = sizeText(ds.size_bytes);
    $('.js-files', card).textContent = t('dataset_file_count', { n: ds.file_count || 0 });
    var stars = $('.js-stars', card);
    stars.textContent = '★ ' + (ds.stars || 0);
    stars.title = t('dataset_stars');
    if (ds.starred) { stars.classList.add('is-starred'); }
    var updated = $('.js-updated', card);
    updated.textContent = t('dataset_updated_at') + ' ';
    updated.appendChild(timeEl(ds.updated));
    return card;
  }

  function listPager(total, offset, limit, shown) {
    var pager = $('#dataset-pager');
    if (!pager) { return; }
    show(pager, total > limit || offset > 0);
    var link = function (to) {
      var params = new URLSearchParams(window.location.search);
      if (to > 0) { params.set('offset', String(to)); } else { params.delete('offset'); }
      var q = params.toString();
      return window.location.pathname + (q ? '?' + q : '');
    };
    var prev = $('#dataset-prev');
    var next = $('#dataset-next');
    prev.href = link(Math.max(0, offset - limit));
    next.href = link(offset + limit);
    show(prev, offset > 0);
    show(next, offset + limit < total);
    $('#dataset-page-info').textContent = shown ? t('page_info', { from: offset + 1, to: offset + shown, total: total }) : '';
  }

  // ---- the new dataset ---------------------------------------------------------------------

  function initNew() {
    var form = $('#dataset-new-form');
    if (!form) { return; }
    var cover = $('#dataset-cover');
    var errorBox = $('#dataset-form-error');
    var say = function (message) {
      errorBox.textContent = message;
      show(errorBox, !!message);
      if (message) { errorBox.scrollIntoView({ block: 'nearest' }); }
    };
    cover.addEventListener('change', function () {
      var file = cover.files[0];
      say('');
      if (!file) { preview(null, $('#dataset-cover-preview-img'), $('#dataset-cover-none')); return; }
      coverProblem(cover, file).then(function (problem) {
        if (problem) { say(problem); cover.value = ''; file = null; }
        preview(file, $('#dataset-cover-preview-img'), $('#dataset-cover-none'));
      });
    });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var button = $('#dataset-create');
      var body = fieldsBody(form);
      if (!body.name) { say(t('dataset_name_missing')); form.elements.name.focus(); return; }
      var owner = form.elements.owner ? form.elements.owner.value.trim() : '';
      if (owner) { body.owner = owner; }
      say('');
      busy(button, true);
      api('POST', '/hub/api/datasets', body).then(function (r) {
        var ds = r.data || {};
        var page = ds.url || datasetPage(ds.owner || owner || form.dataset.user, ds.name || body.name);
        var file = cover.files[0];
        if (!file) { window.location.assign(page); return null; }
        return api('PUT', datasetApi(ds.owner, ds.name) + '/cover', file).then(function () {
          window.location.assign(page);
        }).catch(function (err) {
          // The dataset exists: go to it and say why its cover is missing.
          flashNext(t('dataset_cover_refused', { reason: err.message }));
          window.location.assign(page);
        });
      }).catch(function (err) {
        busy(button, false);
        say(err.message);
      });
    });
  }

  // ---- a dataset's page --------------------------------------------------------------------

  function DatasetPage(root) {
    this.root = root;
    this.owner = root.dataset.owner;
    this.name = root.dataset.name;
    this.base = datasetApi(this.owner, this.name);
    this.ds = null;
    this.path = '';
    this.offset = 0;
    this.uploader = null;
    this.refreshTimer = null;
    this.refreshAt = 0;
  }

  DatasetPage.prototype.canWrite = function () {
    return !!this.ds && (this.ds.access === 'write' || this.ds.access === 'owner');
  };

  DatasetPage.prototype.isOwner = function () { return !!this.ds && this.ds.access === 'owner'; };

  DatasetPage.prototype.start = function () {
    var self = this;
    var params = new URLSearchParams(window.location.search);
    self.path = cleanPath(params.get('path') || '');
    self.offset = Math.max(0, parseInt(params.get('offset'), 10) || 0);
    self.bindStatic();
    self.load().then(function (ok) {
      if (!ok) { return; }
      self.loadTree();
      self.showTab(window.location.hash === '#settings' && self.isOwner() ? 'settings' : 'files');
      if (self.canWrite()) {
        self.uploader = new Uploader(self);
        self.uploader.loadUnfinished();
      }
      if (self.isOwner()) { self.loadShares(); }
    });
    window.addEventListener('popstate', function () {
      var p = new URLSearchParams(window.location.search);
      self.path = cleanPath(p.get('path') || '');
      self.offset = Math.max(0, parseInt(p.get('offset'), 10) || 0);
      self.loadTree();
      self.showTab(window.location.hash === '#settings' && self.isOwner() ? 'settings' : 'files');
    });
  };

  function cleanPath(path) {
    return String(path).split('/').filter(function (s) { return s && s !== '.' && s !== '..'; }).join('/');
  }

  // Reads the dataset; false when it cannot be shown (not found, or no access).
  DatasetPage.prototype.load = function () {
    var self = this;
    return api('GET', self.base).then(function (r) {
      self.render(r.data || {});
      self.root.setAttribute('aria-busy', 'false');
      return true;
    }).catch(function (err) {
      self.root.setAttribute('aria-busy', 'false');
      var box = $('#dataset-error');
      box.textContent = err.status === 404 ? t('dataset_not_found') + ' ' + err.message : err.message;
      box.dataset.status = String(err.status || 0);
      show(box, true);
      return false;
    });
  };

  DatasetPage.prototype.render = function (ds) {
    var self = this;
    var first = !self.ds;
    self.ds = ds;
    show($('#dataset-header'), true);
    show($('#dataset-tabs'), true);
    $('#dataset-title').textContent = ds.name;
    document.title = ds.owner + '/' + ds.name + ' · ' + t('product');
    var img = $('#dataset-cover-img');
    var fallback = $('#dataset-cover-fallback');
    if (ds.has_cover && ds.cover_url) {
      img.src = ds.cover_url + (ds.cover_url.indexOf('?') < 0 ? '?' : '&') + 'v=' + encodeURIComponent(ds.updated || '');
      show(img, true);
      show(fallback, false);
    } else {
      img.removeAttribute('src');
      show(img, false);
      fallbackInitial(fallback, ds.name);
      show(fallback, true);
    }
    visibilityPill($('#dataset-visibility'), ds.visibility);
    self.renderStar(ds.stars, ds.starred);
    var tags = $('#dataset-tags-list');
    tags.textContent = '';
    (ds.tags || []).forEach(function (tag) { tags.appendChild(tagLink(tag)); });
    // The server renders the Markdown and removes anything unsafe; only that field is HTML.
    var description = $('#dataset-description');
    if (ds.description_html) {
      description.innerHTML = ds.description_html;
      description.classList.remove('muted');
    } else {
      description.textContent = t('dataset_no_description');
      description.classList.add('muted');
    }
    $('#dataset-license-text').textContent = ds.license || t('dataset_no_license');
    $('#dataset-size').textContent = sizeText(ds.size_bytes);
    $('#dataset-file-count').textContent = String(ds.file_count || 0);
    var updated = $('#dataset-updated');
    updated.textContent = '';
    updated.appendChild(timeEl(ds.updated));
    $('#dataset-mount').textContent = ds.mount_path || ('/home/jovyan/datasets/' + ds.owner + '/' + ds.name);
    show($('#tab-settings'), self.isOwner());
    show($('#upload-card'), self.canWrite());
    if (self.isOwner()) {
      if (first) { fillFields($('#settings-form'), ds); }
      var sImg = $('#settings-cover-img');
      if (ds.has_cover && ds.cover_url) {
        sImg.src = img.src;
        show(sImg, true);
        show($('#settings-cover-none'), false);
      } else {
        show(sImg, false);
        show($('#settings-cover-none'), true);
      }
      show($('#cover-remove'), !!ds.has_cover);
    }
  };

  DatasetPage.prototype.renderStar = function (stars, starred) {
    var button = $('#star-button');
    button.setAttribute('aria-pressed', starred ? 'true' : 'false');
    button.classList.toggle('is-starred', !!starred);
    $('.ds-star-icon', button).textContent = starred ? '★' : '☆';
    $('#star-label').textContent = starred ? t('dataset_unstar') : t('dataset_star');
    $('#star-count').textContent = String(stars || 0);
  };

  DatasetPage.prototype.bindStatic = function () {
    var self = this;
    $('#star-button').addEventListener('click', function () {
      if (!self.ds) { return; }
      var button = this;
      button.disabled = true;
      api(self.ds.starred ? 'DELETE' : 'PUT', self.base + '/star').then(function (r) {
        var s = r.data || {};
        self.ds.starred = !!s.starred;
        self.ds.stars = Number(s.stars) || 0;
        self.renderStar(self.ds.stars, self.ds.starred);
        button.disabled = false;
      }).catch(function (err) { button.disabled = false; flash(err.message); });
    });
    $('#tab-files').addEventListener('click', function (ev) { ev.preventDefault(); self.showTab('files', true); });
    $('#tab-settings').addEventListener('click', function (ev) { ev.preventDefault(); self.showTab('settings', true); });
    $('#tree-prev').addEventListener('click', function () { self.go(self.path, Math.max(0, self.offset - TREE_PAGE)); });
    $('#tree-next').addEventListener('click', function () { self.go(self.path, self.offset + TREE_PAGE); });
    $('#breadcrumbs').addEventListener('click', function (ev) {
      var a = ev.target.closest('a[data-path]');
      if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) { return; }
      ev.preventDefault();
      self.go(a.dataset.path, 0);
    });
    $('#file-rows').addEventListener('click', function (ev) {
      var row = ev.target.closest('tr');
      if (!row) { return; }
      var dir = ev.target.closest('a.js-name[data-dir]');
      if (dir && !(ev.ctrlKey || ev.metaKey || ev.shiftKey)) {
        ev.preventDefault();
        self.go(row.dataset.path, 0);
      } else if (ev.target.closest('.js-move')) {
        self.move(row.dataset.path, ev.target.closest('.js-move'));
      } else if (ev.target.closest('.js-delete')) {
        self.remove(row.dataset.path, row.dataset.type, ev.target.closest('.js-delete'));
      }
    });
    self.bindSettings();
  };

  DatasetPage.prototype.showTab = function (tab, remember) {
    var settings = tab === 'settings' && this.isOwner();
    show($('#files-panel'), !settings);
    show($('#settings-panel'), settings);
    [['#tab-files', !settings], ['#tab-settings', settings]].forEach(function (pair) {
      if (pair[1]) { $(pair[0]).setAttribute('aria-current', 'page'); } else { $(pair[0]).removeAttribute('aria-current'); }
    });
    if (remember) {
      var url = window.location.pathname + window.location.search + (settings ? '#settings' : '');
      history.replaceState(null, '', url);
    }
  };

  // Opens a folder (and a page of it), keeping it in the address for reloads and Back.
  DatasetPage.prototype.go = function (path, offset) {
    this.path = cleanPath(path);
    this.offset = offset || 0;
    var params = new URLSearchParams();
    if (this.path) { params.set('path', this.path); }
    if (this.offset) { params.set('offset', String(this.offset)); }
    var q = params.toString();
    history.pushState(null, '', window.location.pathname + (q ? '?' + q : ''));
    this.loadTree();
  };

  DatasetPage.prototype.treeUrl = function () {
    var params = new URLSearchParams({ path: this.path, offset: String(this.offset), limit: String(TREE_PAGE) });
    return this.base + '/tree?' + params.toString();
  };

  DatasetPage.prototype.loadTree = function () {
    var self = this;
    var asked = self.path + '|' + self.offset;
    self.renderBreadcrumbs();
    var target = $('#upload-target');
    if (target) { target.textContent = t('dataset_upload_into', { folder: '/' + self.path }); }
    var zip = $('#zip-link');
    zip.href = self.base + '/zip' + (self.path ? '?' + new URLSearchParams({ path: self.path }).toString() : '');
    return api('GET', self.treeUrl()).then(function (r) {
      if (asked !== self.path + '|' + self.offset) { return; }
      var data = r.data || {};
      var entries = data.entries || [];
      var rows = $('#file-rows');
      rows.textContent = '';
      entries.forEach(function (e) { rows.appendChild(self.fileRow(e)); });
      show($('#file-table'), entries.length > 0);
      show($('#folder-empty'), entries.length === 0);
      show(zip, entries.length > 0);
      var total = Number(data.total) || 0;
      show($('#tree-pager'), total > TREE_PAGE || self.offset > 0);
      show($('#tree-prev'), self.offset > 0);
      show($('#tree-next'), self.offset + TREE_PAGE < total);
      $('#tree-page-info').textContent = entries.length ? t('page_info', { from: self.offset + 1, to: self.offset + entries.length, total: total }) : '';
      $('#files-card').dataset.path = self.path;
      $('#files-card').dataset.total = String(total);
    }).catch(function (err) {
      if (err.status === 404 && self.path) {
        // The folder is gone (moved or deleted elsewhere): back to the top.
        flash(err.message);
        self.go('', 0);
        return;
      }
      flash(err.message);
    });
  };

  DatasetPage.prototype.renderBreadcrumbs = function () {
    var self = this;
    var nav = $('#breadcrumbs');
    nav.textContent = '';
    var crumb = function (label, path, last) {
      var el;
      if (last) {
        el = document.createElement('span');
        el.setAttribute('aria-current', 'location');
      } else {
        el = document.createElement('a');
        el.href = window.location.pathname + (path ? '?' + new URLSearchParams({ path: path }).toString() : '');
        el.dataset.path = path;
      }
      el.className = 'ds-crumb';
      el.textContent = label;
      nav.appendChild(el);
    };
    var parts = self.path ? self.path.split('/') : [];
    crumb(self.name, '', parts.length === 0);
    parts.forEach(function (part, i) {
      var sep = document.createElement('span');
      sep.className = 'ds-crumb-sep';
      sep.textContent = '/';
      nav.appendChild(sep);
      crumb(part, parts.slice(0, i + 1).join('/'), i === parts.length - 1);
    });
  };

  DatasetPage.prototype.fileRow = function (e) {
    var row = fromTemplate('file-row-template');
    var isDir = e.type === 'dir';
    row.dataset.path = e.path;
    row.dataset.type = e.type;
    row.dataset.name = e.name;
    $('.js-icon', row).dataset.type = isDir ? 'dir' : 'file';
    var link = $('.js-name', row);
    link.textContent = e.name;
    var download = $('.js-download', row);
    if (isDir) {
      link.href = window.location.pathname + '?' + new URLSearchParams({ path: e.path }).toString();
      link.dataset.dir = 'true';
      download.href = this.base + '/zip?' + new URLSearchParams({ path: e.path }).toString();
      download.textContent = t('dataset_download_zip');
      download.setAttribute('download', e.name + '.zip');
      $('.js-size', row).textContent = t('dataset_file_count', { n: e.file_count || 0 }) + (e.size ? ' · ' + sizeText(e.size) : '');
    } else {
      link.href = this.base + '/files/' + encodePath(e.path);
      link.setAttribute('download', e.name);
      download.href = link.href;
      download.setAttribute('download', e.name);
      $('.js-size', row).textContent = sizeText(e.size);
      if (e.sha256) { $('.js-size', row).title = 'sha256 ' + e.sha256; }
    }
    $('.js-updated', row).appendChild(timeEl(e.updated));
    show($('.js-move', row), this.canWrite());
    show($('.js-delete', row), this.canWrite());
    return row;
  };

  // Schedules a re-read of the dataset and the open folder (while files arrive).
  // `delay` (ms, default 700) is the longest the re-read may wait; an earlier one still comes.
  DatasetPage.prototype.refreshSoon = function (delay) {
    var self = this;
    var at = Date.now() + (delay || 700);
    if (self.refreshTimer) {
      if (self.refreshAt <= at) { return; }
      clearTimeout(self.refreshTimer);
    }
    self.refreshAt = at;
    self.refreshTimer = setTimeout(function () {
      self.refreshTimer = null;
      self.refreshAt = 0;
      self.loadTree();
      api('GET', self.base).then(function (r) { self.render(r.data || {}); }).catch(function () { /* next time */ });
    }, at - Date.now());
  };

  DatasetPage.prototype.move = function (from, button) {
    var self = this;
    var to = window.prompt(t('dataset_move_prompt', { path: from }), from);
    if (to === null) { return; }
    to = cleanPath(to.trim());
    if (!to || to === from) { return; }
    busy(button, true);
    api('POST', self.base + '/move', { from: from, to: to }).then(function () {
      flash(t('dataset_moved', { from: from, to: to }), 'ok');
      self.refreshSoon();
    }).catch(function (err) { busy(button, false); flash(err.message); });
  };

  DatasetPage.prototype.remove = function (path, type, button) {
    var self = this;
    var question = type === 'dir' ? t('dataset_confirm_delete_folder', { path: path }) : t('dataset_confirm_delete_file', { path: path });
    if (!window.confirm(question)) { return; }
    busy(button, true);
    api('DELETE', self.base + '/files/' + encodePath(path)).then(function () {
      flash(t('dataset_deleted_path', { path: path }), 'ok');
      self.refreshSoon();
    }).catch(function (err) { busy(button, false); flash(err.message); });
  };

  // ---- the owner's settings ----------------------------------------------------------------

  DatasetPage.prototype.bindSettings = function () {
    var self = this;
    var form = $('#settings-form');
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var button = $('#settings-save');
      var body = fieldsBody(form);
      if (!body.name) { flash(t('dataset_name_missing')); return; }
      busy(button, true);
      api('PATCH', self.base, body).then(function (r) {
        busy(button, false);
        var ds = r.data || {};
        if (ds.name && ds.name !== self.name) {
          // Renamed: its page moved.
          flashNext(t('dataset_saved'));
          window.location.assign((ds.url || datasetPage(ds.owner, ds.name)) + '#settings');
          return;
        }
        self.render(ds);
        fillFields(form, ds);
        flash(t('dataset_saved'), 'ok');
      }).catch(function (err) { busy(button, false); flash(err.message); });
    });

    var cover = $('#settings-cover');
    cover.addEventListener('change', function () {
      var file = cover.files[0];
      if (!file) { return; }
      coverProblem(cover, file).then(function (problem) {
        if (problem) { cover.value = ''; flash(problem); return null; }
        return api('PUT', self.base + '/cover', file).then(function () {
          cover.value = '';
          flash(t('dataset_cover_saved'), 'ok');
          return self.reload();
        });
      }).catch(function (err) { cover.value = ''; flash(t('dataset_cover_refused', { reason: err.message })); });
    });
    $('#cover-remove').addEventListener('click', function () {
      var button = this;
      busy(button, true);
      api('DELETE', self.base + '/cover').then(function () {
        busy(button, false);
        return self.reload();
      }).catch(function (err) { busy(button, false); flash(err.message); });
    });

    $('#share-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = ev.target;
      var name = f.elements.name.value.trim();
      if (!name) { f.elements.name.focus(); return; }
      var button = $('#share-add');
      busy(button, true);
      self.putShare(f.elements.kind.value, name, f.elements.access.value).then(function () {
        busy(button, false);
        f.elements.name.value = '';
      }).catch(function (err) { busy(button, false); flash(err.message); });
    });
    $('#share-rows').addEventListener('change', function (ev) {
      var select = ev.target.closest('.js-access');
      if (!select) { return; }
      var row = select.closest('tr');
      select.disabled = true;
      self.putShare(row.dataset.kind, row.dataset.name, select.value).catch(function (err) {
        select.disabled = false;
        flash(err.message);
      });
    });
    $('#share-rows').addEventListener('click', function (ev) {
      var button = ev.target.closest('.js-remove');
      if (!button) { return; }
      var row = button.closest('tr');
      busy(button, true);
      api('DELETE', self.shareUrl(row.dataset.kind, row.dataset.name)).then(function () {
        return self.loadShares();
      }).catch(function (err) { busy(button, false); flash(err.message); });
    });

    $('#delete-dataset').addEventListener('click', function () {
      var button = this;
      if (!window.confirm(t('dataset_confirm_delete', { name: self.owner + '/' + self.name }))) { return; }
      busy(button, true);
      api('DELETE', self.base).then(function () {
        flashNext(t('dataset_deleted', { name: self.owner + '/' + self.name }));
        window.location.assign('/hub/datasets');
      }).catch(function (err) { busy(button, false); flash(err.message); });
    });
  };

  DatasetPage.prototype.reload = function () {
    var self = this;
    return api('GET', self.base).then(function (r) { self.render(r.data || {}); });
  };

  DatasetPage.prototype.shareUrl = function (kind, name) {
    return this.base + '/shares/' + encodeURIComponent(kind) + '/' + encodeURIComponent(name);
  };

  DatasetPage.prototype.putShare = function (kind, name, access) {
    var self = this;
    return api('PUT', self.shareUrl(kind, name), { access: access }).then(function () {
      return self.loadShares();
    });
  };

  DatasetPage.prototype.loadShares = function () {
    var self = this;
    return api('GET', self.base + '/shares').then(function (r) {
      var shares = Array.isArray(r.data) ? r.data : ((r.data && r.data.items) || []);
      var rows = $('#share-rows');
      rows.textContent = '';
      shares.forEach(function (s) {
        var row = fromTemplate('share-row-template');
        row.dataset.kind = s.kind;
        row.dataset.name = s.name;
        $('.js-kind', row).textContent = t(s.kind === 'group' ? 'dataset_share_kind_group' : 'dataset_share_kind_user');
        $('.js-name', row).textContent = s.name;
        $('.js-access', row).value = s.access === 'write' ? 'write' : 'read';
        rows.appendChild(row);
      });
      show($('#share-table'), shares.length > 0);
      show($('#shares-none'), shares.length === 0);
    }).catch(function (err) { flash(err.message); });
  };

  // ---- uploads -----------------------------------------------------------------------------

  // The files of a drop: folders are walked (DataTransferItem.webkitGetAsEntry), each file with
  // its path relative to what was dropped (`数据/训练集.csv`). The entries must be taken during
  // the drop event itself.
  function droppedFiles(dataTransfer) {
    var items = dataTransfer.items ? Array.prototype.slice.call(dataTransfer.items) : [];
    var entries = items.filter(function (item) { return item.kind === 'file'; }).map(function (item) {
      return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    });
    if (entries.length && entries.every(Boolean)) {
      return Promise.all(entries.map(walkEntry)).then(flatten);
    }
    var files = Array.prototype.slice.call(dataTransfer.files || []);
    return Promise.resolve(files.map(function (f) { return { file: f, path: f.webkitRelativePath || f.name }; }));
  }

  function flatten(lists) { return lists.reduce(function (a, b) { return a.concat(b); }, []); }

  function walkEntry(entry) {
    if (entry.isFile) {
      return new Promise(function (resolve, reject) {
        entry.file(function (file) {
          resolve([{ file: file, path: entry.fullPath.replace(/^\/+/, '') }]);
        }, reject);
      });
    }
    if (!entry.isDirectory) { return Promise.resolve([]); }
    var reader = entry.createReader();
    var children = [];
    // readEntries answers in batches until it answers none.
    var more = function () {
      return new Promise(function (resolve, reject) { reader.readEntries(resolve, reject); }).then(function (batch) {
        if (!batch.length) { return children; }
        children = children.concat(batch);
        return more();
      });
    };
    return more().then(function (all) {
      all.sort(function (a, b) { return a.name < b.name ? -1 : (a.name > b.name ? 1 : 0); });
      return Promise.all(all.map(walkEntry)).then(flatten);
    });
  }

  function storeGet(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function storeSet(key, value) { try { localStorage.setItem(key, value); } catch (e) { /* full or private */ } }
  function storeRemove(key) { try { localStorage.removeItem(key); } catch (e) { /* private */ } }
  function storeKeys(prefix) {
    var keys = [];
    try {
      for (var i = 0; i < localStorage.length; i += 1) {
        var k = localStorage.key(i);
        if (k && k.indexOf(prefix) === 0) { keys.push(k); }
      }
    } catch (e) { /* private */ }
    return keys;
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function Uploader(page) {
    var self = this;
    this.page = page;
    this.jobs = [];
    // The jobs waiting for their turn, in order.
    this.queue = [];
    this.running = 0;
    // Whether the batch is too big to list every file (see LIST_ALL).
    this.compact = false;
    this.frame = 0;
    this.unfinished = [];
    this.prefix = STORE_PREFIX + page.owner + '/' + page.name + ':';
    this.list = $('#upload-list');
    this.box = $('#uploads');
    this.overallBar = $('#upload-overall');
    this.overallFill = $('#upload-overall-fill');
    this.overallText = $('#upload-overall-text');
    this.note = document.createElement('p');
    this.note.className = 'small muted';
    this.note.id = 'upload-note';
    this.note.hidden = true;
    this.list.parentNode.insertBefore(this.note, this.list);
    this.bind();
    window.addEventListener('beforeunload', function (ev) {
      if (self.running > 0) { ev.preventDefault(); ev.returnValue = ''; }
    });
  }

  Uploader.prototype.bind = function () {
    var self = this;
    var zone = $('#dropzone');
    var depth = 0;
    zone.addEventListener('dragenter', function (ev) { ev.preventDefault(); depth += 1; zone.classList.add('is-over'); });
    zone.addEventListener('dragleave', function () { depth = Math.max(0, depth - 1); if (!depth) { zone.classList.remove('is-over'); } });
    zone.addEventListener('dragover', function (ev) {
      ev.preventDefault();
      if (ev.dataTransfer) { ev.dataTransfer.dropEffect = 'copy'; }
    });
    zone.addEventListener('drop', function (ev) {
      ev.preventDefault();
      depth = 0;
      zone.classList.remove('is-over');
      if (!ev.dataTransfer) { return; }
      droppedFiles(ev.dataTransfer).then(function (files) { self.add(files); }).catch(function (err) {
        flash(t('dataset_upload_read_failed', { reason: err && err.message ? err.message : String(err) }));
      });
    });
    // From the keyboard, the zone opens the file picker.
    zone.addEventListener('keydown', function (ev) {
      if (ev.target !== zone || (ev.key !== 'Enter' && ev.key !== ' ')) { return; }
      ev.preventDefault();
      $('#pick-files').click();
    });
    // A drop beside the zone must not open the file in the tab.
    window.addEventListener('dragover', function (ev) { ev.preventDefault(); });
    window.addEventListener('drop', function (ev) { if (!ev.target.closest || !ev.target.closest('#dropzone')) { ev.preventDefault(); } });
    var picked = function (input) {
      var files = Array.prototype.slice.call(input.files || []).map(function (f) {
        return { file: f, path: f.webkitRelativePath || f.name };
      });
      input.value = '';
      self.add(files);
    };
    $('#pick-files').addEventListener('change', function () { picked(this); });
    $('#pick-folder').addEventListener('change', function () { picked(this); });
    $('#upload-clear').addEventListener('click', function () {
      self.jobs = self.jobs.filter(function (j) { return j.state !== 'done'; });
      $$('.ds-upload.is-done', self.list).forEach(function (li) { li.remove(); });
      self.update();
    });
    self.list.addEventListener('click', function (ev) {
      var button = ev.target.closest('.js-retry');
      if (!button) { return; }
      var li = button.closest('.ds-upload');
      var job = self.jobs.filter(function (j) { return j.row === li; })[0];
      if (job) { self.retry(job); }
    });
    $('#resume-list').addEventListener('click', function (ev) {
      var li = ev.target.closest('li');
      if (!li) { return; }
      var upload = self.unfinished.filter(function (u) { return String(u.id) === li.dataset.id; })[0];
      if (!upload) { return; }
      if (ev.target.closest('.js-resume')) {
        self.resumeWith = upload;
        $('#resume-file').click();
      } else if (ev.target.closest('.js-discard')) {
        self.discard(upload, ev.target.closest('.js-discard'));
      }
    });
    $('#resume-file').addEventListener('change', function () {
      var input = this;
      var file = input.files[0];
      var upload = self.resumeWith;
      input.value = '';
      self.resumeWith = null;
      if (!file || !upload) { return; }
      if (file.size !== Number(upload.size)) {
        flash(t('dataset_upload_resume_wrong_size', { name: file.name, size: sizeText(upload.size) }));
        return;
      }
      storeSet(self.key(upload.path, file), upload.url || ('/hub/api/uploads/' + encodeURIComponent(upload.id)));
      self.add([{ file: file, path: upload.path, absolute: true }]);
    });
  };

  Uploader.prototype.key = function (path, file) {
    return this.prefix + path + ':' + file.size + ':' + (file.lastModified || 0);
  };

  // The caller's unfinished uploads to this dataset (after a reload, or from another tab).
  Uploader.prototype.loadUnfinished = function () {
    var self = this;
    return api('GET', self.page.base + '/uploads').then(function (r) {
      var list = Array.isArray(r.data) ? r.data : ((r.data && (r.data.items || r.data.uploads)) || []);
      var active = {};
      self.jobs.forEach(function (j) { if (j.url) { active[j.url] = true; } });
      self.unfinished = list.filter(function (u) { return !u.complete && !active[u.url || ('/hub/api/uploads/' + u.id)]; });
      // Forget remembered uploads the hub no longer has (finished, given up or expired).
      var known = {};
      list.forEach(function (u) { known[u.url || ('/hub/api/uploads/' + u.id)] = true; });
      storeKeys(self.prefix).forEach(function (k) { if (!known[storeGet(k)]) { storeRemove(k); } });
      self.renderUnfinished();
    }).catch(function () { /* the list is a convenience */ });
  };

  Uploader.prototype.renderUnfinished = function () {
    var box = $('#resume-panel');
    var ul = $('#resume-list');
    ul.textContent = '';
    this.unfinished.forEach(function (u) {
      var li = document.createElement('li');
      li.dataset.id = String(u.id);
      li.dataset.path = u.path;
      var path = document.createElement('span');
      path.className = 'ds-upload-path';
      path.textContent = u.path;
      var state = document.createElement('span');
      state.className = 'small muted';
      var pct = Number(u.size) ? Math.floor(100 * Number(u.offset || 0) / Number(u.size)) : 0;
      state.textContent = t('dataset_upload_unfinished_state', { done: sizeText(u.offset || 0), size: sizeText(u.size), percent: pct });
      var resume = document.createElement('button');
      resume.type = 'button';
      resume.className = 'btn btn-secondary btn-sm js-resume';
      resume.textContent = t('dataset_upload_resume');
      var discard = document.createElement('button');
      discard.type = 'button';
      discard.className = 'btn btn-danger-ghost btn-sm js-discard';
      discard.textContent = t('dataset_upload_discard');
      li.append(path, ' ', state, ' ', resume, ' ', discard);
      ul.appendChild(li);
    });
    show(box, this.unfinished.length > 0);
  };

  Uploader.prototype.discard = function (upload, button) {
    var self = this;
    var url = upload.url || ('/hub/api/uploads/' + encodeURIComponent(upload.id));
    busy(button, true);
    api('DELETE', url).catch(function (err) {
      if (err.status !== 404) { throw err; }
    }).then(function () {
      storeKeys(self.prefix).forEach(function (k) { if (storeGet(k) === url) { storeRemove(k); } });
      self.unfinished = self.unfinished.filter(function (u) { return u !== upload; });
      self.renderUnfinished();
    }).catch(function (err) { busy(button, false); flash(err.message); });
  };

  // Queues files ({file, path}); paths are relative to the open folder unless `absolute`.
  Uploader.prototype.add = function (files) {
    var self = this;
    if (!files.length) { return; }
    var folder = self.page.path;
    var allDone = self.jobs.every(function (j) { return j.state === 'done' || j.state === 'failed'; });
    if (allDone) {
      // A new batch: the overall bar counts it alone.
      self.jobs = self.jobs.filter(function (j) { return j.state === 'failed'; });
      self.queue = [];
      self.compact = false;
      $$('.ds-upload.is-done', self.list).forEach(function (li) { li.remove(); });
    }
    if (!self.compact && self.jobs.length + files.length > LIST_ALL) {
      // Too many to list: only the files being sent and those that failed keep their rows.
      self.compact = true;
      self.jobs.forEach(function (j) {
        if (j.row && (j.state === 'waiting' || j.state === 'done')) { j.row.remove(); j.row = null; }
      });
    }
    var rows = document.createDocumentFragment();
    files.forEach(function (f) {
      var rel = cleanPath(f.path);
      var path = f.absolute || !folder ? rel : folder + '/' + rel;
      var job = { file: f.file, path: path, size: f.file.size, sent: 0, state: 'waiting', url: null, tries: 0, row: null };
      job.key = self.key(path, f.file);
      self.jobs.push(job);
      self.queue.push(job);
      if (!self.compact) {
        rows.appendChild(self.makeRow(job));
        self.status(job, t('dataset_upload_waiting'));
      }
    });
    self.list.appendChild(rows);
    // Until the batch ends, it has no outcome.
    delete self.box.dataset.state;
    show(self.box, true);
    self.update();
    self.pump();
  };

  // Marks a job's row as being sent.
  Uploader.prototype.markRunning = function (job) {
    job.row.classList.add('is-running');
    if (!this.compact) { $('.js-bar', job.row).classList.add('is-active'); }
  };

  // The row of a job's file (its bar still, until the file is sent).
  Uploader.prototype.makeRow = function (job) {
    job.row = fromTemplate('upload-row-template');
    job.row.dataset.path = job.path;
    $('.js-path', job.row).textContent = job.path;
    $('.js-bar', job.row).classList.remove('is-active');
    if (this.compact) { $('.js-fill', job.row).style.transition = 'none'; }
    return job.row;
  };

  Uploader.prototype.pump = function () {
    var self = this;
    while (self.running < PARALLEL && self.queue.length) {
      var job = self.queue.shift();
      if (job.state !== 'waiting') { continue; }
      self.running += 1;
      job.state = 'running';
      if (job.row) { self.markRunning(job); }
      self.run(job).then(function () { /* state set inside */ }, function () { /* reported inside */ }).then(function () {
        self.running -= 1;
        self.pump();
        self.finishedBatch();
      });
    }
  };

  Uploader.prototype.finishedBatch = function () {
    if (this.running > 0 || this.queue.some(function (j) { return j.state === 'waiting'; })) { return; }
    this.queue = [];
    // The bar's last word is drawn now, not in a later frame that would overwrite the summary.
    this.render();
    var done = this.jobs.filter(function (j) { return j.state === 'done'; }).length;
    var failed = this.jobs.filter(function (j) { return j.state === 'failed'; }).length;
    this.overallText.textContent = failed ? t('dataset_upload_summary_failed', { done: done, failed: failed }) : t('dataset_upload_summary_done', { done: done });
    this.box.dataset.state = failed ? 'failed' : 'done';
    show($('#upload-clear'), done > 0);
    this.page.refreshSoon();
    this.loadUnfinished();
  };

  // One file, from declaring it to its last byte.
  Uploader.prototype.run = function (job) {
    var self = this;
    self.status(job, t('dataset_upload_starting'));
    var remembered = storeGet(job.key);
    var begin = remembered ? self.offsetOf(remembered).then(function (offset) {
      job.url = remembered;
      return offset;
    }, function (err) {
      if (err.status === 404 || err.status === 403) { storeRemove(job.key); return self.declare(job); }
      throw err;
    }) : self.declare(job);
    return begin.then(function (offset) {
      if (offset === null) { return null; }
      return self.send(job, offset);
    }).catch(function (err) {
      self.fail(job, err.message || String(err));
    });
  };

  // POST …/uploads: the hub checks the name, the limits and the room, and reserves the size.
  // Answers the offset to send from, or null when the file is complete already (0 bytes).
  Uploader.prototype.declare = function (job) {
    var self = this;
    return api('POST', self.page.base + '/uploads', { path: job.path, size: job.size }).then(function (r) {
      var up = r.data || {};
      job.url = up.url || (r.headers && r.headers.get('Location')) || ('/hub/api/uploads/' + encodeURIComponent(up.id));
      if (up.complete || job.size === 0) {
        self.done(job);
        return null;
      }
      storeSet(job.key, job.url);
      return Number(up.offset) || 0;
    });
  };

  // HEAD /hub/api/uploads/{id}: how much the hub has.
  Uploader.prototype.offsetOf = function (url) {
    return fetch(url, { method: 'HEAD', credentials: 'same-origin', headers: { 'X-XSRFToken': XSRF, 'Tus-Resumable': '1.0.0' }, cache: 'no-store' }).then(function (r) {
      if (!r.ok) {
        var err = new Error(r.status + ' ' + r.statusText);
        err.status = r.status;
        throw err;
      }
      var offset = parseInt(r.headers.get('Upload-Offset'), 10);
      if (isNaN(offset)) { throw new Error(t('dataset_upload_no_offset')); }
      return offset;
    });
  };

  // Sends the chunks from `offset`; after a network failure waits, asks the offset, goes on.
  Uploader.prototype.send = function (job, offset) {
    var self = this;
    if (offset >= job.size) { self.done(job); return Promise.resolve(); }
    job.sent = offset;
    self.progress(job);
    job.chunk = job.chunk || CHUNK;
    var end = Math.min(job.size, offset + job.chunk);
    // The whole file as it is when it fits in one chunk: a slice would be one more blob for the
    // browser to register, which thousands of small files feel.
    var blob = offset === 0 && end === job.size ? job.file : job.file.slice(offset, end);
    return self.patch(job, offset, blob).then(function (next) {
      job.tries = 0;
      job.chunk = Math.min(MAX_CHUNK, job.chunk * 2);
      return self.send(job, next);
    }, function (err) {
      job.chunk = CHUNK;
      if (err.status === 409 || err.network || err.status >= 500 && err.status !== 507) {
        // Broken off or out of step: wait, ask where the upload stands, go on from there.
        job.tries += 1;
        if (job.tries > 12) { throw err; }
        var wait = Math.min(30000, 500 * Math.pow(2, job.tries - 1));
        self.status(job, t('dataset_upload_retrying', { seconds: Math.ceil(wait / 1000) }));
        return sleep(wait).then(function () { return self.offsetOf(job.url); }).then(function (at) {
          return self.send(job, at);
        }, function (headErr) {
          if (headErr.status === 404) { storeRemove(job.key); }
          if (headErr.status) { throw headErr; }
          // The hub is still out of reach: try the chunk again (a wrong offset is a 409, which
          // asks again).
          return self.send(job, offset);
        });
      }
      if (err.status === 404) { storeRemove(job.key); }
      throw err;
    });
  };

  // PATCH one chunk (XMLHttpRequest, for its upload progress). Answers the new offset.
  Uploader.prototype.patch = function (job, offset, blob) {
    var self = this;
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open('PATCH', job.url);
      xhr.withCredentials = true;
      xhr.setRequestHeader('X-XSRFToken', XSRF);
      xhr.setRequestHeader('Tus-Resumable', '1.0.0');
      xhr.setRequestHeader('Upload-Offset', String(offset));
      xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = function (ev) {
        job.sent = offset + Math.min(ev.loaded, blob.size);
        self.progress(job);
      };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          var next = parseInt(xhr.getResponseHeader('Upload-Offset'), 10);
          resolve(isNaN(next) ? offset + blob.size : next);
          return;
        }
        var message = xhr.status + ' ' + xhr.statusText;
        try { message = JSON.parse(xhr.responseText).message || message; } catch (e) { /* not JSON */ }
        var err = new Error(message);
        err.status = xhr.status;
        reject(err);
      };
      var broken = function () {
        var err = new Error(t('dataset_upload_network_error'));
        err.network = true;
        reject(err);
      };
      xhr.onerror = broken;
      xhr.ontimeout = broken;
      xhr.onabort = broken;
      xhr.send(blob);
    });
  };

  Uploader.prototype.done = function (job) {
    job.state = 'done';
    job.sent = job.size;
    storeRemove(job.key);
    // While thousands of files arrive, the folder and the counts are read again every few
    // seconds (each read costs the hub more as the dataset grows).
    this.page.refreshSoon(this.compact ? COMPACT_REFRESH_MS : 0);
    if (!job.row || this.compact) {
      // A long batch lists only what is being sent and what failed: the next redraw takes the
      // row away.
      this.update();
      return;
    }
    job.row.classList.remove('is-running');
    job.row.classList.add('is-done');
    job.row.dataset.state = 'done';
    var bar = $('.js-bar', job.row);
    bar.classList.remove('is-active');
    bar.classList.add('is-ready');
    this.progress(job);
    this.status(job, t('dataset_upload_done'));
  };

  Uploader.prototype.fail = function (job, message) {
    job.state = 'failed';
    if (!job.row) { this.list.appendChild(this.makeRow(job)); }
    job.row.classList.remove('is-running');
    job.row.classList.add('is-failed');
    job.row.dataset.state = 'failed';
    var bar = $('.js-bar', job.row);
    bar.classList.remove('is-active');
    bar.classList.add('is-failed');
    this.status(job, t('dataset_upload_failed'));
    var box = $('.js-error', job.row);
    box.textContent = message;
    show(box, true);
    show($('.js-retry', job.row), true);
    this.update();
  };

  Uploader.prototype.retry = function (job) {
    job.state = 'waiting';
    job.tries = 0;
    job.row.classList.remove('is-failed');
    job.row.dataset.state = '';
    $('.js-bar', job.row).classList.remove('is-failed');
    show($('.js-error', job.row), false);
    show($('.js-retry', job.row), false);
    this.status(job, t('dataset_upload_waiting'));
    this.queue.push(job);
    this.update();
    this.pump();
  };

  Uploader.prototype.status = function (job, text) {
    if (job.row) { $('.js-status', job.row).textContent = text; }
  };

  Uploader.prototype.progress = function (job) {
    this.update();
    if (job.row) { this.drawRow(job); }
  };

  // A row's bar and words.
  Uploader.prototype.drawRow = function (job) {
    var pct = job.size ? Math.floor(100 * job.sent / job.size) : 100;
    if (job.state !== 'done' && pct >= 100) { pct = 99; }
    var bar = $('.js-bar', job.row);
    bar.setAttribute('aria-valuenow', String(pct));
    $('.js-fill', job.row).style.width = pct + '%';
    if (job.state === 'running') {
      this.status(job, t('dataset_upload_progress', { done: sizeText(job.sent), size: sizeText(job.size), percent: pct }));
    }
  };

  // Redraws the overall bar once, however many files moved meanwhile: in the next frame, or a
  // few times a second for a long batch (whose files come and go faster than anyone reads).
  Uploader.prototype.update = function () {
    var self = this;
    if (self.frame) { return; }
    var redraw = function () {
      self.frame = null;
      self.render();
    };
    self.frame = self.compact ?
      { timer: setTimeout(redraw, COMPACT_REDRAW_MS) } :
      { animation: window.requestAnimationFrame(redraw) };
  };

  // The overall bar: bytes of this batch's files that arrived, over all of them. In a long batch,
  // also the rows: one for each file being sent, none for those sent.
  Uploader.prototype.render = function () {
    var self = this;
    if (self.frame) {
      if (self.frame.timer) { clearTimeout(self.frame.timer); }
      if (self.frame.animation) { window.cancelAnimationFrame(self.frame.animation); }
      self.frame = null;
    }
    var total = 0;
    var sent = 0;
    var done = 0;
    var waiting = 0;
    var counted = self.jobs.filter(function (j) { return j.state !== 'failed'; });
    var rows = document.createDocumentFragment();
    counted.forEach(function (j) {
      total += j.size;
      sent += j.state === 'done' ? j.size : j.sent;
      if (j.state === 'done') { done += 1; }
      if (j.state === 'waiting') { waiting += 1; }
      if (!self.compact) { return; }
      if (j.state === 'running') {
        if (!j.row) {
          rows.appendChild(self.makeRow(j));
          self.markRunning(j);
        }
        self.drawRow(j);
      } else if (j.row) {
        j.row.remove();
        j.row = null;
      }
    });
    self.list.appendChild(rows);
    var allDone = counted.length > 0 && done === counted.length;
    var allFailed = counted.length === 0 && this.jobs.length > 0;
    var pct = allDone ? 100 : (total ? Math.min(99, Math.floor(100 * sent / total)) : 0);
    this.overallBar.setAttribute('aria-valuenow', String(pct));
    this.overallBar.classList.toggle('is-ready', allDone);
    this.overallBar.classList.toggle('is-failed', allFailed);
    this.overallBar.classList.toggle('is-active', !allDone && counted.length > 0 && !this.compact);
    this.overallFill.style.transition = this.compact ? 'none' : '';
    this.overallFill.style.width = pct + '%';
    this.overallText.textContent = t('dataset_upload_overall_state', {
      files: done, total_files: counted.length, done: sizeText(sent), size: sizeText(total), percent: pct
    });
    this.note.textContent = this.compact && waiting ? t('dataset_upload_compact', { waiting: waiting }) : '';
    show(this.note, this.compact && waiting > 0);
  };

  function initDataset() {
    var root = $('#dataset');
    if (!root) { return; }
    new DatasetPage(root).start();
  }

  function init() {
    initList();
    initNew();
    initDataset();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
