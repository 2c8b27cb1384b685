// tsched as a benchmarked system: the control plane runs in a child process (servers/tsched-server.mjs),
// on SQLite (embedded, a fresh data dir per run) or on PostgreSQL (a cluster replica, a fresh schema per
// run); both commit durably (SQLite synchronous=FULL in WAL mode, PostgreSQL synchronous_commit as the
// server has it, on by default). Simulated workers (lib/sim-worker.mjs) drain the control-plane suites in
// this process; the real-execution suite starts two real worker agents (servers/tsched-worker.mjs).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { PG_URL, resetSchema, SCHEMAS } from './env.mjs';
import { forkChild, killChild, waitFor } from './procs.mjs';
import { SimWorker, TASK_RESOURCES } from './sim-worker.mjs';
import { checkExactlyOnce } from './stats.mjs';
import { api, listAll } from './tsched-http.mjs';

const SERVER = fileURLToPath(new URL('../servers/tsched-server.mjs', import.meta.url));
const AGENT = fileURLToPath(new URL('../servers/tsched-worker.mjs', import.meta.url));

// Bench tasks are urgent enough never to be deferred to off-peak (slack under the 30 min deferral slack),
// run once (no retries hiding a failure), and take 1 core + 1 MiB so that a worker's size sets in-flight.
export const spec = (name, command = ['/bin/true']) => ({
  name,
  command,
  resources: TASK_RESOURCES,
  delayTolerance: '10m',
  totalAttempts: 1,
});

export function makeTsched(mode) {
  let server = null;
  let dir = null;
  const sys = {
    name: mode === 'sqlite' ? 'tsched-sqlite' : 'tsched-pg',
    label: mode === 'sqlite' ? 'tsched (SQLite)' : 'tsched (PostgreSQL)',
    backend: mode === 'sqlite' ? 'SQLite' : 'PostgreSQL',
  };

  async function startServer() {
    let where;
    if (mode === 'sqlite') {
      dir = await mkdtemp(join(tmpdir(), 'tsched-bench-'));
      where = dir;
    } else {
      await resetSchema(SCHEMAS.tsched);
      where = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${SCHEMAS.tsched}`;
    }
    const child = forkChild(SERVER, [mode, where]);
    const ready = await waitFor(child, 'ready', 120_000);
    server = { child, url: ready.url, token: ready.token, workerToken: ready.workerToken };
    return server;
  }

  sys.cleanup = async () => {
    if (server) {
      server.child.send({ type: 'stop' });
      await waitFor(server.child, 'stopped', 15_000).catch(() => {});
      await killChild(server.child);
      server = null;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  };

  async function submitBulk(n, chunk, prefix) {
    const idToIndex = new Map();
    for (let from = 0; from < n; from += chunk) {
      const tasks = [];
      for (let i = from; i < Math.min(n, from + chunk); i++) tasks.push(spec(`${prefix}${i}`));
      const res = await api(server.url, server.token, 'POST', '/v1/tasks', { tasks });
      res.tasks.forEach((t, k) => {
        idToIndex.set(t.id, from + k);
      });
    }
    return idToIndex;
  }

  /** Read every task back: all n done, each after exactly one attempt, nothing else in the store. */
  async function verifyDone(idToIndex, n) {
    const all = await listAll(server.url, server.token);
    const notDone = all.filter((t) => t.status !== 'done');
    if (all.length !== n || notDone.length > 0)
      throw new Error(`${sys.name}: ${all.length} tasks in the store, ${notDone.length} not done (first: ${JSON.stringify(notDone[0])})`);
    const counts = new Map();
    for (const t of all) {
      const i = idToIndex.get(t.id);
      counts.set(i, (counts.get(i) ?? 0) + t.attempts);
    }
    checkExactlyOnce(
      counts,
      Array.from({ length: n }, (_, i) => i),
      `${sys.name} (store read-back)`,
    );
    return all;
  }

  function fleet(size, slots, onAssign) {
    return Array.from(
      { length: size },
      (_, k) => new SimWorker({ url: server.url, workerToken: server.workerToken, name: `sim-${k}`, slots, onAssign }),
    );
  }

  sys.throughput = async ({ n, concurrency, chunk, onComplete, fleetSize = 1 }) => {
    await startServer();
    const t0 = performance.now();
    const idToIndex = await submitBulk(n, chunk, 't');
    const submitSec = (performance.now() - t0) / 1000;

    const slots = Math.floor(concurrency / fleetSize);
    if (slots * fleetSize !== concurrency) throw new Error(`fleet: ${fleetSize} workers cannot split ${concurrency} slots evenly`);
    let acked = 0;
    let finish;
    const all = new Promise((r) => {
      finish = r;
    });
    const workers = fleet(fleetSize, slots, (a) => onComplete(idToIndex.get(a.taskId)));
    for (const w of workers) {
      w.onReported = () => {
        acked = workers.reduce((s, x) => s + x.acked, 0);
        if (acked >= n) finish();
      };
    }
    const t1 = performance.now();
    await Promise.all(workers.map((w) => w.register()));
    const loops = workers.map((w) => w.run());
    await Promise.race([all, Promise.all(loops)]);
    const drainSec = (performance.now() - t1) / 1000;
    for (const w of workers) w.stop();
    await Promise.all(loops);
    const refused = workers.flatMap((w) => w.refused);
    if (refused.length) throw new Error(`${sys.name}: ${refused.length} results refused, first ${JSON.stringify(refused[0])}`);
    await verifyDone(idToIndex, n);
    return { submitSec, drainSec, extra: { fleet: `${fleetSize}×${slots}` } };
  };

  sys.latencyHarness = async ({ concurrency, onStart, fleetSize = 1 }) => {
    await startServer();
    const slots = Math.floor(concurrency / fleetSize);
    const workers = fleet(fleetSize, slots, (a) => onStart(Number(a.name.slice(1))));
    await Promise.all(workers.map((w) => w.register()));
    const loops = workers.map((w) => w.run());
    return {
      send: (i) => api(server.url, server.token, 'POST', '/v1/tasks', spec(`l${i}`)),
      close: async () => {
        for (const w of workers) w.stop();
        await Promise.all(loops);
      },
    };
  };

  sys.exec = async ({ n, inflight, processes, chunk }) => {
    await startServer();
    const idToIndex = await submitBulk(n, chunk, 'x');
    const agents = Array.from({ length: processes }, () => forkChild(AGENT));
    const dirs = [];
    try {
      await Promise.all(agents.map((c) => waitFor(c, 'ready')));
      for (let k = 0; k < processes; k++) dirs.push(await mkdtemp(join(tmpdir(), 'tsched-bench-agent-')));
      const t0 = Date.now(); // the epoch clock the server stamps finishedAt with (same machine)
      const started = agents.map((c) => waitFor(c, 'started'));
      agents.forEach((c, k) => {
        c.send({
          type: 'go',
          options: {
            server: server.url,
            token: server.workerToken,
            name: `agent-${k}`,
            cpus: inflight,
            memory: inflight * 64 * 1024 * 1024,
            ports: null,
            executors: ['shell'],
            workDir: dirs[k],
          },
        });
      });
      await Promise.all(started);
      // Done when nothing is waiting or running. The clock stops at the last task's finishedAt (the
      // server's time when it recorded that result), so the check can be rare: the peers' harnesses put no
      // load on their queue while it drains, and a list query every 20 ms cost the server ~3 % of its CPU.
      for (;;) {
        const page = await api(server.url, server.token, 'GET', '/v1/tasks?status=waiting,in_progress&limit=1');
        if (page.tasks.length === 0) break;
        await sleep(250);
      }
      const all = await verifyDone(idToIndex, n);
      const sec = (all.reduce((m, t) => Math.max(m, t.finishedAt), 0) - t0) / 1000;
      return { n, sec, perSec: n / sec };
    } finally {
      for (const c of agents) if (c.connected) c.send({ type: 'stop' });
      await Promise.all(agents.map((c) => waitFor(c, 'stopped', 15_000).catch(() => {})));
      await Promise.all(agents.map((c) => killChild(c)));
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    }
  };

  return sys;
}
