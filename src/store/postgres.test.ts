// The PostgreSQL store's sessions: its statements are named prepared statements (parsed once per
// connection) unless turned off.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { submitBurst } from '../../test/helpers/burst.js';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import { normalizeTask } from '../domain/task-spec.js';
import { pgArrayLiteral, pgParams } from './backend.js';
import { createPostgresStore } from './postgres.js';

const pgUp = requireService('PostgreSQL (prepared statements)', await postgresAvailable());

describe.runIf(pgUp)('PostgreSQL sessions', () => {
  const schemas: string[] = [];
  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
    await client.end();
  });

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

  it('never gives the candidate walk a generic plan, even once the queue is large (a generic plan would sort it)', async () => {
    const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    const store = createPostgresStore({ url: PG_URL, schema, maxConnections: 1 });
    try {
      await store.migrate();
      const now = Date.now();
      await submitBurst(store, now);
      // The store's own ANALYZE after the burst (off the request path) must have landed first.
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 12; i++) expect(await store.loadCandidates(now + 1000, 64, now + 60_000)).toHaveLength(64);
      const [v] = await store.backend.read((ex) => ex.all<{ n: number }>("SELECT current_setting('server_version_num')::int AS n"));
      // The walk is prepared like every statement; PostgreSQL must keep planning it for each call's values,
      // never settle on a generic plan (pg_prepared_statements counts plans from 14 on).
      if (Number(v!.n) >= 140000) {
        const walks = await store.backend.read((ex) =>
          ex.all<{ generic_plans: number; custom_plans: number }>(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE 'SELECT c.walk%'",
          ),
        );
        for (const w of walks) expect(Number(w.generic_plans)).toBe(0);
      }
    } finally {
      await store.close();
    }
  });

  it('keeps working when another replica migrates a column in (rolling upgrade)', async () => {
    const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    const store = createPostgresStore({ url: PG_URL, schema, maxConnections: 1 });
    const other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    try {
      await store.migrate();
      const spec = normalizeTask({ command: ['/bin/true'], resources: { cpus: 1, memory: '1Mi' } });
      const round = async (n: number) => {
        const now = Date.now();
        const { worker } = await store.registerWorker(
          {
            name: `w${n}`,
            capacity: { cpus: 4000, memory: 1024 ** 3, ports: null },
            labels: {},
            executors: ['shell'],
            enforcement: { memory: 'none', cpu: 'none' },
            version: 't',
            hostname: 'h',
          },
          now,
        );
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
