// BullMQ on Redis, configured for throughput the way its docs recommend: addBulk for submission and one
// Worker with concurrency 50. Completed jobs are removed (removeOnComplete), as the docs advise for
// production; completion is observed through the Worker's `completed` event, which fires after the job
// was moved to completed in Redis.

import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';
import { flushRedis, REDIS } from '../lib/env.mjs';
import { runOnce } from '../lib/spawnpool.mjs';

const QUEUE = 'bench';
const connection = () => ({ ...REDIS });

export const name = 'bullmq';
export const label = 'BullMQ';
export const backend = 'Redis';

export async function reset() {
  await flushRedis();
}

async function submitBulk(queue, n, chunk) {
  for (let from = 0; from < n; from += chunk) {
    const jobs = [];
    for (let i = from; i < Math.min(n, from + chunk); i++)
      jobs.push({ name: 'noop', data: { i }, opts: { jobId: `j${i}`, removeOnComplete: true } });
    await queue.addBulk(jobs);
  }
}

function idOf(job) {
  return job.data.i;
}

/** Bulk submit, then drain with one Worker (concurrency c) whose handler does nothing. */
export async function throughput({ n, concurrency, chunk, onComplete }) {
  const queue = new Queue(QUEUE, { connection: connection() });
  await queue.waitUntilReady();
  const t0 = performance.now();
  await submitBulk(queue, n, chunk);
  const submitSec = (performance.now() - t0) / 1000;

  let done = 0;
  let finish;
  const all = new Promise((r) => {
    finish = r;
  });
  const worker = new Worker(QUEUE, async () => {}, { connection: connection(), concurrency, autorun: false });
  worker.on('completed', (job) => {
    onComplete(idOf(job));
    if (++done === n) finish();
  });
  await worker.waitUntilReady();
  const t1 = performance.now();
  worker.run();
  await all;
  const drainSec = (performance.now() - t1) / 1000;
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'paused', 'prioritized');
  await worker.close();
  await queue.close();
  const left = Object.values(counts).reduce((a, b) => a + b, 0);
  if (left !== 0) throw new Error(`bullmq: ${left} jobs left in the queue after the drain: ${JSON.stringify(counts)}`);
  return { submitSec, drainSec };
}

/** Open-loop single adds; `onStart(i)` is called when the handler begins. */
export async function latencyHarness({ concurrency, onStart }) {
  const queue = new Queue(QUEUE, { connection: connection() });
  await queue.waitUntilReady();
  const worker = new Worker(
    QUEUE,
    async (job) => {
      onStart(job.data.i);
    },
    { connection: connection(), concurrency },
  );
  await worker.waitUntilReady();
  return {
    send: (i) => queue.add('noop', { i }, { jobId: `l${i}`, removeOnComplete: true }),
    close: async () => {
      await worker.close();
      await queue.close();
    },
  };
}

/** Exec suite: submit n jobs (untimed). */
export async function execSubmit({ n, chunk }) {
  const queue = new Queue(QUEUE, { connection: connection() });
  await queue.waitUntilReady();
  await submitBulk(queue, n, chunk);
  await queue.close();
}

/** Exec suite, inside a worker process: a Worker whose handler spawns /bin/true. */
export async function execWorker({ inflight, onDone }) {
  const worker = new Worker(
    QUEUE,
    async () => {
      await runOnce('/bin/true');
    },
    { connection: connection(), concurrency: inflight, autorun: false },
  );
  worker.on('completed', (job) => onDone(idOf(job)));
  worker.on('failed', (job, err) => {
    throw new Error(`bullmq: job ${job?.id} failed: ${err.message}`);
  });
  await worker.waitUntilReady();
  return {
    go: () => {
      worker.run();
    },
    close: () => worker.close(),
  };
}

/** After the exec drain: nothing may be left waiting, active or failed. */
export async function execVerify() {
  const queue = new Queue(QUEUE, { connection: connection() });
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'paused', 'prioritized');
  await queue.close();
  const left = Object.values(counts).reduce((a, b) => a + b, 0);
  if (left !== 0) throw new Error(`bullmq: ${left} jobs left in the queue after the drain: ${JSON.stringify(counts)}`);
}
