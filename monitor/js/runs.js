// Failure runs: the form that starts and stops them, the current run's metrics and charts, the
// table of every run, and their CSV.

import { call } from './api.js';
import { lineChart } from './charts.js';

const PARAMS = {
  uniform: [],
  binomial: [['n', 'trials', 20, 1], ['p', 'probability', 0.8, 0.05]],
  poisson: [['mean', 'mean (default: viewers / 2)', '', 1]],
  beta: [['alpha', 'α', 0.5, 0.1], ['beta', 'β', 3, 0.1]],
  chisquared: [['k', 'degrees of freedom', 5, 1]],
};

const $ = (id) => document.getElementById(id);
const ms = (v) => (v == null ? '–' : `${(v / 1000).toFixed(2)} s`);

export function setupRuns(getStream, onError) {
  const dist = $('dist');
  const renderParams = () => {
    $('params').replaceChildren(...PARAMS[dist.value].map(([key, label, value, step]) => {
      const l = document.createElement('label');
      l.textContent = label;
      const input = document.createElement('input');
      Object.assign(input, { type: 'number', step, value, placeholder: 'default' });
      input.dataset.param = key;
      l.append(input);
      return l;
    }));
  };
  dist.addEventListener('change', renderParams);
  renderParams();
  $('run-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('run-error').textContent = '';
    const params = {};
    for (const input of $('params').querySelectorAll('input')) {
      if (input.value !== '') params[input.dataset.param] = Number(input.value);
    }
    const body = {
      distribution: dist.value, params, rate: Number($('rate').value), duration_s: Number($('duration').value),
      rejoin: $('rejoin').checked,
    };
    if ($('seed').value !== '') body.seed = Number($('seed').value);
    try {
      const { id, seed } = await call('POST', `/api/streams/${encodeURIComponent(getStream())}/failures`, body);
      $('run-error').textContent = '';
      $('run-now').dataset.started = `Run ${id} started (seed ${seed}).`;
    } catch (e) {
      $('run-error').textContent = e.message;
    }
  });
  $('stop').addEventListener('click', async () => {
    try {
      await call('DELETE', `/api/streams/${encodeURIComponent(getStream())}/failures`);
    } catch (e) {
      $('run-error').textContent = e.message;
    }
  });
  let latest = [];
  $('csv').addEventListener('click', () => download(latest));
  return (runs) => {
    latest = runs;
    renderRuns(runs);
  };
}

function renderRuns(runs) {
  const rows = $('run-rows');
  rows.replaceChildren(...[...runs].reverse().map((r) => {
    const m = r.metrics;
    const tr = document.createElement('tr');
    tr.dataset.run = r.id;
    const cells = [r.id, describe(r.spec.distribution), `${r.spec.rate}/s for ${r.spec.duration_ms / 1000} s`, r.state,
      `${m.kills}/${r.planned_kills}`, m.repairs, m.stalls, ms(m.stalled_ms), ms(m.avg_stall_ms),
      `${ms(m.repair_ms_median)} / ${ms(m.repair_ms_p95)}`];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = String(c);
      tr.append(td);
    }
    return tr;
  }));
  const run = runs[runs.length - 1];
  const now = $('run-now');
  if (!run) {
    now.textContent = 'No run yet on this stream.';
    return;
  }
  const m = run.metrics;
  const stat = (label, value) => `<div>${label}<b>${value}</b></div>`;
  now.innerHTML = `<p>Run ${run.id}: ${describe(run.spec.distribution)}, ${run.spec.rate}/s for ${run.spec.duration_ms / 1000} s, seed ${run.spec.seed} — <span id="run-state">${run.state}</span></p>
    <div class="metrics" id="run-metrics">${stat('Kills', `${m.kills}/${run.planned_kills}`)}${stat('Stalled playbacks', m.stalls)}
    ${stat('Total stalled', ms(m.stalled_ms))}${stat('Average stall', ms(m.avg_stall_ms))}
    ${stat('Repair median / p95', `${ms(m.repair_ms_median)} / ${ms(m.repair_ms_p95)}`)}</div>`;
  const t = run.timeline;
  const killTimes = t.filter((p, i) => i > 0 && p.kills > t[i - 1].kills).map((p) => p.t_ms / 1000);
  lineChart($('chart-viewers'), t.map((p) => ({ x: p.t_ms / 1000, y: p.viewers })), { marks: killTimes });
  lineChart($('chart-stalls'), t.map((p) => ({ x: p.t_ms / 1000, y: p.stalls })), { marks: killTimes });
  lineChart($('chart-stalled'), t.map((p) => ({ x: p.t_ms / 1000, y: p.stalled_ms / 1000 })), { marks: killTimes, format: (v) => v.toFixed(1) });
}

function describe(d) {
  switch (d.name) {
    case 'binomial': return `binomial(n ${d.n}, p ${d.p})`;
    case 'poisson': return `Poisson(mean ${d.mean ?? 'viewers/2'})`;
    case 'beta': return `beta(α ${d.alpha}, β ${d.beta})`;
    case 'chisquared': return `chi-squared(${d.k})`;
    default: return d.name;
  }
}

/** One row per run: what was asked and what it measured. */
export function toCsv(runs) {
  const head = ['run', 'stream', 'distribution', 'rate_per_s', 'duration_s', 'seed', 'rejoin', 'state', 'kills', 'missed_kills',
    'repairs', 'stalls', 'stalled_ms', 'avg_stall_ms', 'chunks_rejected', 'repair_samples', 'repair_ms_median', 'repair_ms_p95'];
  const lines = runs.map((r) => {
    const m = r.metrics;
    return [r.id, r.stream, describe(r.spec.distribution), r.spec.rate, r.spec.duration_ms / 1000, r.spec.seed, r.spec.rejoin, r.state,
      m.kills, m.missed_kills, m.repairs, m.stalls, m.stalled_ms, m.avg_stall_ms, m.chunks_rejected, m.repair_samples,
      m.repair_ms_median ?? '', m.repair_ms_p95 ?? ''].map((v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : v)).join(',');
  });
  return [head.join(','), ...lines].join('\n') + '\n';
}

function download(runs) {
  const blob = new Blob([toCsv(runs)], { type: 'text/csv' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `ownstream-runs-${runs[0]?.stream ?? 'none'}.csv`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
