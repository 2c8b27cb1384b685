// Wake-ups between replicas, with real `tsched server` processes on one PostgreSQL: a worker whose long
// poll is parked on a follower hears of runs the leader placed at once (a NOTIFY), and a worker parked on
// the leader gets its runs by mail there, with no NOTIFY about it (one less wake-up on every replica).

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelFor } from '../src/server/pg-bus.js';
import { ADMIN, freshSchema, health, type Replica, startReplica, WORKER_TOKEN } from './helpers/cluster.js';
import { api } from './helpers/processes.js';
import { PG_URL, postgresAvailable, requireService } from './helpers/services.js';

const enabled = requireService('PostgreSQL', await postgresAvailable());
const MiB = 1024 * 1024;

describe.runIf(enabled)('cluster wake-ups: 2 replicas', () => {
  let db: Awaited<ReturnType<typeof freshSchema>>;
  const replicas: Replica[] = [];
  let leader: Replica;
  let follower: Replica;
  let listener: pg.Client;
  /** The bus's NOTIFY payloads, as sent. */
  const heard: string[] = [];

  beforeAll(async () => {
    db = await freshSchema(PG_URL);
    replicas.push(await startReplica(db.url));
    replicas.push(await startReplica(db.url));
    for (let i = 0; i < 100 && !leader; i++) {
      for (const r of replicas) if ((await health(r.url))?.leader) leader = r;
      if (!leader) await new Promise((r) => setTimeout(r, 100));
    }
    follower = replicas.find((r) => r !== leader)!;
    listener = new pg.Client({ connectionString: PG_URL });
    await listener.connect();
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query(`LISTEN "${channelFor(db.schema)}"`);
  }, 60_000);

  afterAll(async () => {
    await listener?.end().catch(() => {});
    for (const r of replicas) await r.kill('SIGTERM').catch(() => {});
    await db?.drop();
  });

  const register = async (via: Replica, name: string) => {
    const res = await api(via.url, WORKER_TOKEN)('POST', '/v1/workers/register', {
      name,
      capacity: { cpus: 2000, memory: 256 * MiB, ports: null },
      executors: ['shell'],
    });
    expect(res.status).toBe(200);
    return res.json.worker.id as string;
  };
  const submit = async (name: string) => {
    const res = await api(leader.url, ADMIN)('POST', '/v1/tasks', { name, command: ['/bin/true'], resources: { cpus: 1, memory: '32Mi' } });
    expect(res.status).toBe(201);
    return res.json.task.id as number;
  };
  /** A long poll parked on `via`, started before the submit: its answer and when it came. */
  const parkedPoll = (via: Replica, worker: string) => {
    const sent = Date.now();
    return api(via.url, WORKER_TOKEN)('POST', `/v1/workers/${worker}/poll`, { max: 2, wait: 5000 }).then((res) => ({
      taskIds: (res.json.assignments as Array<{ taskId: number }>).map((a) => a.taskId),
      ms: Date.now() - sent,
    }));
  };

  it('a worker parked on a follower hears of the run the leader placed for it at once', async () => {
    const w = await register(follower, 'on-follower');
    const poll = parkedPoll(follower, w);
    await new Promise((r) => setTimeout(r, 300)); // parked
    const id = await submit('for-follower');
    const got = await poll;
    expect(got.taskIds).toEqual([id]);
    // The poll's wait is 5 s; without the NOTIFY it would end empty or with the task much later.
    expect(got.ms).toBeLessThan(2000);
    expect(heard.some((p) => p.includes(w))).toBe(true);
    // Its runs fill the worker: the next task goes to the next worker.
    await submit('fill');
  });

  it('a worker parked on the leader gets its run by mail there, and no replica is told about it', async () => {
    const w = await register(leader, 'on-leader');
    const poll = parkedPoll(leader, w);
    await new Promise((r) => setTimeout(r, 300));
    const before = heard.length;
    const id = await submit('for-leader');
    const got = await poll;
    expect(got.taskIds).toEqual([id]);
    await new Promise((r) => setTimeout(r, 300)); // any NOTIFY would have arrived by now
    expect(heard.slice(before).filter((p) => p.includes(w))).toEqual([]);
  });
});
