// The files of a project's page: the folder tree read from the project's folder (what
// /home/jovyan/work is on its nodes), downloads, and for editors uploads (uploads.js, the
// datasets' resumable uploads), rename/move and delete. Folders open in the page (`?path=`).
(function () {
  'use strict';

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
  var $ = function (sel, root) { return (root || document).querySelector(sel); };

  var TREE_PAGE = 100;

  var encodePath = window.XijiUploads.encodePath;

  function ProjectFiles(root) {
    this.owner = root.dataset.owner;
    this.name = root.dataset.name;
    this.base = '/hub/api/projects/' + encodeURIComponent(this.owner) + '/' + encodeURIComponent(this.name);
    this.path = '';
    this.offset = 0;
    this.canEdit = false;
    this.refreshTimer = null;
    this.refreshAt = 0;
  }

  ProjectFiles.prototype.start = function () {
    var self = this;
    var params = new URLSearchParams(window.location.search);
    self.path = cleanPath(params.get('path') || '');
    self.offset = Math.max(0, parseInt(params.get('offset'), 10) || 0);
    api('GET', self.base).then(function (r) {
      var p = r.data || {};
      self.canEdit = p.access === 'edit' || p.access === 'owner';
      show($('#project-files-card'), true);
      self.bind();
      self.loadTree();
      if (self.canEdit) {
        show($('#upload-card'), true);
        self.uploader = new window.XijiUploads.Uploader(self);
        self.uploader.loadUnfinished();
      }
    }).catch(function () { /* the page's own script says why */ });
    window.addEventListener('popstate', function () {
      var p = new URLSearchParams(window.location.search);
      self.path = cleanPath(p.get('path') || '');
      self.offset = Math.max(0, parseInt(p.get('offset'), 10) || 0);
      self.loadTree();
    });
  };

  ProjectFiles.prototype.bind = function () {
    var self = this;
    $('#pf-rows').addEventListener('click', function (ev) {
      var row = ev.target.closest('tr');
      if (!row) { return; }
      var link = ev.target.closest('a.js-name');
      if (link && link.dataset.dir) {
        ev.preventDefault();
        self.go(row.dataset.path, 0);
      } else if (ev.target.closest('.js-move')) {
        self.move(row.dataset.path, ev.target.closest('.js-move'));
      } else if (ev.target.closest('.js-delete')) {
        self.remove(row.dataset.path, row.dataset.kind, ev.target.closest('.js-delete'));
      }
    });
    $('#pf-breadcrumbs').addEventListener('click', function (ev) {
      var a = ev.target.closest('a');
      if (!a) { return; }
      ev.preventDefault();
      self.go(a.dataset.path || '', 0);
    });
    $('#pf-prev').addEventListener('click', function () { self.go(self.path, Math.max(0, self.offset - TREE_PAGE)); });
    $('#pf-next').addEventListener('click', function () { self.go(self.path, self.offset + TREE_PAGE); });
  };

  ProjectFiles.prototype.go = function (path, offset) {
    this.path = cleanPath(path);
    this.offset = offset || 0;
    var params = new URLSearchParams(window.location.search);
    params.delete('path');
    params.delete('offset');
    if (this.path) { params.set('path', this.path); }
    if (this.offset) { params.set('offset', String(this.offset)); }
    var q = params.toString();
    history.pushState(null, '', window.location.pathname + (q ? '?' + q : '') + window.location.hash);
    this.loadTree();
  };

  ProjectFiles.prototype.loadTree = function () {
    var self = this;
    var asked = self.path + '|' + self.offset;
    self.renderBreadcrumbs();
    var target = $('#upload-target');
    if (target) { target.textContent = t('dataset_upload_into', { folder: '/' + self.path }); }
    var params = new URLSearchParams({ path: self.path, offset: String(self.offset), limit: String(TREE_PAGE) });
    return api('GET', self.base + '/tree?' + params.toString()).then(function (r) {
      if (asked !== self.path + '|' + self.offset) { return; }
      var data = r.data || {};
      var items = data.items || [];
      var rows = $('#pf-rows');
      rows.textContent = '';
      items.forEach(function (e) { rows.appendChild(self.row(e)); });
      show($('#pf-table'), items.length > 0);
      show($('#pf-empty'), items.length === 0);
      var total = Number(data.total) || 0;
      show($('#pf-pager'), total > TREE_PAGE || self.offset > 0);
      show($('#pf-prev'), self.offset > 0);
      show($('#pf-next'), self.offset + TREE_PAGE < total);
      $('#pf-page-info').textContent = items.length ? t('page_info', { from: self.offset + 1, to: self.offset + items.length, total: total }) : '';
      $('#project-files-card').dataset.path = self.path;
      $('#project-files-card').dataset.total = String(total);
    }).catch(function (err) {
      flash(err.message);
      if (err.status === 404 && self.path) { self.go('', 0); }
    });
  };

  ProjectFiles.prototype.renderBreadcrumbs = function () {
    var nav = $('#pf-breadcrumbs');
    nav.textContent = '';
    var crumb = function (label, path, last) {
      var el = document.createElement(last ? 'span' : 'a');
      if (last) {
        el.setAttribute('aria-current', 'location');
      } else {
        el.href = window.location.pathname + (path ? '?' + new URLSearchParams({ path: path }).toString() : '');
        el.dataset.path = path;
      }
      el.className = 'ds-crumb';
      el.textContent = label;
      nav.appendChild(el);
    };
    var parts = this.path ? this.path.split('/') : [];
    crumb('work', '', parts.length === 0);
    parts.forEach(function (part, i) {
      var sep = document.createElement('span');
      sep.className = 'ds-crumb-sep';
      sep.textContent = '/';
      nav.appendChild(sep);
      crumb(part, parts.slice(0, i + 1).join('/'), i === parts.length - 1);
    });
  };

  ProjectFiles.prototype.row = function (e) {
    var row = fromTemplate('pf-row-template');
    row.dataset.path = e.path;
    row.dataset.kind = e.kind;
    $('.js-icon', row).dataset.type = e.kind === 'folder' ? 'dir' : 'file';
    var link = $('.js-name', row);
    link.textContent = e.name;
    var download = $('.js-download', row);
    if (e.kind === 'folder') {
      link.href = window.location.pathname + '?' + new URLSearchParams({ path: e.path }).toString();
      link.dataset.dir = 'true';
      show(download, false);
    } else if (e.kind === 'link') {
      link.removeAttribute('href');
      $('.js-size', row).textContent = '→ ' + (e.target || '');
      show(download, false);
    } else {
      link.href = this.base + '/files/' + encodePath(e.path);
      link.setAttribute('download', e.name);
      download.href = link.href;
      download.setAttribute('download', e.name);
      $('.js-size', row).textContent = sizeText(e.size);
    }
    var when = document.createElement('time');
    when.dateTime = e.modified;
    when.textContent = new Date(e.modified).toLocaleString(document.documentElement.lang);
    $('.js-updated', row).appendChild(when);
    show($('.js-move', row), this.canEdit);
    show($('.js-delete', row), this.canEdit);
    return row;
  };

  // Re-reads the open folder within `delay` ms (default 700): while files arrive.
  ProjectFiles.prototype.refreshSoon = function (delay) {
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
    }, at - Date.now());
  };

  ProjectFiles.prototype.move = function (from, button) {
    var self = this;
    window.XijiUploads.movePath(self.base, from, button, function () { self.refreshSoon(); });
  };

  ProjectFiles.prototype.remove = function (path, kind, button) {
    var self = this;
    window.XijiUploads.deletePath(self.base, path, kind === 'folder', button, function () { self.refreshSoon(); });
  };

  function init() {
    var root = document.getElementById('project');
    if (root && document.getElementById('project-files-card')) { new ProjectFiles(root).start(); }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
