// graphile-worker on PostgreSQL, configured for throughput as its performance docs recommend:
// addJobs() for bulk insertion, concurrency 50 with a pool of concurrency + 2, a local queue so that one
// query locks a batch of jobs, and completeJobBatchDelay 0 so that completions are batched. New jobs are
// announced by LISTEN/NOTIFY; pollInterval is only the fallback. Completed jobs are deleted, so the drain
// ends when the job table is empty.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger, makeWorkerUtils, run, runMigrations } from 'graphile-worker';
import { PG_URL, resetSchema, SCHEMAS, withPg } from '../lib/env.mjs';
import { runOnce } from '../lib/spawnpool.mjs';

const SCHEMA = SCHEMAS.graphile;
const quiet = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

export const name = 'graphile';
export const label = 'graphile-worker';
export const backend = 'PostgreSQL';

export async function reset() {
  await resetSchema(SCHEMA);
  await runMigrations({ connectionString: PG_URL, schema: SCHEMA, logger: quiet });
}

function runnerOptions(concurrency, taskList) {
  return {
    connectionString: PG_URL,
    schema: SCHEMA,
    concurrency,
    maxPoolSize: Math.max(10, concurrency + 2),
    pollInterval: 1000,
    noHandleSignals: true,
    logger: quiet,
    taskList,
    preset: { worker: { localQueue: { size: concurrency * 2 }, completeJobBatchDelay: 0 } },
  };
}

async function submitBulk(n, chunk) {
  const utils = await makeWorkerUtils({ connectionString: PG_URL, schema: SCHEMA, logger: quiet });
  try {
    for (let from = 0; from < n; from += chunk) {
      const specs = [];
      for (let i = from; i < Math.min(n, from + chunk); i++) specs.push({ identifier: 'noop', payload: { i }, maxAttempts: 1 });
      await utils.addJobs(specs);
    }
  } finally {
    await utils.release();
  }
}

async function jobsLeft() {
  return withPg(async (c) => (await c.query(`SELECT count(*)::int AS n FROM ${SCHEMA}._private_jobs`)).rows[0].n);
}

async function waitEmpty(timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await jobsLeft();
    if (left === 0) return;
    if (Date.now() > deadline) throw new Error(`graphile: ${left} jobs left in the table after the drain`);
    await sleep(10);
  }
}

export async function throughput({ n, concurrency, chunk, onComplete }) {
  const t0 = performance.now();
  await submitBulk(n, chunk);
  const submitSec = (performance.now() - t0) / 1000;

  let handled = 0;
  let allHandled;
  const handledAll = new Promise((r) => {
    allHandled = r;
  });
  const t1 = performance.now();
  const runner = await run(
    runnerOptions(concurrency, {
      noop: async (payload) => {
        onComplete(payload.i);
        if (++handled === n) allHandled();
      },
    }),
  );
  await handledAll;
  await waitEmpty();
  const drainSec = (performance.now() - t1) / 1000;
  await runner.stop();
  return { submitSec, drainSec };
}

export async function latencyHarness({ concurrency, onStart }) {
  const runner = await run(
    runnerOptions(concurrency, {
      noop: async (payload) => {
        onStart(payload.i);
      },
    }),
  );
  const utils = await makeWorkerUtils({ connectionString: PG_URL, schema: SCHEMA, logger: quiet });
  return {
    send: (i) => utils.addJob('noop', { i }, { maxAttempts: 1 }),
    close: async () => {
      await utils.release();
      await runner.stop();
    },
  };
}

export async function execSubmit({ n, chunk }) {
  await submitBulk(n, chunk);
}

export async function execWorker({ inflight, onDone }) {
  let runner = null;
  return {
    go: async () => {
      runner = await run(
        runnerOptions(inflight, {
          noop: async (payload) => {
            await runOnce('/bin/true');
            onDone(payload.i);
          },
        }),
      );
    },
    close: async () => {
      if (runner) await runner.stop();
    },
  };
}

export async function execVerify() {
  await waitEmpty();
}
