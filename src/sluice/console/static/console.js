/* sluice console: tabs, confirm dialogs, fetch with CSRF, pollers, settings rows, the Test tab. */
(function () {
  'use strict';
  var Sluice = (window.Sluice = window.Sluice || {});

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : '';
  }

  /* fetch() a console endpoint with the session's CSRF token; resolves {ok, status, body}. */
  Sluice.fetchJson = function (url, opts) {
    opts = opts || {};
    var headers = { 'X-CSRF-Token': csrfToken(), Accept: 'application/json' };
    var init = { method: opts.method || 'GET', headers: headers, credentials: 'same-origin' };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    }
    return fetch(url, init).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = { errors: [{ type: 'error', message: text }] }; }
        return { ok: response.ok, status: response.status, body: body };
      });
    });
  };

  /* Call fn now and every ms milliseconds while the page is visible; returns a stop function. */
  Sluice.every = function (ms, fn) {
    var timer = null, stopped = false, running = false;
    function tick() {
      if (stopped) return;
      if (document.hidden || running) { timer = setTimeout(tick, ms); return; }
      running = true;
      Promise.resolve().then(fn).catch(function (e) { if (window.console) console.error(e); })
        .then(function () { running = false; if (!stopped) timer = setTimeout(tick, ms); });
    }
    tick();
    return function stop() { stopped = true; if (timer) clearTimeout(timer); };
  };

  /* Tabs: [role=tablist] with [role=tab][aria-controls]; arrows/Home/End move, ?tab= is kept. */
  function initTabs(list) {
    var tabs = Array.prototype.slice.call(list.querySelectorAll('[role=tab]'));
    function select(tab, focus) {
      tabs.forEach(function (t) {
        var on = t === tab;
        t.setAttribute('aria-selected', on ? 'true' : 'false');
        t.tabIndex = on ? 0 : -1;
        var panel = document.getElementById(t.getAttribute('aria-controls'));
        if (panel) panel.hidden = !on;
      });
      if (focus) tab.focus();
      if (tab.dataset.tab && window.history && history.replaceState) {
        var url = new URL(window.location.href);
        url.searchParams.set('tab', tab.dataset.tab);
        history.replaceState(null, '', url.toString());
      }
    }
    tabs.forEach(function (tab, i) {
      tab.addEventListener('click', function () { select(tab, false); });
      tab.addEventListener('keydown', function (e) {
        var next = null;
        if (e.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
        else if (e.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
        else if (e.key === 'Home') next = tabs[0];
        else if (e.key === 'End') next = tabs[tabs.length - 1];
        if (next) { e.preventDefault(); select(next, true); }
      });
    });
  }

  /* form[data-confirm]: ask first (submitter's data-confirm wins). */
  function initConfirm() {
    document.addEventListener('submit', function (e) {
      var form = e.target;
      var submitter = e.submitter;
      var message = (submitter && submitter.getAttribute('data-confirm')) || form.getAttribute('data-confirm');
      if (message && !window.confirm(message)) e.preventDefault();
    }, true);
  }

  /* Segment's auto-generated setting name: camelCase of the label's words. */
  Sluice.nameFromLabel = function (label) {
    var words = String(label).match(/[A-Za-z0-9]+/g);
    if (!words) return 'setting';
    var first = words[0];
    var head = first === first.toUpperCase() ? first.toLowerCase() : first.charAt(0).toLowerCase() + first.slice(1);
    var name = head + words.slice(1).map(function (w) { return w.charAt(0).toUpperCase() + w.slice(1); }).join('');
    return /^[0-9]/.test(name) ? '_' + name : name;
  };

  function initSettings(box) {
    var rows = box.querySelector('[data-setting-rows]');
    var template = document.getElementById('setting-row-template');
    function wire(row) {
      var label = row.querySelector('[data-setting-label]');
      var name = row.querySelector('[data-setting-name]');
      if (label && name) {
        if (!name.value) name.dataset.auto = '1';
        name.addEventListener('input', function () { name.dataset.auto = name.value ? '' : '1'; });
        label.addEventListener('input', function () { if (name.dataset.auto) name.value = Sluice.nameFromLabel(label.value); });
      }
      var remove = row.querySelector('[data-setting-remove]');
      if (remove) remove.addEventListener('click', function () {
        var focusTarget = box.querySelector('[data-setting-add]');
        row.parentNode.removeChild(row);
        if (focusTarget) focusTarget.focus();
      });
    }
    Array.prototype.forEach.call(rows.querySelectorAll('[data-setting-row]'), wire);
    var add = box.querySelector('[data-setting-add]');
    if (add && template) add.addEventListener('click', function () {
      var index = Number(box.dataset.next || rows.querySelectorAll('[data-setting-row]').length);
      box.dataset.next = String(index + 1);
      var html = template.innerHTML.replace(/__i__/g, String(index));
      var holder = document.createElement('div');
      holder.innerHTML = html.trim();
      var row = holder.firstChild;
      rows.appendChild(row);
      wire(row);
      var first = row.querySelector('input[type=text]');
      if (first) first.focus();
    });
  }

  function schemaFromForm() {
    var out = [];
    Array.prototype.forEach.call(document.querySelectorAll('[data-setting-row]'), function (row) {
      var get = function (sel) { return row.querySelector(sel); };
      var label = get('[data-setting-label]').value.trim();
      if (!label) return;
      out.push({
        label: label,
        name: get('[data-setting-name]').value.trim() || Sluice.nameFromLabel(label),
        type: get('[data-setting-type]').value,
        description: get('[data-setting-description]').value,
        required: get('[data-setting-required]').checked,
        sensitive: get('[data-setting-sensitive]').checked
      });
    });
    return out;
  }

  function setText(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }
  function pretty(value) { return value === undefined ? '' : JSON.stringify(value, null, 2); }

  function showPreview(result) {
    var box = document.getElementById('test-result');
    if (!box) return;
    box.hidden = false;
    var status = result.status || '';
    var el = document.getElementById('test-status');
    if (el) {
      el.textContent = status;
      el.className = /^(ok|filtered|dropped)$/.test(status) ? 'status-ok' : 'status-error';
    }
    var output = result.results ? result.results.map(function (r) { return { status: r.status, event: r.event, error: r.error }; }) : result.event;
    setText('test-output', pretty(output));
    setText('test-error', result.error ? result.error.type + ': ' + result.error.message : '—');
    setText('test-logs', (result.logs || []).join('\n') || '—');
    setText('test-requests', (result.requests && result.requests.length) ? pretty(result.requests) : '—');
    setText('test-duration', result.durationMs !== undefined ? Math.round(result.durationMs) + ' ms' : '');
  }

  function showProblem(message) {
    var box = document.getElementById('test-problem');
    if (!box) return;
    box.hidden = !message;
    box.textContent = message || '';
  }

  function initTest(panel) {
    var samplesEl = document.getElementById('sample-events');
    var samples = samplesEl ? JSON.parse(samplesEl.textContent) : {};
    var eventArea = document.getElementById('test-event');
    function setEditorValue(area, value) {
      area.value = value;
      if (area.sluiceEditor && area.sluiceEditor.setValue) area.sluiceEditor.setValue(value);
      area.dispatchEvent(new Event('input', { bubbles: true }));
    }
    Array.prototype.forEach.call(panel.querySelectorAll('[data-sample]'), function (button) {
      button.addEventListener('click', function () {
        var sample = samples[button.dataset.sample];
        if (sample !== undefined) setEditorValue(eventArea, JSON.stringify(sample, null, 2));
      });
    });
    var run = document.getElementById('test-run');
    if (!run) return;
    run.addEventListener('click', function () {
      var payload, settings;
      try { payload = JSON.parse(eventArea.value); } catch (e) { showProblem('The event is not valid JSON: ' + e.message); return; }
      var settingsArea = document.getElementById('test-settings');
      try { settings = settingsArea && settingsArea.value.trim() ? JSON.parse(settingsArea.value) : {}; } catch (e) { showProblem('The setting values are not valid JSON: ' + e.message); return; }
      var code = document.getElementById('code');
      var body = { payload: payload, settings: settings, code: code ? code.value : undefined, settingsSchema: schemaFromForm() };
      showProblem('');
      run.disabled = true;
      run.setAttribute('aria-busy', 'true');
      setText('test-running', 'Running…');
      Sluice.fetchJson(panel.dataset.previewUrl, { method: 'POST', body: body }).then(function (res) {
        if (res.ok && res.body && res.body.preview) { showPreview(res.body.preview); }
        else {
          var errors = (res.body && res.body.errors) || [{ message: 'HTTP ' + res.status }];
          showProblem(errors.map(function (e) { return (e.line ? 'line ' + e.line + ': ' : '') + e.message; }).join('; '));
          var err = errors.filter(function (e) { return e.line; })[0];
          if (err && code && code.sluiceEditor && code.sluiceEditor.markLine) code.sluiceEditor.markLine(err.line, err.message);
        }
      }).catch(function (e) { showProblem('The request failed: ' + e.message); })
        .then(function () { run.disabled = false; run.removeAttribute('aria-busy'); setText('test-running', ''); });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.querySelectorAll('[role=tablist]'), initTabs);
    initConfirm();
    Array.prototype.forEach.call(document.querySelectorAll('[data-settings]'), initSettings);
    var test = document.querySelector('[data-test-panel]');
    if (test) initTest(test);
    /* Deploy needs at least one instance chosen. */
    var deploy = document.getElementById('save-deploy');
    if (deploy) deploy.addEventListener('click', function (e) {
      var boxes = document.querySelectorAll('input[name=instanceIds]');
      if (boxes.length && !document.querySelector('input[name=instanceIds]:checked')) {
        e.preventDefault();
        window.alert('Choose at least one instance to deploy to.');
      }
    });
  });
})();
