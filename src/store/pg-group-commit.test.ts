// Group commit on a real PostgreSQL: write transactions queued together share one transaction, and one that
// fails takes nothing of the others with it.

import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import { TschedError } from '../domain/errors.js';
import type { Task } from '../domain/task.js';
import { normalizeTask } from '../domain/task-spec.js';
import type { WorkerWithLoad } from '../domain/worker.js';
import { countStatements, type Exec, statementStats } from './backend.js';
import type { KyselyStore } from './kysely-store.js';
import { PgGroupCommit } from './pg-group-commit.js';
import { createPostgresStore } from './postgres.js';

const pgUp = requireService('PostgreSQL (group commit)', await postgresAvailable());

describe.runIf(pgUp)('PostgreSQL group commit', () => {
  const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
  let store: KyselyStore;
  beforeAll(async () => {
    store = createPostgresStore({ url: PG_URL, schema, maxConnections: 4 });
    await store.migrate();
    await store.backend.tx((ex) => ex.all('CREATE TABLE gc (k INTEGER PRIMARY KEY, v TEXT)'));
  });
  afterAll(async () => {
    await store.close();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.end();
  });

  const keys = async (): Promise<number[]> =>
    (await store.backend.read((ex) => ex.all<{ k: number }>('SELECT k FROM gc ORDER BY k'))).map((r) => Number(r.k));
  const put = (k: number) => (ex: Exec) => ex.all('INSERT INTO gc (k, v) VALUES (?, ?)', [k, 'x']);
  const settle = (ps: Promise<unknown>[]) => Promise.allSettled(ps);

  it('runs transactions queued together in one batch, in order: a later one sees an earlier one', async () => {
    const before = { ...PgGroupCommit.stats };
    const [, seen] = await Promise.all([store.backend.tx(put(1)), store.backend.tx((ex) => ex.all<{ k: number }>('SELECT k FROM gc'))]);
    expect(seen.map((r) => Number(r.k))).toEqual([1]);
    expect(PgGroupCommit.stats.batches - before.batches).toBe(1);
    expect(PgGroupCommit.stats.splits - before.splits).toBe(0);
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
  });

  it('a throwing op leaves the others committed and none of its own writes', async () => {
    const runs = { a: 0, c: 0 };
    const results = await settle([
      store.backend.tx(async (ex) => {
        runs.a++;
        await put(10)(ex);
        return 'a';
      }),
      store.backend.tx(async (ex) => {
        await put(11)(ex);
        throw new TschedError('TASK_NOT_FOUND', 'no such task');
      }),
      store.backend.tx(async (ex) => {
        runs.c++;
        await put(12)(ex);
        return 'c';
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'TASK_NOT_FOUND' });
    expect(await keys()).toEqual([10, 12]);
    // The batch was rolled back once: the op before the failure ran twice, the one after it once.
    expect(runs).toEqual({ a: 2, c: 1 });
  });

  it('a failing statement (a unique violation) aborts only its own op', async () => {
    const results = await settle([store.backend.tx(put(20)), store.backend.tx(put(10)), store.backend.tx(put(21))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: '23505' });
    expect(await keys()).toEqual([10, 12, 20, 21]);
  });

  it('answers only after the commit: an answered write is visible to every connection', async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try {
      await Promise.all([30, 31, 32].map((k) => store.backend.tx(put(k))));
      const r = await c.query(`SELECT k FROM "${schema}".gc WHERE k >= 30 ORDER BY k`);
      expect(r.rows.map((x) => Number(x.k))).toEqual([30, 31, 32]);
    } finally {
      await c.end();
    }
  });

  it('submits queued together share one insert; one with a value PostgreSQL refuses fails alone', async () => {
    const spec = (name: string) => ({ ...normalizeTask({ command: ['true'] }), name });
    const opts = { now: Date.now(), actor: 'alice' };
    const results = await settle([
      store.submitTasks('alice', [spec('ok1')], opts),
      store.submitTasks('alice', [spec('bad\u0000name')], opts), // text may not hold NUL: SQLSTATE 22021
      store.submitTasks('alice', [spec('ok2')], opts),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: '22021' });
    const { tasks } = await store.listTasks({ owner: 'alice', limit: 10 });
    expect(tasks.map((t) => t.name).sort()).toEqual(['ok1', 'ok2']);
  });

  it('statements an op sends together are pipelined, answered in order; a failure among them fails its op alone', async () => {
    // The pool's connections pipeline: a statement goes out while the one before it still runs.
    const client = await (store.backend as unknown as { pool: pg.Pool }).pool.connect();
    expect(client.pipeline).toBe(true);
    client.release();
    const results = await settle([
      // The second statement runs after the first on the server: it sees the row.
      store.backend.tx((ex) => Promise.all([put(40)(ex), ex.all<{ k: number }>('SELECT k FROM gc WHERE k = 40')])),
      // A duplicate key first: the statement after it is refused too (the transaction is aborted).
      store.backend.tx((ex) => Promise.all([put(10)(ex), put(41)(ex)])),
      store.backend.tx(put(42)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const [, seen] = (results[0] as PromiseFulfilledResult<[unknown, Array<{ k: number }>]>).value;
    expect(seen.map((r) => Number(r.k))).toEqual([40]);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: '23505' });
    const all = await keys();
    expect(all).toContain(40);
    expect(all).toContain(42);
    expect(all).not.toContain(41);
  });

  it('the next batch waits a turn: a follow-up queued a few promise hops after an answer joins the writes queued meanwhile', async () => {
    const before = { ...PgGroupCommit.stats };
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const first = store.backend.tx(async (ex) => {
      await put(50)(ex);
      await gate;
    });
    // A write that arrives while the first batch runs (a submit), and one its answer leads to (the pass it kicked).
    await new Promise((r) => setTimeout(r, 20));
    const meanwhile = store.backend.tx(put(51));
    const followUp = first.then(async () => {
      for (let i = 0; i < 10; i++) await Promise.resolve();
      return store.backend.tx(put(52));
    });
    open();
    await Promise.all([first, meanwhile, followUp]);
    expect(PgGroupCommit.stats.alone - before.alone).toBe(1); // the first, alone in its batch
    expect(PgGroupCommit.stats.batches - before.batches).toBe(1); // the other two, together
    expect(await keys()).toEqual(expect.arrayContaining([50, 51, 52]));
  });

  it("an op's last statement lets the next op start behind it, before its answer; the next op still sees it", async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    let firstAnswered = false;
    let nextStartedBeforeAnswer: boolean | null = null;
    const [, seen] = await Promise.all([
      store.backend.tx(async (ex) => {
        await ex.last('INSERT INTO gc (k, v) VALUES (?, ?)', [60, 'x']);
        firstAnswered = true;
      }),
      store.backend.tx((ex) => {
        nextStartedBeforeAnswer = !firstAnswered;
        return ex.all<{ k: number }>('SELECT k FROM gc');
      }),
    ]);
    expect(nextStartedBeforeAnswer).toBe(true);
    expect(seen.map((r) => Number(r.k))).toEqual([60]);
  });

  it('an op that throws after its last statement, or sends one after it, is rolled back alone', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const results = await settle([
      store.backend.tx(async (ex) => {
        await ex.last('INSERT INTO gc (k, v) VALUES (?, ?)', [70, 'x']);
        throw new TschedError('TASK_NOT_FOUND', 'checked after the last statement');
      }),
      store.backend.tx(put(71)),
      store.backend.tx(async (ex) => {
        await ex.last('INSERT INTO gc (k, v) VALUES (?, ?)', [72, 'x']);
        await put(73)(ex);
      }),
      // A duplicate key as the last statement: the op behind it, already sent, is refused with it and rerun.
      store.backend.tx((ex) => ex.last('INSERT INTO gc (k, v) VALUES (?, ?)', [71, 'dup'])),
      store.backend.tx(put(74)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'TASK_NOT_FOUND' });
    expect(String((results[2] as PromiseRejectedResult).reason)).toMatch(/after the operation's last one/);
    expect((results[3] as PromiseRejectedResult).reason).toMatchObject({ code: '23505' });
    expect(await keys()).toEqual([71, 74]);
  });

  /** A worker with room for one one-core task. */
  const oneCoreWorker = async (name: string, now: number) =>
    (
      await store.registerWorker(
        {
          name,
          capacity: { cpus: 1000, memory: 1 << 20, ports: null },
          labels: {},
          executors: ['shell'],
          enforcement: { memory: 'none', cpu: 'none' },
          version: 'test',
          hostname: 'host',
        },
        now,
      )
    ).worker;

  /** The worker's report that `run` started at now + 5 and succeeded at now + 9, sent at now + 10. */
  const reportDone = (workerId: string, run: { id: number; leaseToken: string }, now: number) =>
    store.workerReport(
      workerId,
      {
        started: [{ runId: run.id, token: run.leaseToken, at: now + 5 }],
        logs: [],
        results: [
          {
            runId: run.id,
            token: run.leaseToken,
            outcome: 'succeeded',
            exitCode: 0,
            reason: null,
            startedAt: now + 5,
            finishedAt: now + 9,
            usage: { peakMemory: null, cpuSeconds: null },
          },
        ],
        running: [],
      },
      now + 10,
      { leaseMs: 30_000, maxLogBytesPerRun: 1024 },
    );

  it("a report whose results' write fails (sent without waiting) fails alone with that write's error and keeps nothing", async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const now = Date.now();
    const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
    const [t] = (await store.submitTasks('u', [spec], { now, actor: 'u' })).tasks;
    const worker = await oneCoreWorker('gc-w', now);
    const { runs } = await store.applyPlan(
      [{ taskId: t!.id, workerId: worker.id, allocation: { cpus: 1000, memory: 1 << 20, ports: [], namedPorts: {} } }],
      {
        now,
        leaseMs: 30_000,
        epoch: null,
        actor: 'scheduler',
      },
    );
    const run = runs[0]!;
    // The database refuses this run's end: the report's write fails on the server, after the worker update
    // and the next op's statements have been sent behind it.
    await store.backend.tx(async (ex) => {
      await ex.all(
        "CREATE FUNCTION refuse_end() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'P0001'; END $$",
      );
      await ex.all('CREATE TRIGGER refuse_end BEFORE UPDATE OF state ON runs FOR EACH ROW EXECUTE FUNCTION refuse_end()');
    });
    const report = () => reportDone(worker.id, run, now);
    const before = { ...PgGroupCommit.stats };
    const results = await settle([store.backend.tx(put(80)), report(), store.backend.tx(put(81))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // Its own error, not the "transaction is aborted" of the statements behind it.
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'P0001', message: 'refused by the test' });
    expect(PgGroupCommit.stats.splits - before.splits).toBe(1);
    expect(await keys()).toEqual([80, 81]);
    expect(await store.getRun(run.id)).toMatchObject({ state: 'assigned', startedAt: null, finishedAt: null });
    expect(await store.getTask(t!.id, null)).toMatchObject({ status: 'in_progress' });
    expect((await store.getWorker(worker.id))!.lastSeenAt).toBe(now);
    // Once the database takes it, the same report goes through.
    await store.backend.tx((ex) => ex.all('DROP TRIGGER refuse_end ON runs'));
    const ok = await report();
    expect(ok.results.acks).toEqual([{ runId: run.id, ok: true }]);
    expect(await store.getTask(t!.id, null)).toMatchObject({ status: 'done' });
  });

  it("COMMIT goes out behind the batch's last op's final statement, before its answer; a failing final statement rolls back alone", async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const final = (k: number) => (ex: Exec) => ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [k, 'x']);
    let before = { ...PgGroupCommit.stats };
    await Promise.all([store.backend.tx(put(90)), store.backend.tx(final(91))]);
    expect(PgGroupCommit.stats.early - before.early).toBe(1);
    expect(await keys()).toEqual([90, 91]);
    // Not the batch's last op: its final statement is only its last, and COMMIT waits for the ops behind it.
    before = { ...PgGroupCommit.stats };
    await Promise.all([store.backend.tx(final(92)), store.backend.tx(put(93))]);
    expect(PgGroupCommit.stats.early - before.early).toBe(0);
    expect(await keys()).toEqual([90, 91, 92, 93]);
    // A duplicate key as the final statement: PostgreSQL answers the COMMIT behind it with a rollback; the
    // op before it is rerun and kept, the failing one fails alone with its own error.
    const results = await settle([store.backend.tx(put(94)), store.backend.tx(final(90))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: '23505' });
    expect(await keys()).toEqual([90, 91, 92, 93, 94]);
  });

  it('an op that throws after its final statement, once COMMIT went out, fails with its error and its writes are kept', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const results = await settle([
      store.backend.tx(put(100)),
      store.backend.tx(async (ex) => {
        await ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [101, 'x']);
        throw new TschedError('INTERNAL', 'thrown after the final statement');
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'INTERNAL' });
    // Nothing ran twice: the batch committed once, with both writes.
    expect(await keys()).toEqual([100, 101]);
  });

  it('a failed statement its op did not see rolls the batch back at COMMIT: no op is answered as committed', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    await store.backend.tx(put(110));
    const results = await settle([
      store.backend.tx(put(111)),
      // A duplicate key whose error the op swallows: the transaction is aborted, and COMMIT rolls it back.
      store.backend.tx(async (ex) => {
        await ex.all('INSERT INTO gc (k, v) VALUES (?, ?)', [110, 'dup']).catch(() => {});
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/rolled back at COMMIT/);
    expect(await keys()).toEqual([110, 111]);
  });

  it('statements sent in one tick leave in one socket write, BEGIN with them', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    // Every write to any socket of this process while the transaction runs; only the pool's client writes.
    const writes: number[] = [];
    const proto = Socket.prototype as unknown as Record<'_write' | '_writev', (...a: unknown[]) => unknown>;
    const { _write, _writev } = proto;
    proto._write = function (this: Socket, ...a: unknown[]) {
      writes.push(1);
      return _write.apply(this, a);
    };
    proto._writev = function (this: Socket, ...a: unknown[]) {
      writes.push((a[0] as unknown[]).length);
      return _writev.apply(this, a);
    };
    try {
      await store.backend.tx(
        (ex) =>
          Promise.all([
            ex.all('INSERT INTO gc (k, v) VALUES (?, ?)', [120, 'x']),
            ex.all('INSERT INTO gc (k, v) VALUES (?, ?)', [121, 'x']),
            ex.all<{ n: number }>('SELECT count(*) AS n FROM gc'),
          ]),
        { alone: true },
      );
    } finally {
      proto._write = _write;
      proto._writev = _writev;
    }
    // BEGIN and the three statements (each several protocol messages) in one write; COMMIT in the next.
    expect(writes.length).toBe(2);
    expect(writes[0]).toBeGreaterThanOrEqual(4);
    expect(await keys()).toEqual([120, 121]);
  });

  /** Statements run while `fn` runs, by their text's first 160 characters, in the order first answered. */
  const answeredDuring = async (fn: () => Promise<unknown>): Promise<string[]> => {
    countStatements(true);
    try {
      await fn();
      return [...statementStats!.keys()];
    } finally {
      countStatements(false);
    }
  };

  it('an early op starts once the op ahead has sent its reads, learns the runs it ends, and writes behind it', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const before = { ...PgGroupCommit.stats };
    let aheadWrote = false;
    let startedBeforeWrite: boolean | null = null;
    const [, behind] = await Promise.all([
      store.backend.tx(async (ex) => {
        const read = ex.all('SELECT k FROM gc');
        ex.readsSent!();
        await read;
        ex.ending!([7, 8]);
        aheadWrote = true;
        await ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [130, 'x']);
      }),
      store.backend.tx(
        async (ex) => {
          startedBeforeWrite = !aheadWrote;
          const seen = await ex.all<{ k: number }>('SELECT k FROM gc');
          const ended = await ex.endedAhead!();
          await ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [131, 'x']);
          return { seen: seen.map((r) => Number(r.k)), ended };
        },
        { early: true },
      ),
    ]);
    expect(startedBeforeWrite).toBe(true);
    // Its read ran before the insert ahead of it; it was told of the runs that op ends.
    expect(behind).toEqual({ seen: [], ended: [7, 8] });
    expect(PgGroupCommit.stats.overtakes - before.overtakes).toBe(1);
    // COMMIT went out behind its final statement: the op ahead had ended with a final one too.
    expect(PgGroupCommit.stats.early - before.early).toBe(1);
    expect(PgGroupCommit.stats.batches - before.batches).toBe(1);
    expect(await keys()).toEqual([130, 131]);
  });

  it('an op ahead that ended with `last` and then throws takes back the early op behind it: nothing of the first try is kept', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const before = { ...PgGroupCommit.stats };
    // The transaction each try's statements ran in, ahead and behind.
    const xids: Array<{ ahead?: string; behind?: string }> = [];
    const xid = async (ex: Exec) => String((await ex.all<{ x: string }>('SELECT txid_current() AS x'))[0]!.x);
    const results = await settle([
      store.backend.tx(async (ex) => {
        const read = xid(ex);
        ex.readsSent!();
        xids.push({ ahead: await read });
        await ex.last('INSERT INTO gc (k, v) VALUES (?, ?)', [140, 'x']);
        throw new TschedError('TASK_NOT_FOUND', 'checked after the last statement');
      }),
      store.backend.tx(
        async (ex) => {
          const tryNo = xids.filter((x) => x.behind).length;
          await ex.endedAhead!();
          // Still working after the op ahead has failed: the transaction waits for it before it ends.
          await ex.all('SELECT pg_sleep(0.05)');
          const behind = await xid(ex);
          if (tryNo === 0) xids[0]!.behind = behind;
          else xids.push({ behind });
          await ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [141 + tryNo, 'x']);
        },
        { early: true },
      ),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'TASK_NOT_FOUND' });
    // The first try behind ran every statement in the batch's transaction, before its ROLLBACK.
    expect(xids[0]!.behind).toBe(xids[0]!.ahead);
    // No COMMIT behind the early op's final statement while the op ahead could still fail (only the rerun,
    // alone, sent one); the first try (141) was rolled back whole, and only the second is kept.
    expect(PgGroupCommit.stats.early - before.early).toBe(1);
    expect(xids.filter((x) => x.behind)).toHaveLength(2);
    expect(await keys()).toEqual([142]);
  });

  it('an op still working when one ahead of it fails ends before the ROLLBACK: none of its statements runs outside the batch', async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const xid = async (ex: Exec) => String((await ex.all<{ x: string }>('SELECT txid_current() AS x'))[0]!.x);
    const failingXids: string[] = [];
    const lateXids: string[] = [];
    const results = await settle([
      store.backend.tx(async (ex) => {
        failingXids.push(await xid(ex));
        await ex.last('INSERT INTO gc (k, v) VALUES (?, ?)', [160, 'x']);
        throw new TschedError('TASK_NOT_FOUND', 'checked after the last statement');
      }),
      // Lets the early op behind it start once the op ahead has already failed, then writes later.
      store.backend.tx(async (ex) => {
        await ex.all('SELECT 1');
        ex.readsSent!();
        await new Promise((r) => setTimeout(r, 30));
        lateXids.push(await xid(ex));
        await ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [160 + lateXids.length, 'x']);
      }),
      store.backend.tx(
        async (ex) => {
          await ex.endedAhead!();
          await ex.final('INSERT INTO gc (k, v) VALUES (?, ?)', [170 + lateXids.length, 'x']);
        },
        { early: true },
      ),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled']);
    // Its first try wrote in the failed batch's transaction, rolled back with it; the rerun is kept.
    expect(lateXids[0]).toBe(failingXids[0]);
    expect(lateXids).toHaveLength(2);
    expect(await keys()).toEqual([162, 172]);
  });

  it("a worker's report and the pass it kicks: the pass reads before the report's writes and places a task in the room they free", async () => {
    await store.backend.tx((ex) => ex.all('DELETE FROM gc'));
    const now = await store.now();
    const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
    const worker = await oneCoreWorker('gc-room', now);
    const ctx = { now, leaseMs: 30_000, epoch: null, actor: 'scheduler' };
    const [a] = (await store.submitTasks('u', [spec], { now, actor: 'u' })).tasks;
    const { runs } = await store.applyPlan(
      [{ taskId: a!.id, workerId: worker.id, allocation: { cpus: 1000, memory: 1 << 20, ports: [], namedPorts: {} } }],
      ctx,
    );
    const run = runs[0]!;
    const [b] = (await store.submitTasks('u', [spec], { now, actor: 'u' })).tasks;
    // Places every task that fits in what the pass read as free on this test's worker (earlier tests left
    // tasks waiting that it cannot hold).
    const planner = ({ workers, tasks }: { workers: WorkerWithLoad[]; tasks: Task[] }) => {
      const w = workers.find((x) => x.id === worker.id)!;
      const free = { cpus: w.capacity.cpus - w.allocated.cpus, memory: w.capacity.memory - w.allocated.memory };
      const out = [];
      for (const { id, resources: r } of tasks) {
        if (r.cpus > free.cpus || r.memory > free.memory) continue;
        free.cpus -= r.cpus;
        free.memory -= r.memory;
        out.push({ taskId: id, workerId: w.id, allocation: { cpus: r.cpus, memory: r.memory, ports: [], namedPorts: {} } });
      }
      return out;
    };
    const before = { ...PgGroupCommit.stats };
    let rep!: Awaited<ReturnType<typeof store.workerReport>>;
    let pass!: Awaited<ReturnType<typeof store.schedulePass>>;
    const ran = await answeredDuring(async () => {
      // Queued in one tick, as the report route and the pass it kicks are.
      [rep, pass] = await Promise.all([
        reportDone(worker.id, run, now),
        store.schedulePass({ limit: 64, urgentBefore: now + 60_000 }, planner, { ...ctx, now: now + 10 }),
      ]);
    });
    expect(rep.results.acks).toEqual([{ runId: run.id, ok: true }]);
    // The pass read the worker still running A, and placed B in the room A's end frees.
    expect(pass.runs.map((r) => [r.taskId, r.workerId])).toEqual([[b!.id, worker.id]]);
    expect(await store.getTask(a!.id, null)).toMatchObject({ status: 'done' });
    expect(await store.getTask(b!.id, null)).toMatchObject({ status: 'in_progress' });
    // One batch: the pass's reads went out before the report's writes, and COMMIT behind the pass's write.
    expect(PgGroupCommit.stats.batches - before.batches).toBe(1);
    expect(PgGroupCommit.stats.overtakes - before.overtakes).toBe(1);
    expect(PgGroupCommit.stats.early - before.early).toBe(1);
    // Answered in the order they ran on the one connection: the pass's worker locks before the report's write.
    const first = (re: RegExp) => ran.findIndex((q) => re.test(q));
    expect(first(/FROM workers WHERE state IN \('active','draining'\) ORDER BY id FOR UPDATE/)).toBeGreaterThan(-1);
    expect(first(/FROM workers WHERE state IN \('active','draining'\) ORDER BY id FOR UPDATE/)).toBeLessThan(
      first(/^WITH w0 AS \(UPDATE runs/),
    );
  });

  it('runs an op marked alone in a transaction of its own: its SET LOCAL reaches no other op', async () => {
    const [, other] = await Promise.all([
      store.backend.tx((ex) => ex.all("SET LOCAL application_name = 'alone'"), { alone: true }),
      store.backend.tx((ex) => ex.all<{ a: string }>("SELECT current_setting('application_name') AS a")),
    ]);
    expect(other[0]!.a).not.toBe('alone');
  });
});
