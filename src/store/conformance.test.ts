// One conformance suite for every Store adapter: each test runs against SQLite (a temp file) and PostgreSQL
// (a fresh schema per test). PostgreSQL absent: a loud warning and the SQLite half only — unless CI=true.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PG_URL, postgresAvailable, requireService } from '../../test/helpers/services.js';
import { TschedError } from '../domain/errors.js';
import type { NewTask } from '../domain/task.js';
import { normalizeTask } from '../domain/task-spec.js';
import type { WorkerRegistration } from '../domain/worker.js';
import { type KyselyStore, openStore } from './index.js';
import { LIVE_RUNS_SELECT } from './kysely-store.js';
import { MIGRATIONS, runMigrations } from './migrations/index.js';
import type { PlacementDecision, RunResultInput } from './port.js';
import { createPostgresStore } from './postgres.js';
import { createSqliteStore } from './sqlite.js';

// PostgreSQL absent: a loud notice and the SQLite half only; with CI=true, a failure.
const pgUp = requireService('PostgreSQL (the PostgreSQL half of the store conformance suite)', await postgresAvailable());

const tmpRoot = mkdtempSync(join(tmpdir(), 'tsched-store-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

interface Harness {
  name: 'sqlite' | 'postgres';
  /** A fresh empty database; `open` may be called again for a second handle on the same one. */
  create(): Promise<{ open: (opts?: { random?: () => number }) => KyselyStore; drop: () => Promise<void> }>;
}

const harnesses: Harness[] = [
  {
    name: 'sqlite',
    async create() {
      const path = join(tmpRoot, `${randomBytes(6).toString('hex')}.db`);
      return { open: (o) => createSqliteStore({ path, ...o }), drop: async () => rmSync(path, { force: true }) };
    },
  },
];
if (pgUp) {
  harnesses.push({
    name: 'postgres',
    async create() {
      const schema = `tsched_test_${randomBytes(6).toString('hex')}`;
      return {
        open: (o) => createPostgresStore({ url: PG_URL, schema, maxConnections: 4, ...o }),
        drop: async () => {
          const c = new pg.Client({ connectionString: PG_URL });
          await c.connect();
          await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          await c.end();
        },
      };
    },
  });
}

const T0 = 1_700_000_000_000;
const MB = 1024 * 1024;
const USAGE = { peakMemory: null, cpuSeconds: null };

function task(over: Partial<NewTask> = {}): NewTask {
  return { ...normalizeTask({ command: ['true'] }), ...over };
}

function workerReg(name: string, over: Partial<WorkerRegistration['capacity']> = {}): WorkerRegistration {
  return {
    name,
    capacity: { cpus: 2000, memory: 1024 * MB, ports: { from: 9000, to: 9003 }, ...over },
    labels: { zone: 'a' },
    executors: ['shell'],
    enforcement: { memory: 'none', cpu: 'none' },
    version: 'test',
    hostname: 'host',
  };
}

const alloc = (cpus: number, memory: number, ports: number[] = []) => ({ cpus, memory, ports, namedPorts: {} });
const ctx = (now = T0, over: Partial<{ epoch: number | null; leaseMs: number }> = {}) => ({
  now,
  leaseMs: 30_000,
  epoch: null,
  actor: 'scheduler',
  ...over,
});

describe.each(harnesses)('Store conformance: $name', (h) => {
  let store: KyselyStore;
  let db: Awaited<ReturnType<Harness['create']>>;
  const extra: KyselyStore[] = [];

  beforeEach(async () => {
    db = await h.create();
    store = db.open({ random: () => 0.5 });
    await store.migrate();
  });
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await store.close();
    await db.drop();
  });

  /** A second database, migrated up to (not including) `version`, for upgrade tests; `s.migrate()` finishes it. */
  async function migratedBefore(version: number) {
    const old = await h.create();
    const s = old.open();
    extra.push(s);
    await runMigrations(
      s.backend,
      MIGRATIONS.filter((m) => m.version < version),
    );
    return { s, old };
  }

  /** Submit one task, register a worker, place the task: a live run to play with. */
  async function placed(over: Partial<NewTask> = {}, workerName = 'w1') {
    const [t] = (await store.submitTasks('alice', [task(over)], { now: T0, actor: 'alice' })).tasks;
    const { worker } = await store.registerWorker(workerReg(workerName), T0);
    const res = await store.applyPlan([{ taskId: t!.id, workerId: worker.id, allocation: alloc(500, 64 * MB) }], ctx());
    expect(res.rejected).toEqual([]);
    return { task: t!, worker, run: res.runs[0]! };
  }

  it('a report that starts and ends a run writes it once, with both events, and acks every start in order', async () => {
    const { task: a, run: ra, worker } = await placed();
    const [b] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const [c] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const { runs } = await store.applyPlan(
      [b!, c!].map((t) => ({ taskId: t.id, workerId: worker.id, allocation: alloc(100, MB) })),
      ctx(),
    );
    const [rb, rc] = runs;
    const rep = await store.workerReport(
      worker.id,
      {
        // a: started and ended here; b: only started, twice, the second time with a stale token; c: its
        // start carries a stale token, its result the right one.
        started: [
          { runId: ra.id, token: ra.leaseToken, at: T0 + 10 },
          { runId: rb!.id, token: rb!.leaseToken, at: T0 + 20 },
          { runId: rc!.id, token: 'stale', at: T0 + 30 },
          { runId: rb!.id, token: 'stale', at: T0 + 40 },
        ],
        logs: [],
        results: [result(ra, 'succeeded', 0), result(rc!, 'failed', 1)],
        running: [],
      },
      T0 + 1000,
      { leaseMs: 30_000, maxLogBytesPerRun: 1024 },
    );
    expect(rep.started).toEqual([
      { runId: ra.id, ok: true },
      { runId: rb!.id, ok: true },
      { runId: rc!.id, ok: false, code: 'LEASE_STALE' },
      { runId: rb!.id, ok: false, code: 'LEASE_STALE' },
    ]);
    expect(rep.results.acks.map((x) => x.ok)).toEqual([true, true]);
    expect((await store.getRun(ra.id))!).toMatchObject({ state: 'succeeded', startedAt: T0 + 10, finishedAt: T0 + 1000 });
    expect((await store.getRun(rb!.id))!).toMatchObject({ state: 'running', startedAt: T0 + 20 });
    expect((await store.getRun(rc!.id))!).toMatchObject({ state: 'failed', startedAt: T0 });
    const runEvents = async (taskId: number) =>
      (await store.listEvents(taskId)).filter((e) => e.type.startsWith('run.')).map((e) => [e.type, e.from, e.to]);
    expect(await runEvents(a.id)).toEqual([
      ['run.assigned', null, 'assigned'],
      ['run.started', 'assigned', 'running'],
      ['run.succeeded', 'running', 'succeeded'],
    ]);
    expect(await runEvents(c!.id)).toEqual([
      ['run.assigned', null, 'assigned'],
      ['run.failed', 'assigned', 'failed'],
    ]);
  });

  const result = (
    run: { id: number; leaseToken: string },
    outcome: RunResultInput['outcome'],
    exitCode: number | null = null,
    at = T0 + 1000,
  ): RunResultInput => ({
    runId: run.id,
    token: run.leaseToken,
    outcome,
    exitCode,
    reason: null,
    startedAt: T0,
    finishedAt: at,
    usage: USAGE,
  });

  // ------------------------------------------------------------ deadlines and notifications

  it('reports a missed start deadline exactly once, fails expiring tasks, and queues their notifications', async () => {
    const notify = { url: 'http://127.0.0.1:9/hook', events: ['task.deadline_missed', 'task.failed'] };
    const { tasks } = await store.submitTasks(
      'alice',
      [
        task({ delayTolerance: 1000, notify }),
        task({ delayTolerance: 1000, onDeadlineMiss: 'expire', notify }),
        task({ delayTolerance: 60_000 }),
      ],
      { now: T0, actor: 'alice' },
    );
    const [late, expiring, patient] = tasks as [(typeof tasks)[0], (typeof tasks)[0], (typeof tasks)[0]];
    expect(await store.recordDeadlineMisses(T0 + 500, 100)).toEqual([]);
    const misses = await store.recordDeadlineMisses(T0 + 5000, 100);
    expect(misses.map((m) => [m.task.id, m.expired]).sort()).toEqual([
      [late.id, false],
      [expiring.id, true],
    ]);
    // Exactly once: a second sweep finds nothing.
    expect(await store.recordDeadlineMisses(T0 + 6000, 100)).toEqual([]);
    expect((await store.getTask(late.id, null))!).toMatchObject({ status: 'waiting', deadlineMissed: true });
    expect((await store.getTask(expiring.id, null))!).toMatchObject({
      status: 'failed',
      lastError: expect.stringMatching(/deadline_missed/),
    });
    expect((await store.getTask(patient.id, null))!.deadlineMissed).toBe(false);
    const types = (await store.listEvents(expiring.id)).map((e) => e.type);
    expect(types).toEqual(['task.submitted', 'task.deadline_missed', 'task.failed']);

    // Outbox: late → deadline_missed; expiring → deadline_missed + failed. Claimed once per lease.
    const claimed = await store.claimNotifications(T0 + 6000, 10, 60_000);
    expect(claimed.map((n) => [n.taskId, n.event]).sort()).toEqual(
      [
        [late.id, 'task.deadline_missed'],
        [expiring.id, 'task.deadline_missed'],
        [expiring.id, 'task.failed'],
      ].sort(),
    );
    expect(claimed[0]!.attempts).toBe(1);
    expect(await store.claimNotifications(T0 + 7000, 10, 60_000)).toEqual([]);
    const [first, second, third] = claimed as [(typeof claimed)[0], (typeof claimed)[0], (typeof claimed)[0]];
    await store.settleNotification(first.id, { ok: true, now: T0 + 7000, retryAt: null, error: null });
    await store.settleNotification(second.id, { ok: false, now: T0 + 7000, retryAt: T0 + 8000, error: 'HTTP 500' });
    await store.settleNotification(third.id, { ok: false, now: T0 + 7000, retryAt: null, error: 'gave up' });
    const again = await store.claimNotifications(T0 + 9000, 10, 60_000);
    expect(again.map((n) => n.id)).toEqual([second.id]);
    expect(again[0]!.attempts).toBe(2);
  });

  it('ending a run writes the run, its task, their events and the notification of the task together', async () => {
    const notify = { url: 'http://127.0.0.1:9/hook', events: ['task.done'] };
    const { task: t, run, worker } = await placed({ notify });
    const fin = await store.finishRuns([result(run, 'succeeded', 0)], T0 + 1000);
    expect(fin.changed).toEqual([{ taskId: t.id, status: 'done' }]);
    expect((await store.getTask(t.id, null))!).toMatchObject({ status: 'done', finishedAt: T0 + 1000, lastError: null });
    expect((await store.getRun(run.id))!).toMatchObject({ state: 'succeeded', exitCode: 0, finishedAt: T0 + 1000 });
    expect((await store.listEvents(t.id)).map((e) => e.type)).toEqual([
      'task.submitted',
      'task.claimed',
      'run.assigned',
      'run.succeeded',
      'task.done',
    ]);
    expect((await store.claimNotifications(T0 + 2000, 10, 60_000)).map((n) => [n.taskId, n.event])).toEqual([[t.id, 'task.done']]);
    // The worker's room is free again, and its heartbeat names nothing to cancel.
    expect((await store.loadWorkers()).find((w) => w.id === worker.id)!.allocated.cpus).toBe(0);
    expect((await store.heartbeat(worker.id, [], T0 + 2000, 30_000)).cancel).toEqual([]);
  });

  it('a retry gets a fresh start deadline and can miss it again', async () => {
    const { task: t, run } = await placed({ delayTolerance: 1000, totalAttempts: 2 });
    await store.finishRuns([result(run, 'failed', 1)], T0 + 100);
    const waiting = (await store.getTask(t.id, null))!;
    expect(waiting.status).toBe('waiting');
    expect(waiting.startDeadline).toBe(waiting.dueAt + 1000);
    const misses = await store.recordDeadlineMisses(waiting.startDeadline + 1, 10);
    expect(misses.map((m) => m.task.id)).toEqual([t.id]);
  });

  // ------------------------------------------------------------ migrations

  it('migrate twice is a no-op, also from two handles at once', async () => {
    await store.migrate();
    const other = db.open();
    extra.push(other);
    await Promise.all([other.migrate(), store.migrate()]);
    const rows = await store.backend.read((ex) => ex.all<{ version: number }>('SELECT version FROM schema_migrations'));
    expect(rows.map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
    expect(store.kind).toBe(h.name);
    expect(typeof (await store.now())).toBe('number');
  });

  // ------------------------------------------------------------ submit, get, list, counts

  it('submits a batch durably: ids, defaults, due time, deadline, owner isolation', async () => {
    const res = await store.submitTasks('alice', [task({ name: 'a' }), task({ name: 'b', dueAt: T0 + 5000, delayTolerance: 1000 })], {
      now: T0,
      actor: 'alice',
    });
    expect(res.replayed).toBe(false);
    const [a, b] = res.tasks;
    expect(a!.id).toBeLessThan(b!.id);
    expect(a).toMatchObject({
      owner: 'alice',
      name: 'a',
      status: 'waiting',
      attempts: 0,
      dueAt: T0,
      createdAt: T0,
      finishedAt: null,
      paused: false,
    });
    expect(a!.startDeadline).toBe(T0 + a!.delayTolerance);
    expect(b).toMatchObject({ dueAt: T0 + 5000, startDeadline: T0 + 6000 });
    const got = await store.getTask(a!.id, 'alice');
    expect(got).toEqual(a);
    expect(got!.command).toEqual(['true']);
    expect(got!.retry).toEqual(a!.retry);
    expect(await store.getTask(a!.id, 'bob')).toBeNull();
    expect(await store.getTask(a!.id, null)).toEqual(a);
    expect(await store.getTask(999_999, null)).toBeNull();
  });

  it('submits queued together each get their own tasks, owner, clock and events', async () => {
    const [a, b, c] = await Promise.all([
      store.submitTasks('alice', [task({ name: 'a1' }), task({ name: 'a2' })], { now: T0, actor: 'alice' }),
      store.submitTasks('bob', [task({ name: 'b1' })], { now: T0 + 1, actor: 'bob' }),
      store.submitTasks('carol', [task({ name: 'c1' }), task({ name: 'c2' }), task({ name: 'c3' })], { now: T0 + 2, actor: 'carol' }),
    ]);
    expect(a!.tasks.map((t) => [t.name, t.owner, t.createdAt])).toEqual([
      ['a1', 'alice', T0],
      ['a2', 'alice', T0],
    ]);
    expect(b!.tasks.map((t) => [t.name, t.owner, t.createdAt])).toEqual([['b1', 'bob', T0 + 1]]);
    expect(c!.tasks.map((t) => t.name)).toEqual(['c1', 'c2', 'c3']);
    for (const r of [a!, b!, c!])
      for (const t of r.tasks) {
        expect(await store.getTask(t.id, t.owner)).toEqual(t);
        expect((await store.listEvents(t.id)).map((e) => [e.type, e.actor, e.at])).toEqual([['task.submitted', t.owner, t.createdAt]]);
      }
  });

  it('lists newest first with cursor paging, status and owner filters, and counts', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 7; i++)
      ids.push(
        ...(await store.submitTasks(i % 2 ? 'bob' : 'alice', [task({ name: `t${i}` })], { now: T0, actor: 'x' })).tasks.map((t) => t.id),
      );
    await store.cancelTask(ids[0]!, null, { now: T0, actor: 'alice', reason: 'test' });

    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { tasks: { id: number }[]; next: string | null } = await store.listTasks({ owner: null, limit: 3, cursor });
      expect(page.tasks.length).toBeLessThanOrEqual(3);
      seen.push(...page.tasks.map((t) => t.id));
      cursor = page.next;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    const alice = await store.listTasks({ owner: 'alice', limit: 100 });
    expect(alice.tasks.map((t) => t.id)).toEqual([ids[6], ids[4], ids[2], ids[0]]);
    expect(alice.next).toBeNull();
    const cancelled = await store.listTasks({ owner: null, status: ['cancelled'], limit: 10 });
    expect(cancelled.tasks.map((t) => t.id)).toEqual([ids[0]]);

    expect(await store.countTasks(null)).toEqual({ waiting: 6, in_progress: 0, done: 0, failed: 0, cancelled: 1 });
    expect(await store.countTasks('bob')).toEqual({ waiting: 3, in_progress: 0, done: 0, failed: 0, cancelled: 0 });

    await expect(store.listTasks({ owner: null, limit: 0 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(store.listTasks({ owner: null, limit: 5, cursor: '!!' })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      message: /cursor/,
    });
  });

  it('stores an occurrence of a recurring task once, whoever expands it', async () => {
    const [parent] = (await store.submitTasks('alice', [task({ schedulingType: 'daily' })], { now: T0, actor: 'alice' })).tasks;
    const occ = task({ parentId: parent!.id, occurrenceAt: T0 + 86_400_000, dueAt: T0 + 86_400_000 });
    const first = await store.submitTasks('alice', [occ], { now: T0, actor: 'scheduler' });
    const again = await store.submitTasks('alice', [occ], { now: T0, actor: 'scheduler' });
    expect(first.tasks).toHaveLength(1);
    expect(again.tasks).toHaveLength(0);
    const list = await store.listTasks({ owner: null, parentId: parent!.id, limit: 10 });
    expect(list.tasks.map((t) => t.id)).toEqual([first.tasks[0]!.id]);
  });

  it('indexes only occurrences by (parent, instant), and reads the live runs from their own index', async () => {
    // Two plain tasks share a NULL parent and instant: never a conflict, and no entry of theirs to write.
    const plain = await store.submitTasks('alice', [task(), task()], { now: T0, actor: 'alice' });
    expect(plain.tasks).toHaveLength(2);
    const pg = store.backend.kind === 'postgres';
    const [def] = await store.backend.tx((ex) =>
      ex.all<{ d: string }>(
        pg
          ? "SELECT indexdef AS d FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'tasks_occurrence'"
          : "SELECT sql AS d FROM sqlite_master WHERE name = 'tasks_occurrence'",
      ),
    );
    expect(def?.d).toMatch(/UNIQUE INDEX tasks_occurrence ON \S*tasks .*\(parent_id, occurrence_at\) WHERE \(?parent_id IS NOT NULL\)?$/);
    // The pass's read of every live run, in id order, walks the live runs' index: without it SQLite scans
    // the whole run history in rowid order to spare a sort (1.7 ms a pass after a 20,000-task drain).
    // PostgreSQL costs its plans and may pick any index of these empty tables.
    if (!pg) {
      const plan = await store.backend.tx((ex) => ex.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${LIVE_RUNS_SELECT}`));
      expect(plan.map((r) => r.detail).join('\n')).toMatch(/SCAN r USING INDEX runs_live/);
    }
  });

  it("looks up each live run's owner by key, so that a pass's read of the live runs never walks the task history", async () => {
    // A history of tasks, a few of them running.
    const { worker } = await store.registerWorker(workerReg('w'), T0);
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { tasks } = await store.submitTasks(
        'alice',
        Array.from({ length: 500 }, () => task()),
        { now: T0, actor: 'alice' },
      );
      ids.push(tasks[0]!.id);
    }
    const { runs } = await store.applyPlan(
      ids.map((taskId) => ({ taskId, workerId: worker.id, allocation: alloc(100, MB) })),
      ctx(),
    );
    expect(runs).toHaveLength(4);
    const pg = store.backend.kind === 'postgres';
    if (pg) await store.backend.tx((ex) => ex.all('ANALYZE tasks, runs'));
    const plan = (
      await store.backend.tx((ex) =>
        ex.all<Record<string, string>>(pg ? `EXPLAIN ${LIVE_RUNS_SELECT}` : `EXPLAIN QUERY PLAN ${LIVE_RUNS_SELECT}`),
      )
    )
      .map((r) => (pg ? r['QUERY PLAN'] : r.detail))
      .join('\n');
    // One primary-key lookup per live run (a correlated subquery), never a join that may scan tasks: PostgreSQL
    // sometimes planned the join as a merge join along tasks_pkey from the first task (see LIVE_RUNS_SELECT).
    if (pg) {
      expect(plan).toMatch(/SubPlan/);
      expect(plan).toMatch(/Index Scan using tasks_pkey on tasks t[\s\S]*Index Cond: \(id = r\.task_id\)/);
      expect(plan).not.toMatch(/Join|Seq Scan on tasks/);
    } else {
      expect(plan).toMatch(/CORRELATED SCALAR SUBQUERY/);
      expect(plan).toMatch(/SEARCH t USING INTEGER PRIMARY KEY \(rowid=\?\)/);
      expect(plan).not.toMatch(/SCAN t\b/);
    }
    // And the pass sees each live run's owner.
    const live = (await store.loadWorkers()).flatMap((w) => w.live);
    expect(live.map((l) => l.owner)).toEqual(['alice', 'alice', 'alice', 'alice']);
    // A live run whose task row is gone still holds its room (a join left it out, and the pass saw that room
    // as free); it counts for no owner.
    await store.backend.tx((ex) => ex.all('DELETE FROM tasks WHERE id = ?', [ids[0]]));
    const [w] = await store.loadWorkers();
    expect(w!.live.map((l) => l.owner)).toEqual([undefined, 'alice', 'alice', 'alice']);
    expect(w!.allocated.cpus).toBe(400);
  });

  it('still stores an occurrence once after migrating a database from before migration 7', async () => {
    const { s, old } = await migratedBefore(7);
    const [parent] = (await s.submitTasks('alice', [task({ schedulingType: 'daily' })], { now: T0, actor: 'alice' })).tasks;
    const occ = task({ parentId: parent!.id, occurrenceAt: T0 + 86_400_000, dueAt: T0 + 86_400_000 });
    expect((await s.submitTasks('alice', [occ], { now: T0, actor: 'scheduler' })).tasks).toHaveLength(1);
    await s.migrate();
    expect((await s.submitTasks('alice', [occ], { now: T0, actor: 'scheduler' })).tasks).toHaveLength(0);
    expect((await s.submitTasks('alice', [task(), task()], { now: T0, actor: 'alice' })).tasks).toHaveLength(2);
    expect((await s.listTasks({ owner: null, parentId: parent!.id, limit: 10 })).tasks).toHaveLength(1);
    await old.drop();
  });

  // ------------------------------------------------------------ idempotency

  it('replays an idempotency key, refuses it for a different body, and expires it after 24h', async () => {
    const opts = { now: T0, actor: 'alice', idempotencyKey: 'k1', requestHash: 'h1' };
    const first = await store.submitTasks('alice', [task(), task()], opts);
    const again = await store.submitTasks('alice', [task(), task()], { ...opts, now: T0 + 1000 });
    expect(again.replayed).toBe(true);
    expect(again.tasks).toEqual(first.tasks);
    const conflict = await store.submitTasks('alice', [task()], { ...opts, requestHash: 'h2' }).catch((e) => e);
    expect(conflict).toBeInstanceOf(TschedError);
    expect(conflict.code).toBe('IDEMPOTENCY_CONFLICT');
    expect(conflict.message).toMatch(/k1/);
    // Another owner's key space is separate.
    expect((await store.submitTasks('bob', [task()], opts)).replayed).toBe(false);
    // After 24h the key is free again.
    const later = await store.submitTasks('alice', [task()], { ...opts, now: T0 + 86_400_001 });
    expect(later.replayed).toBe(false);
    expect((await store.countTasks(null)).waiting).toBe(4);
  });

  it('concurrent submits with one idempotency key create one batch', async () => {
    const others = [db.open(), db.open()];
    extra.push(...others);
    const opts = { now: T0, actor: 'alice', idempotencyKey: 'same', requestHash: 'h' };
    const results = await Promise.all(
      [store, ...others, store, ...others].map((s) => s.submitTasks('alice', [task(), task(), task()], opts)),
    );
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    const ids = results[0]!.tasks.map((t) => t.id);
    for (const r of results) expect(r.tasks.map((t) => t.id)).toEqual(ids);
    expect((await store.countTasks(null)).waiting).toBe(3);
  });

  // ------------------------------------------------------------ applyPlan

  it('applyPlan never overcommits cpu or memory and names the reason', async () => {
    const { worker } = await store.registerWorker(workerReg('w1'), T0); // 2000m, 1024 MiB
    const ts = (await store.submitTasks('alice', [task(), task(), task(), task()], { now: T0, actor: 'alice' })).tasks;
    const plan: PlacementDecision[] = [
      { taskId: ts[0]!.id, workerId: worker.id, allocation: alloc(1000, 256 * MB) },
      { taskId: ts[1]!.id, workerId: worker.id, allocation: alloc(1000, 256 * MB) },
      { taskId: ts[2]!.id, workerId: worker.id, allocation: alloc(1, 1) }, // cpu full
    ];
    const res = await store.applyPlan(plan, ctx());
    expect(res.runs.map((r) => r.taskId)).toEqual([ts[0]!.id, ts[1]!.id]);
    expect(res.rejected).toEqual([{ taskId: ts[2]!.id, workerId: worker.id, reason: 'overcommit_cpu' }]);
    // Memory: free the cpu by finishing one run, then ask for too much memory.
    await store.finishRuns([result(res.runs[0]!, 'succeeded', 0)], T0);
    const mem = await store.applyPlan([{ taskId: ts[2]!.id, workerId: worker.id, allocation: alloc(500, 800 * MB) }], ctx());
    expect(mem.rejected).toEqual([{ taskId: ts[2]!.id, workerId: worker.id, reason: 'overcommit_memory' }]);
    const [w] = await store.loadWorkers();
    expect(w!.allocated).toEqual({ cpus: 1000, memory: 256 * MB, ports: [] });
    expect(w!.live).toEqual([
      {
        runId: res.runs[1]!.id,
        taskId: ts[1]!.id,
        cpus: 1000,
        memory: 256 * MB,
        ports: [],
        endsBy: T0 + ts[1]!.executionCap,
        owner: ts[1]!.owner,
      },
    ]);
  });

  it('applyPlan never hands out a port twice or outside the range', async () => {
    const { worker } = await store.registerWorker(workerReg('w1'), T0); // ports 9000–9003
    const ts = (await store.submitTasks('alice', [task(), task(), task(), task(), task()], { now: T0, actor: 'alice' })).tasks;
    const d = (i: number, ports: number[]) => ({ taskId: ts[i]!.id, workerId: worker.id, allocation: alloc(100, MB, ports) });
    const first = await store.applyPlan([d(0, [9000, 9001])], ctx());
    expect(first.rejected).toEqual([]);
    const res = await store.applyPlan([d(1, [9001]), d(2, [9002, 9002]), d(3, [9100]), d(4, [9002, 9003])], ctx());
    expect(res.rejected.map((r) => r.reason)).toEqual(['port_taken', 'port_taken', 'port_out_of_range']);
    expect(res.runs.map((r) => r.allocation.ports)).toEqual([[9002, 9003]]);
    const [w] = await store.loadWorkers();
    expect(w!.allocated.ports.sort()).toEqual([9000, 9001, 9002, 9003]);
  });

  it('applyPlan refuses non-waiting, not-due and paused tasks, and unavailable workers', async () => {
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const { worker: w2 } = await store.registerWorker(workerReg('w2'), T0);
    const ts = (await store.submitTasks('alice', [task(), task(), task({ dueAt: T0 + 60_000 }), task()], { now: T0, actor: 'alice' }))
      .tasks;
    await store.cancelTask(ts[1]!.id, null, { now: T0, actor: 'alice', reason: 'x' });
    await store.setWorkerState(w2.id, 'draining', T0);
    const a = alloc(100, MB);
    const res = await store.applyPlan(
      [
        { taskId: ts[0]!.id, workerId: worker.id, allocation: a },
        { taskId: ts[0]!.id, workerId: worker.id, allocation: a }, // the same task twice in one plan
        { taskId: ts[1]!.id, workerId: worker.id, allocation: a }, // cancelled
        { taskId: ts[2]!.id, workerId: worker.id, allocation: a }, // not due yet
        { taskId: ts[3]!.id, workerId: w2.id, allocation: a }, // draining
        { taskId: ts[3]!.id, workerId: 'w_missing', allocation: a },
        { taskId: 999_999, workerId: worker.id, allocation: a },
      ],
      ctx(),
    );
    expect(res.runs).toHaveLength(1);
    expect(res.rejected.map((r) => r.reason)).toEqual([
      'task_not_waiting',
      'task_not_waiting',
      'task_not_due',
      'worker_unavailable',
      'worker_unavailable',
      'task_not_waiting',
    ]);
    // Placed again later: still refused, the task is in progress.
    expect((await store.applyPlan([{ taskId: ts[0]!.id, workerId: worker.id, allocation: a }], ctx())).rejected[0]!.reason).toBe(
      'task_not_waiting',
    );
  });

  it('applyPlan refuses the whole plan when the fencing epoch is not current', async () => {
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const [t] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const plan = [{ taskId: t!.id, workerId: worker.id, allocation: alloc(100, MB) }];
    await expect(store.applyPlan(plan, ctx(T0, { epoch: 1 }))).rejects.toMatchObject({ code: 'NOT_LEADER' });
    await store.backend.tx((ex) =>
      ex.all("INSERT INTO leader (id, holder, epoch, expires_at) VALUES ('scheduler', 'me', 2, ?)", [T0 + 10_000]),
    );
    await expect(store.applyPlan(plan, ctx(T0, { epoch: 1 }))).rejects.toMatchObject({ code: 'NOT_LEADER' });
    expect((await store.getTask(t!.id, null))!.status).toBe('waiting');
    // A plan whose tasks are all gone still has its epoch checked.
    const ghost = [{ taskId: 999_999, workerId: worker.id, allocation: alloc(100, MB) }];
    await expect(store.applyPlan(ghost, ctx(T0, { epoch: 1 }))).rejects.toMatchObject({ code: 'NOT_LEADER' });
    expect((await store.applyPlan(ghost, ctx(T0, { epoch: 2 }))).runs).toEqual([]);
    expect((await store.applyPlan(plan, ctx(T0, { epoch: 2 }))).runs).toHaveLength(1);
  });

  it('concurrent plans from two handles never overcommit a worker', async () => {
    const other = db.open();
    extra.push(other);
    const { worker } = await store.registerWorker(workerReg('w1', { cpus: 3000 }), T0);
    const ts = (
      await store.submitTasks(
        'alice',
        Array.from({ length: 10 }, () => task()),
        { now: T0, actor: 'alice' },
      )
    ).tasks;
    const plans = [ts.slice(0, 5), ts.slice(5)].map((part) =>
      part.map((t) => ({ taskId: t.id, workerId: worker.id, allocation: alloc(1000, MB) })),
    );
    const [r1, r2] = await Promise.all([store.applyPlan(plans[0]!, ctx()), other.applyPlan(plans[1]!, ctx())]);
    expect(r1!.runs.length + r2!.runs.length).toBe(3);
    const [w] = await store.loadWorkers();
    expect(w!.allocated.cpus).toBe(3000);
  });

  // ------------------------------------------------------------ scheduling passes (snapshot, plan, apply)

  /** A scheduling pass at `now` whose planner returns `decide(snapshot)` (the applier checks every decision). */
  const pass = (
    s: KyselyStore,
    decide: Parameters<KyselyStore['schedulePass']>[1],
    over: Partial<{ epoch: number | null; now: number; limit: number }> = {},
  ) => s.schedulePass({ limit: over.limit ?? 64, urgentBefore: (over.now ?? T0) + 60_000 }, decide, ctx(over.now ?? T0, over));

  it('a pass places what its planner decides and re-checks every decision against what it read', async () => {
    const { worker } = await store.registerWorker(workerReg('w1', { cpus: 2000 }), T0);
    const { worker: w2 } = await store.registerWorker(workerReg('w2'), T0);
    await store.setWorkerState(w2.id, 'draining', T0);
    const ts = (await store.submitTasks('alice', [task(), task(), task(), task({ dueAt: T0 + 60_000 })], { now: T0, actor: 'alice' }))
      .tasks;
    const [done] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    await store.cancelTask(done!.id, null, { now: T0, actor: 'alice', reason: 'x' });
    const a = alloc(1000, MB);
    let seen: { tasks: number[]; workers: string[] } | null = null;
    const res = await pass(store, (snap) => {
      seen = { tasks: snap.tasks.map((t) => t.id), workers: snap.workers.map((w) => w.id) };
      return [
        { taskId: ts[0]!.id, workerId: worker.id, allocation: a },
        { taskId: ts[0]!.id, workerId: worker.id, allocation: a }, // the same task twice
        { taskId: ts[1]!.id, workerId: w2.id, allocation: a }, // draining
        { taskId: ts[1]!.id, workerId: worker.id, allocation: a },
        { taskId: ts[2]!.id, workerId: worker.id, allocation: a }, // the worker is full by now
        { taskId: ts[3]!.id, workerId: worker.id, allocation: alloc(0, 0) }, // not due: never a candidate
        { taskId: done!.id, workerId: worker.id, allocation: alloc(0, 0) }, // cancelled
      ];
    });
    // The snapshot: due waiting tasks only, and the schedulable workers.
    expect(seen).toEqual({ tasks: [ts[0]!.id, ts[1]!.id, ts[2]!.id], workers: [worker.id, w2.id].sort() });
    expect(res.runs.map((r) => r.taskId)).toEqual([ts[0]!.id, ts[1]!.id]);
    expect(res.runs.map((r) => r.allocation)).toEqual([a, a]);
    expect(res.rejected.map((r) => r.reason)).toEqual([
      'task_not_waiting',
      'worker_unavailable',
      'overcommit_cpu',
      'task_not_waiting',
      'task_not_waiting',
    ]);
    expect(await store.getTask(ts[0]!.id, null)).toMatchObject({ status: 'in_progress', attempts: 1 });
    expect((await store.listEvents(ts[1]!.id)).map((e) => e.type)).toContain('task.claimed');
    const [w] = (await store.loadWorkers()).filter((x) => x.id === worker.id);
    expect(w!.allocated.cpus).toBe(2000);
    // The next pass sees the worker full and reads no candidates.
    expect((await pass(store, () => [])).skipped).toBe('no_room');
  });

  it('a pass counts the room runs already hold, its ports included, and stamps the runs it creates', async () => {
    const { worker } = await store.registerWorker(workerReg('w1', { cpus: 3000 }), T0);
    const ts = (await store.submitTasks('alice', [task(), task(), task()], { now: T0, actor: 'alice' })).tasks;
    const first = await pass(store, () => [{ taskId: ts[0]!.id, workerId: worker.id, allocation: alloc(2000, MB, [9000]) }]);
    expect(first.runs).toHaveLength(1);
    const second = await pass(
      store,
      (snap) => {
        expect(snap.workers[0]!.allocated).toEqual({ cpus: 2000, memory: MB, ports: [9000] });
        return [
          { taskId: ts[1]!.id, workerId: worker.id, allocation: alloc(1000, MB, [9000]) }, // port held
          { taskId: ts[1]!.id, workerId: worker.id, allocation: alloc(2000, MB) }, // more cpu than is left
          { taskId: ts[2]!.id, workerId: worker.id, allocation: alloc(1000, MB, [9001]) },
        ];
      },
      { now: T0 + 5 },
    );
    expect(second.rejected.map((r) => r.reason)).toEqual(['port_taken', 'overcommit_cpu']);
    expect(second.runs).toHaveLength(1);
    expect(second.runs[0]).toMatchObject({ taskId: ts[2]!.id, assignedAt: T0 + 5, leaseExpiresAt: T0 + 5 + 30_000 });
    expect((await store.getRun(second.runs[0]!.id))!.allocation).toEqual(alloc(1000, MB, [9001]));
  });

  it('a pass under a fencing epoch places only while the epoch is current', async () => {
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const [t] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const decide = () => [{ taskId: t!.id, workerId: worker.id, allocation: alloc(100, MB) }];
    const { epoch } = await store.acquireLeadership('scheduler', 'A', 60_000);
    await expect(pass(store, decide, { epoch: epoch + 1 })).rejects.toMatchObject({ code: 'NOT_LEADER' });
    expect((await store.getTask(t!.id, null))!.status).toBe('waiting');
    expect((await pass(store, decide, { epoch })).runs).toHaveLength(1);
  });

  it('two handles passing at once place each task once and never overcommit', async () => {
    const other = db.open();
    extra.push(other);
    // Room for every task twice over: the worker's room alone cannot stop a second placement.
    const { worker } = await store.registerWorker(workerReg('w1', { cpus: 96_000 }), T0);
    // Every candidate onto the one worker: without the candidates locked (PostgreSQL) or the write lock
    // held (SQLite) from the read to the write, both passes would place the same tasks.
    const all = (snap: { tasks: ReadonlyArray<{ id: number }> }) =>
      snap.tasks.map((t) => ({ taskId: t.id, workerId: worker.id, allocation: alloc(1000, MB) }));
    // Both handles' connections open first, so that the two passes of a round do overlap.
    await Promise.all([pass(store, all), pass(other, all)]);
    const ts: number[] = [];
    for (let round = 0; round < 3; round++) {
      const batch = (
        await store.submitTasks(
          'alice',
          Array.from({ length: 16 }, () => task()),
          { now: T0, actor: 'alice' },
        )
      ).tasks;
      ts.push(...batch.map((t) => t.id));
      await Promise.all([pass(store, all), pass(other, all)]);
    }
    const runs = (await Promise.all(ts.map((id) => store.listRuns(id)))).map((r) => r.length);
    expect(runs).toEqual(ts.map(() => 1));
    const [w] = await store.loadWorkers();
    expect(w!.allocated.cpus).toBe(48_000);
  });

  it('run ids follow creation order when leadership moves to another replica and back', async () => {
    const other = db.open();
    extra.push(other);
    const { worker } = await store.registerWorker(workerReg('w1', { cpus: 8000 }), T0);
    const ts = (await store.submitTasks('alice', [task(), task(), task()], { now: T0, actor: 'alice' })).tasks;
    const one = (id: number) => () => [{ taskId: id, workerId: worker.id, allocation: alloc(100, MB) }];
    const a1 = await store.acquireLeadership('scheduler', 'A', 60_000);
    const r1 = (await pass(store, one(ts[0]!.id), { epoch: a1.epoch })).runs[0]!;
    await store.releaseLeadership('scheduler', 'A');
    const b = await other.acquireLeadership('scheduler', 'B', 60_000);
    const r2 = (await pass(other, one(ts[1]!.id), { epoch: b.epoch })).runs[0]!;
    await other.releaseLeadership('scheduler', 'B');
    const a2 = await store.acquireLeadership('scheduler', 'A', 60_000);
    const r3 = (await pass(store, one(ts[2]!.id), { epoch: a2.epoch })).runs[0]!;
    expect(r2.id).toBeGreaterThan(r1.id);
    expect(r3.id).toBeGreaterThan(r2.id);
  });

  it('counts attempts at claim and records the claim', async () => {
    const { task: t, run, worker } = await placed({ totalAttempts: 3 });
    expect(run).toMatchObject({
      taskId: t.id,
      attempt: 1,
      workerId: worker.id,
      workerName: 'w1',
      state: 'assigned',
      assignedAt: T0,
      leaseExpiresAt: T0 + 30_000,
      cancelRequested: false,
    });
    expect(run.leaseToken).toMatch(/^[0-9a-f]{32}$/);
    const after = await store.getTask(t.id, null);
    expect(after).toMatchObject({ status: 'in_progress', attempts: 1 });
    // The attempt is lost (crash): it still counts, and the next claim is attempt 2.
    await store.reap(T0 + 31_000, { workerSilenceMs: 3_600_000, capGraceMs: 0 });
    const waiting = await store.getTask(t.id, null);
    expect(waiting).toMatchObject({ status: 'waiting', attempts: 1 });
    const res = await store.applyPlan([{ taskId: t.id, workerId: worker.id, allocation: alloc(100, MB) }], ctx(waiting!.dueAt));
    expect(res.runs[0]!.attempt).toBe(2);
    expect((await store.getTask(t.id, null))!.attempts).toBe(2);
  });

  // ------------------------------------------------------------ worker protocol and fencing

  it('delivers each assignment once, with the cap left', async () => {
    const { run, worker, task: t } = await placed({ executionCap: 60_000 });
    const first = await store.takeAssignments(worker.id, 10, T0 + 10_000);
    expect(first).toHaveLength(1);
    expect(first[0]!.run.id).toBe(run.id);
    expect(first[0]!.task.id).toBe(t.id);
    expect(first[0]!.capRemainingMs).toBe(50_000);
    expect(await store.takeAssignments(worker.id, 10, T0 + 10_000)).toEqual([]);
  });

  it('a stale lease token changes nothing on start, heartbeat, logs or finish', async () => {
    const { run, worker, task: t } = await placed();
    const bad = { runId: run.id, token: 'f'.repeat(32) };
    const eventsBefore = await store.listEvents(t.id);
    expect(await store.startRuns([{ ...bad, at: T0 }], T0)).toEqual([{ runId: run.id, ok: false, code: 'LEASE_STALE' }]);
    const hb = await store.heartbeat(worker.id, [bad], T0 + 5000, 30_000);
    expect(hb.acks).toEqual([{ runId: run.id, ok: false, code: 'LEASE_STALE' }]);
    expect(await store.appendLogs([{ ...bad, stream: 'stdout', at: T0, data: 'x' }], 1000)).toEqual([
      { runId: run.id, ok: false, code: 'LEASE_STALE' },
    ]);
    const fin = await store.finishRuns([{ ...result(run, 'succeeded', 0), token: bad.token }], T0);
    expect(fin).toEqual({ acks: [{ runId: run.id, ok: false, code: 'LEASE_STALE' }], changed: [], startAcks: [] });
    expect(await store.getRun(run.id)).toEqual(run);
    expect((await store.getTask(t.id, null))!.status).toBe('in_progress');
    expect((await store.readLogs(run.id, 0, 100)).chunks).toEqual([]);
    expect(await store.listEvents(t.id)).toEqual(eventsBefore);
    // Unknown runs are named as such.
    expect(await store.startRuns([{ runId: 999_999, token: 'x', at: T0 }], T0)).toEqual([
      { runId: 999_999, ok: false, code: 'RUN_NOT_FOUND' },
    ]);
  });

  it('an ended run refuses everything, and a duplicate result is never recorded twice', async () => {
    const { run, worker, task: t } = await placed();
    const tok = { runId: run.id, token: run.leaseToken };
    expect(await store.startRuns([{ ...tok, at: T0 + 10 }], T0 + 10)).toEqual([{ runId: run.id, ok: true }]);
    expect(await store.startRuns([{ ...tok, at: T0 + 20 }], T0 + 20)).toEqual([{ runId: run.id, ok: true }]); // repeated start: no change
    expect((await store.getRun(run.id))!).toMatchObject({ state: 'running', startedAt: T0 + 10 });
    const hb = await store.heartbeat(worker.id, [tok], T0 + 1000, 30_000);
    expect(hb).toEqual({ acks: [{ runId: run.id, ok: true }], cancel: [], stateBefore: 'active' });
    expect((await store.getRun(run.id))!.leaseExpiresAt).toBe(T0 + 31_000);
    expect((await store.getWorker(worker.id))!.lastSeenAt).toBe(T0 + 1000);

    const ok = await store.finishRuns([result(run, 'succeeded', 0), result(run, 'succeeded', 0)], T0 + 2000);
    expect(ok.acks).toEqual([
      { runId: run.id, ok: true },
      { runId: run.id, ok: false, code: 'LEASE_STALE' },
    ]);
    expect(ok.changed).toEqual([{ taskId: t.id, status: 'done' }]);
    const events = await store.listEvents(t.id);
    const dup = await store.finishRuns([result(run, 'failed', 1)], T0 + 3000);
    expect(dup.acks).toEqual([{ runId: run.id, ok: false, code: 'LEASE_STALE' }]);
    expect(await store.listEvents(t.id)).toEqual(events);
    expect(await store.startRuns([{ ...tok, at: T0 }], T0)).toEqual([{ runId: run.id, ok: false, code: 'LEASE_STALE' }]);
    expect(await store.appendLogs([{ ...tok, stream: 'stdout', at: T0, data: 'late' }], 1000)).toEqual([
      { runId: run.id, ok: false, code: 'LEASE_STALE' },
    ]);
    const late = await store.heartbeat(worker.id, [tok], T0 + 4000, 30_000);
    expect(late).toEqual({ acks: [{ runId: run.id, ok: false, code: 'LEASE_STALE' }], cancel: [run.id], stateBefore: 'active' });
    expect(await store.getRun(run.id)).toMatchObject({ state: 'succeeded', outcome: 'succeeded', exitCode: 0, finishedAt: T0 + 1000 });
    expect(await store.getTask(t.id, null)).toMatchObject({ status: 'done', finishedAt: T0 + 2000, lastError: null });
    await expect(store.heartbeat('w_nobody', [], T0, 1000)).rejects.toMatchObject({ code: 'WORKER_NOT_FOUND' });
  });

  // ------------------------------------------------------------ queue manager

  it('a failed attempt with attempts left waits again with backoff', async () => {
    const retry = { backoff: 1000, maxDelay: 60_000, noRetryExitCodes: [] };
    const { run, task: t } = await placed({ totalAttempts: 3, retry, delayTolerance: 5000 });
    const now = T0 + 2000;
    const res = await store.finishRuns([result(run, 'failed', 1)], now);
    expect(res.changed).toEqual([{ taskId: t.id, status: 'waiting' }]);
    const after = await store.getTask(t.id, null);
    // random 0.5 × min(maxDelay, 1000·2^0) = 500 ms
    expect(after).toMatchObject({ status: 'waiting', attempts: 1, dueAt: now + 500, startDeadline: now + 5500, finishedAt: null });
    const ev = (await store.listEvents(t.id)).at(-1)!;
    expect(ev).toMatchObject({ type: 'task.retry_scheduled', from: 'in_progress', to: 'waiting', runId: run.id });
    expect(ev.reason).toMatch(/retry in 500ms/);
    // Not due before its backoff.
    expect((await store.loadCandidates(now + 100, 10, now + 100)).map((x) => x.id)).toEqual([]);
    expect((await store.loadCandidates(now + 500, 10, now + 500)).map((x) => x.id)).toEqual([t.id]);
    expect(await store.nextDueAt(now)).toBe(now + 500);
    expect(await store.nextDueAt(now + 500)).toBeNull();
  });

  it('the last attempt failing fails the task with its last error', async () => {
    const { run, task: t } = await placed({ totalAttempts: 1 });
    const res = await store.finishRuns([{ ...result(run, 'timed_out'), reason: 'cap_exceeded' }], T0 + 5000);
    expect(res.changed).toEqual([{ taskId: t.id, status: 'failed' }]);
    const after = await store.getTask(t.id, null);
    expect(after).toMatchObject({ status: 'failed', attempts: 1, finishedAt: T0 + 5000 });
    expect(after!.lastError).toMatch(/attempt 1 of 1 timed_out; no attempts left/);
    expect(after!.lastError).toMatch(/cap_exceeded/);
    expect((await store.getRun(run.id))!.state).toBe('timed_out');
  });

  it('a no-retry exit code fails the task at once', async () => {
    const retry = { backoff: 1000, maxDelay: 60_000, noRetryExitCodes: [3] };
    const { run, task: t } = await placed({ totalAttempts: 5, retry });
    await store.finishRuns([result(run, 'failed', 3)], T0 + 1000);
    const after = await store.getTask(t.id, null);
    expect(after!.status).toBe('failed');
    expect(after!.lastError).toMatch(/exit code 3 is not retryable/);
  });

  it('a failed task can be requeued with fresh attempts', async () => {
    const { run, task: t } = await placed({ totalAttempts: 1 });
    await store.finishRuns([result(run, 'failed', 1)], T0 + 1000);
    const again = await store.requeueTask(t.id, 'alice', { now: T0 + 2000, actor: 'alice' });
    expect(again).toMatchObject({ status: 'waiting', attempts: 0, dueAt: T0 + 2000, lastError: null, finishedAt: null });
    await expect(store.requeueTask(t.id, 'alice', { now: T0, actor: 'alice' })).rejects.toMatchObject({ code: 'INVALID_TRANSITION' });
    await expect(store.requeueTask(t.id, 'bob', { now: T0, actor: 'bob' })).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
    expect((await store.listEvents(t.id)).at(-1)).toMatchObject({ type: 'task.requeued', from: 'failed', to: 'waiting' });
  });

  // ------------------------------------------------------------ cancel

  it('cancels a waiting task at once, and twice is a no-op', async () => {
    const [t] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const c1 = await store.cancelTask(t!.id, 'alice', { now: T0 + 1, actor: 'alice', reason: 'not needed' });
    expect(c1).toMatchObject({ changed: true, runsToStop: [], task: { status: 'cancelled', finishedAt: T0 + 1 } });
    const c2 = await store.cancelTask(t!.id, 'alice', { now: T0 + 2, actor: 'alice', reason: 'again' });
    expect(c2.changed).toBe(false);
    expect(c2.task.status).toBe('cancelled');
    expect((await store.listEvents(t!.id)).map((e) => [e.type, e.from, e.to, e.actor, e.reason])).toEqual([
      ['task.submitted', null, 'waiting', 'alice', null],
      ['task.cancelled', 'waiting', 'cancelled', 'alice', 'not needed'],
    ]);
    await expect(store.cancelTask(t!.id, 'bob', { now: T0, actor: 'bob', reason: '' })).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
    await expect(store.cancelTask(424242, null, { now: T0, actor: 'a', reason: '' })).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
  });

  it('looks at a worker in one read: its state, its first undelivered runs in order, its runs to cancel', async () => {
    expect(await store.lookAtWorker('nobody', 5)).toEqual({ state: null, undelivered: [], cancel: [] });
    const [a, b, c] = (await store.submitTasks('alice', [task(), task(), task()], { now: T0, actor: 'alice' })).tasks;
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const res = await store.applyPlan(
      [a!, b!, c!].map((t) => ({ taskId: t.id, workerId: worker.id, allocation: alloc(100, MB) })),
      ctx(),
    );
    const ids = res.runs.map((r) => r.id).sort((x, y) => x - y);
    expect(await store.lookAtWorker(worker.id, 5)).toEqual({ state: 'active', undelivered: ids, cancel: [] });
    // The limit bounds the read; the first ids come back.
    expect((await store.lookAtWorker(worker.id, 2)).undelivered).toEqual(ids.slice(0, 2));
    // A delivered run is no longer undelivered; a cancelled task's live run is to be stopped.
    await store.takeAssignments(worker.id, 1, T0);
    await store.cancelTask(c!.id, null, { now: T0 + 10, actor: 'alice', reason: 'stop' });
    const runOfC = res.runs.find((r) => r.taskId === c!.id)!.id;
    expect(await store.lookAtWorker(worker.id, 5)).toEqual({ state: 'active', undelivered: ids.slice(1), cancel: [runOfC] });
    await store.setWorkerState(worker.id, 'draining', T0 + 20);
    expect((await store.lookAtWorker(worker.id, 5)).state).toBe('draining');
  });

  it('cancels a running task: the run is asked to stop and keeps its resources until it reports', async () => {
    const { run, worker, task: t } = await placed();
    const c = await store.cancelTask(t.id, null, { now: T0 + 10, actor: 'alice', reason: 'stop' });
    expect(c.changed).toBe(true);
    expect(c.task.status).toBe('cancelled');
    expect(c.runsToStop.map((r) => [r.id, r.cancelRequested])).toEqual([[run.id, true]]);
    expect((await store.loadWorkers())[0]!.allocated.cpus).toBe(500);
    const hb = await store.heartbeat(worker.id, [{ runId: run.id, token: run.leaseToken }], T0 + 20, 30_000);
    expect(hb).toEqual({ acks: [{ runId: run.id, ok: true }], cancel: [run.id], stateBefore: 'active' });
    const fin = await store.finishRuns([result(run, 'cancelled')], T0 + 30);
    expect(fin.acks[0]!.ok).toBe(true);
    expect(fin.changed).toEqual([]); // the task was already cancelled
    expect((await store.getRun(run.id))!.state).toBe('cancelled');
    expect((await store.loadWorkers())[0]!.allocated.cpus).toBe(0);
    expect((await store.getTask(t.id, null))!.status).toBe('cancelled');
    expect((await store.listEvents(t.id)).map((e) => e.type)).toEqual([
      'task.submitted',
      'task.claimed',
      'run.assigned',
      'task.cancelled',
      'run.cancel_requested',
      'run.cancelled',
    ]);
  });

  it('refuses to cancel a finished task, naming its status', async () => {
    const { run, task: t } = await placed();
    await store.finishRuns([result(run, 'succeeded', 0)], T0 + 1);
    const err = await store.cancelTask(t.id, null, { now: T0 + 2, actor: 'alice', reason: '' }).catch((e) => e);
    expect(err).toBeInstanceOf(TschedError);
    expect(err.code).toBe('TASK_FINISHED');
    expect(err.status).toBe(409);
    expect(err.message).toMatch(/done/);
  });

  // ------------------------------------------------------------ workers and the monitor

  it('re-registering a worker keeps its id, updates it and orphans its live runs', async () => {
    const { run, worker, task: t } = await placed({ totalAttempts: 2 });
    const again = await store.registerWorker({ ...workerReg('w1', { cpus: 8000 }), labels: { zone: 'b' } }, T0 + 100);
    expect(again.worker.id).toBe(worker.id);
    expect(again.worker).toMatchObject({ state: 'active', capacity: { cpus: 8000 }, labels: { zone: 'b' }, lastSeenAt: T0 + 100 });
    expect(again.orphaned.map((r) => [r.id, r.state, r.reason])).toEqual([[run.id, 'lost', 'worker_restarted']]);
    expect(await store.getTask(t.id, null)).toMatchObject({ status: 'waiting', attempts: 1 });
    expect((await store.listEvents(t.id)).slice(-2).map((e) => [e.type, e.reason?.startsWith('attempt 1 of 2 lost') || e.reason])).toEqual([
      ['run.lost', 'worker_restarted'],
      ['task.retry_scheduled', true],
    ]);
    const other = await store.registerWorker(workerReg('w2'), T0);
    expect(other.worker.id).not.toBe(worker.id);
    expect(other.worker.id).toMatch(/^w_/);
    expect((await store.listWorkers()).map((w) => w.name)).toEqual(expect.arrayContaining(['w1', 'w2']));
  });

  it('reaps expired leases as lost, over-cap runs as timed_out, and silent workers', async () => {
    const [a, b] = (
      await store.submitTasks('alice', [task({ totalAttempts: 2 }), task({ totalAttempts: 1, executionCap: 10_000 })], {
        now: T0,
        actor: 'alice',
      })
    ).tasks;
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const { worker: quiet } = await store.registerWorker(workerReg('w2'), T0);
    const { runs } = await store.applyPlan(
      [
        { taskId: a!.id, workerId: worker.id, allocation: alloc(100, MB) },
        { taskId: b!.id, workerId: worker.id, allocation: alloc(100, MB) },
      ],
      ctx(T0, { leaseMs: 5000 }),
    );
    const [ra, rb] = runs;
    await store.startRuns([{ runId: rb!.id, token: rb!.leaseToken, at: T0 }], T0);
    // Keep rb's lease fresh: only its cap can end it.
    await store.heartbeat(worker.id, [{ runId: rb!.id, token: rb!.leaseToken }], T0 + 4000, 60_000);
    const nothing = await store.reap(T0 + 4999, { workerSilenceMs: 60_000, capGraceMs: 2000 });
    expect(nothing).toEqual({ ended: [], lostWorkers: [] });

    const r1 = await store.reap(T0 + 6000, { workerSilenceMs: 60_000, capGraceMs: 2000 });
    expect(r1.ended.map((e) => [e.run.id, e.outcome, e.taskStatus, e.run.reason])).toEqual([[ra!.id, 'lost', 'waiting', 'lease_expired']]);
    const r2 = await store.reap(T0 + 12_001, { workerSilenceMs: 60_000, capGraceMs: 2000 });
    expect(r2.ended.map((e) => [e.run.id, e.outcome, e.taskStatus, e.run.reason])).toEqual([
      [rb!.id, 'timed_out', 'failed', 'cap_exceeded_server'],
    ]);
    expect((await store.listEvents(b!.id)).map((e) => e.actor).at(-1)).toBe('monitor');

    const r3 = await store.reap(T0 + 61_000, { workerSilenceMs: 60_000, capGraceMs: 2000 });
    expect(r3.lostWorkers).toEqual([quiet.id]);
    expect((await store.getWorker(quiet.id))!.state).toBe('lost');
    expect((await store.loadWorkers()).map((w) => w.id)).toEqual([worker.id]);
    // A lost worker that speaks again is active, and its heartbeat tells that it was lost (once).
    expect((await store.heartbeat(quiet.id, [], T0 + 62_000, 1000)).stateBefore).toBe('lost');
    expect((await store.getWorker(quiet.id))!.state).toBe('active');
    expect((await store.heartbeat(quiet.id, [], T0 + 62_500, 1000)).stateBefore).toBe('active');
    await store.setWorkerState(quiet.id, 'draining', T0 + 62_600);
    expect((await store.heartbeat(quiet.id, [], T0 + 62_700, 1000)).stateBefore).toBe('draining');
    expect((await store.getWorker(quiet.id))!.state).toBe('draining');
  });

  // ------------------------------------------------------------ logs

  it('stores logs with byte offsets and reads them from any offset', async () => {
    const { run, task: t } = await placed();
    const tok = { runId: run.id, token: run.leaseToken };
    const acks = await store.appendLogs(
      [
        { ...tok, stream: 'stdout', at: T0 + 1, data: 'hello ' },
        { ...tok, stream: 'stderr', at: T0 + 2, data: 'wörld\n' },
        { ...tok, stream: 'stdout', at: T0 + 3, data: 'bye\n' },
      ],
      1000,
    );
    expect(acks.every((a) => a.ok)).toBe(true);
    const all = await store.readLogs(run.id, 0, 100);
    expect(all.chunks.map((c) => [c.seq, c.offset, c.stream, c.data])).toEqual([
      [1, 0, 'stdout', 'hello '],
      [2, 6, 'stderr', 'wörld\n'],
      [3, 13, 'stdout', 'bye\n'],
    ]);
    expect(all.nextOffset).toBe(17);
    expect(all.ended).toBe(false);
    const mid = await store.readLogs(run.id, 3, 1);
    expect(mid.chunks.map((c) => [c.offset, c.data])).toEqual([[3, 'lo ']]);
    expect(mid.nextOffset).toBe(6);
    expect((await store.readLogs(run.id, 17, 100)).chunks).toEqual([]);
    await store.finishRuns([result(run, 'succeeded', 0)], T0 + 10);
    expect((await store.readLogs(run.id, 17, 100)).ended).toBe(true);
    await expect(store.readLogs(999_999, 0, 10)).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
    expect(t.id).toBeGreaterThan(0);
  });

  it('truncates a run log at the cap with one system note and drops the rest', async () => {
    const { run } = await placed();
    const tok = { runId: run.id, token: run.leaseToken };
    const acks = await store.appendLogs(
      [
        { ...tok, stream: 'stdout', at: T0, data: '12345678' },
        { ...tok, stream: 'stdout', at: T0, data: 'abcdefgh' },
        { ...tok, stream: 'stdout', at: T0, data: 'dropped' },
      ],
      12,
    );
    expect(acks.every((a) => a.ok)).toBe(true);
    expect(await store.appendLogs([{ ...tok, stream: 'stderr', at: T0, data: 'also dropped' }], 12)).toEqual([{ runId: run.id, ok: true }]);
    const logs = await store.readLogs(run.id, 0, 100);
    expect(logs.chunks.map((c) => [c.stream, c.data])).toEqual([
      ['stdout', '12345678'],
      ['stdout', 'abcd'],
      ['system', '[tsched] log truncated at 12 bytes\n'],
    ]);
  });

  // ------------------------------------------------------------ candidates and events

  it('loads due candidates best first, plus those about to miss their deadline', async () => {
    const mk = (priority: number, delayTolerance: number, dueAt: number | null = null) => task({ priority, delayTolerance, dueAt });
    const ts = (
      await store.submitTasks('alice', [mk(50, 60_000), mk(75, 60_000), mk(50, 10_000), mk(90, 1000, T0 + 100_000), mk(10, 5000)], {
        now: T0,
        actor: 'alice',
      })
    ).tasks;
    const best = await store.loadCandidates(T0, 2, T0);
    expect(best.map((t) => t.id)).toEqual([ts[1]!.id, ts[2]!.id]);
    // With urgentBefore past the low-priority task's deadline, it comes along although the limit is reached.
    const withUrgent = await store.loadCandidates(T0, 2, T0 + 6000);
    expect(withUrgent.map((t) => t.id)).toEqual([ts[1]!.id, ts[2]!.id, ts[4]!.id]);
    expect((await store.loadCandidates(T0, 10, T0)).map((t) => t.id)).not.toContain(ts[3]!.id);
    // A window larger than the queue holds every due task once, best first (the urgent one in its place).
    expect((await store.loadCandidates(T0, 10, T0 + 6000)).map((t) => t.id)).toEqual([ts[1]!.id, ts[2]!.id, ts[0]!.id, ts[4]!.id]);
    expect(await store.nextDueAt(T0 - 1)).toBe(T0);
    // The tasks due already are candidates, no reason to wake: the next due time is the one not due yet.
    expect(await store.nextDueAt(T0)).toBe(T0 + 100_000);
    expect(await store.nextDueAt(T0 + 100_000)).toBeNull();
  });

  it('reads a candidate again from its held spec and its current state', async () => {
    const spec = { env: { A: '1' }, labels: { team: 'x' }, constraints: { zone: 'a' }, priority: 70, totalAttempts: 2 };
    const [t] = (await store.submitTasks('alice', [task(spec)], { now: T0, actor: 'alice' })).tasks;
    const first = await store.loadCandidates(T0, 10, T0);
    expect(first).toEqual([await store.getTask(t!.id, null)]);
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const [run] = (await store.applyPlan([{ taskId: t!.id, workerId: worker.id, allocation: alloc(500, 64 * MB) }], ctx())).runs;
    await store.finishRuns([result(run!, 'failed', 1)], T0 + 1000);
    // Waiting again for its second attempt: the state columns changed, the spec did not.
    const again = (await store.getTask(t!.id, null))!;
    expect(again).toMatchObject({ status: 'waiting', attempts: 1 });
    expect(again.updatedAt).toBeGreaterThan(first[0]!.updatedAt);
    const hits = store.candidateSpecs.hits;
    const second = await store.loadCandidates(again.dueAt, 10, again.dueAt);
    expect(second).toEqual([again]);
    expect(store.candidateSpecs.hits).toBe(hits + 1);
    // A held spec is shared by every pass that reads the task: nothing may change it in place.
    expect(Object.isFrozen(second[0]!.env)).toBe(true);
    expect(() => {
      (second[0]!.env as Record<string, string>).A = '2';
    }).toThrow(TypeError);
  });

  it('loads urgent tasks that can still start in time even behind a backlog of late ones', async () => {
    // Three low-priority tasks already late (deadlines T0-3000 … T0-1000), one due in 2 s, limit 2.
    const late = (
      await store.submitTasks(
        'alice',
        [1, 2, 3].map((k) => task({ priority: 10, delayTolerance: 1000 * k, dueAt: T0 - 4000 })),
        { now: T0 - 4000, actor: 'alice' },
      )
    ).tasks;
    const [inTime] = (await store.submitTasks('alice', [task({ priority: 10, delayTolerance: 2000 })], { now: T0, actor: 'alice' })).tasks;
    const ids = (await store.loadCandidates(T0, 2, T0 + 5000)).map((t) => t.id);
    expect(ids).toContain(inTime!.id);
    expect(ids).toContain(late[0]!.id); // the most overdue still comes along
  });

  it('writes an event for every change of a full lifecycle', async () => {
    const { run, worker, task: t } = await placed({ totalAttempts: 2 });
    await store.startRuns([{ runId: run.id, token: run.leaseToken, at: T0 }], T0);
    await store.finishRuns([result(run, 'failed', 1)], T0 + 1000);
    const due = (await store.getTask(t.id, null))!.dueAt;
    const { runs } = await store.applyPlan([{ taskId: t.id, workerId: worker.id, allocation: alloc(100, MB) }], ctx(due));
    await store.startRuns([{ runId: runs[0]!.id, token: runs[0]!.leaseToken, at: due }], due);
    await store.finishRuns([result(runs[0]!, 'succeeded', 0, due + 10)], due + 10);
    const events = await store.listEvents(t.id);
    expect(events.map((e) => `${e.type}:${e.from ?? ''}>${e.to ?? ''}`)).toEqual([
      'task.submitted:>waiting',
      'task.claimed:waiting>in_progress',
      'run.assigned:>assigned',
      'run.started:assigned>running',
      'run.failed:running>failed',
      'task.retry_scheduled:in_progress>waiting',
      'task.claimed:waiting>in_progress',
      'run.assigned:>assigned',
      'run.started:assigned>running',
      'run.succeeded:running>succeeded',
      'task.done:in_progress>done',
    ]);
    expect(events.map((e) => e.actor)).toEqual([
      'alice',
      'scheduler',
      'scheduler',
      'worker:w1',
      'worker:w1',
      'worker:w1',
      'scheduler',
      'scheduler',
      'worker:w1',
      'worker:w1',
      'worker:w1',
    ]);
    expect(events.map((e) => e.at)).toEqual([T0, T0, T0, T0, T0 + 1000, T0 + 1000, due, due, due, due + 10, due + 10]);
    // Ids are unique and in order, though the events of one task in one write share a row (migration 6):
    // 11 events, 7 rows (submit; claim + assignment; start; end + retry; claim + assignment; start; end + done).
    for (let i = 1; i < events.length; i++) expect(events[i]!.id).toBeGreaterThan(events[i - 1]!.id);
    const rows = await store.backend.read((ex) => ex.all<{ n: number }>('SELECT COUNT(*) AS n FROM events WHERE task_id = ?', [t.id]));
    expect(Number(rows[0]!.n)).toBe(7);
    // After an event that opens its row, or one inside it: exactly the later ones.
    expect((await store.listEvents(t.id, events[1]!.id)).map((e) => e.type)).toEqual(events.slice(2).map((e) => e.type));
    expect((await store.listEvents(t.id, events[5]!.id)).map((e) => e.id)).toEqual(events.slice(6).map((e) => e.id));
    expect(await store.listEvents(t.id, events[10]!.id)).toEqual([]);
    expect((await store.listRuns(t.id)).map((r) => [r.attempt, r.state])).toEqual([
      [1, 'failed'],
      [2, 'succeeded'],
    ]);
  });

  it('reads the events written before migration 6 (one row each) beside the packed ones', async () => {
    const { s, old } = await migratedBefore(6);
    for (const [at, type, to] of [
      [T0, 'task.submitted', 'waiting'],
      [T0 + 5, 'task.cancelled', 'cancelled'],
    ] as const)
      await s.backend.tx((ex) =>
        ex.all(
          'INSERT INTO events (task_id, run_id, at, actor, type, from_state, to_state, reason) VALUES (?, NULL, ?, ?, ?, NULL, ?, ?)',
          [999, at, 'alice', type, to, `${type} by hand`],
        ),
      );
    await s.migrate();
    const before = await s.listEvents(999);
    expect(before.map((e) => [e.taskId, e.type, e.actor, e.at, e.to, e.reason])).toEqual([
      [999, 'task.submitted', 'alice', T0, 'waiting', 'task.submitted by hand'],
      [999, 'task.cancelled', 'alice', T0 + 5, 'cancelled', 'task.cancelled by hand'],
    ]);
    expect(before[1]!.id).toBeGreaterThan(before[0]!.id);
    expect((await s.listEvents(999, before[0]!.id)).map((e) => e.type)).toEqual(['task.cancelled']);
    // New writes pack, after the old rows.
    const [t] = (await s.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const { worker } = await s.registerWorker(workerReg('w1'), T0);
    await s.applyPlan([{ taskId: t!.id, workerId: worker.id, allocation: alloc(500, 64 * MB) }], ctx());
    const after = await s.listEvents(t!.id);
    expect(after.map((e) => e.type)).toEqual(['task.submitted', 'task.claimed', 'run.assigned']);
    expect(after[0]!.id).toBeGreaterThan(before[1]!.id);
    await old.drop();
  });

  it('stores and finds tokens by hash', async () => {
    await store.putToken({ tokenHash: 'abc', userId: 'alice', role: 'user', name: 'laptop' });
    await store.putToken({ tokenHash: 'abc', userId: 'alice', role: 'admin', name: 'laptop' });
    expect(await store.findToken('abc')).toEqual({ tokenHash: 'abc', userId: 'alice', role: 'admin', name: 'laptop' });
    expect(await store.findToken('nope')).toBeNull();
  });

  // ------------------------------------------------------------ recurring tasks

  const MIN = 60_000;
  /** A per-minute recurring definition submitted just after the minute M0 (its first occurrence is M0 + 1 min). */
  async function definition(schedule: Record<string, unknown> = {}, over: Record<string, unknown> = {}) {
    const nt = normalizeTask({
      command: ['echo', 'hi'],
      delayTolerance: '30s',
      schedule: { type: 'cron', cron: '* * * * *', ...schedule },
      ...over,
    } as never);
    const [d] = (await store.submitTasks('alice', [nt], { now: T0 - (T0 % MIN) + 1, actor: 'alice' })).tasks;
    return d!;
  }
  const M0 = T0 - (T0 % MIN);

  it('a recurring definition is never placed, due or late; its occurrences are', async () => {
    const d = await definition();
    expect(d).toMatchObject({ status: 'waiting', recurrence: { nextOccurrenceAt: M0 + MIN, occurrencesCreated: 0 } });
    expect(await store.loadCandidates(M0 + 10 * MIN, 100, M0 + 20 * MIN)).toEqual([]);
    expect(await store.nextDueAt(M0)).toBeNull();
    expect(await store.recordDeadlineMisses(M0 + 10 * MIN, 100)).toEqual([]);
    expect(await store.dueDefinitions(M0 + 30_000, 10)).toEqual({ ids: [], nextAt: M0 + MIN });
    expect((await store.dueDefinitions(M0 + MIN, 10)).ids).toEqual([d.id]);

    const r = (await store.expandOccurrences(d.id, M0 + MIN + 5, { actor: 'scheduler' }))!;
    expect(r.created).toHaveLength(1);
    const occ = r.created[0]!;
    expect(occ).toMatchObject({
      parentId: d.id,
      occurrenceAt: M0 + MIN,
      dueAt: M0 + MIN,
      startDeadline: M0 + MIN + 30_000,
      schedulingType: 'once',
      schedule: null,
      command: ['echo', 'hi'],
      status: 'waiting',
    });
    expect(occ.recurrence).toBeUndefined();
    expect(r.definition.recurrence).toEqual({ nextOccurrenceAt: M0 + 2 * MIN, lastOccurrenceAt: M0 + MIN + 5, occurrencesCreated: 1 });
    expect((await store.loadCandidates(M0 + MIN + 5, 100, M0 + MIN + 5)).map((t) => t.id)).toEqual([occ.id]);
    // Not due again until the next instant.
    expect(await store.expandOccurrences(d.id, M0 + MIN + 10, { actor: 'scheduler' })).toBeNull();
    expect((await store.listTasks({ owner: null, parentId: d.id, limit: 10 })).tasks.map((t) => t.id)).toEqual([occ.id]);
    expect((await store.listEvents(d.id)).map((e) => e.type)).toEqual(['task.submitted', 'occurrence.created']);
  });

  it('expands each instant once when two handles race', async () => {
    const d = await definition({ overlap: 'allow' });
    const other = db.open();
    extra.push(other);
    for (let k = 1; k <= 5; k++) {
      const at = M0 + k * MIN + 1;
      const rs = await Promise.all([
        store.expandOccurrences(d.id, at, { actor: 'a' }),
        other.expandOccurrences(d.id, at, { actor: 'b' }),
        store.expandOccurrences(d.id, at, { actor: 'a' }),
      ]);
      expect(rs.filter((r) => r !== null)).toHaveLength(1);
    }
    const occ = (await store.listTasks({ owner: null, parentId: d.id, limit: 100 })).tasks.map((t) => t.occurrenceAt).sort();
    expect(occ).toEqual([1, 2, 3, 4, 5].map((k) => M0 + k * MIN));
  });

  it('after downtime: the newest within tolerance runs, older ones are recorded missed', async () => {
    const d = await definition({}, { delayTolerance: '90s' });
    // Down from M0 until M0 + 5 min + 10 s: instants 1..5 min fell due; only 5 min is within 90 s.
    const r = (await store.expandOccurrences(d.id, M0 + 5 * MIN + 10_000, { actor: 'scheduler' }))!;
    expect(r.created.map((t) => t.occurrenceAt)).toEqual([M0 + 5 * MIN]);
    expect(r.missed).toBe(4);
    const missed = (await store.listEvents(d.id)).filter((e) => e.type === 'occurrence.missed').map((e) => e.reason);
    expect(missed).toEqual([1, 2, 3, 4].map((k) => expect.stringContaining(new Date(M0 + k * MIN).toISOString())));
    expect(r.definition.recurrence!.nextOccurrenceAt).toBe(M0 + 6 * MIN);
  });

  it('overlap skip records the skipped instant; queue holds it until the previous ends; replace cancels the live one', async () => {
    const skip = await definition();
    await store.expandOccurrences(skip.id, M0 + MIN, { actor: 's' });
    const s2 = (await store.expandOccurrences(skip.id, M0 + 2 * MIN, { actor: 's' }))!;
    expect(s2.created).toEqual([]);
    expect(s2.skipped).toBe(1);
    expect((await store.listEvents(skip.id)).at(-1)).toMatchObject({
      type: 'occurrence.skipped',
      reason: expect.stringMatching(
        new RegExp(`^${new Date(M0 + 2 * MIN).toISOString()}: the previous occurrence \\(task \\d+\\) is waiting`),
      ),
    });

    const queue = await definition({ overlap: 'queue' });
    const q1 = (await store.expandOccurrences(queue.id, M0 + MIN, { actor: 's' }))!.created[0]!;
    const q2 = (await store.expandOccurrences(queue.id, M0 + 2 * MIN, { actor: 's' }))!.created[0]!;
    expect(q2.paused).toBe(true);
    expect((await store.loadCandidates(M0 + 3 * MIN, 100, M0)).map((t) => t.id)).not.toContain(q2.id);
    expect(await store.releaseQueuedOccurrences(M0 + 2 * MIN, 10)).toEqual([]);
    await store.cancelTask(q1.id, null, { now: M0 + 2 * MIN, actor: 'alice', reason: 'test' });
    expect((await store.releaseQueuedOccurrences(M0 + 2 * MIN, 10)).map((t) => t.id)).toEqual([q2.id]);
    expect((await store.getTask(q2.id, null))!.paused).toBe(false);

    const rep = await definition({ overlap: 'replace' });
    const r1 = (await store.expandOccurrences(rep.id, M0 + MIN, { actor: 's' }))!.created[0]!;
    const { worker } = await store.registerWorker(workerReg('w1'), M0 + MIN);
    const placedRun = (await store.applyPlan([{ taskId: r1.id, workerId: worker.id, allocation: alloc(100, MB) }], ctx(M0 + MIN))).runs[0]!;
    const r2 = (await store.expandOccurrences(rep.id, M0 + 2 * MIN, { actor: 's' }))!;
    expect(r2.created).toHaveLength(1);
    expect(r2.runsToStop.map((r) => r.id)).toEqual([placedRun.id]);
    expect((await store.getTask(r1.id, null))!.status).toBe('cancelled');
    expect((await store.lookAtWorker(worker.id, 1)).cancel).toEqual([placedRun.id]);
  });

  it('maxOccurrences ends a definition as done; pause, resume, edit and cancel behave', async () => {
    const d = await definition({ maxOccurrences: 2, overlap: 'allow' });
    await store.expandOccurrences(d.id, M0 + MIN, { actor: 's' });
    const last = (await store.expandOccurrences(d.id, M0 + 2 * MIN, { actor: 's' }))!;
    expect(last.definition).toMatchObject({ status: 'done', recurrence: { nextOccurrenceAt: null, occurrencesCreated: 2 } });
    await expect(store.pauseSchedule(d.id, null, { now: M0, actor: 'alice' })).rejects.toMatchObject({ code: 'TASK_FINISHED' });

    const e = await definition();
    const occ = (await store.expandOccurrences(e.id, M0 + MIN, { actor: 's' }))!.created[0]!;
    await expect(store.pauseSchedule(occ.id, null, { now: M0, actor: 'alice' })).rejects.toMatchObject({
      code: 'NOT_RECURRING',
      status: 409,
    });
    const p = await store.pauseSchedule(e.id, 'alice', { now: M0 + MIN + 1, actor: 'alice' });
    expect(p).toMatchObject({ changed: true, task: { paused: true, recurrence: { nextOccurrenceAt: null } } });
    expect((await store.pauseSchedule(e.id, null, { now: M0 + MIN + 2, actor: 'alice' })).changed).toBe(false);
    expect((await store.dueDefinitions(M0 + 10 * MIN, 10)).ids).toEqual([]);
    const r = await store.resumeSchedule(e.id, null, { now: M0 + 5 * MIN + 30_000, actor: 'alice' });
    expect(r.task.recurrence!.nextOccurrenceAt).toBe(M0 + 6 * MIN);
    const u = await store.updateSchedule(
      e.id,
      null,
      { type: 'daily', at: '09:00', timezone: 'UTC', overlap: 'skip' },
      { now: M0 + 6 * MIN, actor: 'alice' },
    );
    expect(u.schedulingType).toBe('daily');
    expect(new Date(u.recurrence!.nextOccurrenceAt!).toISOString()).toMatch(/T09:00:00.000Z$/);
    const types = (await store.listEvents(e.id)).map((x) => x.type);
    expect(types).toEqual(expect.arrayContaining(['task.paused', 'task.resumed', 'task.schedule_changed']));
    await expect(
      store.updateSchedule(e.id, null, { type: 'once', timezone: 'UTC', overlap: 'skip' }, { now: M0, actor: 'alice' }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    // Cancelling the definition cancels its waiting occurrence too.
    await store.cancelTask(e.id, null, { now: M0 + 7 * MIN, actor: 'alice', reason: 'done with it' });
    expect((await store.getTask(occ.id, null))!.status).toBe('cancelled');
    expect((await store.dueDefinitions(M0 + 1000 * MIN, 10)).ids).toEqual([]);
  });
});

describe('openStore', () => {
  it('opens SQLite from sqlite: URLs and plain paths', async () => {
    for (const url of [`sqlite:${join(tmpRoot, 'a', 'x.db')}`, join(tmpRoot, 'b.db'), ':memory:']) {
      const s = openStore({ url });
      expect(s.kind).toBe('sqlite');
      await s.migrate();
      expect((await s.countTasks(null)).waiting).toBe(0);
      await s.close();
    }
  });

  it('opens PostgreSQL from postgres:// and postgresql:// URLs', () => {
    expect(openStore({ url: 'postgres://u@localhost:1/db?schema=abc' }).kind).toBe('postgres');
    expect(openStore({ url: 'postgresql://u@localhost:1/db' }).kind).toBe('postgres');
  });

  it('names the problem with a bad URL or schema', () => {
    expect(() => openStore({ url: 'mysql://x' })).toThrow(/unsupported database URL scheme/);
    expect(() => openStore({ url: '' })).toThrow(TschedError);
    expect(() => openStore({ url: 'postgres://u@localhost/db?schema=a;drop' })).toThrow(/schema/);
  });
});

describe.each(harnesses)('Store conformance (cluster leadership): $name', (h) => {
  let store: KyselyStore;
  let db: Awaited<ReturnType<Harness['create']>>;
  const extra: KyselyStore[] = [];
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeEach(async () => {
    db = await h.create();
    store = db.open({ random: () => 0.5 });
    await store.migrate();
  });
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await store.close();
    await db.drop();
  });

  it('one holder at a time; renewal keeps the epoch; a takeover after expiry increments it', async () => {
    const a = await store.acquireLeadership('scheduler', 'A', 300);
    expect(a).toMatchObject({ leader: true, epoch: 1, holder: 'A' });
    expect(await store.acquireLeadership('scheduler', 'B', 300)).toMatchObject({ leader: false, epoch: 1, holder: 'A' });
    expect(await store.acquireLeadership('scheduler', 'A', 300)).toMatchObject({ leader: true, epoch: 1, holder: 'A' });
    expect((await store.getLeadership('scheduler'))?.holder).toBe('A');
    await sleep(400); // A stops renewing
    expect((await store.getLeadership('scheduler'))?.holder).toBeNull();
    expect(await store.acquireLeadership('scheduler', 'B', 300)).toMatchObject({ leader: true, epoch: 2, holder: 'B' });
    expect(await store.acquireLeadership('scheduler', 'A', 300)).toMatchObject({ leader: false, epoch: 2, holder: 'B' });
    // Roles are independent rows.
    expect(await store.acquireLeadership('other', 'A', 300)).toMatchObject({ leader: true, epoch: 1 });
  });

  it('release hands over at once; only the holder can release', async () => {
    await store.acquireLeadership('scheduler', 'A', 60_000);
    await store.releaseLeadership('scheduler', 'B'); // not the holder: no effect
    expect((await store.getLeadership('scheduler'))?.holder).toBe('A');
    await store.releaseLeadership('scheduler', 'A');
    expect((await store.getLeadership('scheduler'))?.holder).toBeNull();
    expect(await store.acquireLeadership('scheduler', 'B', 60_000)).toMatchObject({ leader: true, epoch: 2 });
    expect(await store.getLeadership('nobody')).toBeNull();
  });

  it('racing replicas: exactly one wins each free lease', async () => {
    const other = db.open();
    extra.push(other);
    for (let round = 0; round < 5; round++) {
      const res = await Promise.all([
        store.acquireLeadership(`race${round}`, 'A', 60_000),
        other.acquireLeadership(`race${round}`, 'B', 60_000),
      ]);
      expect(res.filter((r) => r.leader)).toHaveLength(1);
      expect(res.map((r) => r.epoch)).toEqual([1, 1]);
    }
  });

  it('a deposed leader can neither reap nor record deadline misses: nothing changes', async () => {
    const [t] = (await store.submitTasks('alice', [task({ delayTolerance: 1000 })], { now: T0, actor: 'alice' })).tasks;
    const [t2] = (await store.submitTasks('alice', [task()], { now: T0, actor: 'alice' })).tasks;
    const { worker } = await store.registerWorker(workerReg('w1'), T0);
    const res = await store.applyPlan([{ taskId: t2!.id, workerId: worker.id, allocation: alloc(100, MB) }], ctx(T0, { leaseMs: 1000 }));
    const run = res.runs[0]!;
    expect((await store.acquireLeadership('scheduler', 'A', 100)).epoch).toBe(1);
    await sleep(150);
    expect((await store.acquireLeadership('scheduler', 'B', 60_000)).epoch).toBe(2);
    const later = T0 + 3_600_000;
    const opts = { workerSilenceMs: 15_000, capGraceMs: 15_000 };
    await expect(store.reap(later, { ...opts, epoch: 1 })).rejects.toMatchObject({ code: 'NOT_LEADER' });
    await expect(store.recordDeadlineMisses(later, 100, 1)).rejects.toMatchObject({ code: 'NOT_LEADER' });
    expect((await store.getRun(run.id))!.state).toBe('assigned');
    expect((await store.getWorker(worker.id))!.state).toBe('active');
    expect((await store.getTask(t!.id, null))!.deadlineMissed).toBe(false);
    // The current leader's writes go through; unfenced calls (embedded mode) still work as before.
    const reaped = await store.reap(later, { ...opts, epoch: 2 });
    expect(reaped.ended.map((e) => e.run.id)).toEqual([run.id]);
    expect((await store.recordDeadlineMisses(later, 100, 2)).map((m) => m.task.id)).toContain(t!.id);
    expect(await store.recordDeadlineMisses(later, 100)).toEqual([]);
  });
});
