// pg-boss on PostgreSQL, configured for throughput as its docs recommend: insert() in bulk, and work()
// with batchSize so that one fetch takes a batch of jobs (here the in-flight limit, 50). pg-boss 10 polls:
// after each fetch its loop sleeps until pollingIntervalSeconds (minimum 0.5 s) has passed, even when the
// batch was full. The documented notifyWorker(id) bypasses that sleep "for this iteration"; the handler
// calls it whenever its batch was non-empty, so a busy queue is fetched back to back and an idle one is
// polled every 0.5 s. Completion is pg-boss's own: it completes the batch after the handler resolves,
// without waiting, so the drain ends when the job table says every job is completed.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import PgBoss from 'pg-boss';
import { PG_URL, resetSchema, SCHEMAS, withPg } from '../lib/env.mjs';
import { runOnce } from '../lib/spawnpool.mjs';

const QUEUE = 'bench';
const SCHEMA = SCHEMAS.pgboss;
const POLL_SECONDS = 0.5; // pg-boss's minimum

export const name = 'pgboss';
export const label = 'pg-boss';
export const backend = 'PostgreSQL';

export async function reset() {
  await resetSchema(SCHEMA);
}

async function startBoss(max = 10) {
  const boss = new PgBoss({ connectionString: PG_URL, schema: SCHEMA, max, schedule: false });
  boss.on('error', (err) => {
    process.stderr.write(`pg-boss error: ${err.message}\n`);
  });
  await boss.start();
  await boss.createQueue(QUEUE);
  return boss;
}

async function submitBulk(boss, n, chunk) {
  for (let from = 0; from < n; from += chunk) {
    const jobs = [];
    for (let i = from; i < Math.min(n, from + chunk); i++) jobs.push({ name: QUEUE, data: { i } });
    await boss.insert(jobs);
  }
}

async function countCompleted() {
  return withPg(async (c) => {
    const r = await c.query(`SELECT state, count(*)::int AS n FROM ${SCHEMA}.job WHERE name = $1 GROUP BY state`, [QUEUE]);
    return Object.fromEntries(r.rows.map((row) => [row.state, row.n]));
  });
}

/** Wait until pg-boss's table holds n completed jobs and nothing else; throws after timeoutMs. */
async function waitCompleted(n, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await countCompleted();
    const total = Object.values(states).reduce((a, b) => a + b, 0);
    if ((states.completed ?? 0) === n && total === n) return;
    if (Date.now() > deadline) throw new Error(`pgboss: expected ${n} completed jobs, table holds ${JSON.stringify(states)}`);
    await sleep(10);
  }
}

function work(boss, batchSize, handler) {
  let id = null;
  const ready = boss.work(QUEUE, { batchSize, pollingIntervalSeconds: POLL_SECONDS }, async (jobs) => {
    await handler(jobs);
    if (jobs.length > 0 && id) boss.notifyWorker(id);
  });
  return ready.then((workerId) => {
    id = workerId;
    return workerId;
  });
}

export async function throughput({ n, concurrency, chunk, onComplete }) {
  const boss = await startBoss(concurrency + 2);
  const t0 = performance.now();
  await submitBulk(boss, n, chunk);
  const submitSec = (performance.now() - t0) / 1000;

  let handled = 0;
  let allHandled;
  const handledAll = new Promise((r) => {
    allHandled = r;
  });
  const t1 = performance.now();
  await work(boss, concurrency, async (jobs) => {
    for (const job of jobs) onComplete(job.data.i);
    handled += jobs.length;
    if (handled >= n) allHandled();
  });
  await handledAll;
  await waitCompleted(n);
  const drainSec = (performance.now() - t1) / 1000;
  await boss.stop({ graceful: true, wait: true, close: true });
  return { submitSec, drainSec };
}

export async function latencyHarness({ concurrency, onStart }) {
  const boss = await startBoss(concurrency + 2);
  await work(boss, concurrency, async (jobs) => {
    for (const job of jobs) onStart(job.data.i);
  });
  return {
    send: (i) => boss.send(QUEUE, { i }),
    close: () => boss.stop({ graceful: true, wait: true, close: true }),
  };
}

export async function execSubmit({ n, chunk }) {
  const boss = await startBoss();
  await submitBulk(boss, n, chunk);
  await boss.stop({ graceful: true, wait: true, close: true });
}

export async function execWorker({ inflight, onDone }) {
  const boss = await startBoss(inflight + 2);
  return {
    go: () =>
      work(boss, inflight, async (jobs) => {
        await Promise.all(
          jobs.map(async (job) => {
            await runOnce('/bin/true');
            onDone(job.data.i);
          }),
        );
      }),
    close: () => boss.stop({ graceful: true, wait: true, close: true }),
  };
}

/** After the exec drain: pg-boss completes asynchronously, so wait for its table to agree. */
export async function execVerify({ n }) {
  await waitCompleted(n);
}
