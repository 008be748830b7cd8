// Xiji's projects pages: the list (search, sort, tabs, pages), the new-project form, and a
// project's page (description, image, datasets, star, fork, run and who runs it, and for its
// owners the settings, members and delete). Everything goes through /hub/api/projects with the
// login cookie and the X-XSRFToken header (the page's XSRF token), as xiji.js calls the API.
(function () {
  'use strict';

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  // xiji.js's helpers (loaded first).
  var X = window.Xiji;
  var t = X.t;
  var api = X.api;
  var show = X.show;
  var busy = X.busy;
  var sizeText = X.sizeText;

  function alertIn(el, message) {
    if (!el) { window.alert(message); return; }
    el.textContent = message;
    show(el, !!message);
    if (message) { el.scrollIntoView({ block: 'nearest' }); }
  }

  function flashNext(message) {
    try { sessionStorage.setItem('xiji-flash', message); } catch (e) { /* private mode */ }
  }

  function dateText(iso) {
    if (!iso) { return ''; }
    var d = new Date(String(iso).replace(/(\.\d{3})\d+/, '$1'));
    if (isNaN(d.getTime())) { return String(iso); }
    try {
      return new Intl.DateTimeFormat(document.documentElement.lang, { dateStyle: 'medium', timeStyle: 'short' }).format(d);
    } catch (e) { return d.toISOString().slice(0, 16).replace('T', ' '); }
  }

  function pair(fullName) {
    var i = String(fullName).indexOf('/');
    return [fullName.slice(0, i), fullName.slice(i + 1)];
  }
  function projectApi(owner, name) {
    return '/hub/api/projects/' + encodeURIComponent(owner) + '/' + encodeURIComponent(name);
  }
  function projectPage(owner, name) {
    return '/hub/projects/' + encodeURIComponent(owner) + '/' + encodeURIComponent(name);
  }
  function pageOf(fullName) { var p = pair(fullName); return projectPage(p[0], p[1]); }
  function datasetPageOf(fullName) {
    var p = pair(fullName);
    return '/hub/datasets/' + encodeURIComponent(p[0]) + '/' + encodeURIComponent(p[1]);
  }

  // The text of the server's (already sanitized) description HTML, for an excerpt.
  function htmlText(html) {
    var tpl = document.createElement('template');
    tpl.innerHTML = html || '';
    return (tpl.content.textContent || '').replace(/\s+/g, ' ').trim();
  }
  function excerpt(text, n) {
    var chars = Array.from(text);
    return chars.length > n ? chars.slice(0, n).join('') + '…' : text;
  }

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
    a.href = '/hub/projects?' + new URLSearchParams({ q: tag }).toString();
    a.textContent = tag;
    return a;
  }

  function visibilityText(v) {
    return v === 'public' ? t('project_visibility_public') : t('project_visibility_private');
  }

  // ---- the list ------------------------------------------------------------------------------

  function initList(root) {
    var size = Number(root.dataset.pageSize) || 24;
    var offset = Number(root.dataset.offset) || 0;
    var params = { sort: root.dataset.sort, offset: String(offset), limit: String(size) };
    if (root.dataset.q) { params.q = root.dataset.q; }
    if (root.dataset.filter === 'mine') { params.mine = 'true'; }
    if (root.dataset.filter === 'starred') { params.starred = 'true'; }
    api('GET', '/hub/api/projects?' + new URLSearchParams(params).toString()).then(function (r) {
      var items = (r.data && r.data.items) || [];
      items.forEach(function (p) { root.appendChild(card(p)); });
      show($('#project-list-empty'), items.length === 0);
      var total = Number(r.data && r.data.total) || 0;
      if (total > size) {
        var here = new URL(window.location.href);
        var link = function (el, to) {
          if (to < 0 || to >= total) { el.removeAttribute('href'); el.setAttribute('aria-disabled', 'true'); return; }
          here.searchParams.set('offset', String(to));
          el.href = here.pathname + '?' + here.searchParams.toString();
        };
        link($('#project-prev'), offset - size);
        link($('#project-next'), offset + size);
        $('#project-page-info').textContent = t('projects_page_info', {
          from: offset + 1, to: Math.min(offset + size, total), total: total
        });
        show($('#project-pager'), true);
      }
    }).catch(function (e) {
      alertIn($('#project-list-error'), e.message);
    }).then(function () { root.setAttribute('aria-busy', 'false'); });
  }

  function card(p) {
    var el = document.getElementById('project-card-template').content.firstElementChild.cloneNode(true);
    $$('.js-link', el).forEach(function (a) { a.href = projectPage(p.owner, p.name); });
    $('.js-owner', el).textContent = p.owner;
    $('.js-name', el).textContent = p.name;
    $('.js-excerpt', el).textContent = excerpt(htmlText(p.description_html), 160);
    (p.tags || []).forEach(function (tag) { $('.js-tags', el).appendChild(tagLink(tag)); });
    $('.js-visibility', el).textContent = visibilityText(p.visibility);
    $('.js-image', el).textContent = p.image ? p.image.name : '';
    $('.js-stars', el).textContent = '★ ' + (p.stars || 0);
    $('.js-forks', el).textContent = t('project_forks_count', { count: p.forks || 0 });
    if (p.forked_from) {
      var f = $('.js-forked', el);
      f.textContent = t('project_forked_from') + ' ';
      var a = document.createElement('a');
      a.href = pageOf(p.forked_from);
      a.textContent = p.forked_from;
      f.appendChild(a);
      show(f, true);
    }
    el.dataset.project = p.owner + '/' + p.name;
    return el;
  }

  // ---- the fields (new form, settings) -------------------------------------------------------

  // Fills the image list and the dataset boxes; `chosen` is the project (settings) or null.
  function loadChoices(form, chosen) {
    var select = $('#project-image', form);
    var images = api('GET', '/hub/api/images').then(function (r) {
      (r.data || []).forEach(function (img) {
        var o = document.createElement('option');
        o.value = String(img.id);
        o.textContent = img.name;
        if (chosen && chosen.image && chosen.image.id === img.id) { o.selected = true; }
        select.appendChild(o);
      });
    });
    var box = $('#project-dataset-choices', form);
    var attached = (chosen && chosen.datasets) || [];
    var datasets = api('GET', '/hub/api/datasets?limit=200&sort=name').then(function (r) {
      var items = (r.data && r.data.items) || [];
      var names = items.map(function (d) { return d.owner + '/' + d.name; });
      attached.forEach(function (n) { if (names.indexOf(n) < 0) { names.push(n); } });
      names.forEach(function (n) {
        var label = document.createElement('label');
        label.className = 'check';
        var input = document.createElement('input');
        input.type = 'checkbox';
        input.name = 'datasets';
        input.value = n;
        input.checked = attached.indexOf(n) >= 0;
        label.appendChild(input);
        label.appendChild(document.createTextNode(' ' + n));
        box.appendChild(label);
      });
      show($('#project-datasets-none', form), names.length === 0);
    });
    return Promise.all([images, datasets]);
  }

  function fieldsOf(form) {
    var image = $('#project-image', form).value;
    var visibility = $('input[name="visibility"]:checked', form);
    return {
      name: $('#project-name', form).value.trim(),
      description: $('#project-description-input', form).value,
      tags: parseTags($('#project-tags', form).value),
      image: image ? Number(image) : null,
      visibility: visibility ? visibility.value : 'private',
      datasets: $$('input[name="datasets"]:checked', form).map(function (i) { return i.value; })
    };
  }

  function initNew(form) {
    var error = $('#project-form-error');
    loadChoices(form, null).catch(function (e) { alertIn(error, e.message); });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = fieldsOf(form);
      if (!body.name) { alertIn(error, t('project_name_required')); return; }
      if (body.image === null) { delete body.image; }
      var button = $('#project-create');
      busy(button, true);
      api('POST', '/hub/api/projects', body).then(function (r) {
        flashNext(t('project_created'));
        window.location.href = projectPage(r.data.owner, r.data.name);
      }).catch(function (e) {
        busy(button, false);
        alertIn(error, e.message);
      });
    });
  }

  // ---- a project's page ----------------------------------------------------------------------

  function initProject(root) {
    var owner = root.dataset.owner;
    var name = root.dataset.name;
    var me = root.dataset.user;
    var base = projectApi(owner, name);
    var error = $('#project-error');
    var project = null;
    var settingsLoaded = false;

    function render(p) {
      project = p;
      $('#project-title').textContent = p.name;
      $('#project-visibility').textContent = visibilityText(p.visibility);
      var tags = $('#project-tags-list');
      tags.textContent = '';
      (p.tags || []).forEach(function (tag) { tags.appendChild(tagLink(tag)); });
      var tpl = document.createElement('template');
      tpl.innerHTML = p.description_html || '';
      $('#project-description').replaceChildren(tpl.content);
      $('#project-image-name').textContent = p.image ? p.image.name : t('project_image_none');
      $('#project-fork-count').textContent = String(p.forks || 0);
      var links = $('#project-dataset-links');
      links.textContent = '';
      (p.datasets || []).forEach(function (d, i) {
        if (i > 0) { links.appendChild(document.createTextNode(', ')); }
        var a = document.createElement('a');
        a.href = datasetPageOf(d);
        a.textContent = d;
        links.appendChild(a);
      });
      if (!(p.datasets || []).length) { links.textContent = t('project_datasets_none'); }
      $('#project-updated').textContent = dateText(p.updated);
      if (p.forked_from) {
        var fl = $('#project-forked-link');
        fl.href = pageOf(p.forked_from);
        fl.textContent = p.forked_from;
      }
      show($('#project-forked'), !!p.forked_from);
      renderStar(p.starred, p.stars);
      renderRunning(p.running || []);
      // A fork runs (and is forked in turn) once its files are all there.
      var copied = renderFork(p.fork);
      show($('#fork-button'), copied);
      var canRun = copied && (p.access === 'edit' || p.access === 'owner');
      show($('#run-card'), canRun);
      if (canRun && p.last_options && !$('#run-form').dataset.filled) {
        $('#run-form').dataset.filled = '1';
        ['nodes', 'cpus', 'memory', 'gpus', 'storage'].forEach(function (k) {
          if (p.last_options[k] !== undefined && p.last_options[k] !== null) {
            $('#run-' + k).value = String(p.last_options[k]);
          }
        });
        if ($('#run-pool') && p.last_options.pool) { $('#run-pool').value = String(p.last_options.pool); }
      }
      if (p.access === 'owner') {
        show($('#owner-panel'), true);
        if (!settingsLoaded) { settingsLoaded = true; fillSettings(p); loadMembers(); }
      }
      show($('#project-header'), true);
      show($('#running-card'), true);
      root.setAttribute('aria-busy', 'false');
    }

    function renderStar(starred, stars) {
      var b = $('#star-button');
      b.setAttribute('aria-pressed', starred ? 'true' : 'false');
      $('.ds-star-icon', b).textContent = starred ? '★' : '☆';
      $('#star-label').textContent = starred ? t('project_unstar') : t('project_star');
      $('#star-count').textContent = String(stars || 0);
    }

    function renderRunning(running) {
      var list = $('#running-list');
      list.textContent = '';
      running.forEach(function (r) {
        var li = document.createElement('li');
        var who = document.createElement('strong');
        who.textContent = r.user;
        li.appendChild(who);
        li.appendChild(document.createTextNode(' '));
        var state = document.createElement('span');
        state.className = 'pill';
        state.textContent = r.ready ? t('project_running_ready') : t('project_running_starting');
        li.appendChild(state);
        if (r.user === me && r.ready) {
          li.appendChild(document.createTextNode(' '));
          var a = document.createElement('a');
          a.href = r.url;
          a.target = '_blank';
          a.rel = 'noopener';
          a.textContent = t('project_run_open');
          li.appendChild(a);
        }
        list.appendChild(li);
      });
      show($('#running-none'), running.length === 0);
    }

    function reload() {
      return api('GET', base).then(function (r) { render(r.data); }).catch(function (e) { alertIn(error, e.message); });
    }

    $('#star-button').addEventListener('click', function () {
      // Disabled while the hub answers (its label and icon stay: they are redrawn after).
      var b = $('#star-button');
      b.disabled = true;
      api(project && project.starred ? 'DELETE' : 'PUT', base + '/star').then(function (r) {
        b.disabled = false;
        project.starred = r.data.starred;
        project.stars = r.data.stars;
        renderStar(r.data.starred, r.data.stars);
      }).catch(function (e) { b.disabled = false; alertIn(error, e.message); });
    });

    // A fork's files are copied in the background: a progress bar in the header while they are
    // (polling the project), then the page loads again with them; or why the copy failed.
    // Whether the files are all there.
    var forkPoll = null;
    var forkWasCopying = false;
    function renderFork(f) {
      var el = $('#fork-status');
      if (!f || f.state === 'done') {
        if (forkWasCopying) { window.location.reload(); }
        show(el, false);
        return !forkWasCopying;
      }
      if (!el) {
        el = document.createElement('div');
        el.className = 'pj-run-status';
        el.id = 'fork-status';
        el.innerHTML = '<div class="progress is-active" id="fork-progress" role="progressbar" aria-valuemin="0" ' +
          'aria-valuemax="100" aria-valuenow="0"><div class="progress-fill" id="fork-progress-fill"></div></div>' +
          '<p class="small" id="fork-message" role="status"></p>';
        $('#project-forked').insertAdjacentElement('afterend', el);
      }
      show(el, true);
      var bar = $('#fork-progress', el);
      var percent = 100;
      var message;
      if (f.state === 'failed') {
        message = t('project_fork_failed', { message: f.message || '' });
      } else {
        forkWasCopying = true;
        var counted = f.files_total > 0 || f.bytes_total > 0;
        percent = !counted ? 0 : f.bytes_total > 0
          ? Math.floor(100 * f.bytes_done / f.bytes_total)
          : Math.floor(100 * f.files_done / f.files_total);
        percent = Math.max(0, Math.min(100, percent));
        message = counted
          ? t('project_fork_copying', {
            files: f.files_done, files_total: f.files_total,
            bytes: sizeText(f.bytes_done), bytes_total: sizeText(f.bytes_total)
          })
          : t('project_fork_counting');
        if (!forkPoll) { forkPoll = setTimeout(function () { forkPoll = null; reload(); }, 1000); }
      }
      bar.classList.toggle('is-active', f.state !== 'failed');
      bar.classList.toggle('is-failed', f.state === 'failed');
      bar.setAttribute('aria-valuenow', String(percent));
      $('#fork-progress-fill', el).style.width = percent + '%';
      $('#fork-message', el).textContent = message;
      return false;
    }

    // Fork: ask a name, then go to the fork's page (telling which datasets were dropped), where
    // the copy of the files shows.
    $('#fork-button').addEventListener('click', function () {
      $('#fork-name').value = name;
      show($('#fork-form'), true);
      $('#fork-name').focus();
    });
    $('#fork-cancel').addEventListener('click', function () { show($('#fork-form'), false); });
    $('#fork-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var b = $('#fork-submit');
      busy(b, true);
      api('POST', base + '/fork', { name: $('#fork-name').value.trim() || name }).then(function (r) {
        var dropped = r.data.dropped_datasets || [];
        flashNext(dropped.length
          ? t('project_forked_dropped', { datasets: dropped.join(', ') })
          : t('project_forked'));
        window.location.href = projectPage(r.data.owner, r.data.name);
      }).catch(function (e) { busy(b, false); alertIn(error, e.message); });
    });

    // Run: the sizes, then the progress as server-sent events until the server is ready.
    $('#run-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var sizes = {};
      ['nodes', 'cpus', 'memory', 'gpus', 'storage', 'pool', 'release_policy'].forEach(function (k) {
        var input = $('#run-' + k);
        var v = input ? input.value.trim() : '';
        if (v) { sizes[k] = v; }
      });
      if ($('#run-wait').checked) { sizes.wait = true; }
      var b = $('#run-button');
      busy(b, true);
      show($('#run-status'), true);
      show($('#run-ready'), false);
      setProgress(0, t('project_run_requested'));
      api('POST', base + '/run', sizes).then(function (r) {
        if (r.status === 201) { ready(r.data.url); } else { follow(r.data); }
      }).catch(function (e) {
        busy(b, false);
        setProgress(100, e.message, true);
      });
    });

    function setProgress(percent, message, failed) {
      var bar = $('#run-progress');
      bar.setAttribute('aria-valuenow', String(percent || 0));
      $('#run-progress-fill').style.width = (percent || 0) + '%';
      bar.classList.toggle('is-failed', !!failed);
      $('#run-message').textContent = message || '';
    }

    function ready(url) {
      busy($('#run-button'), false);
      setProgress(100, t('project_run_ready'));
      $('#run-progress').classList.remove('is-active');
      $('#run-open').href = url;
      show($('#run-ready'), true);
      reload();
    }

    function follow(started) {
      var done = false;
      var es = new EventSource(started.progress_url);
      es.onmessage = function (ev) {
        var data;
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        if (data.failed) {
          done = true;
          es.close();
          busy($('#run-button'), false);
          setProgress(100, t('project_run_failed') + ' ' + (data.message || ''), true);
          reload();
        } else if (data.ready) {
          done = true;
          es.close();
          ready(data.url || started.url);
        } else {
          setProgress(Number(data.progress) || 0, data.message || t('project_run_requested'));
        }
      };
      // Without events (a proxy that buffers them), ask the user's model for the server's state.
      es.onerror = function () {
        es.close();
        if (!done) { poll(started); }
      };
    }

    function poll(started) {
      api('GET', '/hub/api/users/' + encodeURIComponent(me)).then(function (r) {
        var s = r.data && r.data.servers && r.data.servers[started.server_name];
        if (s && s.ready) { ready(s.url || started.url); return; }
        if (!s) { busy($('#run-button'), false); setProgress(100, t('project_run_failed'), true); reload(); return; }
        setTimeout(function () { poll(started); }, 1500);
      }).catch(function () { setTimeout(function () { poll(started); }, 3000); });
    }

    // ---- owners: settings, members, delete ----

    function fillSettings(p) {
      var form = $('#settings-form');
      $('#project-name', form).value = p.name;
      $('#project-description-input', form).value = p.description || '';
      $('#project-tags', form).value = (p.tags || []).join(', ');
      $('#project-visibility-' + (p.visibility === 'public' ? 'public' : 'private'), form).checked = true;
      loadChoices(form, p).catch(function (e) { alertIn(error, e.message); });
    }

    $('#settings-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = fieldsOf($('#settings-form'));
      var b = $('#settings-save');
      busy(b, true);
      api('PATCH', base, body).then(function (r) {
        busy(b, false);
        if (r.data.name !== name || r.data.owner !== owner) {
          flashNext(t('project_saved'));
          window.location.href = projectPage(r.data.owner, r.data.name);
          return;
        }
        render(r.data);
        alertIn(error, '');
        flash(t('project_saved'));
      }).catch(function (e) { busy(b, false); alertIn(error, e.message); });
    });

    function flash(message) {
      var el = $('#flash');
      if (!el) { return; }
      el.textContent = message;
      el.className = 'flash flash-ok';
      el.hidden = false;
    }

    function loadMembers() {
      return api('GET', base + '/members').then(function (r) {
        var rows = $('#member-rows');
        rows.textContent = '';
        (r.data || []).forEach(function (m) {
          var tr = document.getElementById('member-row-template').content.firstElementChild.cloneNode(true);
          $('.js-name', tr).textContent = m.name;
          var role = $('.js-role', tr);
          role.value = m.role;
          role.addEventListener('change', function () {
            api('PUT', base + '/members/' + encodeURIComponent(m.name), { role: role.value })
              .then(loadMembers).catch(function (e) { alertIn(error, e.message); });
          });
          $('.js-remove', tr).addEventListener('click', function () {
            api('DELETE', base + '/members/' + encodeURIComponent(m.name))
              .then(loadMembers).catch(function (e) { alertIn(error, e.message); });
          });
          rows.appendChild(tr);
        });
        show($('#member-table'), (r.data || []).length > 0);
        show($('#members-none'), (r.data || []).length === 0);
      }).catch(function (e) { alertIn(error, e.message); });
    }

    $('#member-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var who = $('#member-name').value.trim();
      if (!who) { return; }
      var b = $('#member-add');
      busy(b, true);
      api('PUT', base + '/members/' + encodeURIComponent(who), { role: $('#member-role').value }).then(function () {
        busy(b, false);
        $('#member-name').value = '';
        loadMembers();
      }).catch(function (e) { busy(b, false); alertIn(error, e.message); });
    });

    $('#delete-project').addEventListener('click', function () {
      if (!window.confirm(t('project_delete_confirm', { name: owner + '/' + name }))) { return; }
      var b = $('#delete-project');
      busy(b, true);
      api('DELETE', base).then(function () {
        flashNext(t('project_deleted'));
        window.location.href = '/hub/projects';
      }).catch(function (e) {
        busy(b, false);
        alertIn($('#delete-error'), e.message);
      });
    });

    reload();
  }

  var list = document.getElementById('project-list');
  if (list) { initList(list); }
  var form = document.getElementById('project-new-form');
  if (form) { initNew(form); }
  var one = document.getElementById('project');
  if (one) { initProject(one); }
}());
