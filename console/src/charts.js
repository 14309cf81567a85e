// sluice console charts: Chart.js 4 line charts (tree-shaken: line controller, category + linear scales,
// legend, tooltip, title only).
//
// Built by `make assets` (console/build.mjs) into src/sluice/console/static/vendor/charts.js.
//
// API (window.SluiceCharts):
//   line(canvas, { labels: string[], series: [{ label, data: (number|null)[] }], yTitle?: string }) -> Chart
//   update(chart, { labels, series }) -> chart (same object; data replaced in place, no re-creation)
//   describe(chart) -> the text put in the canvas's aria-label
//
// Responsive: the width follows the canvas's container, the height follows from the aspect ratio
// (canvas data-aspect-ratio="N", default 2.5). Animation is off.
//
// The canvas gets role="img" and an aria-label naming the series, the range of labels and each series'
// latest value. An aria-label already on the canvas is kept as the first sentence of that description.

import {
  CategoryScale,
  Chart,
  Legend,
  LineController,
  LineElement,
  LinearScale,
  PointElement,
  Tooltip,
} from 'chart.js';

Chart.register(LineController, LineElement, PointElement, CategoryScale, LinearScale, Legend, Tooltip);

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
// Dashes as a second channel beside colour.
const DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]];

function datasetFor(series, index) {
  const color = PALETTE[index % PALETTE.length];
  return {
    label: String(series.label),
    data: normaliseData(series.data),
    borderColor: color,
    backgroundColor: color,
    borderDash: DASHES[index % DASHES.length],
    borderWidth: 2,
    // A value with no neighbour (e.g. a p95 for one minute among empty ones) draws no line: mark it.
    pointRadius: lonelyPointRadius,
    pointHoverRadius: 4,
    pointHitRadius: 6,
    tension: 0,
    spanGaps: false,
  };
}

function lonelyPointRadius(ctx) {
  const data = ctx.dataset.data;
  const i = ctx.dataIndex;
  if (data[i] == null) return 0;
  const before = i === 0 || data[i - 1] == null;
  const after = i === data.length - 1 || data[i + 1] == null;
  return before && after ? 3 : 0;
}

function normaliseData(data) {
  return Array.from(data || [], (v) => (v == null || Number.isNaN(Number(v)) ? null : Number(v)));
}

function fmt(value) {
  if (value == null) return 'no data';
  if (Number.isInteger(value)) return String(value);
  return String(Math.round(value * 1000) / 1000);
}

function describe(chart) {
  const canvas = chart.canvas;
  const base = canvas.dataset.sluiceLabel || '';
  const labels = chart.data.labels || [];
  const sets = chart.data.datasets || [];
  const yTitle = chart.options.scales && chart.options.scales.y && chart.options.scales.y.title;
  const parts = [];
  if (base) parts.push(base.replace(/[.\s]+$/, '') + '.');
  let head = 'Line chart';
  if (yTitle && yTitle.display && yTitle.text) head += ' of ' + yTitle.text;
  if (labels.length) {
    head += ', ' + labels.length + ' point' + (labels.length === 1 ? '' : 's');
    head += labels.length > 1 ? ' from ' + labels[0] + ' to ' + labels[labels.length - 1] : ' at ' + labels[0];
  } else {
    head += ', no data';
  }
  parts.push(head + '.');
  if (sets.length) {
    const items = sets.map((ds) => {
      const data = ds.data || [];
      let last = null;
      for (let i = data.length - 1; i >= 0; i--) {
        if (data[i] != null) {
          last = data[i];
          break;
        }
      }
      return ds.label + ' (latest ' + fmt(last) + ')';
    });
    parts.push('Series: ' + items.join(', ') + '.');
  }
  return parts.join(' ');
}

function refreshLabel(chart) {
  chart.canvas.setAttribute('role', 'img');
  chart.canvas.setAttribute('aria-label', describe(chart));
}

function line(canvas, config = {}) {
  if (!canvas || canvas.tagName !== 'CANVAS') {
    throw new TypeError('SluiceCharts.line: a <canvas> element is required');
  }
  const existing = Chart.getChart(canvas);
  if (existing) existing.destroy();
  if (canvas.dataset.sluiceLabel === undefined) {
    canvas.dataset.sluiceLabel = canvas.getAttribute('aria-label') || '';
  }
  const yTitle = config.yTitle ? String(config.yTitle) : '';
  const chart = new Chart(canvas, {
    type: 'line',
    data: {
      labels: Array.from(config.labels || [], String),
      datasets: Array.from(config.series || [], datasetFor),
    },
    options: {
      responsive: true,
      // Width follows the container; height follows from the ratio (canvas data-aspect-ratio, default 2.5).
      maintainAspectRatio: true,
      aspectRatio: Number(canvas.dataset.aspectRatio) > 0 ? Number(canvas.dataset.aspectRatio) : 2.5,
      animation: false,
      normalized: true,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { display: true, position: 'bottom', labels: { boxWidth: 14, boxHeight: 2 } },
        tooltip: { enabled: true },
      },
      scales: {
        x: { type: 'category', ticks: { autoSkip: true, maxRotation: 0 } },
        y: {
          type: 'linear',
          beginAtZero: true,
          title: { display: Boolean(yTitle), text: yTitle },
        },
      },
    },
  });
  refreshLabel(chart);
  return chart;
}

function update(chart, config = {}) {
  if (!chart || !chart.data) throw new TypeError('SluiceCharts.update: a chart from SluiceCharts.line is required');
  if (config.labels) chart.data.labels = Array.from(config.labels, String);
  if (config.series) {
    const series = Array.from(config.series);
    const sets = chart.data.datasets;
    series.forEach((s, i) => {
      if (i < sets.length && sets[i].label === String(s.label)) {
        sets[i].data = normaliseData(s.data);
      } else if (i < sets.length) {
        sets[i] = datasetFor(s, i);
      } else {
        sets.push(datasetFor(s, i));
      }
    });
    sets.length = series.length;
  }
  chart.update('none');
  refreshLabel(chart);
  return chart;
}

const SluiceCharts = { line, update, describe, Chart };
window.SluiceCharts = SluiceCharts;
