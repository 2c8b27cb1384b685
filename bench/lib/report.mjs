// Turns the runs' results into Markdown: per suite, the median of the runs with min–max, the ratio
// tsched ÷ each peer, and the design targets. Pure: results and machine info in, text out.

import { fmt, spread } from './stats.mjs';

const TSCHED = ['tsched-sqlite', 'tsched-pg'];
const LABEL = { 'tsched-sqlite': 'tsched (SQLite)', 'tsched-pg': 'tsched (PostgreSQL)' };

function cell(values, digits) {
  const s = spread(values);
  if (s.runs === 0) return '—';
  if (s.runs === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The ok results of one (suite, system, variant), as a list of one metric. */
function metric(results, suite, system, key, variant) {
  return results
    .filter((r) => r.suite === suite && r.system === system && r.result.ok && (variant === undefined || r.variant === variant))
    .map((r) => r.result[key]);
}

function median(results, suite, system, key, variant) {
  return spread(metric(results, suite, system, key, variant)).median;
}

function runsCell(results, suite, system, variant) {
  const all = results.filter((r) => r.suite === suite && r.system === system && (variant === undefined || r.variant === variant));
  const ok = all.filter((r) => r.result.ok).length;
  return ok === all.length ? String(ok) : `${ok} of ${all.length}`;
}

/** Ratio rows: for each tsched flavour and metric, tsched's median ÷ each peer's median. */
function ratioTable(results, suite, systems, labels, metrics, variant) {
  const ours = systems.filter((s) => TSCHED.includes(s));
  const peers = systems.filter((s) => !TSCHED.includes(s) && s !== 'raw');
  if (ours.length === 0 || peers.length === 0) return '';
  const rows = [];
  for (const t of ours) {
    for (const [key, what] of metrics) {
      const mine = median(results, suite, t, key, variant);
      rows.push([`${labels[t]} ${what}`, ...peers.map((p) => fmt(mine / median(results, suite, p, key, variant), 2))]);
    }
  }
  return `\n\ntsched ÷ peer (medians):\n\n${table(['', ...peers.map((p) => `÷ ${labels[p]}`)], rows)}`;
}

/** Redis's version and what it keeps on disk: none of BullMQ's jobs survive a restart of a Redis that keeps nothing. */
function redisLine(m) {
  if (m.redisAppendonly === undefined) return m.redis;
  const aof = m.redisAppendonly === 'yes' ? `appendonly=yes, appendfsync=${m.redisAppendfsync}` : `appendonly=${m.redisAppendonly}`;
  const save = m.redisSave === '' ? 'no snapshots' : `save="${m.redisSave}"`;
  const nothing = m.redisAppendonly === 'no' && m.redisSave === '' ? ': keeps nothing on disk' : '';
  return `${m.redis} (${aof}, ${save}${nothing})`;
}

export function renderMarkdown({ results, machine, machineEnd, options, labels, backends, systems, startedAt, finishedAt }) {
  const out = [];
  const sys = (suite) => systems.filter((s) => results.some((r) => r.suite === suite && r.system === s));
  out.push('# Benchmarks');
  out.push('');
  out.push(
    `Measured ${startedAt} → ${finishedAt} with \`node bench/run.mjs ${options.argv.join(' ')}\` (commit ${machine.commit}). ` +
      'Each figure is the median of the runs with min–max in brackets. Every system ran alone, one run at a time, ' +
      'from a reset state (Redis db flushed, PostgreSQL schema dropped and created, fresh SQLite directory), and every ' +
      'job id was checked to complete exactly once. How to read this: docs/bench.md.',
  );
  out.push('');
  out.push('## Machine');
  out.push('');
  out.push(
    table(
      ['', ''],
      [
        ['cores', `${machine.cores} × ${machine.cpuModel}, ${machine.memoryGiB} GiB`],
        ['kernel', machine.kernel],
        ['load average (1, 5, 15 min) at start', machine.loadAvg.map((v) => v.toFixed(2)).join(', ')],
        ['load average at end', machineEnd.loadAvg.map((v) => v.toFixed(2)).join(', ')],
        ['node', machine.node],
        ['redis', redisLine(machine)],
        ['postgres', `${machine.postgres} (synchronous_commit=${machine.pgSynchronousCommit}, fsync=${machine.pgFsync})`],
        [
          'packages',
          Object.entries(machine.packages)
            .map(([k, v]) => `${k} ${v}`)
            .join(', '),
        ],
        ['runs per measure', String(options.runs)],
      ],
    ),
  );

  if (sys('throughput').length) {
    const s = sys('throughput');
    out.push('');
    out.push(`## 1. Control-plane throughput (N = ${options.n.toLocaleString('en-US')}, ${options.concurrency} in flight, no-op handlers)`);
    out.push('');
    out.push(
      table(
        ['system', 'store', 'submits/s', 'completions/s', 'runs ok'],
        s.map((x) => [
          labels[x],
          backends[x],
          cell(metric(results, 'throughput', x, 'submitsPerSec')),
          cell(metric(results, 'throughput', x, 'completionsPerSec')),
          runsCell(results, 'throughput', x),
        ]),
      ) +
        ratioTable(results, 'throughput', s, labels, [
          ['submitsPerSec', 'submits/s'],
          ['completionsPerSec', 'completions/s'],
        ]),
    );
  }

  if (sys('exec').length) {
    const s = sys('exec');
    const raw = median(results, 'exec', 'raw', 'perSec');
    out.push('');
    out.push(
      `## 2. Real execution (${options.execN.toLocaleString('en-US')} × /bin/true, ${options.processes} worker processes × ${options.inflight} in flight)`,
    );
    out.push('');
    out.push(
      table(
        ['system', 'tasks/s', '% of raw spawn rate', 'runs ok'],
        s.map((x) => [
          labels[x],
          cell(metric(results, 'exec', x, 'perSec')),
          Number.isFinite(raw) ? `${fmt((100 * median(results, 'exec', x, 'perSec')) / raw, 0)}%` : '—',
          runsCell(results, 'exec', x),
        ]),
      ) + ratioTable(results, 'exec', s, labels, [['perSec', 'tasks/s']]),
    );
  }

  for (const rate of options.rates) {
    const s = systems.filter((x) => results.some((r) => r.suite === 'latency' && r.system === x && r.variant === rate));
    if (!s.length) continue;
    out.push('');
    out.push(
      `## 3. Submit-to-start latency at ${rate}/s (open loop, ${options.durationSec} s after ${options.warmupSec ?? 0} s of warm-up, ms from the scheduled send time)`,
    );
    out.push('');
    out.push(
      table(
        ['system', 'p50', 'p90', 'p99', 'max', 'runs ok'],
        s.map((x) => [
          labels[x],
          ...['p50', 'p90', 'p99', 'max'].map((k) => cell(metric(results, 'latency', x, k, rate), 1)),
          runsCell(results, 'latency', x, rate),
        ]),
      ) +
        ratioTable(
          results,
          'latency',
          s,
          labels,
          [
            ['p50', 'p50'],
            ['p99', 'p99'],
          ],
          rate,
        ) +
        '\n\n(For latency a ratio below 1 means tsched is faster.)',
    );
  }

  const targets = targetRows(results, options);
  if (targets.length) {
    out.push('');
    out.push('## Targets (docs/DESIGN.md)');
    out.push('');
    out.push(table(['target', 'measured (median)', 'met'], targets));
  }

  const failed = results.filter((r) => !r.result.ok);
  if (failed.length) {
    out.push('');
    out.push('## Failed runs');
    out.push('');
    for (const f of failed) {
      out.push(
        `- ${f.suite}${f.variant ? ` at ${f.variant}/s` : ''}, ${labels[f.system]}, run ${f.run}: ${String(f.result.error).split('\n')[0]}`,
      );
    }
  }
  out.push('');
  return out.join('\n');
}

function targetRows(results, options) {
  const rows = [];
  const add = (what, v, ok, digits) => {
    if (Number.isFinite(v)) rows.push([what, fmt(v, digits), ok(v) ? 'yes' : 'no']);
  };
  add('tsched (SQLite) ≥ 10,000 completions/s', median(results, 'throughput', 'tsched-sqlite', 'completionsPerSec'), (v) => v >= 10_000);
  add('tsched (PostgreSQL) ≥ 5,000 completions/s', median(results, 'throughput', 'tsched-pg', 'completionsPerSec'), (v) => v >= 5_000);
  const raw = median(results, 'exec', 'raw', 'perSec');
  for (const t of TSCHED) {
    const v = median(results, 'exec', t, 'perSec');
    if (Number.isFinite(raw)) add(`${LABEL[t]} /bin/true ≥ 90% of raw spawn (%)`, (100 * v) / raw, (x) => x >= 90, 0);
  }
  for (const rate of options.rates) {
    for (const t of TSCHED) {
      add(`${LABEL[t]} p50 ≤ 5 ms at ${rate}/s`, median(results, 'latency', t, 'p50', rate), (v) => v <= 5, 1);
      add(`${LABEL[t]} p99 ≤ 50 ms at ${rate}/s`, median(results, 'latency', t, 'p99', rate), (v) => v <= 50, 1);
    }
  }
  return rows;
}
