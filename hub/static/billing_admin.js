// Prices and budgets (/hub/admin/billing): each form calls /hub/api/prices or /hub/api/budgets
// through window.Xiji.api (login cookie + X-XSRFToken) and reloads the page on success.
(function () {
  'use strict';

  var X = window.Xiji;
  if (!X) { return; }
  var errorBox = document.getElementById('billing-error');

  function fail(err) {
    if (!errorBox) { X.flash(err.message); return; }
    errorBox.textContent = err.message;
    errorBox.hidden = false;
    errorBox.scrollIntoView({ block: 'nearest' });
  }

  function values(form) {
    var out = {};
    new FormData(form).forEach(function (v, k) { if (typeof v === 'string') { out[k] = v.trim(); } });
    return out;
  }

  function onSubmit(id, send) {
    var form = document.getElementById(id);
    if (!form) { return; }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var button = form.querySelector('button[type="submit"]');
      X.busy(button, true);
      send(values(form)).then(function () { window.location.reload(); }).catch(function (err) {
        X.busy(button, false);
        fail(err);
      });
    });
  }

  onSubmit('price-form', function (v) {
    var body = { cpu_core_hour: v.cpu_core_hour, memory_gib_hour: v.memory_gib_hour, gpu_hour: v.gpu_hour, note: v.note || '' };
    // A datetime-local value is the browser's local time.
    if (v.effective_from) { body.effective_from = new Date(v.effective_from).toISOString(); }
    return X.api('POST', '/hub/api/prices', body);
  });

  onSubmit('budget-form', function (v) {
    return X.api('POST', '/hub/api/budgets', { kind: v.kind, target: v.target, limit: v.limit, month: v.month || null, note: v.note || '' });
  });

  onSubmit('budget-settings-form', function (v) {
    return X.api('PUT', '/hub/api/budgets/settings', {
      warn_percent: Number(v.warn_percent),
      release_grace_seconds: Number(v.release_grace_seconds)
    });
  });

  document.addEventListener('click', function (ev) {
    var price = ev.target.closest('.js-delete-price');
    var budget = ev.target.closest('.js-delete-budget');
    var button = price || budget;
    if (!button || !window.confirm(X.t(price ? 'prices_confirm_delete' : 'budgets_confirm_delete'))) { return; }
    var url = (price ? '/hub/api/prices/' : '/hub/api/budgets/') + encodeURIComponent(button.dataset.id);
    X.busy(button, true);
    X.api('DELETE', url).then(function () { window.location.reload(); }).catch(function (err) {
      X.busy(button, false);
      fail(err);
    });
  });
}());
