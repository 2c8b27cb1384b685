// Server CPU per single-task submit: an embedded (SQLite) tsched server in its own process, C clients each
// submitting one task at a time in a closed loop, and with --worker a simulated worker (bench/lib/sim-worker)
// that takes and completes every task, so that each submit's pass, delivery and report are paid as well.
// CPU is the server process's user + system time from /proc over the measured submits (after a warm-up).
// --root DIR runs another checkout's build (A/B against a git worktree, alternating runs).
//   node bench/tools/submit-cost.mjs [--worker] [--n N] [--clients C] [--root DIR]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { forkChild, killChild, waitFor } from '../lib/procs.mjs';
import { SimWorker } from '../lib/sim-worker.mjs';
import { toolArgs } from '../lib/tool-args.mjs';
import { api } from '../lib/tsched-http.mjs';
import { spec } from '../lib/tsched-system.mjs';
import { statTicks, TICKS_PER_SECOND } from './cpu-by-process.mjs';

const USAGE = 'usage: node bench/tools/submit-cost.mjs [--worker] [--n N] [--clients C] [--root DIR]\n';
const values = toolArgs(
  USAGE,
  {
    worker: { type: 'boolean', default: false },
    n: { type: 'string', default: '6000' },
    clients: { type: 'string', default: '4' },
    root: { type: 'string' },
  },
  ['n', 'clients'],
);
const { n, clients } = values;
const root = resolve(values.root ?? fileURLToPath(new URL('../..', import.meta.url)));

const cpuMs = (pid) => (statTicks(pid).own * 1000) / TICKS_PER_SECOND;

const dir = await mkdtemp(join(tmpdir(), 'tsched-submit-cost-'));
const server = forkChild(join(root, 'bench/servers/tsched-server.mjs'), ['sqlite', dir]);
let worker = null;
let loop = null;
try {
  const { url, token, workerToken } = await waitFor(server, 'ready', 60_000);
  if (values.worker) {
    worker = new SimWorker({ url, workerToken, name: 'sim', slots: 50, onAssign() {} });
    await worker.register();
    loop = worker.run().catch(() => {}); // its last poll may meet the server closing
  }
  const submitAll = async (from, count) => {
    let next = from;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < from + count) await api(url, token, 'POST', '/v1/tasks', spec(`s${next++}`));
      }),
    );
  };
  await submitAll(0, Math.min(2000, n)); // warm-up: the JIT, the caches
  const c0 = cpuMs(server.pid);
  const t0 = performance.now();
  await submitAll(1_000_000, n);
  const sec = (performance.now() - t0) / 1000;
  const us = ((cpuMs(server.pid) - c0) / n) * 1000;
  console.log(
    `${root}${values.worker ? ' (with a worker)' : ''}: ${us.toFixed(0)} µs of server CPU per submit, ${Math.round(n / sec)} submits/s`,
  );
} finally {
  worker?.stop();
  await loop;
  server.send({ type: 'stop' });
  await waitFor(server, 'stopped', 5_000).catch(() => {});
  await killChild(server);
  await rm(dir, { recursive: true, force: true });
}
