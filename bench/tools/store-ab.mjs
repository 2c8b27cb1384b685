// The store's share of a drain cycle, A against B in one process: two builds (their dist/) each get an
// embedded SQLite store with one worker of S slots and a queue of tasks, and run the cycle a simulated
// worker causes (a scheduling pass that places S tasks, then one report of their results), in alternating
// blocks of 10 cycles, so that both see the machine at the same moments. On a machine whose speed moves by a
// third within minutes, the bench's drains cannot show a change of a few per cent; this can. Prints the
// median pass, report and cycle (both transactions with their COMMITs), ms, after the first 20 cycles.
//   node bench/tools/store-ab.mjs --a DIR --b DIR [--cycles N] [--slots S]
// DIR is a checkout with a build (npm run build), e.g. a git worktree of the commit to compare against.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { toolArgs } from '../lib/tool-args.mjs';

const USAGE = 'usage: node bench/tools/store-ab.mjs --a DIR --b DIR [--cycles N] [--slots S]\n';
const BLOCK = 10;
const WARMUP = 20;

/** A build's store on a fresh SQLite file, a worker of `slots` one-core slots and `n` waiting tasks (urgent
 * enough, at 10 min of delay tolerance, never to be deferred to off-peak). */
async function setUp(root, slots, n) {
  const load = (p) => import(pathToFileURL(join(root, 'dist', p)).href);
  const [{ createSqliteStore }, { plan }, { normalizeTask }] = await Promise.all([
    load('store/index.js'),
    load('scheduler/index.js'),
    load('domain/task-spec.js'),
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'tsched-store-ab-'));
  const store = createSqliteStore({ path: join(dir, 'tsched.db') });
  await store.migrate();
  const now = Date.now();
  const { worker } = await store.registerWorker(
    {
      name: 'ab',
      capacity: { cpus: slots * 1000, memory: slots * 1024 * 1024, ports: null },
      labels: {},
      executors: ['shell'],
      enforcement: { memory: 'none', cpu: 'none' },
      version: 'ab',
      hostname: 'ab',
    },
    now,
  );
  for (let from = 0; from < n; from += 1000) {
    const tasks = Array.from({ length: Math.min(1000, n - from) }, (_, i) =>
      normalizeTask({
        name: `t${from + i}`,
        command: ['/bin/true'],
        resources: { cpus: 1, memory: '1Mi' },
        delayTolerance: '10m',
        totalAttempts: 1,
      }),
    );
    await store.submitTasks('ab', tasks, { now, actor: 'ab' });
  }
  return { root, store, plan, worker, dir, times: [] };
}

/** One cycle: a pass that must place `slots` tasks, then the report of their results. */
async function cycle(sys, slots) {
  const now = Date.now();
  const t0 = performance.now();
  const res = await sys.store.schedulePass(
    { limit: 64, urgentBefore: now + 60_000 },
    (snapshot) => sys.plan(snapshot, now, { explain: false }).placements,
    { now, leaseMs: 30_000, epoch: null, actor: 'scheduler' },
  );
  const t1 = performance.now();
  if (res.runs.length !== slots) throw new Error(`${sys.root}: a pass placed ${res.runs.length} of ${slots}`);
  const results = res.runs.map((r) => ({
    runId: r.id,
    token: r.leaseToken,
    outcome: 'succeeded',
    exitCode: 0,
    reason: null,
    startedAt: now,
    finishedAt: now,
    usage: { peakMemory: null, cpuSeconds: null },
  }));
  const report = await sys.store.workerReport(
    sys.worker.id,
    { started: [], logs: [], results, running: [], delivered: res.runs.map((r) => r.id) },
    Date.now(),
    { leaseMs: 30_000, maxLogBytesPerRun: 1 << 20 },
  );
  if (report.results.acks.some((a) => !a.ok)) throw new Error(`${sys.root}: a result was refused`);
  sys.times.push([t1 - t0, performance.now() - t1]);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const values = toolArgs(
  USAGE,
  { a: { type: 'string' }, b: { type: 'string' }, cycles: { type: 'string', default: '300' }, slots: { type: 'string', default: '50' } },
  ['cycles', 'slots'],
);
if (!values.a || !values.b) {
  process.stderr.write(`--a and --b: expected the two checkouts to compare\n${USAGE}`);
  process.exit(2);
}
for (const k of ['a', 'b']) {
  if (!existsSync(join(resolve(values[k]), 'dist', 'store', 'index.js'))) {
    process.stderr.write(`--${k} ${values[k]}: no build there (dist/store/index.js); run npm run build in that checkout\n${USAGE}`);
    process.exit(2);
  }
}
const { cycles, slots } = values;
if (cycles <= WARMUP) {
  process.stderr.write(`--cycles: expected more than the ${WARMUP} warm-up cycles\n${USAGE}`);
  process.exit(2);
}
const systems = [];
try {
  for (const root of [values.a, values.b]) systems.push(await setUp(resolve(root), slots, cycles * slots + 1000));
  for (let c = 0; c < cycles; c += BLOCK) {
    const order = (c / BLOCK) % 2 === 0 ? systems : [...systems].reverse();
    for (const sys of order) for (let i = 0; i < BLOCK && c + i < cycles; i++) await cycle(sys, slots);
  }
  for (const [k, sys] of systems.entries()) {
    const t = sys.times.slice(WARMUP);
    const fmt = (xs) => median(xs).toFixed(3);
    process.stdout.write(
      `${k === 0 ? 'A' : 'B'} ${sys.root}: pass ${fmt(t.map((x) => x[0]))} ms, report ${fmt(t.map((x) => x[1]))} ms, cycle ${fmt(t.map((x) => x[0] + x[1]))} ms (medians of ${t.length})\n`,
    );
  }
} finally {
  for (const sys of systems) {
    await sys.store.close();
    rmSync(sys.dir, { recursive: true, force: true });
  }
}
