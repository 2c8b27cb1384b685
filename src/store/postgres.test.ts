// The PostgreSQL store's sessions: its statements are named prepared statements (parsed once per
// connection) unless turned off.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { submitBurst } from '../../test/helpers/burst.js';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import { normalizeTask } from '../domain/task-spec.js';
import type { WorkerRegistration } from '../domain/worker.js';
import { countStatements, pgArrayLiteral, pgParams, statementStats } from './backend.js';
import { LIVE_RUNS_SELECT, windowClass } from './kysely-store.js';
import { createPostgresStore } from './postgres.js';

const pgUp = requireService('PostgreSQL (prepared statements)', await postgresAvailable());

/** A worker with room for four one-core tasks. */
const workerReg = (name: string): WorkerRegistration => ({
  name,
  capacity: { cpus: 4000, memory: 1024 ** 3, ports: null },
  labels: {},
  executors: ['shell'],
  enforcement: { memory: 'none', cpu: 'none' },
  version: 't',
  hostname: 'h',
});

describe.runIf(pgUp)('PostgreSQL sessions', () => {
  const schemas: string[] = [];
  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
    await client.end();
  });

  /** A one-connection store on a schema of its own, and a plain client beside it. */
  const storeAndClient = async () => {
    const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    const store = createPostgresStore({ url: PG_URL, schema, maxConnections: 1 });
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    return { schema, store, client };
  };

  /** Submits and lists through a one-connection store, then reads that session's prepared statements. */
  const sessionAfterWork = async (preparedStatements: boolean | undefined) => {
    const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    const store = createPostgresStore({
      url: PG_URL,
      schema,
      maxConnections: 1,
      ...(preparedStatements === undefined ? {} : { preparedStatements }),
    });
    try {
      await store.migrate();
      const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
      for (let i = 0; i < 3; i++) await store.submitTasks('u', [spec, spec], { now: Date.now(), actor: 'u' });
      const listed = await store.listTasks({ owner: 'u', limit: 10 });
      const named = await store.backend.read((ex) =>
        ex.all<{ name: string; statement: string }>('SELECT name, statement FROM pg_prepared_statements ORDER BY name'),
      );
      return { listed: listed.tasks.length, named };
    } finally {
      await store.close();
    }
  };

  it('runs its statements as named prepared statements, each parsed once per connection', async () => {
    const s = await sessionAfterWork(undefined);
    expect(s.listed).toBe(6);
    const submits = s.named.filter((r) => r.name.startsWith('tsched_') && r.statement.includes('INSERT INTO tasks'));
    // Three submits of the same shape: one prepared statement for them (tasks and events), not three.
    expect(submits).toHaveLength(1);
    // Whole-row statements are prepared too (until a migration reshapes a table: see the last test).
    expect(s.named.some((r) => r.name.startsWith('tsched_') && r.statement.startsWith('SELECT * FROM tasks'))).toBe(true);
  });

  it('runs them unnamed when preparedStatements is false', async () => {
    const s = await sessionAfterWork(false);
    expect(s.listed).toBe(6);
    expect(s.named.filter((r) => r.name.startsWith('tsched_'))).toEqual([]);
  });

  it('plans the candidate walk once, and that one plan walks the indexes however large the queue', async () => {
    const { schema, store, client } = await storeAndClient();
    try {
      await store.migrate();
      const now = Date.now();
      await submitBurst(store, now);
      // The store's own ANALYZE after the burst (off the request path) must have landed first.
      await new Promise((r) => setTimeout(r, 1000));
      // Scheduling passes that place nothing (a planner that decides nothing): each walks the queue.
      await store.registerWorker(workerReg('w'), now);
      const pass = (limit: number) =>
        store.schedulePass({ limit, urgentBefore: now + 60_000 }, () => [], {
          now: now + 1000,
          leaseMs: 30_000,
          epoch: null,
          actor: 'scheduler',
        });
      for (let i = 0; i < 12; i++) expect((await pass(64)).tasks).toHaveLength(64);
      // The exact window is the bound outer LIMIT: 50 of a window class of 64.
      expect((await pass(50)).tasks).toHaveLength(50);
      const [v] = await store.backend.read((ex) => ex.all<{ n: number }>("SELECT current_setting('server_version_num')::int AS n"));
      const [walk] = await store.backend.read((ex) =>
        ex.all<{ statement: string; generic_plans?: number; custom_plans?: number }>(
          "SELECT * FROM pg_prepared_statements WHERE statement LIKE 'SELECT c.walk%'",
        ),
      );
      expect(walk).toBeDefined();
      // pg_prepared_statements counts plans from PostgreSQL 14 on: one generic plan, never one per call.
      if (Number(v!.n) >= 140000) {
        expect(Number(walk!.custom_plans)).toBe(0);
        expect(Number(walk!.generic_plans)).toBe(13);
      }
      // That generic plan, as PostgreSQL builds it for this queue: index walks that stop at the window, no
      // sort of the queue. The one sort allowed puts the window's ids in order, the order the pass locks them in.
      await client.query(`SET search_path TO "${schema}"`);
      await client.query(`PREPARE probe AS ${walk!.statement}`);
      await client.query('SET plan_cache_mode = force_generic_plan');
      const plan = (
        await client.query(`EXPLAIN EXECUTE probe('{}', ${now}, 64, ${now}, ${now + 60_000}, ${now}, 64, ${now}, ${now}, 64)`)
      ).rows
        .map((r) => r['QUERY PLAN'] as string)
        .join('\n');
      expect(plan).toMatch(/Index Scan using tasks_ready/);
      expect(plan).toMatch(/^LockRows/);
      const sortKeys = plan.match(/Sort Key: .*/g) ?? [];
      expect(sortKeys.every((k) => /^Sort Key: \w+\.id$/.test(k))).toBe(true);
      // The session's setting is back to its default after the walk.
      const [mode] = await store.backend.read((ex) => ex.all<{ m: string }>("SELECT current_setting('plan_cache_mode') AS m"));
      expect(mode!.m).toBe('auto');
    } finally {
      await client.end();
      await store.close();
    }
  });

  it('reads the live runs with one key lookup each, even when the statistics predate the newest runs', async () => {
    // The statistics as an early ANALYZE saw them (runs of the first tasks only), then a history of
    // finished tasks and a few new runs of the newest ones. With these statistics PostgreSQL planned the
    // join of runs and tasks the pass used before as a merge join that walked tasks_pkey from the first
    // task: 75 ms a pass over 100,000 tasks. The pass's statement must read one task row per live run.
    const { schema, store, client } = await storeAndClient();
    try {
      await store.migrate();
      const now = Date.now();
      const { worker } = await store.registerWorker(workerReg('w'), now);
      const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
      const ids: number[] = [];
      for (let i = 0; i < 5; i++)
        ids.push(
          ...(
            await store.submitTasks(
              'u',
              Array.from({ length: 1000 }, () => spec),
              { now, actor: 'u' },
            )
          ).tasks.map((t) => t.id),
        );
      const place = (taskIds: number[]) =>
        store.applyPlan(
          taskIds.map((taskId) => ({
            taskId,
            workerId: worker.id,
            allocation: { cpus: 1000, memory: 1024 ** 2, ports: [], namedPorts: {} },
          })),
          { now, leaseMs: 30_000, epoch: null, actor: 'scheduler' },
        );
      expect((await place(ids.slice(0, 4))).runs).toHaveLength(4);
      await client.query(`SET search_path TO "${schema}"`);
      await client.query('ANALYZE tasks, runs');
      await client.query("UPDATE runs SET state = 'succeeded'");
      await client.query("UPDATE tasks SET status = 'succeeded' WHERE id <= $1", [ids[ids.length - 5]]);
      expect((await place(ids.slice(-4))).runs).toHaveLength(4);
      const plan = (await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${LIVE_RUNS_SELECT}`)).rows[0]['QUERY PLAN'][0].Plan;
      // Every task row the statement read, over all loops of every node on tasks.
      const taskRows = (n: { 'Relation Name'?: string; 'Actual Rows': number; 'Actual Loops': number; Plans?: unknown[] }): number =>
        (n['Relation Name'] === 'tasks' ? n['Actual Rows'] * n['Actual Loops'] : 0) +
        ((n.Plans ?? []) as Array<Parameters<typeof taskRows>[0]>).reduce((sum, c) => sum + taskRows(c), 0);
      expect(taskRows(plan)).toBe(4);
      expect((await store.loadWorkers())[0]!.live.map((l) => l.taskId)).toEqual(ids.slice(-4));
    } finally {
      await client.end();
      await store.close();
    }
  });

  it("stamps a pass's runs with the store's clock, read with the live runs and not in a statement of its own", async () => {
    const { store, client } = await storeAndClient();
    try {
      await store.migrate();
      const behind = (await store.now()) - 60_000; // a caller's clock a minute behind the store's
      const { worker } = await store.registerWorker(workerReg('w'), behind);
      const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
      const [task] = (await store.submitTasks('u', [spec], { now: behind, actor: 'u' })).tasks;
      const before = await store.now();
      countStatements(true);
      let pass: Awaited<ReturnType<typeof store.schedulePass>>;
      let sent: string[];
      try {
        pass = await store.schedulePass(
          { limit: 64, urgentBefore: behind + 60_000 },
          ({ workers, tasks }) =>
            tasks.map((t) => ({
              taskId: t.id,
              workerId: workers[0]!.id,
              allocation: { cpus: 1000, memory: 1024 ** 2, ports: [], namedPorts: {} },
            })),
          { now: behind, leaseMs: 30_000, epoch: null, actor: 'scheduler', stampAtCommit: true },
        );
        sent = [...statementStats!.keys()];
      } finally {
        countStatements(false);
      }
      expect(pass.runs.map((r) => [r.taskId, r.workerId])).toEqual([[task!.id, worker.id]]);
      // Stamped with the store's clock, read inside the pass, not with the caller's minute-old one.
      expect(pass.runs[0]!.assignedAt).toBeGreaterThanOrEqual(before);
      expect(pass.runs[0]!.leaseExpiresAt).toBe(pass.runs[0]!.assignedAt + 30_000);
      // The clock rode on the live runs' statement: no statement of the pass reads it alone.
      expect(sent.filter((s) => s.startsWith('SELECT (extract(epoch from clock_timestamp())'))).toEqual([]);
      // (Statements are counted by their first 160 characters: the live runs, parenthesized before the clock's row.)
      expect(sent.filter((s) => s.startsWith('(SELECT r.id, r.task_id, r.worker_id'))).toHaveLength(1);
    } finally {
      await client.end();
      await store.close();
    }
  });

  it('writes each walk LIMIT into the text as a power of two from 64', () => {
    expect([1, 50, 64, 65, 128, 129, 2000, 2048].map(windowClass)).toEqual([64, 64, 64, 128, 128, 256, 2048, 2048]);
  });

  it('keeps working when another replica migrates a column in (rolling upgrade)', async () => {
    const { schema, store, client: other } = await storeAndClient();
    try {
      await store.migrate();
      const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
      const round = async (n: number) => {
        const now = Date.now();
        const { worker } = await store.registerWorker(workerReg(`w${n}`), now);
        const [t] = (await store.submitTasks('u', [spec], { now, actor: 'u' })).tasks;
        const plan = [{ taskId: t!.id, workerId: worker.id, allocation: { cpus: 1000, memory: 1024 ** 2, ports: [], namedPorts: {} } }];
        const { runs } = await store.applyPlan(plan, { now, leaseMs: 30_000, epoch: null, actor: 'scheduler' });
        expect(runs).toHaveLength(1);
        const poll = await store.workerPoll(worker.id, [], 10, now, 30_000);
        expect(poll.assignments.map((a) => a.run.id)).toEqual([runs[0]!.id]);
        expect((await store.getTask(t!.id, 'u'))!.status).toBe('in_progress');
        expect((await store.listTasks({ owner: 'u', limit: 100 })).tasks.length).toBe(n);
        expect((await store.loadWorkers()).length).toBe(n);
      };
      for (let i = 1; i <= 3; i++) await round(i);
      // A newer release adds columns (additive, rolling-safe) while this replica keeps running.
      for (const table of ['tasks', 'runs', 'workers', 'events'])
        await other.query(`ALTER TABLE "${schema}".${table} ADD COLUMN added_later INTEGER NOT NULL DEFAULT 0`);
      for (let i = 4; i <= 6; i++) await round(i);
    } finally {
      await other.end();
      await store.close();
    }
  });

  it('sends array parameters as literals that PostgreSQL reads back element for element', async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const texts = [
        '',
        'plain',
        'a b',
        ' lead',
        'trail ',
        'NULL',
        'null',
        '"quoted"',
        'back\\slash',
        '\\"',
        '{braces}',
        'a,b',
        'é ✓',
        '\n',
        null,
      ];
      const [lit] = pgParams([texts]);
      expect(typeof lit).toBe('string');
      const back = await client.query('SELECT unnest($1::text[]) AS v', [lit]);
      expect(back.rows.map((r) => r.v)).toEqual(texts);
      const ints = [0, -1, 2 ** 53 - 1, null, 42];
      const n = await client.query('SELECT unnest($1::int8[])::text AS v', pgParams([ints]));
      expect(n.rows.map((r) => (r.v === null ? null : Number(r.v)))).toEqual(ints);
      const b = await client.query('SELECT unnest($1::bool[]) AS v', pgParams([[true, false, null]]));
      expect(b.rows.map((r) => r.v)).toEqual([true, false, null]);
      const empty = await client.query('SELECT cardinality($1::text[]) AS v', pgParams([[]]));
      expect(empty.rows[0].v).toBe(0);
    } finally {
      await client.end();
    }
    // Not flat scalars: left to pg, and a parameter list without arrays is passed through as it is.
    expect(pgArrayLiteral([[1], [2]])).toBeNull();
    expect(pgArrayLiteral([Buffer.from('x')])).toBeNull();
    const plain = [1, 'a', null];
    expect(pgParams(plain)).toBe(plain);
  });
});
