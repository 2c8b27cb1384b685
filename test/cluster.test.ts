// Cluster mode with real processes on loopback: three `tsched server` replicas on one PostgreSQL, four
// `tsched worker` processes of different capacities spread over them (each through a TCP proxy that prefers
// "its" replica and fails over to the others, as a load balancer would), 2,000 short tasks of mixed sizes,
// and the scheduling leader killed with SIGKILL twice during the run. Every task must finish, no attempt may
// succeed twice, and the run history read straight from PostgreSQL must never show a worker allocated past
// its capacity. Then the leader is killed a few more times to measure failover.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN,
  checkHistory,
  freshSchema,
  health,
  percentile,
  type Replica,
  startReplica,
  TcpProxy,
  WORKER_TOKEN,
} from './helpers/cluster.js';
import { api, startWorkerProc, type WorkerProcess, waitFor } from './helpers/processes.js';
import { PG_URL, postgresAvailable, requireService } from './helpers/services.js';

const enabled = requireService('PostgreSQL', await postgresAvailable());
const SERVER_ARGS = ['--lease', '6s', '--leader-ttl', '3s'];

describe.runIf(enabled)('cluster: 3 replicas, 4 workers, leader killed twice', () => {
  let db: Awaited<ReturnType<typeof freshSchema>>;
  const replicas: Replica[] = [];
  const proxies: TcpProxy[] = [];
  const workers: WorkerProcess[] = [];
  const failovers: number[] = [];

  beforeAll(async () => {
    db = await freshSchema(PG_URL);
    // The first replica migrates alone; the others find the schema ready (they would queue on the lock).
    replicas.push(await startReplica(db.url, SERVER_ARGS));
    replicas.push(...(await Promise.all([startReplica(db.url, SERVER_ARGS), startReplica(db.url, SERVER_ARGS)])));
    const caps: Array<[string, string]> = [
      ['4', '1GiB'],
      ['2', '512MiB'],
      ['1', '512MiB'],
      ['3', '2GiB'],
    ];
    for (let i = 0; i < caps.length; i++) {
      // Worker i prefers replica i % 3 and fails over to the next ones.
      const p = new TcpProxy(() => [0, 1, 2].map((k) => replicas[(i + k) % 3]!.port));
      await p.listen();
      proxies.push(p);
    }
    workers.push(
      ...(await Promise.all(
        caps.map(([cpus, mem], i) =>
          startWorkerProc(
            { url: proxies[i]!.url, workerToken: WORKER_TOKEN },
            { name: `cw${i + 1}`, args: ['--cpus', cpus, '--memory', mem, '--kill-grace', '1s'] },
          ),
        ),
      )),
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    await Promise.all(proxies.map((p) => p.close()));
    await db?.drop();
  });

  async function leaderIndex(): Promise<number> {
    return waitFor(
      'a leader',
      async () => {
        const hs = await Promise.all(replicas.map((r) => health(r.url)));
        const i = hs.findIndex((h) => h?.leader);
        return i >= 0 ? i + 1 : null;
      },
      20_000,
      50,
    ).then((i) => i - 1);
  }

  /** SIGKILL the leader, measure until another replica leads, then start a fresh replica in its place. */
  async function killLeader(): Promise<number> {
    const i = await leaderIndex();
    const dead = replicas[i]!;
    const t0 = performance.now();
    await dead.kill('SIGKILL');
    const others = replicas.filter((_, k) => k !== i);
    await waitFor('a new leader', async () => (await Promise.all(others.map((r) => health(r.url)))).some((h) => h?.leader), 20_000, 25);
    const ms = performance.now() - t0;
    failovers.push(ms);
    replicas[i] = await startReplica(db.url, SERVER_ARGS); // the proxies pick up its new port
    return ms;
  }

  const count = async (status: string) =>
    Number((await db.pg.query(`SELECT COUNT(*) AS n FROM "${db.schema}".tasks WHERE status = $1`, [status])).rows[0].n);

  it('runs 2,000 tasks exactly once, within capacity, while the leader dies twice', async () => {
    const N = 2000;
    const cpus = [0.1, 0.25, 0.5, 1.5];
    const mems = ['16Mi', '64Mi', '128Mi', '256Mi'];
    const tasks = Array.from({ length: N }, (_, i) => ({
      name: `t${i}`,
      command: i % 3 === 0 ? ['true'] : ['sleep', `0.0${1 + (i % 5)}`],
      resources: { cpus: cpus[i % 4], memory: mems[(i >> 2) % 4] },
      totalAttempts: 5,
      executionCap: '1m',
    }));
    const t0 = Date.now();
    // Submitted in four batches, each to a different replica (followers and the leader alike).
    for (let b = 0; b < 4; b++) {
      const r = await api(replicas[b % 3]!.url, ADMIN)('POST', '/v1/tasks', { tasks: tasks.slice(b * 500, (b + 1) * 500) });
      expect(r.status, r.text).toBe(201);
    }
    await waitFor('a fifth done', async () => (await count('done')) >= N / 5, 90_000, 100);
    const f1 = await killLeader();
    await waitFor('over half done', async () => (await count('done')) >= N * 0.55, 90_000, 100);
    const f2 = await killLeader();
    await waitFor('all done', async () => (await count('done')) === N, 120_000, 200);
    const elapsed = Date.now() - t0;

    const statuses = (await db.pg.query(`SELECT status, COUNT(*)::int AS n FROM "${db.schema}".tasks GROUP BY status`)).rows;
    expect(statuses).toEqual([{ status: 'done', n: N }]);
    // Every done task has exactly one succeeded attempt, and no attempt is recorded twice.
    const succ = (
      await db.pg.query(
        `SELECT COUNT(DISTINCT task_id)::int AS tasks, COUNT(*)::int AS runs FROM "${db.schema}".runs WHERE outcome = 'succeeded'`,
      )
    ).rows[0];
    expect(succ).toEqual({ tasks: N, runs: N });
    const dupAttempts = (
      await db.pg.query(`SELECT task_id, attempt FROM "${db.schema}".runs GROUP BY task_id, attempt HAVING COUNT(*) > 1`)
    ).rows;
    expect(dupAttempts).toEqual([]);
    const h = await checkHistory(PG_URL, db.schema);
    expect(h.doubleSuccess).toEqual([]);
    expect(h.overcommits).toEqual([]);
    // The workload did load the workers (the check is not vacuous).
    for (const p of h.peaks) expect(p.cpus).toBeGreaterThan(0);
    const epoch = Number((await db.pg.query(`SELECT epoch FROM "${db.schema}".leader WHERE id = 'scheduler'`)).rows[0].epoch);
    expect(epoch).toBeGreaterThanOrEqual(3);
    const runs = (
      await db.pg.query(`SELECT COUNT(*)::int AS n, COUNT(*) FILTER (WHERE outcome = 'lost')::int AS lost FROM "${db.schema}".runs`)
    ).rows[0];
    console.log(
      `[cluster] ${N} tasks in ${(elapsed / 1000).toFixed(1)} s over 3 replicas and 4 workers; leader killed twice (failover ${Math.round(f1)} ms, ${Math.round(f2)} ms); ${runs.n} runs (${runs.lost} lost and retried); epoch ${epoch}; peak per worker: ${h.peaks.map((p) => `${p.worker} ${p.cpus}/${p.capCpus}m`).join(', ')}`,
    );
  }, 240_000);

  it('measures failover: a killed leader is replaced within the lease (target ≤ 5 s)', async () => {
    for (let k = 0; k < 3; k++) await killLeader();
    // Still schedules after all that: one more task runs.
    const call = api(replicas[0]!.url, ADMIN);
    const r = await call('POST', '/v1/tasks', { command: ['true'], resources: { cpus: 0.25, memory: '16Mi' } });
    expect(r.status).toBe(201);
    await waitFor('the last task', async () => (await call('GET', `/v1/tasks/${r.json.task.id}`)).json.task.status === 'done', 30_000);
    const p50 = percentile(failovers, 50);
    const max = Math.max(...failovers);
    console.log(
      `[cluster] failover over ${failovers.length} leader kills (lease 3 s, renew 1 s): p50 ${Math.round(p50)} ms, max ${Math.round(max)} ms (${failovers.map((x) => Math.round(x)).join(', ')})`,
    );
    expect(max).toBeLessThan(5000);
  }, 120_000);
});
