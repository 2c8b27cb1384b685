// Tests of the diagnostics tools (bench/tools): the pure parts (the PostgreSQL trace's transactions and
// round trips, the CPU tool's process groups, the profile summary's file names), a small run of
// submit-cost against a real server and one of event-rows against SQLite and PostgreSQL.
// Run: node --test bench/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { groupOf } from '../tools/cpu-by-process.mjs';
import { roundTrips, transactions } from '../tools/pg-trace-report.mjs';
import { fileOf, inclusiveTimes, selfTimes, shortPath } from '../tools/profile-top.mjs';
import { parseSet } from '../tools/spawner-cgroups.mjs';

// [sent, answered, backend pid, text]
const traced = [
  [0.0, 0.2, 7, 'BEGIN'],
  [0.1, 0.8, 7, 'SELECT … FOR UPDATE'], // pipelined behind BEGIN
  [1.0, 2.0, 7, 'WITH w0 AS (UPDATE runs …'], // sent after the answers: a new trip
  [1.1, 2.1, 7, 'WITH d AS (UPDATE runs SET delivered …'], // behind it
  [2.5, 3.0, 7, 'INSERT INTO runs …'], // a new trip
  [2.6, 3.2, 7, 'COMMIT'], // behind it
  [0.5, 0.6, 9, 'SELECT 1'], // another connection, outside a transaction
  [4.0, 4.1, 7, 'BEGIN'],
  [4.05, 4.5, 7, 'ROLLBACK'], // behind BEGIN
];

test('transactions groups BEGIN…COMMIT/ROLLBACK per connection, in the order they began', () => {
  const txs = transactions(traced);
  assert.equal(txs.length, 2);
  assert.deepEqual(
    txs[0].map((e) => e[3]),
    ['BEGIN', 'SELECT … FOR UPDATE', 'WITH w0 AS (UPDATE runs …', 'WITH d AS (UPDATE runs SET delivered …', 'INSERT INTO runs …', 'COMMIT'],
  );
  assert.deepEqual(
    txs[1].map((e) => e[3]),
    ['BEGIN', 'ROLLBACK'],
  );
});

test('roundTrips counts a statement sent before the previous one was answered as the same trip', () => {
  const [tx, rolledBack] = transactions(traced);
  assert.equal(roundTrips(tx), 3);
  assert.equal(roundTrips(rolledBack), 1);
});

test('groupOf names the benchmark processes by role and leaves the tool itself out', () => {
  assert.equal(groupOf('node /r/bench/servers/tsched-server.mjs pg postgres://x'), 'tsched server');
  assert.equal(groupOf('node /r/bench/servers/tsched-worker.mjs'), 'tsched agents');
  assert.equal(groupOf('/r/dist/native/tsched-spawner'), 'spawner helpers (with the tasks they forked)');
  assert.equal(groupOf('postgres: postgres test 127.0.0.1(5432) idle'), 'postgres');
  assert.equal(groupOf('node bench/tools/cpu-by-process.mjs 8'), null);
  assert.match(groupOf('/usr/bin/something else'), /^other: /);
});

test('profile summary: self time per node, files folded to packages and dist', () => {
  const self = selfTimes({ samples: [1, 2, 1, 3], timeDeltas: [10, 20, 30, 40] });
  assert.deepEqual(
    [...self],
    [
      [1, 40],
      [2, 20],
      [3, 40],
    ],
  );
  assert.equal(fileOf('file:///r/node_modules/pg/lib/client.js', 'query'), 'npm:pg');
  assert.equal(fileOf('file:///r/node_modules/@scope/pkg/x.js', 'f'), 'npm:@scope/pkg');
  assert.equal(fileOf('file:///r/dist/store/backend.js', 'exec'), 'dist/store/backend.js');
  assert.equal(fileOf('node:net', 'writeGeneric'), 'node internals');
  assert.equal(fileOf('', '(garbage collector)'), '(garbage collector)');
  assert.equal(fileOf('', 'writev'), '(writev)');
  assert.equal(shortPath('file:///r/node_modules/fastify/lib/reply.js'), 'fastify/lib/reply.js');
});

// root(1) → main(2) → f(3) → f(4, recursion) ; main(2) → g(5). Samples at 10, 30, 60, 100 ms.
const profile = {
  nodes: [
    { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2] },
    { id: 2, callFrame: { functionName: 'main', url: 'file:///r/dist/a.js', lineNumber: 0 }, children: [3, 5] },
    { id: 3, callFrame: { functionName: 'f', url: 'file:///r/dist/a.js', lineNumber: 9 }, children: [4] },
    { id: 4, callFrame: { functionName: 'f', url: 'file:///r/dist/a.js', lineNumber: 9 }, children: [] },
    { id: 5, callFrame: { functionName: 'g', url: 'file:///r/dist/b.js', lineNumber: 4 }, children: [] },
  ],
  samples: [4, 3, 5, 2],
  timeDeltas: [10_000, 20_000, 30_000, 40_000],
};

test('profile summary: a window keeps the samples between --from and --to', () => {
  assert.deepEqual(
    [...selfTimes(profile, { from: 20, to: 60 })],
    [
      [3, 20_000],
      [5, 30_000],
    ],
  );
  assert.equal(
    [...selfTimes(profile, { from: 61 }).values()].reduce((a, b) => a + b, 0),
    40_000,
  );
});

test('profile summary: inclusive time counts a recursive function once per sample', () => {
  const incl = inclusiveTimes(profile);
  assert.equal(incl.get('main  dist/a.js:1'), 100_000);
  assert.equal(incl.get('f  dist/a.js:10'), 30_000); // the sample in f → f counts 10 ms, not 20
  assert.equal(incl.get('g  dist/b.js:5'), 30_000);
  assert.equal(incl.get('(root)'), 100_000);
  assert.equal(inclusiveTimes(profile, { to: 30 }).get('main  dist/a.js:1'), 30_000);
});

test('spawner-cgroups: a set is "none" or hierarchies that are mounted, each named when it is not', () => {
  const mounted = ['memory', 'cpu', 'cpuacct'];
  assert.deepEqual(parseSet('none', mounted), []);
  assert.deepEqual(parseSet('memory,cpu', mounted), ['memory', 'cpu']);
  assert.throws(() => parseSet('memory,blkio', mounted), /"blkio": expected one of memory, cpu, cpuacct/);
  assert.throws(() => parseSet(',', mounted), /expected "none" or comma-separated hierarchies/);
});

test('submit-cost runs a server and a simulated worker, and prints the server CPU per submit; bad arguments get the usage', async () => {
  const { spawnSync } = await import('node:child_process');
  const tool = new URL('../tools/submit-cost.mjs', import.meta.url).pathname;
  const ok = spawnSync(process.execPath, [tool, '--worker', '--n', '200', '--clients', '2'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(ok.status, 0, ok.stderr);
  const m = /\(with a worker\): (\d+) µs of server CPU per submit, (\d+) submits\/s/.exec(ok.stdout);
  assert.ok(m, ok.stdout);
  assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, ok.stdout);
  const bad = spawnSync(process.execPath, [tool, '--clients', '0'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--n and --clients: expected positive integers\nusage: node bench\/tools\/submit-cost\.mjs/);
});

test('store-ab runs the drain cycle of two builds in one process and prints both medians; bad arguments get the usage', async () => {
  const { spawnSync } = await import('node:child_process');
  const tool = new URL('../tools/store-ab.mjs', import.meta.url).pathname;
  const root = new URL('../..', import.meta.url).pathname;
  const ok = spawnSync(process.execPath, [tool, '--a', root, '--b', root, '--cycles', '30', '--slots', '5'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(ok.status, 0, ok.stderr);
  const line = /pass (\d+\.\d+) ms, report (\d+\.\d+) ms, cycle (\d+\.\d+) ms \(medians of 10\)/;
  for (const k of ['A', 'B']) {
    const m = new RegExp(`^${k} .*: ${line.source}$`, 'm').exec(ok.stdout);
    assert.ok(m, ok.stdout);
    assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0 && Number(m[3]) >= Number(m[1]), ok.stdout);
  }
  const missing = spawnSync(process.execPath, [tool, '--a', root], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--a and --b: expected the two checkouts to compare\nusage: node bench\/tools\/store-ab\.mjs/);
  const unbuilt = spawnSync(process.execPath, [tool, '--a', root, '--b', '/nonexistent'], { encoding: 'utf8' });
  assert.equal(unbuilt.status, 2);
  assert.match(unbuilt.stderr, /--b \/nonexistent: no build there \(dist\/store\/index\.js\); run npm run build in that checkout\n/);
  const few = spawnSync(process.execPath, [tool, '--a', root, '--b', root, '--cycles', '20'], { encoding: 'utf8' });
  assert.equal(few.status, 2);
  assert.match(few.stderr, /--cycles: expected more than the 20 warm-up cycles/);
});

test('event-rows writes a few cycles both ways on SQLite and PostgreSQL and prints both medians; bad arguments get the usage', async () => {
  const { spawnSync } = await import('node:child_process');
  const tool = new URL('../tools/event-rows.mjs', import.meta.url).pathname;
  const ok = spawnSync(process.execPath, [tool, '--cycles', '20', '--tasks', '5'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(ok.status, 0, ok.stderr);
  const line = /one row per event (\d+\.\d+) ms, rows shared per task (\d+\.\d+) ms/;
  assert.match(ok.stdout, new RegExp(`SQLite, 5 tasks a cycle: ${line.source}`));
  if (ok.stdout.includes('PostgreSQL: not measured')) {
    const msg = '!!! bench/test/tools.test.mjs: PostgreSQL is not reachable: event-rows measured SQLite only !!!';
    if (process.env.CI === 'true') assert.fail(msg);
    console.warn(msg);
  } else assert.match(ok.stdout, new RegExp(`PostgreSQL, 5 tasks a cycle: ${line.source}`));
  const bad = spawnSync(process.execPath, [tool, '--tasks', 'x'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--cycles and --tasks: expected positive integers\nusage: node bench\/tools\/event-rows\.mjs/);
});
