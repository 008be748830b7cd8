// Xiji's resumable uploads in the browser, for a dataset's page and a project's page: a drop
// zone, file and folder pickers, a bar per file and one for the batch, the unfinished uploads of
// the caller with resume and discard. The page script hands it an object with `base` (the API
// URL of the dataset or project), `owner`, `name`, `path` (the open folder) and
// `refreshSoon(ms)` (reread the folder), and the page's HTML holds the upload card
// (templates/upload_card.html). It is `window.XijiUploads.Uploader`, beside the rename/move and
// delete both pages offer; its helpers are xiji.js's.
//
// Uploads are resumable (the core of tus 1.0.0): POST …/uploads declares a file, then PATCH
// /hub/api/uploads/{id} sends it from `Upload-Offset` in chunks of 8 MiB growing to 64 MiB. A
// broken connection is retried after a pause from the offset a HEAD gives; an upload cut off by a
// reload goes on when the same file is dropped or chosen again (its URL is kept in localStorage
// under the dataset or project, the path, the size and the file's modification time), or from
// the "unfinished uploads" list.
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

  var X = window.Xiji;
  var t = X.t;
  var api = X.api;
  var show = X.show;
  var flash = X.flash;
  var busy = X.busy;
  var sizeText = X.sizeText;
  var fromTemplate = X.fromTemplate;
  var cleanPath = X.cleanPath;
  var XSRF = X.xsrf;

  // A file goes in chunks that start at CHUNK and double after each one that arrives, up to
  // MAX_CHUNK: small first (a broken link is noticed soon), then big (fewer requests, the hub's
  // disk speed). Progress comes from the request's own upload events, whatever the size.
  var CHUNK = 8 * 1024 * 1024;
  var MAX_CHUNK = 64 * 1024 * 1024;
  var PARALLEL = 4;
  var LIST_ALL = 200;
  var COMPACT_REDRAW_MS = 250;
  var COMPACT_REFRESH_MS = 3000;
  var STORE_PREFIX = 'xiji-upload:';

  // ---- helpers -----------------------------------------------------------------------------

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
    // Per dataset or project: its API URL.
    this.prefix = STORE_PREFIX + page.base + ':';
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

  function encodePath(path) { return String(path).split('/').map(encodeURIComponent).join('/'); }

  // Asks for a new path of `from` and moves it through `base`'s …/move; `after()` on success.
  function movePath(base, from, button, after) {
    var to = window.prompt(t('dataset_move_prompt', { path: from }), from);
    if (to === null) { return; }
    to = cleanPath(to.trim());
    if (!to || to === from) { return; }
    busy(button, true);
    api('POST', base + '/move', { from: from, to: to }).then(function () {
      flash(t('dataset_moved', { from: from, to: to }), 'ok');
      after();
    }).catch(function (err) { busy(button, false); flash(err.message); });
  }

  // Asks, then deletes `path` (a folder with everything in it when `folder`) through `base`.
  function deletePath(base, path, folder, button, after) {
    var question = folder ? t('dataset_confirm_delete_folder', { path: path }) : t('dataset_confirm_delete_file', { path: path });
    if (!window.confirm(question)) { return; }
    busy(button, true);
    api('DELETE', base + '/files/' + encodePath(path)).then(function () {
      flash(t('dataset_deleted_path', { path: path }), 'ok');
      after();
    }).catch(function (err) { busy(button, false); flash(err.message); });
  }

  window.XijiUploads = { Uploader: Uploader, movePath: movePath, deletePath: deletePath, encodePath: encodePath };
}());
