// The projects' administration (/hub/admin/projects): delete a project (an administrator's
// delete stops the clusters running it first) and import an archive as a new project of the
// administrator's. Both go through /hub/api/projects with the login cookie and the X-XSRFToken
// header, as xiji.js calls the API; exports are plain links to the API's GET.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };

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

  // `body` is sent as it is (a File for an import).
  function call(method, url, body, contentType) {
    var headers = { 'X-XSRFToken': XSRF, 'Accept': 'application/json' };
    if (contentType) { headers['Content-Type'] = contentType; }
    return fetch(url, { method: method, credentials: 'same-origin', headers: headers, body: body })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
          if (!r.ok) { throw new Error((data && data.message) || (r.status + ' ' + r.statusText)); }
          return data;
        });
      });
  }

  function alertIn(el, message) {
    if (!el) { window.alert(message); return; }
    el.textContent = message;
    el.hidden = !message;
    if (message) { el.scrollIntoView({ block: 'nearest' }); }
  }

  function busy(button, on) {
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = t('working');
      button.disabled = true;
    } else {
      if (button.dataset.label) { button.textContent = button.dataset.label; }
      button.disabled = false;
    }
  }

  // The message xiji.js shows after the reload.
  function reloadWith(message) {
    try { sessionStorage.setItem('xiji-flash', message); } catch (e) { /* private mode */ }
    window.location.reload();
  }

  function initDelete() {
    var table = $('#admin-project-table');
    if (!table) { return; }
    table.addEventListener('click', function (ev) {
      var button = ev.target.closest('.js-delete-project');
      if (!button) { return; }
      var row = button.closest('tr');
      var name = row.dataset.project;
      var running = row.dataset.running;
      var question = running
        ? t('admin_projects_confirm_release', { name: name, users: running })
        : t('project_delete_confirm', { name: name });
      if (!window.confirm(question)) { return; }
      busy(button, true);
      alertIn($('#admin-project-error'), '');
      call('DELETE', row.dataset.api).then(function () {
        reloadWith(t('admin_projects_deleted', { name: name }));
      }).catch(function (err) {
        busy(button, false);
        alertIn($('#admin-project-error'), name + ': ' + err.message);
      });
    });
  }

  function initImport() {
    var form = $('#project-import-form');
    if (!form) { return; }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var file = $('#project-import-file').files[0];
      if (!file) { return; }
      var name = $('#project-import-name').value.trim();
      var url = '/hub/api/projects/import' + (name ? '?' + new URLSearchParams({ name: name }).toString() : '');
      var button = $('#project-import-submit');
      busy(button, true);
      alertIn($('#project-import-error'), '');
      call('POST', url, file, 'application/zstd').then(function (p) {
        var message = t('admin_projects_imported', { name: p.owner + '/' + p.name });
        var left = (p.datasets_not_imported || []).concat(p.dropped_datasets || []);
        if (left.length) { message += ' ' + t('admin_projects_imported_left', { datasets: left.join(', ') }); }
        reloadWith(message);
      }).catch(function (err) {
        busy(button, false);
        alertIn($('#project-import-error'), err.message);
      });
    });
  }

  function init() {
    initDelete();
    initImport();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
