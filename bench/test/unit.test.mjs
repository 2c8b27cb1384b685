// Unit tests of the bench's pure parts: statistics, the open-loop sender, the report, the command line.
// Run: node --test bench/test/

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openLoop } from '../lib/openloop.mjs';
import { renderMarkdown } from '../lib/report.mjs';
import { checkExactlyOnce, latencySummary, percentile, spread } from '../lib/stats.mjs';
import { splitLatency } from '../suites/latency.mjs';

test('percentile uses the nearest rank', () => {
  const v = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  assert.equal(percentile(v, 50), 50);
  assert.equal(percentile(v, 99), 99);
  assert.equal(percentile(v, 100), 100);
  assert.equal(percentile([7], 1), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('latencySummary gives p50/p90/p99/max in one pass', () => {
  const v = Array.from({ length: 1000 }, (_, i) => i + 1);
  assert.deepEqual(latencySummary(v), { count: 1000, p50: 500, p90: 900, p99: 990, max: 1000 });
});

test("splitLatency: the time to the submit's answer and from it to the start, each as p50 / p90", () => {
  // 10 tasks sent at 0, answered 1..10 ms later, started 100 ms after their answer but the last (200).
  const scheduled = Float64Array.from({ length: 10 }, () => 0);
  const answered = Float64Array.from({ length: 10 }, (_, i) => i + 1);
  const started = Float64Array.from(answered, (a, i) => a + (i === 9 ? 200 : 100));
  assert.equal(
    splitLatency(scheduled, answered, started),
    'submit answered p50 / p90 5.0 / 9.0 ms; start after the answer p50 / p90 100.0 / 100.0 ms',
  );
});

test('spread: median of odd and even counts, failed runs ignored', () => {
  assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3, runs: 3 });
  assert.deepEqual(spread([4, 1, 2, 3]), { median: 2.5, min: 1, max: 4, runs: 4 });
  assert.deepEqual(spread([5, Number.NaN, undefined]), { median: 5, min: 5, max: 5, runs: 1 });
});

test('checkExactlyOnce names missing, duplicated and unexpected ids', () => {
  assert.deepEqual(
    checkExactlyOnce(
      new Map([
        [0, 1],
        [1, 1],
      ]),
      [0, 1],
      'x',
    ),
    { checked: 2 },
  );
  assert.throws(
    () =>
      checkExactlyOnce(
        new Map([
          [0, 2],
          [5, 1],
        ]),
        [0, 1],
        'sys',
      ),
    /sys: exactly-once check failed: 1 missing \(1\), 1 duplicated \(0×2\), 1 unexpected \(5\)/,
  );
});

test('openLoop sleeps between sends instead of spinning', async () => {
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  const { total, errors } = await openLoop({ rate: 1000, durationMs: 500, send: async () => {} });
  const wall = performance.now() - t;
  const { user, system } = process.cpuUsage(cpu0);
  assert.equal(total, 500);
  assert.equal(errors.length, 0);
  // A sender that polls the clock uses a whole core for the run; one that sleeps, a small share of it.
  const share = (user + system) / 1000 / wall;
  assert.ok(share < 0.5, `sender used ${(share * 100).toFixed(0)} % of a core`);
});

test('openLoop sends close to the scheduled time, not whole timer ticks late', async () => {
  const lag = [];
  await openLoop({ rate: 500, durationMs: 1000, send: async (_, at) => lag.push(performance.now() - at) });
  lag.sort((a, b) => a - b);
  assert.ok(lag[0] >= 0, 'never early');
  // Timers alone would send ~0.6 ms late at the median (1 ms ticks); the clock thread, well under that.
  const p50 = lag[lag.length >> 1];
  assert.ok(p50 < 0.5, `median lag ${p50.toFixed(3)} ms`);
});

test('openLoop schedules by the clock: slow sends do not delay later ones', async () => {
  const scheduled = [];
  const sentAt = [];
  const t = performance.now();
  const { total, errors } = await openLoop({
    rate: 200,
    durationMs: 250,
    send: async (i, at) => {
      scheduled[i] = at;
      sentAt[i] = performance.now();
      await sleep(100); // a slow system
    },
  });
  const elapsed = performance.now() - t;
  assert.equal(total, 50);
  assert.equal(errors.length, 0);
  assert.equal(new Set(scheduled.map((_, i) => i)).size, 50);
  for (let i = 1; i < 50; i++) assert.ok(Math.abs(scheduled[i] - scheduled[i - 1] - 5) < 1e-6, `interval ${i}`);
  // Closed-loop would take 50 × 100 ms; open-loop takes the duration plus one slow send.
  assert.ok(elapsed < 1000, `took ${elapsed} ms`);
  // Every send went out close to its scheduled time, the first ones too: the schedule starts once the clock's
  // thread runs (starting it took ~50 ms on a slow machine, and the first sends were that late).
  const lag = sentAt.map((s, i) => s - scheduled[i]);
  assert.ok(Math.max(...lag.slice(0, 5)) < 5, `first sends' lag ${lag.slice(0, 5).map((l) => l.toFixed(1))} ms`);
  assert.ok(Math.max(...lag) < 50, `max lag ${Math.max(...lag)} ms`);
});

test('openLoop collects send errors instead of stopping', async () => {
  const { total, errors } = await openLoop({
    rate: 1000,
    durationMs: 10,
    send: async (i) => {
      if (i % 2) throw new Error(`boom ${i}`);
    },
  });
  assert.equal(total, 10);
  assert.equal(errors.length, 5);
});

test('renderMarkdown shows medians with min–max, ratios and targets', () => {
  const r = (suite, system, run, result, variant) => ({ suite, system, run, variant, result: { ok: true, ...result } });
  const results = [
    r('throughput', 'tsched-sqlite', 1, { submitsPerSec: 10_000, completionsPerSec: 12_000 }),
    r('throughput', 'tsched-sqlite', 2, { submitsPerSec: 20_000, completionsPerSec: 11_000 }),
    r('throughput', 'tsched-sqlite', 3, { submitsPerSec: 30_000, completionsPerSec: 13_000 }),
    r('throughput', 'bullmq', 1, { submitsPerSec: 10_000, completionsPerSec: 6_000 }),
    { suite: 'throughput', system: 'bullmq', run: 2, result: { ok: false, error: 'Error: boom\n  at x' } },
    r('exec', 'raw', 1, { perSec: 1000 }),
    r('exec', 'tsched-sqlite', 1, { perSec: 950 }),
    r('latency', 'tsched-sqlite', 1, { p50: 2, p90: 3, p99: 40, max: 60 }, 100),
    r('latency', 'bullmq', 1, { p50: 4, p90: 8, p99: 20, max: 30 }, 100),
  ];
  const machine = {
    commit: 'abc',
    cores: 2,
    cpuModel: 'cpu',
    memoryGiB: 1,
    kernel: 'k',
    node: 'v20',
    redis: '7',
    redisAppendonly: 'no',
    redisAppendfsync: 'everysec',
    redisSave: '',
    postgres: '15',
    pgSynchronousCommit: 'on',
    pgFsync: 'on',
    packages: { bullmq: '6' },
    loadAvg: [1, 1, 1],
  };
  const md = renderMarkdown({
    results,
    machine,
    machineEnd: machine,
    options: {
      argv: ['--quick'],
      runs: 3,
      n: 20_000,
      concurrency: 50,
      execN: 100,
      processes: 2,
      inflight: 50,
      rates: [100],
      durationSec: 5,
    },
    labels: { 'tsched-sqlite': 'tsched (SQLite)', bullmq: 'BullMQ', raw: 'raw spawn (limit)' },
    backends: { 'tsched-sqlite': 'SQLite', bullmq: 'Redis', raw: '—' },
    systems: ['raw', 'tsched-sqlite', 'bullmq'],
    startedAt: 's',
    finishedAt: 'f',
  });
  assert.match(md, /\| tsched \(SQLite\) \| SQLite \| 20,000 \(10,000–30,000\) \| 12,000 \(11,000–13,000\) \| 3 \|/);
  assert.match(md, /\| BullMQ \| Redis \| 10,000 \| 6,000 \| 1 of 2 \|/);
  assert.match(md, /\| tsched \(SQLite\) completions\/s \| 2\.00 \|/);
  assert.match(md, /\| tsched \(SQLite\) \| 950 \| 95% \| 1 \|/);
  assert.match(md, /\| tsched \(SQLite\) p50 \| 0\.50 \|/);
  assert.match(md, /\| tsched \(SQLite\) ≥ 10,000 completions\/s \| 12,000 \| yes \|/);
  assert.match(md, /\| tsched \(SQLite\) p99 ≤ 50 ms at 100\/s \| 40\.0 \| yes \|/);
  assert.match(md, /- throughput, BullMQ, run 2: Error: boom/);
  assert.match(md, /\| redis \| 7 \(appendonly=no, no snapshots: keeps nothing on disk\) \|/);
});

test('run.mjs: a bad command line names what is wrong, prints the usage and exits 2 before running anything', async () => {
  const { spawnSync } = await import('node:child_process');
  const run = new URL('../run.mjs', import.meta.url).pathname;
  const cases = [
    [['--bogus'], /Unknown option '--bogus'/],
    [['--duration', '-1'], /--duration' argument is ambiguous/],
    [['--runs'], /--runs <value>' argument missing/],
    [['throughput'], /Unexpected argument 'throughput'/],
  ];
  for (const [args, message] of cases) {
    const res = spawnSync(process.execPath, [run, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(res.status, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, message);
    assert.match(res.stderr, /\n\nUsage: node bench\/run\.mjs \[options\]/);
    assert.doesNotMatch(res.stderr, /at parseArgs/, 'no stack trace');
    assert.equal(res.stdout, '');
  }
  // Values are checked as well, each naming its flag.
  const zero = spawnSync(process.execPath, [run, '--runs', '0'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(zero.status, 2);
  assert.match(zero.stderr, /--runs: expected an integer ≥ 1, got "0"/);
});
