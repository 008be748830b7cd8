// The quotas' administration (/hub/admin/quotas): a role's defaults, users' exceptions (find a
// user, set or remove theirs) and the capacity caps, each saved through /hub/api with
// xiji.js's helpers. An empty field is "no limit" (a role, a cap) or "the role's" (a user); the
// API reads the values as typed (cores may be fractional, sizes like 16G) and says what is wrong.
(function () {
  'use strict';

  var X = window.Xiji;
  var t = X.t;
  var api = X.api;
  var busy = X.busy;
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  var errorEl = $('#quota-error');

  function showError(message) {
    errorEl.textContent = message || '';
    errorEl.hidden = !message;
    if (message) { errorEl.scrollIntoView({ block: 'nearest' }); }
  }

  // The message xiji.js shows after the reload.
  function reloadWith(message) {
    try { sessionStorage.setItem('xiji-flash', message); } catch (e) { /* private mode */ }
    window.location.reload();
  }

  // The row's fields as the API takes them; an empty field is left out.
  function limitsOf(root) {
    var body = {};
    $$('input.quota-input', root).forEach(function (input) {
      var value = input.value.trim();
      if (value !== '') { body[input.name] = value; }
    });
    return body;
  }

  function userUrl(name) {
    return '/hub/api/users/' + encodeURIComponent(name) + '/quota';
  }

  function save(button, method, url, body, done) {
    busy(button, true);
    showError('');
    api(method, url, body).then(function () {
      reloadWith(done);
    }).catch(function (err) {
      busy(button, false);
      showError(err.message);
    });
  }

  // Stored units → the text a field shows (as the page writes them).
  function cores(millis) {
    var whole = Math.floor(millis / 1000);
    var rest = millis % 1000;
    return rest === 0 ? String(whole) : (millis / 1000).toString();
  }
  function size(mib) {
    var units = [[1024 * 1024, 'T'], [1024, 'G']];
    for (var i = 0; i < units.length; i += 1) {
      if (mib >= units[i][0] && (mib * 100) % units[i][0] === 0) {
        return String(Math.round((mib / units[i][0]) * 100) / 100) + units[i][1];
      }
    }
    return String(mib) + 'M';
  }
  function inputText(field, limits) {
    var stored = { clusters: 'clusters', nodes: 'nodes', cpus: 'cpu_millis', memory: 'memory_mib', gpus: 'gpus', storage: 'storage_mib' }[field];
    var v = limits ? limits[stored] : null;
    if (v === null || v === undefined) { return ''; }
    if (field === 'cpus') { return cores(v); }
    if (field === 'memory' || field === 'storage') { return size(v); }
    return String(v);
  }

  function initRoles() {
    $$('#role-quota-table .js-save-role').forEach(function (button) {
      button.addEventListener('click', function () {
        var row = button.closest('tr');
        save(button, 'PUT', '/hub/api/quotas/roles/' + encodeURIComponent(row.dataset.role), limitsOf(row),
          t('quota_role_saved', { role: row.dataset.roleLabel }));
      });
    });
  }

  function bindUserRow(row) {
    var name = row.dataset.user;
    $('.js-save-user', row).addEventListener('click', function (ev) {
      save(ev.currentTarget, 'PUT', userUrl(name), limitsOf(row), t('quota_exception_saved', { name: name }));
    });
    $('.js-remove-user', row).addEventListener('click', function (ev) {
      if (!window.confirm(t('quota_confirm_remove', { name: name }))) { return; }
      save(ev.currentTarget, 'DELETE', userUrl(name), undefined, t('quota_exception_removed', { name: name }));
    });
  }

  // A found user's row: their exception's values, their role's as placeholders.
  function showUser(q) {
    var table = $('#user-quota-table tbody');
    var row = $$('tr', table).filter(function (r) { return r.dataset.user === q.name; })[0];
    if (!row) {
      row = X.fromTemplate('user-quota-row');
      row.dataset.user = q.name;
      $('.js-user-name', row).textContent = q.name;
      $('.js-user-role', row).textContent = t('role_' + q.role);
      $$('input.quota-input', row).forEach(function (input) {
        input.id = 'user-' + q.name + '-' + input.name;
        input.value = inputText(input.name, q.exception && q.exception.limits);
        input.placeholder = inputText(input.name, q.role_quota) || t('quota_no_limit');
      });
      table.insertBefore(row, table.firstChild);
      bindUserRow(row);
      var none = $('#quota-exceptions-none');
      if (none) { none.hidden = true; }
    }
    row.classList.add('is-found');
    var first = $('input.quota-input', row);
    if (first) { first.focus(); }
  }

  function initUsers() {
    $$('#user-quota-table tbody tr').forEach(bindUserRow);
    var form = $('#quota-find-form');
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var name = $('#quota-user').value.trim();
      if (!name) { return; }
      var button = $('#quota-find');
      busy(button, true);
      showError('');
      api('GET', userUrl(name)).then(function (r) {
        busy(button, false);
        showUser(r.data);
      }).catch(function (err) {
        busy(button, false);
        showError(err.message);
      });
    });
  }

  function initCaps() {
    var button = $('#save-caps');
    button.addEventListener('click', function () {
      save(button, 'PUT', '/hub/api/capacity', limitsOf($('#capacity-table')), t('quota_caps_saved'));
    });
  }

  initRoles();
  initUsers();
  initCaps();
}());
