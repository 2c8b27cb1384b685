// A network partition between a worker and the servers, with real processes: the worker's link goes through
// a TCP proxy the test controls, which black-holes it (nothing delivered, nothing refused) past the worker's
// lease. The run it held ends lost and its task runs again on another worker; when the link heals, the
// partitioned worker's late result (it finished the command meanwhile) is refused as stale and changes nothing.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, freshSchema, type Replica, startReplica, TcpProxy, WORKER_TOKEN } from './helpers/cluster.js';
import { api, startWorkerProc, type WorkerProcess, waitFor } from './helpers/processes.js';
import { PG_URL, postgresAvailable, requireService } from './helpers/services.js';

const enabled = requireService('PostgreSQL', await postgresAvailable());

describe.runIf(enabled)('cluster: a partitioned worker', () => {
  let db: Awaited<ReturnType<typeof freshSchema>>;
  const replicas: Replica[] = [];
  const workers: WorkerProcess[] = [];
  let proxy: TcpProxy;
  const scratch = mkdtempSync(join(tmpdir(), 'tsched-partition-'));

  beforeAll(async () => {
    db = await freshSchema(PG_URL);
    replicas.push(await startReplica(db.url, ['--lease', '3s']));
    replicas.push(await startReplica(db.url, ['--lease', '3s']));
    proxy = new TcpProxy(() => replicas.map((r) => r.port));
    await proxy.listen();
  }, 60_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    await proxy?.close();
    await db?.drop();
  });

  it('runs the task again elsewhere and refuses the stale result when the worker returns', async () => {
    const call = api(replicas[1]!.url, ADMIN);
    const a = await startWorkerProc(
      { url: proxy.url, workerToken: WORKER_TOKEN },
      { name: 'pa', args: ['--cpus', '1', '--memory', '256MiB'] },
    );
    workers.push(a);
    const marks = join(scratch, 'marks');
    const r = await call('POST', '/v1/tasks', {
      command: ['sh', '-c', `sleep 2; echo "$TSCHED_RUN_ID" >> ${marks}`],
      resources: { cpus: 1, memory: '64Mi' },
      totalAttempts: 3,
    });
    expect(r.status, r.text).toBe(201);
    const id = r.json.task.id as number;
    const show = async () => (await call('GET', `/v1/tasks/${id}`)).json;
    const first = await waitFor('the run on pa', async () => {
      const s = await show();
      return s.runs[0]?.state === 'running' ? s.runs[0] : null;
    });
    expect(first.workerName).toBe('pa');

    proxy.cut();
    const cutAt = Date.now();
    // Another worker joins; it gets the retry once pa's lease expires.
    const b = await startWorkerProc(
      { url: replicas[0]!.url, workerToken: WORKER_TOKEN },
      { name: 'pb', args: ['--cpus', '1', '--memory', '256MiB'] },
    );
    workers.push(b);
    const done = await waitFor(
      'the task to finish on pb',
      async () => {
        const s = await show();
        return s.task.status === 'done' ? s : null;
      },
      30_000,
    );
    const lostAfter = Date.now() - cutAt;
    const byId = new Map(done.runs.map((x: { id: number }) => [x.id, x]));
    expect(byId.get(first.id)).toMatchObject({ outcome: 'lost', workerName: 'pa' });
    const second = done.runs.find((x: { id: number }) => x.id !== first.id);
    expect(second).toMatchObject({ outcome: 'succeeded', workerName: 'pb', attempt: 2 });
    expect((await db.pg.query(`SELECT state FROM "${db.schema}".workers WHERE name = 'pa'`)).rows[0].state).toBe('lost');

    // pa ran its command to the end behind the partition, so it holds a result to report.
    await waitFor('pa to finish its command', async () => readFileSync(marks, 'utf8').split('\n').includes(String(first.id)), 10_000);
    const before = (await db.pg.query(`SELECT * FROM "${db.schema}".runs WHERE id = $1`, [first.id])).rows[0];

    proxy.record = true;
    proxy.heal();
    const healAt = Date.now();
    // pa reaches the servers again: its stale result goes up and is refused.
    await waitFor(
      'the stale result to be refused',
      async () => /"results":\[[^\]]*"outcome":"succeeded"/.test(proxy.seen.up) && /LEASE_STALE/.test(proxy.seen.down),
      30_000,
    );
    const up = proxy.seen.up.slice(proxy.seen.up.indexOf('"results"'));
    expect(up).toContain(`"runId":${first.id}`);
    await waitFor(
      'pa to be active again',
      async () =>
        (await db.pg.query(`SELECT state, last_seen_at FROM "${db.schema}".workers WHERE name = 'pa'`)).rows[0].state === 'active',
      15_000,
    );
    // Nothing changed: the lost attempt stays lost, the task stays done with one success.
    const after = (await db.pg.query(`SELECT * FROM "${db.schema}".runs WHERE id = $1`, [first.id])).rows[0];
    expect(after).toEqual(before);
    const s = await show();
    expect(s.task.status).toBe('done');
    expect(s.task.attempts).toBe(2);
    expect(s.runs.filter((x: { outcome: string }) => x.outcome === 'succeeded')).toHaveLength(1);
    const events = (await call('GET', `/v1/tasks/${id}/events`)).json;
    const evs = (events.events ?? events) as Array<{ runId: number | null; type: string }>;
    expect(evs.filter((e) => e.runId === first.id).map((e) => e.type)).not.toContain('run.succeeded');
    console.log(
      `[cluster-partition] run ${first.id} on pa lost and retried on pb within ${lostAfter} ms of the cut (lease 3 s); pa's late result refused (LEASE_STALE) ${Date.now() - healAt} ms after healing`,
    );
  }, 120_000);
});
