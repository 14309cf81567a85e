/* sluice console: the Event Delivery page — live numbers, charts, the error table, the queue and Replay.
 *
 * Reads the first state from <script id="delivery-state" type="application/json">, then polls
 * GET {data-json-url}?window=… every 5 s (Sluice.every: paused while the tab is hidden) and updates
 * the page in place. Replay posts to {data-replay-url} with the CSRF header and follows
 * GET {data-queue-url} every second until the re-queued events have left the queue.
 */
(function () {
  'use strict';

  var POLL_MS = 5000;
  var REPLAY_POLL_MS = 1000;

  var root = null;
  var windowKey = '1h';
  var charts = {};
  var requestSeq = 0;
  var replaying = false;

  function $(id) { return document.getElementById(id); }

  function setText(id, text) {
    var el = $(id);
    if (el && el.textContent !== String(text)) el.textContent = String(text);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'text') node.textContent = attrs[key];
      else if (key === 'className') node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      if (child != null) node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  function pretty(value) {
    if (value === null || value === undefined) return '—';
    if (Array.isArray(value) && !value.length) return '—';
    if (typeof value === 'object' && !Array.isArray(value) && !Object.keys(value).length) return '—';
    return JSON.stringify(value, null, 2);
  }

  function fmtMs(value) {
    if (value === null || value === undefined) return '—';
    if (value < 1000) return Math.round(value) + ' ms';
    return (value / 1000).toFixed(1) + ' s';
  }

  function shortIso(iso) { return String(iso || '').slice(0, 16).replace('T', ' '); }

  function bucketLabel(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    var time = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
    if (windowKey === '7d') return d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    return d.toLocaleTimeString([], time);
  }

  function windowLabel(key) {
    var link = document.querySelector('#delivery-window [data-window="' + key + '"]');
    return link ? link.getAttribute('title') : key;
  }

  // --- numbers and charts --------------------------------------------------------------------------

  function updateNumbers(delivery) {
    setText('delivery-delivered', delivery.delivered);
    setText('delivery-not-delivered', delivery.notDelivered);
    setText('delivery-filtered', delivery.filtered);
    setText('delivery-retrying', delivery.retrying);
    var latency = delivery.latency || {};
    setText('delivery-p50', fmtMs(latency.p50Ms));
    setText('delivery-p95', fmtMs(latency.p95Ms));
    setText('delivery-range', windowLabel(delivery.window) + ': ' + shortIso(delivery.from) + ' – ' + shortIso(delivery.to) + ' UTC');
  }

  var CHARTS = [
    { key: 'delivered', canvas: 'chart-delivered', label: 'Delivered', yTitle: 'events', pick: function (p) { return p.delivered; } },
    { key: 'notDelivered', canvas: 'chart-not-delivered', label: 'Not delivered', yTitle: 'events', pick: function (p) { return p.notDelivered; } },
    { key: 'latency', canvas: 'chart-latency', label: 'p95 latency', yTitle: 'ms', pick: function (p) { return p.p95Ms; } }
  ];

  function updateCharts(delivery) {
    if (!window.SluiceCharts) return;
    var series = delivery.series || [];
    var labels = series.map(function (p) { return bucketLabel(p.at); });
    CHARTS.forEach(function (spec) {
      var canvas = $(spec.canvas);
      if (!canvas) return;
      var data = { labels: labels, series: [{ label: spec.label, data: series.map(spec.pick) }] };
      if (charts[spec.key]) {
        window.SluiceCharts.update(charts[spec.key], data);
      } else {
        data.yTitle = spec.yTitle;
        charts[spec.key] = window.SluiceCharts.line(canvas, data);
      }
    });
  }

  // --- the error table ------------------------------------------------------------------------------

  function sampleBlock(s) {
    var parts = [
      ['You sent', 'sample-event', pretty(s.event)],
      ['Function logs', 'sample-logs', (s.logs && s.logs.length) ? s.logs.join('\n') : '—'],
      ['Request to destination', 'sample-request', pretty(s.request)],
      ['Response from destination', 'sample-response', pretty(s.response)]
    ];
    var grid = el('div', { className: 'sample-grid' }, parts.map(function (part) {
      return el('section', {}, [el('h4', { text: part[0] }), el('pre', { className: 'out', 'data-test': part[1], text: part[2] })]);
    }));
    var title = el('h3', { className: 'sample-title' }, [
      el('time', { datetime: s.at, text: String(s.at).slice(0, 19).replace('T', ' ') + ' UTC' }),
      ' · ',
      el('span', { 'data-test': 'sample-reason', text: s.reason })
    ]);
    var meta = el('p', { className: 'muted sample-meta' }, [
      'messageId ', el('code', { 'data-test': 'sample-message-id', text: s.messageId == null ? '—' : String(s.messageId) }),
      ' · attempts ', el('span', { 'data-test': 'sample-attempts', text: String(s.attempts) }),
      ' · source ', el('code', { text: s.sourceId })
    ]);
    var children = [title, meta];
    if (s.error) children.push(el('p', { className: 'status-error', 'data-test': 'sample-error', text: s.error.type + ': ' + s.error.message }));
    children.push(grid);
    if (s.requests && s.requests.length) {
      children.push(el('details', { className: 'sample-fetches' }, [
        el('summary', { text: "The function's own requests (" + s.requests.length + ')' }),
        el('pre', { className: 'out', 'data-test': 'sample-fetches', text: pretty(s.requests) })
      ]));
    }
    return el('article', { className: 'sample', 'data-test': 'sample', 'data-sample-id': String(s.id) }, children);
  }

  function signature(row) { return row.samples.map(function (s) { return s.id; }).join(','); }

  function fillSamples(td, row, open) {
    var content;
    if (row.samples.length) {
      var summary = el('summary', {}, ['Samples of ', el('code', { text: row.outcome }), ' · ' + row.reasonCode + ' (' + row.samples.length + ')']);
      content = el('details', { 'data-test': 'error-samples' }, [summary].concat(row.samples.map(sampleBlock)));
      if (open) content.open = true;
    } else {
      content = el('span', { className: 'muted small', 'data-test': 'error-no-samples', text: 'No samples in this window.' });
    }
    td.replaceChildren(content);
  }

  function mainRow(row) {
    return el('tr', { 'data-test': 'error-row', 'data-key': row.key, 'data-outcome': row.outcome, 'data-reason-code': row.reasonCode, className: 'kind-' + row['class'] }, [
      el('td', { 'data-test': 'error-kind', text: row.classLabel }),
      el('td', {}, [el('code', { 'data-test': 'error-outcome', text: row.outcome })]),
      el('td', { 'data-test': 'error-reason-code', text: row.reasonCode }),
      el('td', { className: 'num', 'data-test': 'error-count', text: String(row.count) })
    ]);
  }

  function samplesRow(row) {
    var td = el('td', { colspan: '4' });
    fillSamples(td, row, false);
    return el('tr', { className: 'samples-row', 'data-test': 'error-samples-row', 'data-key': row.key, 'data-sig': signature(row) }, [td]);
  }

  /* Keyed update: counts change in place; a row's samples are rebuilt only when they changed (an open
     <details> stays open); rows are re-appended only when the order changed. */
  function updateRows(rows) {
    var body = $('delivery-errors-body');
    if (!body) return;
    var existing = {};
    var order = [];
    Array.prototype.forEach.call(body.querySelectorAll('tr[data-test="error-row"]'), function (tr) {
      existing[tr.dataset.key] = { main: tr, samples: tr.nextElementSibling };
      order.push(tr.dataset.key);
    });
    var empty = body.querySelector('tr[data-test="errors-empty"]');
    if (!rows.length) {
      if (!empty || order.length) {
        body.replaceChildren(el('tr', { 'data-test': 'errors-empty' }, [el('td', { colspan: '4', className: 'muted', text: 'No errors in this window.' })]));
      }
      return;
    }
    if (empty) empty.remove();
    var wanted = rows.map(function (row) { return row.key; });
    var added = false;
    var pairs = rows.map(function (row) {
      var pair = existing[row.key];
      if (!pair) {
        added = true;
        return { main: mainRow(row), samples: samplesRow(row) };
      }
      var count = pair.main.querySelector('[data-test="error-count"]');
      if (count && count.textContent !== String(row.count)) count.textContent = String(row.count);
      var sig = signature(row);
      if (pair.samples && pair.samples.dataset.sig !== sig) {
        var details = pair.samples.querySelector('details');
        fillSamples(pair.samples.firstElementChild, row, Boolean(details && details.open));
        pair.samples.dataset.sig = sig;
      }
      return pair;
    });
    order.forEach(function (key) {
      if (wanted.indexOf(key) === -1) {
        existing[key].main.remove();
        if (existing[key].samples) existing[key].samples.remove();
      }
    });
    var kept = order.filter(function (key) { return wanted.indexOf(key) !== -1; });
    if (added || kept.join('\n') !== wanted.join('\n')) {
      pairs.forEach(function (pair) { body.appendChild(pair.main); body.appendChild(pair.samples); });
    }
  }

  // --- queue and expired count -----------------------------------------------------------------------

  function updateQueue(queue) {
    var box = $('queue');
    var none = $('queue-unavailable');
    if (!box) return;
    box.hidden = queue == null;
    if (none) none.hidden = queue != null;
    if (queue == null) return;
    setText('queue-new', queue.new);
    setText('queue-scheduled', queue.scheduled);
    setText('queue-leased', queue.leased);
    setText('queue-backlog', queue.backlog);
    setText('queue-dead-letters', queue.deadLetters);
  }

  function updateExpired(expired, more) {
    setText('replay-expired', expired == null ? 'unknown' : String(expired) + (more ? '+' : ''));
    var button = $('replay-button');
    if (button && !replaying) {
      var off = expired === 0;
      button.disabled = off;
      if (off) button.setAttribute('aria-disabled', 'true'); else button.removeAttribute('aria-disabled');
    }
  }

  function apply(state) {
    updateNumbers(state.delivery);
    updateCharts(state.delivery);
    if (state.rows) {
      var samples = state.delivery.samples || [];
      updateRows(state.rows.map(function (row) {
        row.samples = samples.filter(function (s) { return s.outcome === row.outcome && s.reasonCode === row.reasonCode; });
        return row;
      }));
    }
    updateQueue(state.queue);
    updateExpired(state.expired, state.expiredMore);
  }

  // --- polling -------------------------------------------------------------------------------------------

  function refresh() {
    var seq = ++requestSeq;
    var url = root.dataset.jsonUrl + '?window=' + encodeURIComponent(windowKey);
    return window.Sluice.fetchJson(url).then(function (res) {
      if (seq !== requestSeq) return; // a newer request (another window) was sent meanwhile
      if (res.ok && res.body && res.body.delivery) {
        apply(res.body);
        setText('delivery-updated', 'updated ' + new Date().toLocaleTimeString());
      } else if (res.status === 401) {
        setText('delivery-updated', 'your session has ended: reload the page to sign in again');
      } else {
        var errors = (res.body && res.body.errors) || [{ message: 'HTTP ' + res.status }];
        setText('delivery-updated', 'update failed (' + errors.map(function (e) { return e.message; }).join('; ') + '); retrying');
      }
    }).catch(function (e) {
      if (seq === requestSeq) setText('delivery-updated', 'update failed (' + e.message + '); retrying');
    });
  }

  function selectWindow(key, link) {
    windowKey = key;
    root.dataset.window = key;
    Array.prototype.forEach.call(document.querySelectorAll('#delivery-window [data-window]'), function (a) {
      if (a === link) a.setAttribute('aria-current', 'true'); else a.removeAttribute('aria-current');
    });
    if (window.history && history.replaceState) {
      var url = new URL(window.location.href);
      url.searchParams.set('window', key);
      history.replaceState(null, '', url.toString());
    }
    setText('delivery-updated', 'loading ' + windowLabel(key).toLowerCase() + '…');
    refresh();
  }

  // --- replay --------------------------------------------------------------------------------------------

  function replayStatus(text, done, max) {
    var box = $('replay-progress-box');
    var bar = $('replay-progress');
    if (box) box.hidden = false;
    if (bar) {
      if (max) { bar.max = max; bar.value = done; bar.hidden = false; } else { bar.hidden = true; }
    }
    setText('replay-status', text);
  }

  function followReplay(replayed, before) {
    var stop = null;
    stop = window.Sluice.every(REPLAY_POLL_MS, function () {
      return window.Sluice.fetchJson(root.dataset.queueUrl).then(function (res) {
        if (!res.ok || !res.body || !res.body.queue) {
          replayStatus('Re-queued ' + replayed + ' events; their progress is not available here.', 0, 0);
          finish();
          return;
        }
        var backlog = Number(res.body.queue.backlog) || 0;
        var left = Math.min(Math.max(backlog - before, 0), replayed);
        updateQueue(res.body.queue);
        if (left > 0) {
          replayStatus(left + ' of ' + replayed + ' re-queued events left', replayed - left, replayed);
        } else {
          replayStatus('Done: all ' + replayed + ' re-queued events have left the queue.', replayed, replayed);
          finish();
        }
      });
    });
    function finish() {
      if (stop) stop();
      replaying = false;
      var button = $('replay-button');
      if (button) button.removeAttribute('aria-busy');
      refresh();
    }
  }

  function initReplay() {
    var form = $('replay-form');
    var button = $('replay-button');
    if (!form || !button) return;
    form.addEventListener('submit', function (e) {
      if (e.defaultPrevented) return; // the confirmation was declined
      e.preventDefault();
      if (replaying) return;
      replaying = true;
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
      replayStatus('Re-queuing the expired events…', 0, 0);
      window.Sluice.fetchJson(root.dataset.replayUrl, { method: 'POST' }).then(function (res) {
        if (!res.ok || !res.body || !res.body.replay) {
          var errors = (res.body && res.body.errors) || [{ message: 'HTTP ' + res.status }];
          replayStatus('Replay refused: ' + errors.map(function (x) { return x.message; }).join('; '), 0, 0);
          replaying = false;
          button.disabled = false;
          button.removeAttribute('aria-busy');
          return;
        }
        var replayed = Number(res.body.replay.replayed) || 0;
        if (!replayed) {
          replayStatus('There were no expired events to replay.', 0, 0);
          replaying = false;
          button.removeAttribute('aria-busy');
          refresh();
          return;
        }
        replayStatus(replayed + ' of ' + replayed + ' re-queued events left', 0, replayed);
        followReplay(replayed, Number(res.body.replay.backlogBefore) || 0);
      }).catch(function (err) {
        replayStatus('The replay request failed: ' + err.message, 0, 0);
        replaying = false;
        button.disabled = false;
        button.removeAttribute('aria-busy');
      });
    });
  }

  // --- start ---------------------------------------------------------------------------------------------

  function init() {
    root = $('delivery-root');
    if (!root || !window.Sluice) return;
    windowKey = root.dataset.window || '1h';
    var initial = $('delivery-state');
    if (initial) {
      try {
        var state = JSON.parse(initial.textContent);
        updateCharts(state.delivery);
      } catch (e) {
        if (window.console) console.error(e);
      }
    }
    Array.prototype.forEach.call(document.querySelectorAll('#delivery-window [data-window]'), function (link) {
      link.addEventListener('click', function (e) {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.altKey || e.button !== 0) return;
        e.preventDefault();
        selectWindow(link.dataset.window, link);
      });
    });
    initReplay();
    // The page was just rendered with fresh data: the first poll comes after POLL_MS.
    setTimeout(function () { window.Sluice.every(POLL_MS, refresh); }, POLL_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
