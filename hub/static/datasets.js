// Xiji's datasets pages: the list (search, sort, tabs, pages), the new-dataset form, and a
// dataset's page (description, star, file tree, uploads, the owner's settings and shares).
// Everything goes through /hub/api/datasets with the login cookie and the X-XSRFToken header
// (the page's XSRF token, equal to the `_xsrf` cookie), as xiji.js calls the API. Uploads are
// uploads.js's (loaded before this script).
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  // xiji.js's helpers and uploads.js's uploader (both loaded first).
  var X = window.Xiji;
  var t = X.t;
  var api = X.api;
  var show = X.show;
  var flash = X.flash;
  var busy = X.busy;
  var sizeText = X.sizeText;
  var fromTemplate = X.fromTemplate;
  var cleanPath = X.cleanPath;
  var Uploader = window.XijiUploads.Uploader;

  var TREE_PAGE = 100;

  // ---- helpers -----------------------------------------------------------------------------

  // A message for the next page (xiji.js shows it there).
  function flashNext(message) {
    try { sessionStorage.setItem('xiji-flash', message); } catch (e) { /* private mode */ }
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
  var encodePath = window.XijiUploads.encodePath;

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
    window.XijiUploads.movePath(self.base, from, button, function () { self.refreshSoon(); });
  };

  DatasetPage.prototype.remove = function (path, type, button) {
    var self = this;
    window.XijiUploads.deletePath(self.base, path, type === 'dir', button, function () { self.refreshSoon(); });
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
