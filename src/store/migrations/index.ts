// Versioned migrations, run in order by `migrate()` inside one transaction. A version never changes once
// released: add a new one. `{{ID}}` becomes the dialect's integer primary key. Times are epoch ms (BIGINT),
// booleans are INTEGER 0/1, and JSON values are TEXT, so that the same SQL runs on SQLite and PostgreSQL.

import type { Backend, Exec } from '../backend.js';

export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    statements: [
      `CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, role TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL)`,
      `CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL)`,
      `CREATE TABLE tasks (
        id {{ID}},
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        command TEXT NOT NULL,
        shell INTEGER NOT NULL,
        script TEXT,
        script_path TEXT,
        image TEXT,
        executor TEXT NOT NULL,
        env TEXT NOT NULL,
        resources TEXT NOT NULL,
        constraints TEXT NOT NULL,
        labels TEXT NOT NULL,
        priority INTEGER NOT NULL,
        delay_tolerance BIGINT NOT NULL,
        execution_cap BIGINT NOT NULL,
        total_attempts INTEGER NOT NULL,
        retry TEXT NOT NULL,
        scheduling_type TEXT NOT NULL,
        schedule TEXT,
        placement TEXT,
        notify TEXT,
        on_deadline_miss TEXT NOT NULL,
        due_at BIGINT NOT NULL,
        start_deadline BIGINT NOT NULL,
        parent_id BIGINT,
        occurrence_at BIGINT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        current_run_id BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        finished_at BIGINT,
        last_error TEXT,
        deadline_missed INTEGER NOT NULL DEFAULT 0,
        paused INTEGER NOT NULL DEFAULT 0)`,
      // loadCandidates: best-first scan of waiting tasks; due_at last so the due filter reads the index only.
      'CREATE INDEX tasks_ready ON tasks (status, priority DESC, start_deadline, id, due_at)',
      'CREATE INDEX tasks_due ON tasks (status, due_at)',
      'CREATE INDEX tasks_deadline ON tasks (status, start_deadline, id)',
      'CREATE INDEX tasks_owner ON tasks (owner, id)',
      // One row per occurrence of a recurring task, whoever expands it.
      'CREATE UNIQUE INDEX tasks_occurrence ON tasks (parent_id, occurrence_at)',
      `CREATE TABLE runs (
        id {{ID}},
        task_id BIGINT NOT NULL,
        attempt INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        worker_name TEXT NOT NULL,
        lease_token TEXT NOT NULL,
        lease_expires_at BIGINT NOT NULL,
        state TEXT NOT NULL,
        allocation TEXT NOT NULL,
        cpus BIGINT NOT NULL,
        memory BIGINT NOT NULL,
        ports TEXT NOT NULL,
        assigned_at BIGINT NOT NULL,
        cap_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        exit_code INTEGER,
        outcome TEXT,
        reason TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        usage TEXT NOT NULL,
        log_bytes BIGINT NOT NULL DEFAULT 0,
        log_seq INTEGER NOT NULL DEFAULT 0,
        log_truncated INTEGER NOT NULL DEFAULT 0)`,
      'CREATE INDEX runs_worker ON runs (worker_id, state)',
      'CREATE INDEX runs_lease ON runs (state, lease_expires_at)',
      'CREATE INDEX runs_cap ON runs (state, cap_at)',
      'CREATE INDEX runs_task ON runs (task_id, id)',
      `CREATE TABLE log_chunks (
        run_id BIGINT NOT NULL,
        seq INTEGER NOT NULL,
        start_offset BIGINT NOT NULL,
        end_offset BIGINT NOT NULL,
        stream TEXT NOT NULL,
        at BIGINT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq))`,
      'CREATE INDEX log_chunks_offset ON log_chunks (run_id, end_offset)',
      `CREATE TABLE events (
        id {{ID}},
        task_id BIGINT NOT NULL,
        run_id BIGINT,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        type TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT,
        reason TEXT)`,
      'CREATE INDEX events_task ON events (task_id, id)',
      `CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        capacity TEXT NOT NULL,
        labels TEXT NOT NULL,
        executors TEXT NOT NULL,
        enforcement TEXT NOT NULL,
        version TEXT NOT NULL,
        hostname TEXT NOT NULL,
        state TEXT NOT NULL,
        registered_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL)`,
      `CREATE TABLE idempotency_keys (
        owner TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        request_hash TEXT,
        task_ids TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (owner, idem_key))`,
      'CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at)',
      // Cluster mode: one row per elected role; `epoch` fences a deposed leader's writes.
      'CREATE TABLE leader (id TEXT PRIMARY KEY, holder TEXT, epoch BIGINT NOT NULL, expires_at BIGINT NOT NULL)',
    ],
  },
  {
    version: 2,
    name: 'covering indexes for the placement and delivery paths',
    statements: [
      // applyPlan sums live cpu/memory and collects ports per worker from the index alone.
      'CREATE INDEX runs_worker_load ON runs (worker_id, state, cpus, memory, ports)',
      'DROP INDEX runs_worker',
      // takeAssignments: only undelivered runs, however many delivered ones wait to start.
      "CREATE INDEX runs_undelivered ON runs (worker_id, id) WHERE state = 'assigned' AND delivered = 0",
    ],
  },
  {
    version: 3,
    name: 'webhook notification outbox',
    statements: [
      `CREATE TABLE notifications (
        id {{ID}},
        task_id BIGINT NOT NULL,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        delivered_at BIGINT)`,
      "CREATE INDEX notifications_due ON notifications (next_at) WHERE state = 'pending'",
    ],
  },
  {
    version: 4,
    name: 'recurring task definitions and their occurrences',
    statements: [
      // A recurring task (schedule not once, no parent) is a definition: never placed itself. Its
      // occurrences are child rows. last_occurrence_at is the watermark: every instant ≤ it was handled
      // (created, missed or skipped), so catch-up looks only after it.
      'ALTER TABLE tasks ADD COLUMN is_definition INTEGER NOT NULL DEFAULT 0',
      'ALTER TABLE tasks ADD COLUMN next_occurrence_at BIGINT',
      'ALTER TABLE tasks ADD COLUMN last_occurrence_at BIGINT',
      'ALTER TABLE tasks ADD COLUMN occurrences_created INTEGER NOT NULL DEFAULT 0',
      // The occurrence loop: active definitions by their next instant (paused ones have none).
      "CREATE INDEX tasks_definitions_due ON tasks (next_occurrence_at) WHERE is_definition = 1 AND status = 'waiting'",
      // Live occurrences of one definition (overlap policies), without walking its whole history.
      'CREATE INDEX tasks_children ON tasks (parent_id, status) WHERE parent_id IS NOT NULL',
      // Occurrences held back by overlap: queue until the previous one ends.
      "CREATE INDEX tasks_held ON tasks (parent_id, occurrence_at) WHERE paused = 1 AND status = 'waiting' AND parent_id IS NOT NULL",
    ],
  },
  {
    version: 5,
    name: 'partial indexes on the hot paths: only waiting tasks and live runs are indexed for scheduling',
    statements: [
      // A task leaves these indexes when it stops waiting, so a claim costs one index delete per index and a
      // finish costs none; the indexes stay the size of the backlog, not of the history.
      'DROP INDEX tasks_ready',
      'DROP INDEX tasks_due',
      'DROP INDEX tasks_deadline',
      "CREATE INDEX tasks_ready ON tasks (priority DESC, start_deadline, id, due_at) WHERE status = 'waiting'",
      "CREATE INDEX tasks_due ON tasks (due_at) WHERE status = 'waiting'",
      "CREATE INDEX tasks_deadline ON tasks (start_deadline, id) WHERE status = 'waiting'",
      // Likewise only live runs matter for leases, caps and per-worker load.
      'DROP INDEX runs_lease',
      'DROP INDEX runs_cap',
      'DROP INDEX runs_worker_load',
      "CREATE INDEX runs_lease ON runs (lease_expires_at) WHERE state IN ('assigned','running')",
      "CREATE INDEX runs_cap ON runs (cap_at) WHERE state = 'running'",
      "CREATE INDEX runs_worker_load ON runs (worker_id, cpus, memory, ports) WHERE state IN ('assigned','running')",
      // Every scheduling pass reads the live runs: without this it would scan the whole run history.
      "CREATE INDEX runs_live ON runs (id) WHERE state IN ('assigned','running')",
    ],
  },
  {
    version: 6,
    name: 'events: the later events of one task in one write share its row',
    statements: [
      // A claim writes two events per task and a finished run three; one row each instead of one per event
      // is a heap tuple and two index entries less per event (see eventRowsOf in rows.ts).
      'ALTER TABLE events ADD COLUMN more TEXT',
    ],
  },
  {
    version: 7,
    name: 'tasks_occurrence holds occurrences of recurring tasks only',
    statements: [
      // Only occurrences have a parent, and NULLs never conflict: every other task's entry was written on each
      // insert and, on PostgreSQL, on each update (a status change is never a HOT update), and never read.
      'DROP INDEX tasks_occurrence',
      'CREATE UNIQUE INDEX tasks_occurrence ON tasks (parent_id, occurrence_at) WHERE parent_id IS NOT NULL',
    ],
  },
];

/** Applies every migration not yet recorded in schema_migrations, in one transaction. */
export async function runMigrations(backend: Backend, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  return backend.tx(
    async (ex: Exec) => {
      await backend.migrationPrelude(ex);
      await ex.all(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
      );
      const done = new Set((await ex.all<{ version: number }>('SELECT version FROM schema_migrations')).map((r) => Number(r.version)));
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(m.version)) continue;
        for (const s of m.statements) await ex.all(s.replaceAll('{{ID}}', backend.idType));
        await ex.all('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, Date.now()]);
        applied.push(m.version);
      }
      return applied;
    },
    // SET LOCAL and the migration lock must not reach other operations.
    { alone: true },
  );
}
