// The one implementation of the Store port, over a Backend (SQLite or PostgreSQL through Kysely).
//
// Locking strategy, the same for every write: read the rows an operation depends on with FOR UPDATE (on
// PostgreSQL; on SQLite BEGIN IMMEDIATE already serialises writers), decide in plain code with the domain's
// rules, then write in batches (multi-row INSERT, `WITH v AS (VALUES …) UPDATE … FROM v`). Lock order is
// leader → tasks → workers → runs, each by id, so replicas rarely deadlock; when they do, the backend reruns
// the transaction. Event rows are written in the same transaction as the change they describe.

import { randomBytes } from 'node:crypto';
import { TschedError, validationError } from '../domain/errors.js';
import { planOccurrences } from '../domain/occurrences.js';
import { afterRun } from '../domain/queue-policy.js';
import { nextOccurrence } from '../domain/recurrence.js';
import type { Allocation, Capacity } from '../domain/resources.js';
import type { RunOutcome, TaskStatus } from '../domain/status.js';
import { TASK_STATUSES, transitionTask } from '../domain/status.js';
import type { NewTask, Run, RunUsage, ScheduleSpec, Task, TaskEventRecord } from '../domain/task.js';
import type { Worker, WorkerRegistration, WorkerState, WorkerWithLoad } from '../domain/worker.js';
import type { Backend, Exec } from './backend.js';
import { runMigrations } from './migrations/index.js';
import type {
  ApplyContext,
  ApplyResult,
  Assignment,
  CancelResult,
  DeadlineMiss,
  ExpandOptions,
  ExpandResult,
  FinishResult,
  HeartbeatResult,
  ItemAck,
  LeadershipState,
  LogChunk,
  LogChunkInput,
  Notification,
  PassQuery,
  PassResult,
  PlacementDecision,
  Planner,
  ReapResult,
  RunResultInput,
  RunToken,
  Store,
  SubmitOptions,
  SubmitResult,
  TaskQuery,
  TokenRecord,
  WorkerLook,
  WorkerPollResult,
  WorkerReportInput,
  WorkerReportResult,
} from './port.js';
import type { EventRow, RunRow, TaskRow, WorkerRow } from './rows.js';
import {
  EVENT_COLUMNS,
  EVENTS_PER_ROW,
  type EventIn,
  eventRowsOf,
  eventsFromRow,
  HELD_TASK_STATE_COLUMNS,
  runFromRow,
  runOf,
  stateRowOf,
  TASK_INSERT_COLUMNS,
  TASK_SPEC_COLUMNS,
  taskFromRow,
  taskInsertValues,
  workerFromRow,
} from './rows.js';
import { StatsRefresher } from './stats-refresher.js';
import { TaskSpecCache } from './task-spec-cache.js';
import { TxCombiner } from './tx-combiner.js';

export interface StoreOptions {
  /** Source of randomness for retry jitter; inject for deterministic tests. */
  random?: () => number;
}

const LIVE = "('assigned','running')";
/** PostgreSQL's clock, epoch ms (the store's clock). */
const PG_NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';
/** Writes of the leader row come first in the lock order, so they never share a group commit. */
const LEADER_ROW = { alone: true } as const;
const TASK_STATE_COLUMNS =
  'id, owner, name, status, attempts, current_run_id, due_at, start_deadline, delay_tolerance, total_attempts, retry, execution_cap, paused, updated_at, finished_at, last_error, deadline_missed, notify, on_deadline_miss';
/**
 * Every live run with what it holds, in id order, for the scheduler's snapshot; the owner rides along so that
 * it can count each user's running share (DRF, quotas). The owner is looked up per live run, not joined:
 * with statistics older than the newest runs (an ANALYZE that saw runs of the first tasks only), PostgreSQL
 * planned the join as a merge join that walks the tasks' primary key from the first task up to the newest
 * live one, on every pass until the next ANALYZE: 7 ms a pass 6,000 tasks into the real-execution benchmark,
 * 75 ms over 100,000 tasks. A lookup per live run costs the same however many tasks the store holds.
 */
export const LIVE_RUNS_SELECT =
  `SELECT r.id, r.task_id, r.worker_id, r.cpus, r.memory, r.ports, r.cap_at, (SELECT t.owner FROM tasks t WHERE t.id = r.task_id) AS owner ` +
  `FROM runs r WHERE r.state IN ${LIVE} ORDER BY r.id`;
/**
 * PostgreSQL: the live runs and, as a row of its own (worker_id NULL), the store's clock. Sent behind the
 * worker locks, so the clock is read once they are held (ApplyContext.stampAtCommit), without a statement
 * of its own in the pass's first round trip.
 */
const LIVE_RUNS_WITH_CLOCK_PG =
  `(${LIVE_RUNS_SELECT.replace(' AS owner ', ' AS owner, NULL::bigint AS now ')}) ` +
  `UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ${PG_NOW}`;
/** SQLite: the state columns of candidates whose spec the pass holds. */
const HELD_STATE_SELECT = `SELECT ${HELD_TASK_STATE_COLUMNS.join(', ')} FROM tasks WHERE id IN`;
/** A PostgreSQL candidate's columns: spec columns NULL where the pass holds the spec (c.held). */
const CANDIDATE_COLUMNS_PG = [
  ...HELD_TASK_STATE_COLUMNS.map((c) => `t.${c}`),
  ...TASK_SPEC_COLUMNS.map((c) => `CASE WHEN c.held THEN NULL ELSE t.${c} END AS ${c}`),
].join(', ');
const DAY = 86_400_000;
/** A candidate window's LIMIT as written into the walk's text: the next power of two from 64 (see candidates). */
export function windowClass(limit: number): number {
  let cap = 64;
  while (cap < limit) cap *= 2;
  return cap;
}
/**
 * What the store's own ANALYZE covers (stats-refresher.ts): the columns its statements filter, join and
 * sort on, not the wide text and JSON ones (command, env, resources, allocation, usage, …), which no plan
 * reads and which made most of its cost: 210 → 80 ms over 20,000 tasks and 10,000 runs, and at 1,000
 * submits/s 13 of them took 1.3 s of PostgreSQL's CPU in a 20 s run. The table's row count is refreshed
 * either way.
 */
const ANALYZED =
  'tasks (id, status, priority, start_deadline, due_at, paused, is_definition, deadline_missed, parent_id, occurrence_at, next_occurrence_at, owner), ' +
  'runs (id, task_id, state, worker_id, delivered, cancel_requested, lease_expires_at, cap_at)';
/**
 * The run columns that fencing, ending a run and its write-back (runSaves) and its events read: what a
 * worker's report locks. The rest of a run row (allocation, ports, usage sums, log counters, …) is never
 * read there, and the report read every column of 50 rows per drain cycle.
 */
const ENDING_RUN_COLUMNS =
  'id, task_id, worker_name, lease_token, lease_expires_at, state, started_at, finished_at, exit_code, outcome, reason, cancel_requested, usage';
/**
 * What a scheduling pass read in its own transaction, for its applier (applyIn) to check its decisions
 * against instead of reading them again:
 * - SQLite: BEGIN IMMEDIATE holds the write lock and the pass runs alone in it, so nothing can change them.
 * - PostgreSQL: the pass locked its candidates (FOR UPDATE, the leader row FOR SHARE first) and every
 *   schedulable worker (FOR UPDATE), and read the live runs after those locks, in one round trip. Nothing
 *   can then change the candidates or place on those workers before commit; a run that ends meanwhile only
 *   frees room the sums still count. Lock order as everywhere: leader, tasks, workers.
 */
interface PassSnapshot {
  tasks: readonly Task[];
  workers: readonly WorkerWithLoad[];
  /** PostgreSQL: the leader epoch read with the candidate locks; undefined when no candidate row carried it. */
  leaderEpoch?: number | null;
  /** PostgreSQL with stampAtCommit: the store's clock, read after the worker locks. */
  now?: number;
}
/** A pass's candidate walk that locks what it reads (PostgreSQL; see candidates). */
interface WalkLock {
  /** The leader row is share-locked with the candidates and its epoch read. */
  fenced: boolean;
  leaderEpoch?: number | null;
}
/** See nextDueAt. */
const NEXT_DUE = "SELECT MIN(due_at) AS m FROM tasks WHERE status = 'waiting' AND due_at > ? AND paused = 0 AND is_definition = 0";
/** How many run ids a PostgreSQL pass draws ahead at least (see KyselyStore.runIdPool). */
const RUN_ID_DRAW = 256;
/** The task columns taskSaves writes back. */
type SavedTaskRow = Pick<
  TaskRow,
  | 'id'
  | 'status'
  | 'attempts'
  | 'current_run_id'
  | 'due_at'
  | 'start_deadline'
  | 'updated_at'
  | 'finished_at'
  | 'last_error'
  | 'deadline_missed'
>;
/** What the applier reads of a task: the checks (status, paused, due_at), the run's cap, and what it writes back. */
type ApplyTaskRow = SavedTaskRow & Pick<TaskRow, 'paused' | 'execution_cap'>;
/** A worker as the applier checks it. */
interface ApplyWorker {
  id: string;
  name: string;
  state: WorkerState;
  capacity: Capacity;
}
/** Bound on bound parameters per statement (SQLite allows 32766, PostgreSQL 65535). */
const MAX_PARAMS = 30_000;
const REAP_BATCH = 2000;
const EMPTY_USAGE: RunUsage = { peakMemory: null, cpuSeconds: null };
/** A new run's usage column, written once here rather than per run. */
const EMPTY_USAGE_JSON = JSON.stringify(EMPTY_USAGE);

type ColType = 'BIGINT' | 'INTEGER' | 'TEXT';

/** One SQL statement and its parameters. */
interface Stmt {
  sql: string;
  params: unknown[];
}

/** What ends one live run: its outcome and what the worker (or the monitor) said about it. */
interface Ending {
  run: RunRow;
  outcome: RunOutcome;
  exitCode: number | null;
  reason: string | null;
  startedAt: number | null;
  finishedAt: number;
  usage: RunUsage | null;
  actor: string;
}

const placeholders = (n: number): string => `(${new Array(n).fill('?').join(',')})`;

function chunks<T>(items: T[], size: number): T[][] {
  if (items.length <= size) return [items];
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Rows' values in one flat parameter list. Array.prototype.flat takes ~160 ns a value in V8 here (12.9 ms
 * for a 2,000-task submit chunk of 40 columns); this loop, a tenth of that.
 */
function flatten(rows: unknown[][]): unknown[] {
  let n = 0;
  for (const r of rows) n += r.length;
  const out = new Array<unknown>(n);
  let k = 0;
  for (const r of rows) for (let i = 0; i < r.length; i++) out[k++] = r[i];
  return out;
}

const isLive = (s: string): boolean => s === 'assigned' || s === 'running';

/** The event of a run started by its worker. */
function startedEvent(r: RunRow, now: number): EventIn {
  return {
    taskId: Number(r.task_id),
    runId: Number(r.id),
    at: now,
    actor: `worker:${r.worker_name}`,
    type: 'run.started',
    from: 'assigned',
    to: 'running',
    reason: null,
  };
}

/**
 * The fencing rule, in one place: an item from a worker counts only if its run exists, is still live, and
 * carries the run's current lease token. Returns the refusal, or null when the item may change the run.
 */
function fence(r: RunRow | undefined, item: RunToken): ItemAck | null {
  if (!r) return { runId: item.runId, ok: false, code: 'RUN_NOT_FOUND' };
  if (r.lease_token !== item.token || !isLive(r.state)) return { runId: item.runId, ok: false, code: 'LEASE_STALE' };
  return null;
}

/** The longest prefix of `s` that fits in `max` UTF-8 bytes, cut on a character boundary. */
function utf8Prefix(s: string, max: number): { text: string; bytes: number } {
  const buf = Buffer.from(s, 'utf8');
  if (buf.length <= max) return { text: s, bytes: buf.length };
  let end = max;
  while (end > 0 && ((buf[end] as number) & 0xc0) === 0x80) end--;
  return { text: buf.subarray(0, end).toString('utf8'), bytes: end };
}

/** What a new run row is inserted with; the rest take their defaults. */
const RUN_INSERT_COLUMNS = [
  'task_id',
  'attempt',
  'worker_id',
  'worker_name',
  'lease_token',
  'lease_expires_at',
  'state',
  'allocation',
  'cpus',
  'memory',
  'ports',
  'assigned_at',
  'cap_at',
  'cancel_requested',
  'delivered',
  'usage',
] as const satisfies ReadonlyArray<keyof RunRow>;

/**
 * The workers without the room of the given runs, which have ended since they were read (see schedulePass):
 * a worker's load is the sum of its live runs, as workersWithLoad reads it.
 */
function withoutRuns(workers: WorkerWithLoad[], runIds: number[]): WorkerWithLoad[] {
  const gone = new Set(runIds);
  return workers.map((w) => {
    if (!w.live.some((r) => gone.has(r.runId))) return w;
    const live = w.live.filter((r) => !gone.has(r.runId));
    const allocated = { cpus: 0, memory: 0, ports: [] as number[] };
    for (const r of live) {
      allocated.cpus += r.cpus;
      allocated.memory += r.memory;
      allocated.ports.push(...r.ports);
    }
    return { ...w, allocated, live };
  });
}

/** Candidates in each walk's own order: the best walk by band, then start deadline; the deadline walks by start deadline. */
function byWalkOrder(out: Array<{ walk: number; task: Task }>): Task[] {
  out.sort(
    (a, b) =>
      a.walk - b.walk ||
      (a.walk === 0 ? b.task.priority - a.task.priority : 0) ||
      a.task.startDeadline - b.task.startDeadline ||
      a.task.id - b.task.id,
  );
  return out.map((c) => c.task);
}

export class KyselyStore implements Store {
  private readonly random: () => number;
  private lastPrune = 0;
  /** Whether the last scheduling pass found every worker full (PostgreSQL: then the walk waits for room). */
  private lastPassNoRoom = false;
  /** Whether the last PostgreSQL pass read a full candidate window (see schedulePass). */
  private lastWindowFull = false;
  /** Keeps PostgreSQL's statistics of the hot tables fresh through bursts (see stats-refresher.ts). */
  private readonly stats: StatsRefresher;
  /**
   * Worker ids this store has seen registered or updated. No worker row is ever deleted, so a known worker's
   * update always finds its row, and a report can end with it as a final statement (see beatIn).
   */
  private readonly knownWorkers = new Set<string>();

  constructor(
    readonly backend: Backend,
    opts: StoreOptions = {},
  ) {
    this.random = opts.random ?? Math.random;
    // A failed ANALYZE only leaves the statistics to autovacuum, as before.
    this.stats = new StatsRefresher(backend, ANALYZED);
    this.plainSubmits = new TxCombiner(backend, (ex, items) => this.submitPlain(ex, items));
  }

  get kind(): 'sqlite' | 'postgres' {
    return this.backend.kind;
  }

  async migrate(): Promise<void> {
    await runMigrations(this.backend);
  }

  async close(): Promise<void> {
    await this.stats.settled();
    return this.backend.close();
  }

  now(): Promise<number> {
    return this.backend.now();
  }

  // ---------------------------------------------------------------- helpers

  private get lock(): string {
    return this.backend.forUpdate;
  }

  /**
   * PostgreSQL's type of every column of this schema's tables (udt names: int8, text, …), read once: the
   * array-parameter statements below cast each column's array to it.
   */
  private pgColumns: Promise<Map<string, Map<string, string>>> | null = null;
  private async pgType(ex: Exec, table: string, col: string): Promise<string> {
    this.pgColumns ??= ex
      .all<{ table_name: string; column_name: string; udt_name: string }>(
        'SELECT table_name, column_name, udt_name FROM information_schema.columns WHERE table_schema = current_schema()',
      )
      .then((rows) => {
        const m = new Map<string, Map<string, string>>();
        for (const r of rows) {
          const t = m.get(r.table_name) ?? new Map<string, string>();
          t.set(r.column_name, r.udt_name);
          m.set(r.table_name, t);
        }
        return m;
      })
      .catch((e: unknown) => {
        this.pgColumns = null; // e.g. the transaction it ran in failed: read it again next time
        throw e;
      });
    const t = (await this.pgColumns).get(table)?.get(col);
    if (!t) {
      this.pgColumns = null; // a schema migrated since: read it again next time
      throw new Error(`store: no column ${table}.${col}`);
    }
    return t;
  }

  /**
   * Multi-row INSERT; returns RETURNING rows when `returning` is given. SQLite: VALUES lists in chunks.
   * PostgreSQL: one statement whose every column is one array parameter (INSERT … SELECT FROM unnest(…)):
   * its text does not change with the number of rows, so it is parsed and planned in a fraction of the time
   * of a VALUES list of hundreds of parameters — most of the database's CPU per task before.
   */
  private async insertRows<T>(
    ex: Exec,
    table: string,
    cols: readonly string[],
    rows: unknown[][],
    returning = '',
    tail = '',
  ): Promise<T[]> {
    const out: T[] = [];
    for (const st of await this.insertStatements(ex, table, cols, rows, returning, tail)) {
      const res = await ex.all<T>(st.sql, st.params);
      if (returning) out.push(...res);
    }
    return out;
  }

  private async insertStatements(
    ex: Exec,
    table: string,
    cols: readonly string[],
    rows: unknown[][],
    returning = '',
    tail = '',
  ): Promise<Stmt[]> {
    if (rows.length === 0) return [];
    const ret = returning ? ` RETURNING ${returning}` : '';
    if (this.backend.kind === 'postgres') {
      const arrays = await Promise.all(cols.map(async (c) => `?::${await this.pgType(ex, table, c)}[]`));
      return [
        {
          sql: `INSERT INTO ${table} (${cols.join(',')}) SELECT * FROM unnest(${arrays.join(', ')})${tail}${ret}`,
          params: cols.map((_, i) => rows.map((r) => r[i])),
        },
      ];
    }
    const per = Math.max(1, Math.floor(MAX_PARAMS / cols.length));
    const one = placeholders(cols.length);
    return chunks(rows, per).map((part) => ({
      sql: `INSERT INTO ${table} (${cols.join(',')}) VALUES ${new Array(part.length).fill(one).join(',')}${tail}${ret}`,
      params: flatten(part),
    }));
  }

  /**
   * Writes whose results nobody reads, in one round trip on PostgreSQL: each but the last becomes a
   * data-modifying CTE of the last (`WITH w0 AS (…), w1 AS (…) …`). They run on one snapshot and none sees
   * another's rows, so they must touch different rows (here: different tables). SQLite: one after another.
   * `sent`: an array, to send it without waiting (below); 'final', to send it as the op's final statement.
   */
  private async writeAll(ex: Exec, stmts: Stmt[], sent?: Array<Promise<unknown>> | 'final'): Promise<void> {
    if (this.backend.kind !== 'postgres') {
      for (const st of stmts) await ex.all(st.sql, st.params);
      return;
    }
    if (stmts.length === 0) return;
    const last = stmts[stmts.length - 1]!;
    const ctes = stmts.slice(0, -1).map((st, i) => `w${i} AS (${st.sql})`);
    const answer = (sent === 'final' ? ex.final : ex.all).call(
      ex,
      ctes.length === 0 ? last.sql : `WITH ${ctes.join(', ')} ${last.sql}`,
      ctes.length === 0 ? last.params : stmts.flatMap((st) => st.params),
    );
    if (sent === undefined || sent === 'final') {
      await answer;
      return;
    }
    // Not waited for here: the caller's next statements go out behind it (pipelined, and run after it on
    // the server), and the caller awaits `sent` before it returns. If it fails, the transaction is aborted,
    // so whatever was sent behind it fails too and nothing of it commits.
    answer.catch(() => {});
    sent.push(answer);
  }

  /**
   * Per-row different values in one statement. SQLite: WITH v(...) AS (VALUES …) UPDATE t SET … FROM v WHERE
   * t.key = v.key. PostgreSQL: the same over unnest(array parameters), one per column (see insertRows).
   */
  private async updateRows(
    ex: Exec,
    table: string,
    key: [string, ColType],
    cols: Array<[string, ColType]>,
    rows: unknown[][],
  ): Promise<void> {
    for (const st of this.updateStatements(table, key, cols, rows)) await ex.all(st.sql, st.params);
  }

  private updateStatements(table: string, key: [string, ColType], cols: Array<[string, ColType]>, rows: unknown[][]): Stmt[] {
    if (rows.length === 0) return [];
    const all = [key, ...cols];
    const set = cols.map(([c]) => `${c} = v.${c}`).join(', ');
    if (this.backend.kind === 'postgres') {
      return [
        {
          sql:
            `UPDATE ${table} SET ${set} FROM unnest(${all.map(([, t]) => `?::${t}[]`).join(', ')}) AS v(${all.map(([c]) => c).join(',')}) ` +
            `WHERE ${table}.${key[0]} = v.${key[0]}`,
          params: all.map((_, i) => rows.map((r) => r[i])),
        },
      ];
    }
    const one = `(${all.map(([, t]) => `CAST(? AS ${t})`).join(',')})`;
    const per = Math.max(1, Math.floor(MAX_PARAMS / all.length));
    return chunks(rows, per).map((part) => ({
      sql:
        `WITH v(${all.map(([c]) => c).join(',')}) AS (VALUES ${new Array(part.length).fill(one).join(',')}) ` +
        `UPDATE ${table} SET ${set} FROM v WHERE ${table}.${key[0]} = v.${key[0]}`,
      params: flatten(part),
    }));
  }

  /**
   * `sqlBefore (?, ?, …) sqlAfter` over the ids, chunked; `leading` params bind before the list. `sqlBefore`
   * ends with ` IN`. On PostgreSQL the list is one array parameter, `= ANY(?)`, so the text never changes.
   */
  private async selectIn<T>(ex: Exec, sqlBefore: string, ids: unknown[], sqlAfter = '', leading: unknown[] = []): Promise<T[]> {
    if (ids.length === 0) return [];
    if (this.backend.kind === 'postgres') {
      if (!sqlBefore.endsWith(' IN')) throw new Error(`selectIn: expected "… IN", got ${sqlBefore}`);
      return ex.all<T>(`${sqlBefore.slice(0, -3)} = ANY(?)${sqlAfter}`, [...leading, ids]);
    }
    const out: T[] = [];
    for (const part of chunks(ids, MAX_PARAMS)) {
      out.push(...(await ex.all<T>(`${sqlBefore} (${part.map(() => '?').join(',')})${sqlAfter}`, [...leading, ...part])));
    }
    return out;
  }

  private lockTasks(ex: Exec, ids: number[]): Promise<TaskRow[]> {
    return this.selectIn<TaskRow>(ex, 'SELECT * FROM tasks WHERE id IN', [...new Set(ids)], ` ORDER BY id${this.lock}`);
  }

  /** Like lockTasks, but only the columns the queue manager and saveTasks use (wide rows are costly to read). */
  private lockTaskStates(ex: Exec, ids: number[]): Promise<TaskRow[]> {
    return this.selectIn<TaskRow>(ex, `SELECT ${TASK_STATE_COLUMNS} FROM tasks WHERE id IN`, [...new Set(ids)], ` ORDER BY id${this.lock}`);
  }

  /** Locks the runs these items name, keyed by id. */
  private async lockRunsById(ex: Exec, items: ReadonlyArray<{ runId: number }>): Promise<Map<number, RunRow>> {
    return new Map(
      (
        await this.lockRuns(
          ex,
          items.map((i) => i.runId),
        )
      ).map((r) => [Number(r.id), r]),
    );
  }

  /** `cols`: a narrower projection than the whole row, for callers that read and write only those. */
  private lockRuns(ex: Exec, ids: number[], cols = '*'): Promise<RunRow[]> {
    return this.selectIn<RunRow>(ex, `SELECT ${cols} FROM runs WHERE id IN`, [...new Set(ids)], ` ORDER BY id${this.lock}`);
  }

  /**
   * Locks runs and their tasks in the global order (tasks first), for operations that end runs. `runCols`
   * as in lockRuns: a worker's report reads only ENDING_RUN_COLUMNS.
   */
  private async lockRunsWithTasks(
    ex: Exec,
    runIds: number[],
    runCols = '*',
  ): Promise<{ runs: Map<number, RunRow>; tasks: Map<number, TaskRow> }> {
    // One statement finds and locks the tasks (a subquery, not a separate peek at the runs: one round trip
    // less), and the run locks go out with it (pipelined on PostgreSQL), taken after the tasks'.
    const [taskRows, runRows] = await Promise.all([
      this.selectIn<TaskRow>(
        ex,
        `SELECT ${TASK_STATE_COLUMNS} FROM tasks WHERE id IN (SELECT task_id FROM runs WHERE id IN`,
        [...new Set(runIds)],
        `) ORDER BY id${this.lock}`,
      ),
      this.lockRuns(ex, runIds, runCols),
    ]);
    const tasks = new Map(taskRows.map((t) => [Number(t.id), t]));
    const runs = new Map(runRows.map((r) => [Number(r.id), r]));
    return { runs, tasks };
  }

  private async insertEvents(ex: Exec, events: EventIn[]): Promise<void> {
    await this.writeAll(ex, await this.eventInserts(ex, events));
  }

  /** One row per task and write, not per event (see eventRowsOf). */
  private eventInserts(ex: Exec, events: EventIn[]): Promise<Stmt[]> {
    return this.insertStatements(ex, 'events', EVENT_COLUMNS, eventRowsOf(events));
  }

  /** Writes back the mutable columns of task rows changed in memory. */
  private saveTasks(ex: Exec, rows: TaskRow[]): Promise<void> {
    return this.writeAll(ex, this.taskSaves(rows));
  }

  private taskSaves(rows: SavedTaskRow[]): Stmt[] {
    return this.updateStatements(
      'tasks',
      ['id', 'BIGINT'],
      [
        ['status', 'TEXT'],
        ['attempts', 'INTEGER'],
        ['current_run_id', 'BIGINT'],
        ['due_at', 'BIGINT'],
        ['start_deadline', 'BIGINT'],
        ['updated_at', 'BIGINT'],
        ['finished_at', 'BIGINT'],
        ['last_error', 'TEXT'],
        ['deadline_missed', 'INTEGER'],
      ],
      rows.map((t) => [
        t.id,
        t.status,
        t.attempts,
        t.current_run_id,
        t.due_at,
        t.start_deadline,
        t.updated_at,
        t.finished_at,
        t.last_error,
        t.deadline_missed,
      ]),
    );
  }

  /** Writes back the mutable columns of run rows changed in memory. */
  private saveRuns(ex: Exec, rows: RunRow[]): Promise<void> {
    return this.writeAll(ex, this.runSaves(rows));
  }

  private runSaves(rows: RunRow[]): Stmt[] {
    return this.updateStatements(
      'runs',
      ['id', 'BIGINT'],
      [
        ['state', 'TEXT'],
        ['lease_expires_at', 'BIGINT'],
        ['started_at', 'BIGINT'],
        ['finished_at', 'BIGINT'],
        ['exit_code', 'INTEGER'],
        ['outcome', 'TEXT'],
        ['reason', 'TEXT'],
        ['cancel_requested', 'INTEGER'],
        ['usage', 'TEXT'],
      ],
      rows.map((r) => [
        r.id,
        r.state,
        r.lease_expires_at,
        r.started_at,
        r.finished_at,
        r.exit_code,
        r.outcome,
        r.reason,
        r.cancel_requested,
        r.usage,
      ]),
    );
  }

  /**
   * The queue manager: ends live runs and moves each task by the domain rules (afterRun + the state machine).
   * Rows must be locked by the caller. Mutates them, writes them and the events. `events` are written first,
   * in the same statement (the start events of runs started and ended in one report). With `sent`, the
   * write is sent and not waited for (see writeAll).
   */
  private async endRuns(
    ex: Exec,
    endings: Ending[],
    tasks: Map<number, TaskRow>,
    now: number,
    events: EventIn[] = [],
    sent?: Array<Promise<unknown>>,
    collect = true,
  ): Promise<ReapResult['ended']> {
    const dirtyTasks = new Map<number, TaskRow>();
    const ended: ReapResult['ended'] = [];
    for (const e of endings) {
      const run = e.run;
      const from = run.state;
      run.state = e.outcome;
      run.outcome = e.outcome;
      run.exit_code = e.exitCode;
      run.reason = e.reason;
      run.started_at = run.started_at ?? e.startedAt;
      run.finished_at = e.finishedAt;
      if (e.usage) run.usage = JSON.stringify(e.usage);
      events.push({
        taskId: Number(run.task_id),
        runId: Number(run.id),
        at: now,
        actor: e.actor,
        type: `run.${e.outcome}`,
        from,
        to: e.outcome,
        reason: e.reason,
      });

      const task = tasks.get(Number(run.task_id));
      if (task && task.status === 'in_progress' && Number(task.current_run_id) === Number(run.id)) {
        const fromStatus = task.status;
        const decision = afterRun({
          outcome: e.outcome,
          exitCode: e.exitCode,
          attempts: Number(task.attempts),
          totalAttempts: Number(task.total_attempts),
          retry: JSON.parse(task.retry),
          now,
          random: this.random(),
        });
        task.status = transitionTask(task.status, decision.event);
        task.updated_at = now;
        task.current_run_id = null;
        let type = `task.${task.status}`;
        let reason = decision.reason;
        if (decision.event === 'retry') {
          type = 'task.retry_scheduled';
          task.due_at = decision.dueAt ?? now;
          task.start_deadline = task.due_at + Number(task.delay_tolerance);
          task.deadline_missed = 0;
        } else {
          task.finished_at = now;
          if (decision.event === 'fail') {
            const detail = [e.reason, e.exitCode !== null ? `exit code ${e.exitCode}` : null].filter(Boolean).join(', ');
            task.last_error = detail ? `${decision.reason} (${detail})` : decision.reason;
            reason = task.last_error;
          } else if (decision.event === 'succeed') {
            task.last_error = null;
          }
        }
        dirtyTasks.set(Number(task.id), task);
        events.push({
          taskId: Number(task.id),
          runId: Number(run.id),
          at: now,
          actor: e.actor,
          type,
          from: fromStatus,
          to: task.status,
          reason,
        });
      }
      if (collect) ended.push({ run: runFromRow(run), outcome: e.outcome, taskStatus: task ? task.status : 'failed' });
    }
    // Four tables, one round trip on PostgreSQL (not waited for when the caller passes `sent`).
    await this.writeAll(
      ex,
      [
        ...this.runSaves(endings.map((e) => e.run)),
        ...this.taskSaves([...dirtyTasks.values()]),
        ...(await this.eventInserts(ex, events)),
        ...(await this.notificationInserts(
          ex,
          [...dirtyTasks.values()].map((t) => ({ task: t, event: `task.${t.status}` })),
          now,
        )),
      ],
      sent,
    );
    return ended;
  }

  /** Adds webhook deliveries for tasks whose `notify.events` include the event. */
  private async queueNotifications(
    ex: Exec,
    items: Array<{ task: TaskRow; event: string; extra?: Record<string, unknown> }>,
    now: number,
  ): Promise<void> {
    await this.writeAll(ex, await this.notificationInserts(ex, items, now));
  }

  private notificationInserts(
    ex: Exec,
    items: Array<{ task: TaskRow; event: string; extra?: Record<string, unknown> }>,
    now: number,
  ): Promise<Stmt[]> {
    const rows: unknown[][] = [];
    for (const { task, event, extra } of items) {
      if (!task.notify) continue;
      const notify = JSON.parse(task.notify) as { url: string; events: string[] };
      if (!notify.events.includes(event)) continue;
      const payload = {
        task: { id: Number(task.id), name: task.name, owner: task.owner, status: task.status, attempts: Number(task.attempts) },
        startDeadline: Number(task.start_deadline),
        lastError: task.last_error,
        at: now,
        ...extra,
      };
      rows.push([Number(task.id), notify.url, event, JSON.stringify(payload), 'pending', 0, now, now]);
    }
    return this.insertStatements(
      ex,
      'notifications',
      ['task_id', 'url', 'event', 'payload', 'state', 'attempts', 'next_at', 'created_at'],
      rows,
    );
  }

  async recordDeadlineMisses(now: number, limit: number, epoch?: number | null): Promise<DeadlineMiss[]> {
    return this.backend.tx(async (ex) => {
      await this.checkEpoch(ex, epoch);
      // Walks tasks_deadline (status, start_deadline, id) from the earliest deadline.
      const peek = await ex.all<{ id: number }>(
        "SELECT id FROM tasks WHERE status = 'waiting' AND start_deadline < ? AND deadline_missed = 0 AND is_definition = 0 ORDER BY start_deadline, id LIMIT ?",
        [now, limit],
      );
      if (peek.length === 0) return [];
      const rows = (
        await this.lockTaskStates(
          ex,
          peek.map((r) => Number(r.id)),
        )
      ).filter((t) => t.status === 'waiting' && Number(t.deadline_missed) === 0 && Number(t.start_deadline) < now);
      const events: EventIn[] = [];
      const notes: Array<{ task: TaskRow; event: string; extra?: Record<string, unknown> }> = [];
      const out: DeadlineMiss[] = [];
      for (const t of rows) {
        t.deadline_missed = 1;
        t.updated_at = now;
        const late = now - Number(t.start_deadline);
        events.push({
          taskId: Number(t.id),
          runId: null,
          at: now,
          actor: 'monitor',
          type: 'task.deadline_missed',
          from: 'waiting',
          to: 'waiting',
          reason: `not started by its start deadline ${new Date(Number(t.start_deadline)).toISOString()} (${late}ms late)`,
        });
        notes.push({ task: t, event: 'task.deadline_missed', extra: { lateMs: late } });
        const expired = t.on_deadline_miss === 'expire';
        if (expired) {
          t.status = transitionTask(t.status, 'fail');
          t.finished_at = now;
          t.last_error = 'deadline_missed: not started within its delay tolerance';
          events.push({
            taskId: Number(t.id),
            runId: null,
            at: now,
            actor: 'monitor',
            type: 'task.failed',
            from: 'waiting',
            to: 'failed',
            reason: 'deadline_missed',
          });
          notes.push({ task: t, event: 'task.failed' });
        }
        out.push({ task: t as unknown as Task, expired });
      }
      await this.saveTasks(ex, rows);
      await this.insertEvents(ex, events);
      await this.queueNotifications(ex, notes, now);
      // Return full tasks (the locked rows are the narrow projection).
      const full = new Map(
        (
          await this.tasksByIds(
            ex,
            rows.map((r) => Number(r.id)),
          )
        ).map((t) => [t.id, t]),
      );
      return out.map((m) => ({ task: full.get(Number((m.task as unknown as TaskRow).id)) as Task, expired: m.expired }));
    });
  }

  async claimNotifications(now: number, limit: number, leaseMs: number): Promise<Notification[]> {
    return this.backend.tx(async (ex) => {
      const rows = await ex.all<{ id: number; task_id: number; url: string; event: string; payload: string; attempts: number }>(
        `SELECT id, task_id, url, event, payload, attempts FROM notifications WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?${this.backend.kind === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : ''}`,
        [now, limit],
      );
      if (rows.length === 0) return [];
      await this.selectIn(
        ex,
        'UPDATE notifications SET next_at = ?, attempts = attempts + 1 WHERE id IN',
        rows.map((r) => Number(r.id)),
        '',
        [now + leaseMs],
      );
      return rows.map((r) => ({
        id: Number(r.id),
        taskId: Number(r.task_id),
        url: r.url,
        event: r.event,
        payload: JSON.parse(r.payload),
        attempts: Number(r.attempts) + 1,
      }));
    });
  }

  async settleNotification(id: number, r: { ok: boolean; now: number; retryAt: number | null; error: string | null }): Promise<void> {
    await this.backend.tx(async (ex) => {
      if (r.ok) await ex.all("UPDATE notifications SET state = 'delivered', delivered_at = ?, last_error = NULL WHERE id = ?", [r.now, id]);
      else if (r.retryAt !== null)
        await ex.all('UPDATE notifications SET next_at = ?, last_error = ? WHERE id = ?', [r.retryAt, r.error, id]);
      else await ex.all("UPDATE notifications SET state = 'dead', last_error = ? WHERE id = ?", [r.error, id]);
    });
  }

  private async tasksByIds(ex: Exec, ids: number[]): Promise<Task[]> {
    const rows = await this.selectIn<TaskRow>(ex, 'SELECT * FROM tasks WHERE id IN', ids);
    const byId = new Map(rows.map((r) => [Number(r.id), r]));
    return ids.flatMap((id) => {
      const r = byId.get(id);
      return r ? [taskFromRow(r)] : [];
    });
  }

  // ---------------------------------------------------------------- auth

  async putToken(t: TokenRecord): Promise<void> {
    await this.backend.tx((ex) =>
      ex.all(
        'INSERT INTO tokens (token_hash, user_id, role, name, created_at) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id, role = excluded.role, name = excluded.name',
        [t.tokenHash, t.userId, t.role, t.name, Date.now()],
      ),
    );
  }

  async findToken(tokenHash: string): Promise<TokenRecord | null> {
    const [r] = await this.backend.read((ex) =>
      ex.all<{ token_hash: string; user_id: string; role: TokenRecord['role']; name: string }>(
        'SELECT * FROM tokens WHERE token_hash = ?',
        [tokenHash],
      ),
    );
    return r ? { tokenHash: r.token_hash, userId: r.user_id, role: r.role, name: r.name } : null;
  }

  // ---------------------------------------------------------------- tasks

  submitTasks(owner: string, tasks: NewTask[], opts: SubmitOptions): Promise<SubmitResult> {
    // The transaction is queued synchronously, so that a pass kicked right after joins its commit (kickAfter).
    // Plain submits queued together share one insert (tx-combiner.ts); a key or an occurrence goes alone.
    const plain = opts.idempotencyKey === undefined && tasks.every((t) => t.parentId === null);
    const done = plain ? this.plainSubmits.call({ owner, tasks, opts }) : this.backend.tx((ex) => this.submitIn(ex, owner, tasks, opts));
    void done.then(
      (r) => this.stats.grew(r.replayed ? 0 : r.tasks.length),
      () => {},
    );
    return done;
  }

  private readonly plainSubmits: TxCombiner<{ owner: string; tasks: NewTask[]; opts: SubmitOptions }, SubmitResult>;

  /** Submits without an idempotency key or a parent, in one INSERT of the tasks and one of their events. */
  private async submitPlain(ex: Exec, items: Array<{ owner: string; tasks: NewTask[]; opts: SubmitOptions }>): Promise<SubmitResult[]> {
    const values = items.flatMap(({ owner, tasks, opts }) => tasks.map((t) => taskInsertValues(owner, t, opts.now)));
    const total = items.reduce((n, i) => n + i.tasks.length, 0);
    if (this.backend.kind === 'postgres') {
      // One round trip: the submitted events are written by the same statement, matched to the new rows by
      // position (ids are drawn in insertion order, as below).
      const [insert] = await this.insertStatements(ex, 'tasks', TASK_INSERT_COLUMNS, values, '*');
      const rows = await ex.last<TaskRow>(
        `WITH t AS (${insert!.sql}), e AS (INSERT INTO events (task_id, run_id, at, actor, type, from_state, to_state, reason) ` +
          "SELECT x.id, NULL, a.at, a.actor, 'task.submitted', NULL, x.status, NULL " +
          'FROM (SELECT id, status, row_number() OVER (ORDER BY id) AS n FROM t) AS x ' +
          'JOIN unnest(?::int8[], ?::text[]) WITH ORDINALITY AS a(at, actor, n) ON a.n = x.n) SELECT * FROM t',
        [
          ...insert!.params,
          items.flatMap(({ tasks, opts }) => tasks.map(() => opts.now)),
          items.flatMap(({ tasks, opts }) => tasks.map(() => opts.actor)),
        ],
      );
      if (rows.length !== total) throw new TschedError('INTERNAL', `submit: ${rows.length} of ${total} tasks inserted`);
      rows.sort((a, b) => Number(a.id) - Number(b.id));
      let at = 0;
      return items.map(({ tasks }) => {
        const mine = rows.slice(at, at + tasks.length);
        at += tasks.length;
        return { tasks: mine.map(taskFromRow), replayed: false };
      });
    }
    const rows = await this.insertRows<TaskRow>(ex, 'tasks', TASK_INSERT_COLUMNS, values, '*');
    if (rows.length !== total) throw new TschedError('INTERNAL', `submit: ${rows.length} of ${total} tasks inserted`);
    // Ids are drawn in insertion order: sorted, the rows follow the items.
    rows.sort((a, b) => Number(a.id) - Number(b.id));
    const out: SubmitResult[] = [];
    const events: EventIn[] = [];
    let at = 0;
    for (const { tasks, opts } of items) {
      const mine = rows.slice(at, at + tasks.length);
      at += tasks.length;
      for (const r of mine)
        events.push({
          taskId: Number(r.id),
          runId: null,
          at: opts.now,
          actor: opts.actor,
          type: 'task.submitted',
          from: null,
          to: r.status,
          reason: null,
        });
      out.push({ tasks: mine.map(taskFromRow), replayed: false });
    }
    await this.insertEvents(ex, events);
    return out;
  }

  private async submitIn(ex: Exec, owner: string, tasks: NewTask[], opts: SubmitOptions): Promise<SubmitResult> {
    const now = opts.now;
    const key = opts.idempotencyKey;
    if (key !== undefined) {
      await this.pruneIdempotency(ex, now);
      await ex.all('DELETE FROM idempotency_keys WHERE owner = ? AND idem_key = ? AND created_at <= ?', [owner, key, now - DAY]);
      // Claim the key first: a concurrent submit with the same key waits on the unique index, then replays.
      const claimed = await ex.all(
        'INSERT INTO idempotency_keys (owner, idem_key, request_hash, task_ids, created_at) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (owner, idem_key) DO NOTHING RETURNING owner',
        [owner, key, opts.requestHash ?? null, '[]', now],
      );
      if (claimed.length === 0) {
        const [prev] = await ex.all<{ request_hash: string | null; task_ids: string }>(
          'SELECT request_hash, task_ids FROM idempotency_keys WHERE owner = ? AND idem_key = ?',
          [owner, key],
        );
        if ((prev?.request_hash ?? null) !== (opts.requestHash ?? null)) {
          throw new TschedError('IDEMPOTENCY_CONFLICT', `Idempotency-Key "${key}" was already used within 24h for a different request`, {
            details: { idempotencyKey: key },
          });
        }
        return { tasks: await this.tasksByIds(ex, JSON.parse(prev?.task_ids ?? '[]')), replayed: true };
      }
    }
    const rows = await this.insertRows<TaskRow>(
      ex,
      'tasks',
      TASK_INSERT_COLUMNS,
      tasks.map((t) => taskInsertValues(owner, t, now)),
      '*',
      // An occurrence already stored (by another replica's expander) is skipped, not duplicated.
      ' ON CONFLICT (parent_id, occurrence_at) WHERE parent_id IS NOT NULL DO NOTHING',
    );
    rows.sort((a, b) => Number(a.id) - Number(b.id));
    await this.insertEvents(
      ex,
      rows.map((r) => ({
        taskId: Number(r.id),
        runId: null,
        at: now,
        actor: opts.actor,
        type: 'task.submitted',
        from: null,
        to: r.status,
        reason: null,
      })),
    );
    if (key !== undefined) {
      await ex.all('UPDATE idempotency_keys SET task_ids = ? WHERE owner = ? AND idem_key = ?', [
        JSON.stringify(rows.map((r) => Number(r.id))),
        owner,
        key,
      ]);
    }
    return { tasks: rows.map(taskFromRow), replayed: false };
  }

  /** Keys are kept 24 h; old ones are swept at most once a minute, from inside a submit. */
  private async pruneIdempotency(ex: Exec, now: number): Promise<void> {
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    await ex.all('DELETE FROM idempotency_keys WHERE created_at <= ?', [now - DAY]);
  }

  async getTask(id: number, owner: string | null): Promise<Task | null> {
    const [r] = await this.backend.read((ex) => ex.all<TaskRow>('SELECT * FROM tasks WHERE id = ?', [id]));
    if (!r || (owner !== null && r.owner !== owner)) return null;
    return taskFromRow(r);
  }

  async listTasks(q: TaskQuery): Promise<{ tasks: Task[]; next: string | null }> {
    if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > 1000)
      throw validationError([{ path: 'limit', message: 'expected an integer from 1 to 1000' }]);
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.owner !== null) {
      where.push('owner = ?');
      params.push(q.owner);
    }
    if (q.status && q.status.length > 0) {
      for (const s of q.status) {
        if (!TASK_STATUSES.includes(s)) throw validationError([{ path: 'status', message: `expected one of ${TASK_STATUSES.join(', ')}` }]);
      }
      where.push(`status IN (${q.status.map(() => '?').join(',')})`);
      params.push(...q.status);
    }
    if (q.parentId !== undefined) {
      where.push('parent_id = ?');
      params.push(q.parentId);
    }
    if (q.cursor) {
      const before = Number(Buffer.from(q.cursor, 'base64url').toString('utf8'));
      if (!Number.isSafeInteger(before) || before < 1)
        throw validationError([{ path: 'cursor', message: 'expected a cursor returned by a previous page' }]);
      where.push('id < ?');
      params.push(before);
    }
    params.push(q.limit + 1);
    const rows = await this.backend.read((ex) =>
      ex.all<TaskRow>(`SELECT * FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`, params),
    );
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    const next = rows.length > q.limit && last ? Buffer.from(String(last.id), 'utf8').toString('base64url') : null;
    return { tasks: page.map(taskFromRow), next };
  }

  async countTasks(owner: string | null): Promise<Record<TaskStatus, number>> {
    const rows = await this.backend.read((ex) =>
      owner === null
        ? ex.all<{ status: TaskStatus; n: number }>('SELECT status, COUNT(*) AS n FROM tasks GROUP BY status')
        : ex.all<{ status: TaskStatus; n: number }>('SELECT status, COUNT(*) AS n FROM tasks WHERE owner = ? GROUP BY status', [owner]),
    );
    const out = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
    for (const r of rows) out[r.status] = Number(r.n);
    return out;
  }

  async listRuns(taskId: number): Promise<Run[]> {
    const rows = await this.backend.read((ex) => ex.all<RunRow>('SELECT * FROM runs WHERE task_id = ? ORDER BY id', [taskId]));
    return rows.map(runFromRow);
  }

  async getRun(runId: number): Promise<Run | null> {
    const [r] = await this.backend.read((ex) => ex.all<RunRow>('SELECT * FROM runs WHERE id = ?', [runId]));
    return r ? runFromRow(r) : null;
  }

  async listEvents(taskId: number, afterId = 0): Promise<TaskEventRecord[]> {
    // The row holding event afterId may hold later ones too.
    const rows = await this.backend.read((ex) =>
      ex.all<EventRow>('SELECT * FROM events WHERE task_id = ? AND id >= ? ORDER BY id', [taskId, Math.floor(afterId / EVENTS_PER_ROW)]),
    );
    return rows.flatMap(eventsFromRow).filter((e) => e.id > afterId);
  }

  async cancelTask(id: number, owner: string | null, opts: { now: number; actor: string; reason: string }): Promise<CancelResult> {
    return this.backend.tx(async (ex) => {
      const [task] = await this.lockTasks(ex, [id]);
      if (!task || (owner !== null && task.owner !== owner))
        throw new TschedError('TASK_NOT_FOUND', `task ${id} does not exist`, { details: { id } });
      if (task.status === 'cancelled') {
        const live = await ex.all<RunRow>(`SELECT * FROM runs WHERE task_id = ? AND state IN ${LIVE} ORDER BY id`, [id]);
        return { task: taskFromRow(task), runsToStop: live.map(runFromRow), changed: false };
      }
      const from = task.status;
      task.status = transitionTask(task.status, 'cancel'); // done/failed → TASK_FINISHED naming the status
      task.updated_at = opts.now;
      task.finished_at = opts.now;
      task.current_run_id = null;
      await this.saveTasks(ex, [task]);
      // The run keeps its resources until its worker reports it ended (or the lease expires).
      const runs = await ex.all<RunRow>(`UPDATE runs SET cancel_requested = 1 WHERE task_id = ? AND state IN ${LIVE} RETURNING *`, [id]);
      runs.sort((a, b) => Number(a.id) - Number(b.id));
      await this.insertEvents(ex, [
        { taskId: id, runId: null, at: opts.now, actor: opts.actor, type: 'task.cancelled', from, to: 'cancelled', reason: opts.reason },
        ...runs.map((r) => ({
          taskId: id,
          runId: Number(r.id),
          at: opts.now,
          actor: opts.actor,
          type: 'run.cancel_requested',
          from: r.state,
          to: r.state,
          reason: opts.reason,
        })),
      ]);
      if (Number(task.is_definition) === 1) await this.cancelDefinition(ex, task, opts);
      return { task: taskFromRow(task), runsToStop: runs.map(runFromRow), changed: true };
    });
  }

  async requeueTask(id: number, owner: string | null, opts: { now: number; actor: string }): Promise<Task> {
    return this.backend.tx(async (ex) => {
      const [task] = await this.lockTasks(ex, [id]);
      if (!task || (owner !== null && task.owner !== owner))
        throw new TschedError('TASK_NOT_FOUND', `task ${id} does not exist`, { details: { id } });
      const from = task.status;
      task.status = transitionTask(task.status, 'requeue');
      task.attempts = 0;
      task.due_at = opts.now;
      task.start_deadline = opts.now + Number(task.delay_tolerance);
      task.updated_at = opts.now;
      task.finished_at = null;
      task.last_error = null;
      task.current_run_id = null;
      task.deadline_missed = 0;
      await this.saveTasks(ex, [task]);
      await this.insertEvents(ex, [
        { taskId: id, runId: null, at: opts.now, actor: opts.actor, type: 'task.requeued', from, to: 'waiting', reason: null },
      ]);
      if (Number(task.is_definition) === 1) return this.rearmDefinition(ex, task, opts.now);
      return taskFromRow(task);
    });
  }

  // ---------------------------------------------------------------- resource manager

  /**
   * `lock` (PostgreSQL, in a pass): the worker rows are locked (FOR UPDATE), and their live runs are read
   * after the locks, so that no other placement can change the sums before commit (see PassSnapshot).
   * `clock` (PostgreSQL): the store's clock rides on the live runs' statement and is put in `clock.now`.
   */
  private async workersWithLoad(ex: Exec, onlySchedulable: boolean, lock = false, clock?: { now?: number }): Promise<WorkerWithLoad[]> {
    // Sent together: one round trip in a PostgreSQL batch (pipelined), or two connections for a read.
    const [workers, live] = await Promise.all([
      ex.all<WorkerRow>(
        (onlySchedulable ? "SELECT * FROM workers WHERE state IN ('active','draining') ORDER BY id" : 'SELECT * FROM workers ORDER BY id') +
          (lock ? ' FOR UPDATE' : ''),
      ),
      ex.all<
        Pick<RunRow, 'id' | 'task_id' | 'worker_id' | 'cpus' | 'memory' | 'ports' | 'cap_at'> & {
          owner: string | null;
          now?: number | null;
        }
      >(clock ? LIVE_RUNS_WITH_CLOCK_PG : LIVE_RUNS_SELECT),
    ]);
    const byWorker = new Map<string, WorkerWithLoad>();
    const out = workers.map((w) => {
      const x: WorkerWithLoad = { ...workerFromRow(w), allocated: { cpus: 0, memory: 0, ports: [] }, live: [] };
      byWorker.set(x.id, x);
      return x;
    });
    for (const r of live) {
      if (clock && r.worker_id === null) {
        clock.now = Number(r.now);
        continue;
      }
      const w = byWorker.get(r.worker_id);
      if (!w) continue;
      const ports = JSON.parse(r.ports) as number[];
      w.allocated.cpus += Number(r.cpus);
      w.allocated.memory += Number(r.memory);
      w.allocated.ports.push(...ports);
      w.live.push({
        runId: Number(r.id),
        taskId: Number(r.task_id),
        cpus: Number(r.cpus),
        memory: Number(r.memory),
        ports,
        endsBy: Number(r.cap_at),
        // Null only for a run whose task is gone; the run still holds its room, and counts for no one.
        owner: r.owner ?? undefined,
      });
    }
    return out;
  }

  loadWorkers(): Promise<WorkerWithLoad[]> {
    return this.backend.read((ex) => this.workersWithLoad(ex, true));
  }

  listWorkers(): Promise<WorkerWithLoad[]> {
    return this.backend.read((ex) => this.workersWithLoad(ex, false));
  }

  loadCandidates(now: number, limit: number, urgentBefore: number): Promise<Task[]> {
    return this.backend.read((ex) => this.candidates(ex, now, limit, urgentBefore));
  }

  /**
   * `pass`: inside a scheduling pass's transaction, where the PostgreSQL walk keeps one generic plan.
   * `lock` (PostgreSQL, in a pass): the candidates are locked as they are read (FOR UPDATE, in id order,
   * the leader row FOR SHARE before them when `lock.fenced`), and only those still waiting come back; the
   * leader epoch read with them is left in `lock.leaderEpoch` (undefined when no row carried it).
   */
  private async candidates(ex: Exec, now: number, limit: number, urgentBefore: number, pass = false, lock?: WalkLock): Promise<Task[]> {
    // Three walks in one statement: tasks_ready in order, stopping after `limit` due rows; and tasks_deadline
    // from the earliest deadline, for the ones promoted to urgent whatever their priority — separately for
    // those that can still start in time and those already late, so that a backlog of late tasks cannot
    // hide the in-time ones the planner serves first (lateDemotionMs).
    // The walks read ids only (they overlap: a task high in its band is often also urgent); each task's
    // whole row is then read once, under the first walk that found it.
    if (this.backend.kind === 'sqlite') {
      // On SQLite statements cost no round trip, so the walks go one at a time and nothing is read twice.
      // The walk in band order first: when it finds fewer than `limit` due tasks it has found them all (the
      // deadline walks filter the same rows further; the usual case at a steady rate). When it is full, the
      // two deadline walks add the ids it missed. Then each row is read once, by id. Against the one
      // statement below this skips its union, grouping and join, and the band walk it would run again
      // (~130 µs of a pass with two tasks waiting; 64-row windows: see docs/store.md).
      const walkOf = new Map<number, number>();
      const best = await ex.all<{ id: number }>(
        "SELECT id FROM tasks WHERE status = 'waiting' AND +due_at <= ? AND paused = 0 AND is_definition = 0 ORDER BY priority DESC, start_deadline, id LIMIT ?",
        [now, limit],
      );
      for (const r of best) walkOf.set(Number(r.id), 0);
      if (best.length >= limit) {
        const deadline = await ex.all<{ walk: number; id: number }>(
          "SELECT 1 AS walk, id FROM (SELECT id FROM tasks WHERE status = 'waiting' AND start_deadline >= ? AND start_deadline < ? AND due_at <= ? AND paused = 0 AND is_definition = 0 ORDER BY start_deadline, id LIMIT ?) " +
            "UNION ALL SELECT 2 AS walk, id FROM (SELECT id FROM tasks WHERE status = 'waiting' AND start_deadline < ? AND due_at <= ? AND paused = 0 AND is_definition = 0 ORDER BY start_deadline, id LIMIT ?)",
          [now, urgentBefore, now, limit, Math.min(now, urgentBefore), now, limit],
        );
        for (const r of deadline) {
          const id = Number(r.id);
          const w = walkOf.get(id);
          if (w === undefined || Number(r.walk) < w) walkOf.set(id, Number(r.walk));
        }
      }
      // Tasks whose spec is held need only their state columns (see task-spec-cache.ts); the rest whole.
      const held: number[] = [];
      const whole: number[] = [];
      for (const id of walkOf.keys()) (this.specs.has(id) ? held : whole).push(id);
      const out: Array<{ walk: number; task: Task }> = [];
      if (held.length > 0) {
        for (const r of await this.selectIn<TaskRow>(ex, HELD_STATE_SELECT, held)) {
          const task = this.specs.task(r);
          if (task) out.push({ walk: walkOf.get(task.id) as number, task });
          else whole.push(Number(r.id));
        }
      }
      // (A row gone between the statements, should retention prune it, is simply left out.)
      for (const task of await this.wholeCandidates(ex, whole)) out.push({ walk: walkOf.get(task.id) as number, task });
      return byWalkOrder(out);
    }
    // One statement, as a pass's first round trip: the spec columns of the tasks the last pass read (most of
    // this window when a few slots free up) come back NULL, and their held specs stand in.
    const recent = this.recentCandidates;
    // In a pass, planned once per connection and window class, not per call (0.6 ms of planning against
    // 0.6 ms to run it over a deep queue, where PostgreSQL would keep custom plans): each walk's LIMIT is
    // written into the text, rounded up to a power of two, so that the generic plan knows how few rows it
    // takes and walks the indexes; the exact window is the bound outer LIMIT, which stops the walk there.
    // plan_cache_mode is the session's, so SET LOCAL sets it for this statement alone and back to its default
    // right behind, in the same pipeline: nothing else of the batch goes out between. (A read outside a transaction keeps the default.)
    const cap = windowClass(limit);
    const forced = pass ? ex.all('SET LOCAL plan_cache_mode = force_generic_plan') : null;
    forced?.catch(() => {}); // its error, if any, fails the walk behind it
    const fenced = lock?.fenced === true;
    const walk = ex.all<TaskRow & { walk: number; held: boolean; leader_epoch?: number | null }>(
      (fenced ? "WITH l AS (SELECT epoch FROM leader WHERE id = 'scheduler' FOR SHARE) " : '') +
        `SELECT c.walk, c.held, ${CANDIDATE_COLUMNS_PG}${fenced ? ', (SELECT epoch FROM l) AS leader_epoch' : ''} FROM (SELECT MIN(walk) AS walk, id, id = ANY(?::bigint[]) AS held FROM (` +
        `(SELECT * FROM (SELECT 0 AS walk, id FROM tasks WHERE status = 'waiting' AND +due_at <= ? AND paused = 0 AND is_definition = 0 ORDER BY priority DESC, start_deadline, id LIMIT ${cap}) AS best LIMIT ?)` +
        ` UNION ALL (SELECT * FROM (SELECT 1 AS walk, id FROM tasks WHERE status = 'waiting' AND start_deadline >= ? AND start_deadline < ? AND due_at <= ? AND paused = 0 AND is_definition = 0 ORDER BY start_deadline, id LIMIT ${cap}) AS urgent LIMIT ?)` +
        ` UNION ALL (SELECT * FROM (SELECT 2 AS walk, id FROM tasks WHERE status = 'waiting' AND start_deadline < ? AND due_at <= ? AND paused = 0 AND is_definition = 0 ORDER BY start_deadline, id LIMIT ${cap}) AS late LIMIT ?)` +
        ') AS w GROUP BY id) AS c JOIN tasks t ON t.id = c.id' +
        (lock ? ' ORDER BY t.id FOR UPDATE OF t' : ''),
      [recent, now, limit, now, urgentBefore, now, limit, Math.min(now, urgentBefore), now, limit],
    );
    const restored = pass ? ex.all('SET LOCAL plan_cache_mode TO DEFAULT') : null;
    restored?.catch(() => {});
    let rows = await walk;
    await Promise.all([forced, restored]);
    if (lock) {
      if (fenced && rows.length > 0) lock.leaderEpoch = rows[0]!.leader_epoch === null ? null : Number(rows[0]!.leader_epoch);
      // A row changed between the walk's snapshot and its lock comes back as it is now: a task cancelled or
      // claimed meanwhile is no candidate.
      rows = rows.filter((r) => r.status === 'waiting' && Number(r.paused) === 0);
    }
    const out: Array<{ walk: number; task: Task }> = [];
    const walkOf = new Map<number, number>();
    const whole: number[] = [];
    for (const r of rows) {
      const walk = Number(r.walk);
      if (!r.held) {
        const task = taskFromRow(r);
        this.specs.put(task);
        out.push({ walk, task });
        continue;
      }
      const task = this.specs.task(r);
      if (task) out.push({ walk, task });
      else {
        whole.push(Number(r.id)); // evicted since, or another task's: read it whole
        walkOf.set(Number(r.id), walk);
      }
    }
    for (const task of await this.wholeCandidates(ex, whole)) out.push({ walk: walkOf.get(task.id) as number, task });
    this.recentCandidates = out.map((c) => c.task.id);
    return byWalkOrder(out);
  }

  /** How often a candidate came from a held spec (tests, bench work). */
  get candidateSpecs(): { hits: number; misses: number; held: number } {
    return { ...this.specs.stats, held: this.specs.size };
  }

  /**
   * PostgreSQL: run ids drawn ahead, in ascending order, under the leader epoch they were drawn for. A pass
   * draws them with its first reads (drawRunIdsAhead) so that its applier need not ask between its reads and
   * its write. Ids left over when the epoch changes are dropped, never used in a later term, where they could
   * sort before runs a newer leader has created (a task's runs are listed in id order). Unused ids are gaps,
   * as after any rollback.
   */
  private runIdPool: { epoch: number | null; ids: number[] } = { epoch: null, ids: [] };

  /** The pool for this epoch: a new, empty one when the epoch changed. */
  private runIdPoolFor(epoch: number | null): { epoch: number | null; ids: number[] } {
    if (this.runIdPool.epoch !== epoch) this.runIdPool = { epoch, ids: [] };
    return this.runIdPool;
  }

  /** Draws enough ids for a pass of `want` placements into the pool, if it holds fewer (one statement, pipelined). */
  private drawRunIdsAhead(ex: Exec, want: number, epoch: number | null): Promise<void> | null {
    const pool = this.runIdPoolFor(epoch);
    if (pool.ids.length >= want) return null;
    const drawn = this.drawRunIds(ex, Math.max(want, RUN_ID_DRAW)).then((ids) => {
      if (this.runIdPool === pool) pool.ids.push(...ids);
    });
    drawn.catch(() => {});
    return drawn;
  }

  /** `n` run ids from the pool, drawing more if it holds too few. */
  private async takeRunIds(ex: Exec, n: number, epoch: number | null): Promise<number[]> {
    const pool = this.runIdPoolFor(epoch);
    if (pool.ids.length < n) pool.ids.push(...(await this.drawRunIds(ex, n - pool.ids.length)));
    return pool.ids.splice(0, n);
  }

  /** Fresh run ids, ascending. The sequence is looked up once, not for every id: 50 ids 0.45 -> 0.09 ms. */
  private async drawRunIds(ex: Exec, n: number): Promise<number[]> {
    const rows = await ex.all<{ id: number }>(
      "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('runs', 'id')::regclass AS seq) " +
        'SELECT nextval(s.seq) AS id FROM s, generate_series(1, ?::int)',
      [n],
    );
    return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  /** Held task specs (see task-spec-cache.ts), and the ids the last PostgreSQL pass read. */
  private readonly specs = new TaskSpecCache();
  private recentCandidates: number[] = [];

  /** Candidates read whole, by id; their specs are kept for the next passes. */
  private async wholeCandidates(ex: Exec, ids: number[]): Promise<Task[]> {
    if (ids.length === 0) return [];
    const rows = await this.selectIn<TaskRow>(ex, 'SELECT * FROM tasks WHERE id IN', ids);
    return rows.map((r) => {
      const task = taskFromRow(r);
      this.specs.put(task);
      return task;
    });
  }

  async nextDueAt(after: number): Promise<number | null> {
    return this.backend.read((ex) => this.nextDueIn(ex, after));
  }

  /** The earliest due time after `after` of a waiting task (a walk of tasks_due from `after`). */
  private async nextDueIn(ex: Exec, after: number): Promise<number | null> {
    const [r] = await ex.all<{ m: number | null }>(NEXT_DUE, [after]);
    return r && r.m !== null ? Number(r.m) : null;
  }

  async applyPlan(plan: PlacementDecision[], ctx: ApplyContext): Promise<ApplyResult> {
    if (plan.length === 0 && ctx.epoch === null) return { runs: [], rejected: [] };
    return this.backend.tx((ex) => this.applyIn(ex, plan, ctx));
  }

  async schedulePass(q: PassQuery, planner: Planner, ctx: ApplyContext): Promise<PassResult> {
    const res = await this.backend.tx(
      async (ex): Promise<PassResult> => {
        const skip = (skipped: PassResult['skipped']): PassResult => {
          this.lastPassNoRoom = skipped === 'no_room';
          return { skipped, tasks: [], runs: [], rejected: [] };
        };
        const pg = this.backend.kind === 'postgres';
        const noRoom = (workers: WorkerWithLoad[]): PassResult | null => {
          const active = workers.filter((w) => w.state === 'active');
          if (active.length === 0) return skip('no_workers');
          // Nothing can start while every worker is full: skip the candidate scan (the common case under load).
          if (!active.some((w) => w.capacity.cpus - w.allocated.cpus > 0 && w.capacity.memory - w.allocated.memory > 0))
            return skip('no_room');
          return null;
        };
        if (!pg) {
          const workers = await this.workersWithLoad(ex, true);
          const none = noRoom(workers);
          if (none) return none;
          const tasks = await this.candidates(ex, ctx.now, q.limit, q.urgentBefore, true);
          this.lastPassNoRoom = false;
          // A window that is not full held every task due now: the next due time is all the timer needs.
          const nextDueAt = tasks.length < q.limit ? await this.nextDueIn(ex, ctx.now) : undefined;
          if (tasks.length === 0) return { ...skip('no_tasks'), nextDueAt };
          const decisions = planner({ workers, tasks });
          if (decisions.length === 0 && ctx.epoch === null) return { skipped: null, tasks, runs: [], rejected: [], nextDueAt };
          return { skipped: null, tasks, nextDueAt, ...(await this.applyIn(ex, decisions, ctx, { tasks, workers })) };
        }
        // PostgreSQL: the candidates, the schedulable workers and their live runs (and the clock and run ids
        // when wanted) in one round trip, locked, so that the applier reads nothing more before its write (see
        // PassSnapshot). After a pass that found every worker full, an unlocked look at the workers comes first:
        // under load most passes end there, and locking the candidates would be wasted.
        // Queued behind a worker's report, the pass is early (TxOptions.early): its reads run before the
        // report's writes, so the runs the report ends still look live; their room is taken off here, once the
        // report has sent its writes (Exec.endedAhead), and this pass's own writes go out behind them.
        const afterAhead = async (workers: WorkerWithLoad[]): Promise<WorkerWithLoad[]> => {
          const ended = ex.endedAhead ? await ex.endedAhead() : [];
          return ended.length > 0 ? withoutRuns(workers, ended) : workers;
        };
        if (this.lastPassNoRoom) {
          const none = noRoom(await afterAhead(await this.workersWithLoad(ex, true)));
          if (none) return none;
        }
        const lock: WalkLock = { fenced: ctx.epoch !== null };
        const walk = this.candidates(ex, ctx.now, q.limit, q.urgentBefore, true, lock);
        walk.catch(() => {}); // its error, if any, is met below or goes with the batch
        const clock: { now?: number } | undefined = ctx.stampAtCommit ? {} : undefined;
        const loaded = this.workersWithLoad(ex, true, true, clock);
        loaded.catch(() => {});
        const drawn = this.drawRunIdsAhead(ex, q.limit, ctx.epoch);
        // The next due time rides along unless the last window was full (a backlog: it would not be used).
        const next = this.lastWindowFull ? null : this.nextDueIn(ex, ctx.now);
        next?.catch(() => {});
        const workers = await afterAhead(await loaded);
        const none = noRoom(workers);
        if (none) {
          await Promise.all([walk, drawn, next]);
          return none;
        }
        const [tasks, , nextDue] = await Promise.all([walk, drawn, next]);
        this.lastPassNoRoom = false;
        this.lastWindowFull = tasks.length >= q.limit;
        const nextDueAt = tasks.length < q.limit && next ? nextDue : undefined;
        if (tasks.length === 0) return { ...skip('no_tasks'), nextDueAt };
        const decisions = planner({ workers, tasks });
        if (decisions.length === 0 && ctx.epoch === null) return { skipped: null, tasks, runs: [], rejected: [], nextDueAt };
        const seen: PassSnapshot = { tasks, workers, leaderEpoch: lock.leaderEpoch, now: clock?.now };
        return { skipped: null, tasks, nextDueAt, ...(await this.applyIn(ex, decisions, ctx, seen)) };
      },
      { early: true },
    );
    this.stats.grew(res.runs.length);
    return res;
  }

  /**
   * The applier: re-checks every decision against the store inside the caller's transaction. `seen`: the
   * tasks and workers a scheduling pass read in this same transaction, as the applier would read them again
   * (see PassSnapshot), so that it reads nothing more before its write.
   */
  private async applyIn(ex: Exec, plan: PlacementDecision[], ctx: ApplyContext, seen?: PassSnapshot): Promise<ApplyResult> {
    const pg = this.backend.kind === 'postgres';
    const checkEpoch = (current: number | null) => {
      if (current === null || current !== ctx.epoch) {
        throw new TschedError('NOT_LEADER', `leadership epoch ${ctx.epoch} is no longer current`, {
          details: { epoch: ctx.epoch, current },
        });
      }
    };
    const leaderEpoch = async () => {
      const [l] = await ex.all<{ epoch: number }>(`SELECT epoch FROM leader WHERE id = 'scheduler'${pg ? ' FOR SHARE' : ''}`);
      return l ? Number(l.epoch) : null;
    };
    const taskIds = [...new Set(plan.map((d) => d.taskId))];
    const workerIds = [...new Set(plan.map((d) => d.workerId))].sort();
    let taskRows: ApplyTaskRow[];
    let workers: Map<string, ApplyWorker>;
    const used = new Map<string, { cpus: number; memory: number; ports: Set<number> }>();
    for (const id of workerIds) used.set(id, { cpus: 0, memory: 0, ports: new Set() });
    let stamp: number | null = null;
    let runIds: number[] = [];
    if (seen) {
      if (ctx.epoch !== null) checkEpoch(seen.leaderEpoch !== undefined ? seen.leaderEpoch : await leaderEpoch());
      if (plan.length === 0) return { runs: [], rejected: [] };
      const ids = new Set(taskIds);
      taskRows = seen.tasks.filter((t) => ids.has(t.id)).map(stateRowOf); // a waiting task has no current run
      workers = new Map(seen.workers.map((w) => [w.id, { id: w.id, name: w.name, state: w.state, capacity: w.capacity }]));
      for (const w of seen.workers) {
        const u = used.get(w.id);
        if (!u) continue;
        u.cpus = w.allocated.cpus;
        u.memory = w.allocated.memory;
        for (const port of w.allocated.ports) u.ports.add(port);
      }
      stamp = seen.now ?? null;
      if (pg) runIds = await this.takeRunIds(ex, plan.length, ctx.epoch);
    } else {
      // On PostgreSQL the clock rides along the worker sums (a row of its own), read once the worker rows are locked.
      const clockRow = ctx.stampAtCommit && pg;
      // The task locks, the worker locks and the workers' live runs are independent reads: sent together
      // (pipelined on PostgreSQL, one round trip), they still run in this order, tasks before workers as
      // everywhere else, and the sums are read after the worker rows are locked.
      let tasksRead: Promise<Array<ApplyTaskRow & { leader_epoch?: number | null }>>;
      if (ctx.epoch !== null && pg && taskIds.length > 0) {
        // The fencing check rides on the task locks. The leader row is share-locked until commit either way;
        // only the leader renewal (which locks nothing else) contends for it, so the order of the two locks
        // inside the statement cannot close a cycle.
        tasksRead = ex.all<TaskRow & { leader_epoch: number | null }>(
          `WITH l AS (SELECT epoch FROM leader WHERE id = 'scheduler' FOR SHARE) SELECT ${TASK_STATE_COLUMNS}, ` +
            '(SELECT epoch FROM l) AS leader_epoch FROM tasks WHERE id = ANY(?) ORDER BY id FOR UPDATE',
          [taskIds],
        );
      } else {
        if (ctx.epoch !== null) checkEpoch(await leaderEpoch());
        if (plan.length === 0) return { runs: [], rejected: [] };
        tasksRead = this.lockTaskStates(ex, taskIds);
      }
      const settled = await Promise.allSettled([
        tasksRead,
        // Locking the worker rows serialises every placement on them, so the sums below cannot go stale.
        this.selectIn<WorkerRow>(ex, 'SELECT * FROM workers WHERE id IN', workerIds, ` ORDER BY id${this.lock}`),
        // Summed here from the live runs (an index-only walk of runs_worker_load).
        this.selectIn<{ worker_id: string | null; cpus: number; memory: number; ports: string; now: number | null }>(
          ex,
          `SELECT worker_id, cpus, memory, ports, NULL AS now FROM runs WHERE state IN ${LIVE} AND worker_id IN`,
          workerIds,
          clockRow ? ` UNION ALL SELECT NULL, NULL, NULL, NULL, ${PG_NOW}` : '',
        ),
        // PostgreSQL: the new runs' ids, drawn now so that the runs, the tasks pointing at them and their
        // events are written by one statement below (ids of rejected decisions are skipped, as rollbacks do).
        pg && plan.length > 0 ? this.drawRunIds(ex, plan.length) : Promise.resolve([]),
      ]);
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      const [lockedTasks, workerRows, liveRows, drawn] = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
        Array<ApplyTaskRow & { leader_epoch?: number | null }>,
        WorkerRow[],
        Array<{ worker_id: string | null; cpus: number; memory: number; ports: string; now: number | null }>,
        number[],
      ];
      if (ctx.epoch !== null && pg && taskIds.length > 0) {
        const current = lockedTasks.length > 0 ? lockedTasks[0]!.leader_epoch : await leaderEpoch();
        checkEpoch(current === null || current === undefined ? null : Number(current));
      }
      if (plan.length === 0) return { runs: [], rejected: [] };
      taskRows = lockedTasks;
      runIds = drawn;
      // Each worker's capacity parsed once, not once per decision on it.
      workers = new Map(
        workerRows.map((w) => [w.id, { id: w.id, name: w.name, state: w.state, capacity: JSON.parse(w.capacity) as Capacity }]),
      );
      for (const r of liveRows) {
        if (r.worker_id === null) {
          stamp = Number(r.now);
          continue;
        }
        const u = used.get(r.worker_id)!;
        u.cpus += Number(r.cpus);
        u.memory += Number(r.memory);
        if (r.ports !== '[]') for (const port of JSON.parse(r.ports) as number[]) u.ports.add(port);
      }
    }
    const tasks = new Map(taskRows.map((t) => [Number(t.id), t]));

    if (ctx.stampAtCommit) ctx = { ...ctx, now: Math.max(ctx.now, stamp ?? (await this.txNow(ex))) };
    const rejected: ApplyResult['rejected'] = [];
    const accepted: Array<{ d: PlacementDecision; task: ApplyTaskRow; worker: ApplyWorker }> = [];
    for (const d of plan) {
      const reject = (reason: string) => rejected.push({ taskId: d.taskId, workerId: d.workerId, reason });
      const task = tasks.get(d.taskId);
      if (task?.status !== 'waiting' || Number(task.paused) === 1) {
        reject('task_not_waiting');
        continue;
      }
      if (Number(task.due_at) > ctx.now) {
        reject('task_not_due');
        continue;
      }
      const worker = workers.get(d.workerId);
      if (worker?.state !== 'active') {
        reject('worker_unavailable');
        continue;
      }
      const cap = worker.capacity;
      const u = used.get(d.workerId)!;
      const a = d.allocation;
      if (u.cpus + a.cpus > cap.cpus) {
        reject('overcommit_cpu');
        continue;
      }
      if (u.memory + a.memory > cap.memory) {
        reject('overcommit_memory');
        continue;
      }
      const ports = a.ports ?? [];
      if (ports.some((p) => !cap.ports || p < cap.ports.from || p > cap.ports.to)) {
        reject('port_out_of_range');
        continue;
      }
      if (ports.some((p) => u.ports.has(p)) || new Set(ports).size !== ports.length) {
        reject('port_taken');
        continue;
      }
      u.cpus += a.cpus;
      u.memory += a.memory;
      for (const p of ports) u.ports.add(p);
      task.status = transitionTask(task.status, 'claim');
      task.attempts = Number(task.attempts) + 1; // attempts count at claim
      task.updated_at = ctx.now;
      accepted.push({ d, task, worker });
    }

    // The new rows are built here and only their ids come back: decoding RETURNING * cost more than the insert.
    const tokens = randomBytes(16 * accepted.length).toString('hex'); // one call for every lease token
    const fresh = new Map<number, RunRow>();
    // The new runs' allocations as objects: the Runs returned below need not parse back what was just written.
    const allocations = new Map<number, Allocation>();
    for (const [i, { d, task, worker }] of accepted.entries()) {
      const allocation: Allocation = {
        cpus: d.allocation.cpus,
        memory: d.allocation.memory,
        ports: [...(d.allocation.ports ?? [])],
        namedPorts: { ...d.allocation.namedPorts },
      };
      allocations.set(d.taskId, allocation);
      fresh.set(d.taskId, {
        id: 0,
        task_id: d.taskId,
        attempt: task.attempts,
        worker_id: worker.id,
        worker_name: worker.name,
        lease_token: tokens.slice(32 * i, 32 * (i + 1)),
        lease_expires_at: ctx.now + ctx.leaseMs,
        state: 'assigned',
        allocation: JSON.stringify(allocation),
        cpus: d.allocation.cpus,
        memory: d.allocation.memory,
        ports: JSON.stringify(d.allocation.ports ?? []),
        assigned_at: ctx.now,
        cap_at: ctx.now + Number(task.execution_cap),
        started_at: null,
        finished_at: null,
        exit_code: null,
        outcome: null,
        reason: null,
        cancel_requested: 0,
        delivered: 0,
        usage: EMPTY_USAGE_JSON,
        log_bytes: 0,
        log_seq: 0,
        log_truncated: 0,
      });
    }
    const cols = RUN_INSERT_COLUMNS;
    let runRows: RunRow[];
    let runInserts: Stmt[] = [];
    if (pg) {
      const ids = runIds.slice(0, fresh.size).sort((a, b) => a - b);
      runRows = [...fresh.values()].map((r, i) => ({ ...r, id: ids[i]! }));
      runInserts = await this.insertStatements(
        ex,
        'runs',
        ['id', ...cols],
        runRows.map((r) => [r.id, ...cols.map((c) => r[c])]),
      );
    } else {
      const ids = await this.insertRows<{ id: number; task_id: number }>(
        ex,
        'runs',
        cols,
        [...fresh.values()].map((r) => cols.map((c) => r[c])),
        'id, task_id',
      );
      runRows = ids.map(({ id, task_id }) => ({ ...fresh.get(Number(task_id))!, id: Number(id) }));
      runRows.sort((a, b) => Number(a.id) - Number(b.id));
    }
    const events: EventIn[] = [];
    for (const r of runRows) {
      const task = tasks.get(Number(r.task_id))!;
      task.current_run_id = Number(r.id);
      events.push(
        {
          taskId: Number(task.id),
          runId: Number(r.id),
          at: ctx.now,
          actor: ctx.actor,
          type: 'task.claimed',
          from: 'waiting',
          to: 'in_progress',
          reason: `attempt ${task.attempts} on ${r.worker_name}`,
        },
        {
          taskId: Number(task.id),
          runId: Number(r.id),
          at: ctx.now,
          actor: ctx.actor,
          type: 'run.assigned',
          from: null,
          to: 'assigned',
          reason: null,
        },
      );
    }
    // The op's last statement, and nothing after it can fail: COMMIT may go out behind it (Exec.final).
    await this.writeAll(
      ex,
      [...runInserts, ...this.taskSaves(accepted.map((x) => x.task)), ...(await this.eventInserts(ex, events))],
      'final',
    );
    return {
      runs: runRows.map((r) => runOf(r, allocations.get(Number(r.task_id))!, { ...EMPTY_USAGE })),
      rejected,
    };
  }

  // ---------------------------------------------------------------- worker protocol

  async registerWorker(reg: WorkerRegistration, now: number): Promise<{ worker: Worker; orphaned: Run[] }> {
    const res = await this.backend.tx(async (ex) => {
      const [w] = await ex.all<WorkerRow>(
        'INSERT INTO workers (id, name, capacity, labels, executors, enforcement, version, hostname, state, registered_at, last_seen_at) ' +
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?) ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity, labels = excluded.labels, " +
          'executors = excluded.executors, enforcement = excluded.enforcement, version = excluded.version, hostname = excluded.hostname, ' +
          "state = 'active', registered_at = excluded.registered_at, last_seen_at = excluded.last_seen_at RETURNING *",
        [
          `w_${randomBytes(8).toString('hex')}`,
          reg.name,
          JSON.stringify(reg.capacity),
          JSON.stringify(reg.labels),
          JSON.stringify(reg.executors),
          JSON.stringify(reg.enforcement),
          reg.version,
          reg.hostname,
          now,
          now,
        ],
      );
      const worker = workerFromRow(w!);
      // Whatever a previous life of this worker was running is gone: end it lost, let the queue manager decide.
      const stale = await ex.all<{ id: number }>(`SELECT id FROM runs WHERE worker_id = ? AND state IN ${LIVE}`, [worker.id]);
      if (stale.length === 0) return { worker, orphaned: [] };
      const { runs, tasks } = await this.lockRunsWithTasks(
        ex,
        stale.map((r) => Number(r.id)),
      );
      const endings: Ending[] = [...runs.values()]
        .filter((r) => isLive(r.state))
        .map((run) => ({
          run,
          outcome: 'lost',
          exitCode: null,
          reason: 'worker_restarted',
          startedAt: null,
          finishedAt: now,
          usage: null,
          actor: `worker:${reg.name}`,
        }));
      const ended = await this.endRuns(ex, endings, tasks, now);
      return { worker, orphaned: ended.map((e) => e.run) };
    });
    // Known once committed: a new worker's id exists only then (a rolled-back insert's id never does).
    this.knownWorker(res.worker.id);
    return res;
  }

  async getWorker(id: string): Promise<Worker | null> {
    const [r] = await this.backend.read((ex) => ex.all<WorkerRow>('SELECT * FROM workers WHERE id = ?', [id]));
    return r ? workerFromRow(r) : null;
  }

  async setWorkerState(id: string, state: WorkerState, _now: number): Promise<Worker | null> {
    const [r] = await this.backend.tx((ex) => ex.all<WorkerRow>('UPDATE workers SET state = ? WHERE id = ? RETURNING *', [state, id]));
    return r ? workerFromRow(r) : null;
  }

  heartbeat(workerId: string, runs: RunToken[], now: number, leaseMs: number): Promise<HeartbeatResult> {
    return this.backend.tx((ex) => this.beatIn(ex, workerId, runs, now, leaseMs, []));
  }

  /**
   * A heartbeat that also marks runs handed out from memory as delivered (see markDelivered). On PostgreSQL
   * the marks and the runs to cancel ride on the worker's update: one round trip for the three.
   */
  private async beatIn(
    ex: Exec,
    workerId: string,
    runs: RunToken[],
    now: number,
    leaseMs: number,
    delivered: number[],
    endsOp = false,
  ): Promise<HeartbeatResult> {
    const pg = this.backend.kind === 'postgres';
    // Ending its operation (a report) with no runs to check, the worker update is the op's last statement;
    // its final one when the worker is known to exist (nothing below can throw then), so that COMMIT may go
    // out behind it, or behind the pass queued after it (see Exec.final).
    const ends = pg && endsOp && runs.length === 0;
    const update = ends ? (this.knownWorkers.has(workerId) ? ex.final.bind(ex) : ex.last.bind(ex)) : ex.all.bind(ex);
    if (!pg) await this.markDelivered(ex, workerId, delivered);
    // A heartbeat proves the worker is alive: a worker marked lost by silence becomes active again.
    // cancel_requested is not changed below, and the marks touch other rows than what they read.
    // The state before the update comes back too (the poll route needs no read of its own): on PostgreSQL
    // every part of one statement sees the same snapshot, so the CTE reads the row as it was.
    const [before] = pg ? [] : await ex.all<{ state: WorkerState }>('SELECT state FROM workers WHERE id = ?', [workerId]);
    const [w] = await update<{ id: string; was?: WorkerState; cancel?: number[] }>(
      pg
        ? "WITH d AS (UPDATE runs SET delivered = 1 WHERE worker_id = ? AND state = 'assigned' AND id = ANY(?)), " +
            'o AS (SELECT state FROM workers WHERE id = ?) ' +
            "UPDATE workers SET last_seen_at = ?, state = CASE WHEN state = 'lost' THEN 'active' ELSE state END WHERE id = ? " +
            `RETURNING id, (SELECT state FROM o) AS was, ARRAY(SELECT id FROM runs WHERE worker_id = workers.id AND state IN ${LIVE} AND cancel_requested = 1) AS cancel`
        : "UPDATE workers SET last_seen_at = ?, state = CASE WHEN state = 'lost' THEN 'active' ELSE state END WHERE id = ? RETURNING id",
      pg ? [workerId, delivered, workerId, now, workerId] : [now, workerId],
    );
    if (!w) throw new TschedError('WORKER_NOT_FOUND', `worker ${workerId} is not registered; register again`, { details: { workerId } });
    this.knownWorker(workerId);
    const stateBefore = (pg ? w.was : before?.state) as WorkerState;
    const rows = await this.lockRunsById(ex, runs);
    const acks: ItemAck[] = [];
    const extend: number[] = [];
    const cancel = new Set<number>();
    for (const item of runs) {
      const r = rows.get(item.runId);
      // Another worker's run is stale for this one, whatever token it names.
      const refused = fence(r, item) ?? (r?.worker_id !== workerId ? { runId: item.runId, ok: false, code: 'LEASE_STALE' as const } : null);
      if (refused) {
        acks.push(refused);
        cancel.add(item.runId);
      } else {
        acks.push({ runId: item.runId, ok: true });
        extend.push(item.runId);
      }
    }
    if (extend.length > 0) {
      await this.selectIn(ex, 'UPDATE runs SET lease_expires_at = ? WHERE id IN', extend, '', [now + leaseMs]);
    }
    const requested = pg
      ? (w.cancel ?? [])
      : (
          await ex.all<{ id: number }>(`SELECT id FROM runs WHERE worker_id = ? AND state IN ${LIVE} AND cancel_requested = 1`, [workerId])
        ).map((r) => r.id);
    for (const id of requested) cancel.add(Number(id));
    return { acks, cancel: [...cancel].sort((a, b) => a - b), stateBefore };
  }

  // workerPoll and workerReport compose the `…In(ex, …)` forms inside one transaction. The transaction is
  // passed by hand: an AsyncLocalStorage would install an async hook that every promise of the process pays.
  async workerPoll(
    workerId: string,
    running: RunToken[],
    max: number,
    now: number,
    leaseMs: number,
    delivered: number[] = [],
  ): Promise<WorkerPollResult> {
    return this.backend.tx(async (ex) => {
      const heartbeat = await this.beatIn(ex, workerId, running, now, leaseMs, delivered);
      const assignments = await this.takeAssignmentsIn(ex, workerId, max, now);
      return { heartbeat, assignments };
    });
  }

  async workerReport(
    workerId: string,
    r: WorkerReportInput,
    now: number,
    opts: { leaseMs: number; maxLogBytesPerRun: number },
  ): Promise<WorkerReportResult> {
    return this.backend.tx(async (ex) => {
      // A run that started and ended since the last report (most short tasks) is started inside its
      // finish: one lock read and one run write instead of two each; both events are still written.
      const ending = new Set(r.results.map((x) => x.runId));
      const starts = new Map<number, number>();
      for (const s of r.started) starts.set(s.runId, (starts.get(s.runId) ?? 0) + 1);
      const foldable = (s: RunToken) => ending.has(s.runId) && starts.get(s.runId) === 1;
      const folded = r.started.filter(foldable);
      const alone = folded.length === 0 ? r.started : r.started.filter((s) => !foldable(s));
      const startAcks = await this.startRunsIn(ex, alone, now);
      const logs = await this.appendLogsIn(ex, r.logs, opts.maxLogBytesPerRun);
      // The results' write is not waited for: the worker update below (and, in a batch, the next op's
      // statements) go out behind it, one round trip instead of two on PostgreSQL.
      const sent: Array<Promise<unknown>> = [];
      const results = await this.finishRunsIn(ex, r.results, now, folded, sent);
      let started = startAcks;
      if (folded.length > 0) {
        // Both lists keep the report's order: merge them back by position (a run started twice, with
        // different tokens, keeps an ack per item).
        let a = 0;
        let f = 0;
        started = r.started.map((s) => (foldable(s) ? results.startAcks[f++]! : startAcks[a++]!));
      }
      // Delivered marks last: they matter only for runs still assigned, which nothing above ends or starts
      // without making the mark moot.
      let running: HeartbeatResult;
      try {
        running = await this.beatIn(ex, workerId, r.running, now, opts.leaseMs, r.delivered ?? [], true);
      } finally {
        // The write's own error, if any, is the cause of whatever failed behind it.
        await Promise.all(sent);
      }
      return { started, logs, results, running };
    });
  }

  private async markDelivered(ex: Exec, workerId: string, ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.selectIn(ex, "UPDATE runs SET delivered = 1 WHERE worker_id = ? AND state = 'assigned' AND id IN", ids, '', [workerId]);
  }

  async hasUndelivered(workerId: string, except: number[] = []): Promise<boolean> {
    // Walks runs_undelivered (worker_id, id): at most |except| + 1 rows.
    const ids = await this.backend.read((ex) => this.undeliveredIds(ex, workerId, except.length + 1));
    const inHand = new Set(except);
    return ids.some((id) => !inHand.has(id));
  }

  /** The first `limit` assigned runs of this worker not yet delivered, ascending. */
  private async undeliveredIds(ex: Exec, workerId: string, limit: number): Promise<number[]> {
    const rows = await ex.all<{ id: number }>(
      "SELECT id FROM runs WHERE worker_id = ? AND state = 'assigned' AND delivered = 0 ORDER BY id LIMIT ?",
      [workerId, limit],
    );
    return rows.map((r) => Number(r.id));
  }

  async lookAtWorker(workerId: string, undeliveredLimit: number): Promise<WorkerLook> {
    if (this.backend.kind === 'postgres') {
      // One round trip: a woken poll's three questions used to cost three.
      const [w] = await this.backend.read((ex) =>
        ex.all<{ state: WorkerState; undelivered: unknown[]; cancel: unknown[] }>(
          'SELECT w.state, ' +
            "ARRAY(SELECT id FROM runs WHERE worker_id = w.id AND state = 'assigned' AND delivered = 0 ORDER BY id LIMIT ?) AS undelivered, " +
            `ARRAY(SELECT id FROM runs WHERE worker_id = w.id AND state IN ${LIVE} AND cancel_requested = 1 ORDER BY id) AS cancel ` +
            'FROM workers w WHERE w.id = ?',
          [undeliveredLimit, workerId],
        ),
      );
      if (!w) return { state: null, undelivered: [], cancel: [] };
      return { state: w.state, undelivered: w.undelivered.map(Number), cancel: w.cancel.map(Number) };
    }
    // SQLite reads are in-process: three plain statements (each walks its own index) cost less than one
    // statement aggregating into JSON.
    return this.backend.read(async (ex) => {
      const [w] = await ex.all<{ state: WorkerState }>('SELECT state FROM workers WHERE id = ?', [workerId]);
      if (!w) return { state: null, undelivered: [], cancel: [] };
      const undelivered = await this.undeliveredIds(ex, workerId, undeliveredLimit);
      const cancel = await ex.all<{ id: number }>(
        `SELECT id FROM runs WHERE worker_id = ? AND state IN ${LIVE} AND cancel_requested = 1 ORDER BY id`,
        [workerId],
      );
      return { state: w.state, undelivered, cancel: cancel.map((r) => Number(r.id)) };
    });
  }

  async takeAssignments(workerId: string, max: number, now: number): Promise<Assignment[]> {
    if (max <= 0) return [];
    return this.backend.tx((ex) => this.takeAssignmentsIn(ex, workerId, max, now));
  }

  private async takeAssignmentsIn(ex: Exec, workerId: string, max: number, now: number): Promise<Assignment[]> {
    if (max <= 0) return [];
    const runs = await ex.all<RunRow>(
      `SELECT * FROM runs WHERE worker_id = ? AND state = 'assigned' AND delivered = 0 ORDER BY id LIMIT ?${this.lock}`,
      [workerId, max],
    );
    if (runs.length === 0) return [];
    await this.selectIn(
      ex,
      'UPDATE runs SET delivered = 1 WHERE id IN',
      runs.map((r) => r.id),
    );
    const tasks = new Map(
      (
        await this.selectIn<TaskRow>(
          ex,
          'SELECT * FROM tasks WHERE id IN',
          runs.map((r) => r.task_id),
        )
      ).map((t) => [Number(t.id), taskFromRow(t)]),
    );
    return runs.map((r) => {
      const task = tasks.get(Number(r.task_id))!;
      return { run: runFromRow(r), task, capRemainingMs: Math.max(0, Number(r.assigned_at) + task.executionCap - now) };
    });
  }

  async startRuns(items: Array<RunToken & { at: number }>, now: number): Promise<ItemAck[]> {
    if (items.length === 0) return [];
    return this.backend.tx((ex) => this.startRunsIn(ex, items, now));
  }

  private async startRunsIn(ex: Exec, items: Array<RunToken & { at: number }>, now: number): Promise<ItemAck[]> {
    if (items.length === 0) return [];
    const rows = await this.lockRunsById(ex, items);
    const acks: ItemAck[] = [];
    const changed: RunRow[] = [];
    const events: EventIn[] = [];
    for (const item of items) {
      const r = rows.get(item.runId);
      const refused = fence(r, item);
      if (refused || !r) {
        acks.push(refused!);
        continue;
      }
      acks.push({ runId: item.runId, ok: true });
      if (r.state !== 'assigned') continue; // a repeated start is acked and changes nothing
      r.state = 'running';
      r.started_at = item.at;
      changed.push(r);
      events.push(startedEvent(r, now));
    }
    await this.saveRuns(ex, changed);
    await this.insertEvents(ex, events);
    return acks;
  }

  async appendLogs(input: LogChunkInput[], maxBytesPerRun: number): Promise<ItemAck[]> {
    if (input.length === 0) return [];
    return this.backend.tx((ex) => this.appendLogsIn(ex, input, maxBytesPerRun));
  }

  private async appendLogsIn(ex: Exec, input: LogChunkInput[], maxBytesPerRun: number): Promise<ItemAck[]> {
    if (input.length === 0) return [];
    const rows = await this.lockRunsById(ex, input);
    const acks: ItemAck[] = [];
    const inserts: unknown[][] = [];
    const touched = new Map<number, RunRow>();
    const put = (r: RunRow, stream: string, at: number, data: string, bytes: number) => {
      const seq = Number(r.log_seq) + 1;
      const start = Number(r.log_bytes);
      inserts.push([r.id, seq, start, start + bytes, stream, at, data]);
      r.log_seq = seq;
      r.log_bytes = start + bytes;
      touched.set(Number(r.id), r);
    };
    for (const c of input) {
      const r = rows.get(c.runId);
      const refused = fence(r, c);
      if (refused || !r) {
        acks.push(refused!);
        continue;
      }
      acks.push({ runId: c.runId, ok: true });
      if (Number(r.log_truncated) === 1 || c.data.length === 0) continue; // past the cap: accepted and dropped
      const room = maxBytesPerRun - Number(r.log_bytes);
      const fit = utf8Prefix(c.data, Math.max(0, room));
      if (fit.bytes > 0) put(r, c.stream, c.at, fit.text, fit.bytes);
      if (fit.text.length < c.data.length) {
        const note = `[tsched] log truncated at ${maxBytesPerRun} bytes\n`;
        put(r, 'system', c.at, note, Buffer.byteLength(note));
        r.log_truncated = 1;
      }
    }
    await this.insertRows(ex, 'log_chunks', ['run_id', 'seq', 'start_offset', 'end_offset', 'stream', 'at', 'data'], inserts);
    await this.updateRows(
      ex,
      'runs',
      ['id', 'BIGINT'],
      [
        ['log_bytes', 'BIGINT'],
        ['log_seq', 'INTEGER'],
        ['log_truncated', 'INTEGER'],
      ],
      [...touched.values()].map((r) => [r.id, r.log_bytes, r.log_seq, r.log_truncated]),
    );
    return acks;
  }

  /**
   * `starts`: start reports of runs among `results` (one each), applied first as startRuns would apply them
   * (their acks in `startAcks`), so that such a run is locked and written once.
   */
  async finishRuns(results: RunResultInput[], now: number, starts: Array<RunToken & { at: number }> = []): Promise<FinishResult> {
    if (results.length === 0) return { acks: [], changed: [], startAcks: [] };
    return this.backend.tx((ex) => this.finishRunsIn(ex, results, now, starts));
  }

  private async finishRunsIn(
    ex: Exec,
    results: RunResultInput[],
    now: number,
    starts: Array<RunToken & { at: number }> = [],
    sent?: Array<Promise<unknown>>,
  ): Promise<FinishResult> {
    if (results.length === 0) return { acks: [], changed: [], startAcks: [] };
    const locked = this.lockRunsWithTasks(
      ex,
      results.map((r) => r.runId),
      ENDING_RUN_COLUMNS,
    );
    // The pass these results kick may read now, before the writes below (it allows for the runs named by
    // Exec.ending): one round trip fewer on PostgreSQL.
    ex.readsSent?.();
    const { runs, tasks } = await locked;
    const startAcks: ItemAck[] = [];
    const startEvents: EventIn[] = [];
    for (const item of starts) {
      const r = runs.get(item.runId);
      const refused = fence(r, item);
      startAcks.push(refused ?? { runId: item.runId, ok: true });
      if (refused || !r || r.state !== 'assigned') continue; // a repeated start is acked and changes nothing
      r.state = 'running';
      r.started_at = item.at;
      startEvents.push(startedEvent(r, now));
    }
    const acks: ItemAck[] = [];
    const endings: Ending[] = [];
    const ending = new Set<number>();
    for (const res of results) {
      const r = runs.get(res.runId);
      // A duplicate result (even in this same batch) finds the run ended: refused, never recorded twice.
      const refused = fence(r, res) ?? (ending.has(res.runId) ? { runId: res.runId, ok: false, code: 'LEASE_STALE' as const } : null);
      if (refused || !r) {
        acks.push(refused!);
        continue;
      }
      ending.add(res.runId);
      acks.push({ runId: res.runId, ok: true });
      endings.push({
        run: r,
        outcome: res.outcome,
        exitCode: res.exitCode,
        reason: res.reason,
        startedAt: res.startedAt,
        finishedAt: res.finishedAt,
        usage: res.usage,
        actor: `worker:${r.worker_name}`,
      });
    }
    const before = new Map([...tasks.values()].map((t) => [Number(t.id), t.status]));
    ex.ending?.(endings.map((e) => Number(e.run.id)));
    await this.endRuns(ex, endings, tasks, now, startEvents, sent, false);
    const changed: FinishResult['changed'] = [];
    for (const t of tasks.values()) if (before.get(Number(t.id)) !== t.status) changed.push({ taskId: Number(t.id), status: t.status });
    return { acks, changed, startAcks };
  }

  async readLogs(runId: number, offset: number, limit: number): Promise<{ chunks: LogChunk[]; nextOffset: number; ended: boolean }> {
    return this.backend.read(async (ex) => {
      const [run] = await ex.all<{ state: string }>('SELECT state FROM runs WHERE id = ?', [runId]);
      if (!run) throw new TschedError('RUN_NOT_FOUND', `run ${runId} does not exist`, { details: { runId } });
      const rows = await ex.all<{
        seq: number;
        start_offset: number;
        end_offset: number;
        stream: LogChunk['stream'];
        at: number;
        data: string;
      }>(
        'SELECT seq, start_offset, end_offset, stream, at, data FROM log_chunks WHERE run_id = ? AND end_offset > ? ORDER BY seq LIMIT ?',
        [runId, offset, Math.max(1, limit)],
      );
      const out: LogChunk[] = rows.map((c) => {
        const start = Number(c.start_offset);
        // The first chunk may start before the offset asked for: cut it at the offset.
        const data =
          start < offset
            ? Buffer.from(c.data, 'utf8')
                .subarray(offset - start)
                .toString('utf8')
            : c.data;
        return { runId, seq: Number(c.seq), offset: Math.max(start, offset), stream: c.stream, at: Number(c.at), data };
      });
      const last = rows[rows.length - 1];
      return { chunks: out, nextOffset: last ? Number(last.end_offset) : offset, ended: !isLive(run.state) };
    });
  }

  // ---------------------------------------------------------------- monitor

  async reap(now: number, opts: { workerSilenceMs: number; capGraceMs: number; epoch?: number | null }): Promise<ReapResult> {
    return this.backend.tx(async (ex) => {
      await this.checkEpoch(ex, opts.epoch);
      const expired = await ex.all<{ id: number }>(
        `SELECT id FROM runs WHERE state IN ${LIVE} AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?`,
        [now, REAP_BATCH],
      );
      const overCap = await ex.all<{ id: number }>("SELECT id FROM runs WHERE state = 'running' AND cap_at < ? ORDER BY cap_at LIMIT ?", [
        now - opts.capGraceMs,
        REAP_BATCH,
      ]);
      const ids = [...expired, ...overCap].map((r) => Number(r.id));
      let ended: ReapResult['ended'] = [];
      if (ids.length > 0) {
        const { runs, tasks } = await this.lockRunsWithTasks(ex, ids);
        const endings: Ending[] = [];
        for (const run of [...runs.values()].sort((a, b) => Number(a.id) - Number(b.id))) {
          if (!isLive(run.state)) continue; // ended meanwhile
          const base = { run, exitCode: null, startedAt: null, finishedAt: now, usage: null, actor: 'monitor' };
          if (Number(run.lease_expires_at) < now) endings.push({ ...base, outcome: 'lost', reason: 'lease_expired' });
          else if (run.state === 'running' && Number(run.cap_at) + opts.capGraceMs < now)
            endings.push({ ...base, outcome: 'timed_out', reason: 'cap_exceeded_server' });
        }
        ended = await this.endRuns(ex, endings, tasks, now);
      }
      const lost = await ex.all<{ id: string }>(
        "UPDATE workers SET state = 'lost' WHERE state IN ('active','draining') AND last_seen_at < ? RETURNING id",
        [now - opts.workerSilenceMs],
      );
      // A worker that let a run's lease expire and has itself been quiet for half the silence limit is
      // almost surely gone: take it out of placement now, or the retry could land on the same dead worker
      // in the moment before its own silence counts. Its next heartbeat makes it active again.
      const silent = [...new Set(ended.filter((e) => e.outcome === 'lost').map((e) => e.run.workerId))];
      const alsoLost = await this.selectIn<{ id: string }>(
        ex,
        "UPDATE workers SET state = 'lost' WHERE state IN ('active','draining') AND last_seen_at < ? AND id IN",
        silent,
        ' RETURNING id',
        [now - opts.workerSilenceMs / 2],
      );
      return { ended, lostWorkers: [...new Set([...lost, ...alsoLost].map((w) => w.id))].sort() };
    });
  }

  // ---------------------------------------------------------------- cluster leadership

  /**
   * Fencing for leader-only writes: with an epoch, the leader row is read FOR SHARE first (lock order puts
   * `leader` before everything), so a takeover — an UPDATE of that row — waits for this transaction, and a
   * transaction that starts after the takeover sees the new epoch and changes nothing.
   */
  private knownWorker(id: string): void {
    // Bounded: past this many ids (workers renamed over months), forget them all and learn them again.
    if (this.knownWorkers.size >= 10_000) this.knownWorkers.clear();
    this.knownWorkers.add(id);
  }

  private async checkEpoch(ex: Exec, epoch: number | null | undefined): Promise<void> {
    if (epoch === null || epoch === undefined) return;
    const [l] = await ex.all<{ epoch: number }>(
      `SELECT epoch FROM leader WHERE id = 'scheduler'${this.backend.kind === 'postgres' ? ' FOR SHARE' : ''}`,
    );
    if (!l || Number(l.epoch) !== epoch) {
      throw new TschedError('NOT_LEADER', `leadership epoch ${epoch} is no longer current`, {
        details: { epoch, current: l ? Number(l.epoch) : null },
      });
    }
  }

  /** The store's clock inside a transaction (the database's on PostgreSQL). */
  private async txNow(ex: Exec): Promise<number> {
    if (this.backend.kind !== 'postgres') return this.backend.now();
    const [r] = await ex.all<{ now: number }>(`SELECT ${PG_NOW} AS now`);
    return Number(r!.now);
  }

  async acquireLeadership(role: string, holder: string, ttlMs: number): Promise<LeadershipState> {
    return this.backend.tx(async (ex) => {
      await ex.all('INSERT INTO leader (id, holder, epoch, expires_at) VALUES (?, NULL, 0, 0) ON CONFLICT (id) DO NOTHING', [role]);
      const [row] = await ex.all<{ holder: string | null; epoch: number; expires_at: number }>(
        `SELECT holder, epoch, expires_at FROM leader WHERE id = ?${this.lock}`,
        [role],
      );
      const now = await this.txNow(ex);
      const epoch = Number(row!.epoch);
      const expiresAt = Number(row!.expires_at);
      const valid = row!.holder !== null && expiresAt >= now;
      if (valid && row!.holder !== holder) return { leader: false, epoch, holder: row!.holder, expiresAt };
      // Renew a valid lease of ours with the same epoch; anything else is a new term with a new epoch.
      const next = valid ? epoch : epoch + 1;
      await ex.all('UPDATE leader SET holder = ?, epoch = ?, expires_at = ? WHERE id = ?', [holder, next, now + ttlMs, role]);
      return { leader: true, epoch: next, holder, expiresAt: now + ttlMs };
    }, LEADER_ROW);
  }

  async releaseLeadership(role: string, holder: string): Promise<void> {
    await this.backend.tx(
      (ex) => ex.all('UPDATE leader SET holder = NULL, expires_at = 0 WHERE id = ? AND holder = ?', [role, holder]),
      LEADER_ROW,
    );
  }

  async getLeadership(role: string): Promise<{ holder: string | null; epoch: number; expiresAt: number } | null> {
    return this.backend.read(async (ex) => {
      const [row] = await ex.all<{ holder: string | null; epoch: number; expires_at: number }>(
        'SELECT holder, epoch, expires_at FROM leader WHERE id = ?',
        [role],
      );
      if (!row) return null;
      const now = await this.txNow(ex);
      const expiresAt = Number(row.expires_at);
      return { holder: expiresAt >= now ? row.holder : null, epoch: Number(row.epoch), expiresAt };
    });
  }

  // ---------------------------------------------------------------- recurring tasks
  // A definition is locked first (it has the lowest id of its family), then its occurrences: the global
  // order "tasks by id" holds. The occurrence loop runs on the leader only; were two replicas to race, the
  // definition's row lock, the compare-and-set of next_occurrence_at and the unique index (parent_id,
  // occurrence_at) each on their own make sure every instant is handled once.

  async dueDefinitions(now: number, limit: number): Promise<{ ids: number[]; nextAt: number | null }> {
    return this.backend.read(async (ex) => {
      // Both walk the partial index tasks_definitions_due.
      const rows = await ex.all<{ id: number }>(
        "SELECT id FROM tasks WHERE is_definition = 1 AND status = 'waiting' AND next_occurrence_at <= ? ORDER BY next_occurrence_at, id LIMIT ?",
        [now, limit],
      );
      const [m] = await ex.all<{ m: number | null }>(
        "SELECT MIN(next_occurrence_at) AS m FROM tasks WHERE is_definition = 1 AND status = 'waiting'",
      );
      return { ids: rows.map((r) => Number(r.id)), nextAt: m && m.m !== null ? Number(m.m) : null };
    });
  }

  async expandOccurrences(definitionId: number, now: number, opts: ExpandOptions): Promise<ExpandResult | null> {
    try {
      return await this.backend.tx(async (ex) => {
        await this.checkEpoch(ex, opts.epoch);
        const [def] = await this.lockTasks(ex, [definitionId]);
        if (
          !def ||
          Number(def.is_definition) !== 1 ||
          def.status !== 'waiting' ||
          Number(def.paused) === 1 ||
          def.next_occurrence_at === null ||
          def.next_occurrence_at === undefined ||
          Number(def.next_occurrence_at) > now
        )
          return null;
        const oldNext = Number(def.next_occurrence_at);
        const spec = JSON.parse(def.schedule as string) as ScheduleSpec;
        const live = await ex.all<{ id: number; status: 'waiting' | 'in_progress'; paused: number; occurrence_at: number }>(
          "SELECT id, status, paused, occurrence_at FROM tasks WHERE parent_id = ? AND parent_id IS NOT NULL AND status IN ('waiting','in_progress') ORDER BY occurrence_at",
          [definitionId],
        );
        const plan = planOccurrences(
          {
            spec,
            delayTolerance: Number(def.delay_tolerance),
            watermark:
              def.last_occurrence_at === null || def.last_occurrence_at === undefined ? oldNext - 1 : Number(def.last_occurrence_at),
            occurrencesSoFar: Number(def.occurrences_created ?? 0),
            live: live.map((l) => ({
              id: Number(l.id),
              status: l.status,
              held: Number(l.paused) === 1,
              occurrenceAt: Number(l.occurrence_at),
            })),
          },
          now,
          {
            ...(opts.maxCatchUp !== undefined ? { maxCatchUp: opts.maxCatchUp } : {}),
            ...(opts.maxEnumerate !== undefined ? { maxEnumerate: opts.maxEnumerate } : {}),
            ...(opts.maxQueued !== undefined ? { maxQueued: opts.maxQueued } : {}),
          },
        );
        const events: EventIn[] = [];
        const onDef = (type: string, reason: string, from: string | null = null, to: string | null = null) =>
          events.push({ taskId: definitionId, runId: null, at: now, actor: opts.actor, type, from, to, reason });
        const iso = (t: number) => new Date(t).toISOString();

        // replace: the live occurrences are cancelled first, through the cancel semantics (workers are told).
        const runsToStop =
          plan.cancel.length > 0
            ? await this.cancelOccurrences(ex, plan.cancel, now, opts.actor, 'replaced by a newer occurrence (overlap replace)')
            : [];

        // Each occurrence is a task of its own, with every execution field of the definition.
        const {
          id: _id,
          owner: _owner,
          status: _status,
          attempts: _attempts,
          dueAt: _dueAt,
          startDeadline: _sd,
          createdAt: _c,
          updatedAt: _u,
          finishedAt: _f,
          lastError: _le,
          deadlineMissed: _dm,
          paused: _p,
          recurrence: _r,
          ...fields
        } = taskFromRow(def);
        const pausedAt = TASK_INSERT_COLUMNS.indexOf('paused');
        const values = plan.create.map((c) => {
          const occ: NewTask = {
            ...fields,
            schedulingType: 'once',
            schedule: null,
            parentId: definitionId,
            occurrenceAt: c.at,
            dueAt: c.at,
          };
          const v = taskInsertValues(def.owner, occ, now);
          if (c.held) v[pausedAt] = 1; // held back until the previous occurrence ends
          return v;
        });
        const created = await this.insertRows<TaskRow>(
          ex,
          'tasks',
          TASK_INSERT_COLUMNS,
          values,
          '*',
          ' ON CONFLICT (parent_id, occurrence_at) WHERE parent_id IS NOT NULL DO NOTHING',
        );
        created.sort((a, b) => Number(a.occurrence_at) - Number(b.occurrence_at));
        for (const r of created) {
          const at = iso(Number(r.occurrence_at));
          const held = Number(r.paused) === 1;
          events.push({
            taskId: Number(r.id),
            runId: null,
            at: now,
            actor: opts.actor,
            type: 'task.submitted',
            from: null,
            to: 'waiting',
            reason: `occurrence ${at} of recurring task ${definitionId}`,
          });
          if (held)
            events.push({
              taskId: Number(r.id),
              runId: null,
              at: now,
              actor: opts.actor,
              type: 'occurrence.queued',
              from: 'waiting',
              to: 'waiting',
              reason: 'held until the previous occurrence ends (overlap queue)',
            });
          onDef('occurrence.created', `${at}: task ${r.id}${held ? ' (queued behind the previous occurrence)' : ''}`);
        }
        const m = plan.missed;
        for (const t of m.missed) onDef('occurrence.missed', `${iso(t)}: missed while the scheduler was not running`);
        const bulk = m.missedCount - m.missed.length;
        if (bulk > 0 && m.missedSpan) {
          const from = m.missed[m.missed.length - 1] ?? m.missedSpan.from;
          onDef(
            'occurrence.missed',
            `${m.missedCountExact ? '' : 'about '}${bulk} more between ${iso(from)} and ${iso(m.missedSpan.to)}: missed while the scheduler was not running`,
          );
        }
        for (const s of plan.skipped) onDef('occurrence.skipped', `${iso(s.at)}: ${s.reason}`);

        const status = plan.next === null ? transitionTask('waiting', 'exhaust') : 'waiting';
        if (status === 'done') onDef('task.done', 'no occurrence left (endAt or maxOccurrences reached)', 'waiting', 'done');
        const dueAt = plan.next ?? Number(def.due_at);
        // Compare-and-set on the old next instant: a concurrent expansion of the same instant changes nothing.
        const [saved] = await ex.all<TaskRow>(
          'UPDATE tasks SET next_occurrence_at = ?, last_occurrence_at = ?, occurrences_created = ?, due_at = ?, start_deadline = ?, ' +
            'status = ?, finished_at = ?, updated_at = ? WHERE id = ? AND next_occurrence_at = ? RETURNING *',
          [
            plan.next,
            plan.watermark,
            Number(def.occurrences_created ?? 0) + created.length,
            dueAt,
            dueAt + Number(def.delay_tolerance),
            status,
            status === 'done' ? now : null,
            now,
            definitionId,
            oldNext,
          ],
        );
        if (!saved) throw new ExpansionRaced();
        await this.insertEvents(ex, events);
        return {
          definition: taskFromRow(saved),
          created: created.map(taskFromRow),
          missed: m.missedCount,
          skipped: plan.skipped.length,
          runsToStop,
        };
      });
    } catch (err) {
      if (err instanceof ExpansionRaced) return null;
      throw err;
    }
  }

  async releaseQueuedOccurrences(now: number, limit: number): Promise<Task[]> {
    return this.backend.tx(async (ex) => {
      // Walks tasks_held; the NOT EXISTS probes use tasks_children and tasks_held by parent.
      const peek = await ex.all<{ id: number }>(
        "SELECT h.id FROM tasks h WHERE h.paused = 1 AND h.status = 'waiting' AND h.parent_id IS NOT NULL " +
          "AND NOT EXISTS (SELECT 1 FROM tasks l WHERE l.parent_id = h.parent_id AND l.parent_id IS NOT NULL AND l.status IN ('waiting','in_progress') AND (l.status = 'in_progress' OR l.paused = 0)) " +
          "AND NOT EXISTS (SELECT 1 FROM tasks e WHERE e.parent_id = h.parent_id AND e.paused = 1 AND e.status = 'waiting' AND e.parent_id IS NOT NULL AND e.occurrence_at < h.occurrence_at) " +
          'ORDER BY h.parent_id, h.occurrence_at LIMIT ?',
        [limit],
      );
      if (peek.length === 0) return [];
      const rows = (
        await this.lockTasks(
          ex,
          peek.map((r) => Number(r.id)),
        )
      ).filter((r) => r.status === 'waiting' && Number(r.paused) === 1);
      if (rows.length === 0) return [];
      await this.selectIn(
        ex,
        'UPDATE tasks SET paused = 0, updated_at = ? WHERE id IN',
        rows.map((r) => Number(r.id)),
        '',
        [now],
      );
      await this.insertEvents(
        ex,
        rows.map((r) => ({
          taskId: Number(r.id),
          runId: null,
          at: now,
          actor: 'scheduler',
          type: 'occurrence.released',
          from: 'waiting',
          to: 'waiting',
          reason: 'the previous occurrence ended',
        })),
      );
      return rows.map((r) => taskFromRow({ ...r, paused: 0, updated_at: now }));
    });
  }

  async pauseSchedule(id: number, owner: string | null, opts: { now: number; actor: string }): Promise<{ task: Task; changed: boolean }> {
    return this.backend.tx(async (ex) => {
      const def = await this.lockDefinition(ex, id, owner, 'paused');
      if (Number(def.paused) === 1) return { task: taskFromRow(def), changed: false };
      const task = await this.saveDefinition(
        ex,
        def,
        { paused: 1, next: null, last: def.last_occurrence_at ?? null, status: 'waiting' },
        opts.now,
      );
      await this.insertEvents(ex, [
        {
          taskId: id,
          runId: null,
          at: opts.now,
          actor: opts.actor,
          type: 'task.paused',
          from: 'waiting',
          to: 'waiting',
          reason: 'no new occurrences until resumed; live ones carry on',
        },
      ]);
      return { task, changed: true };
    });
  }

  async resumeSchedule(id: number, owner: string | null, opts: { now: number; actor: string }): Promise<{ task: Task; changed: boolean }> {
    return this.backend.tx(async (ex) => {
      const def = await this.lockDefinition(ex, id, owner, 'resumed');
      if (Number(def.paused) === 0) return { task: taskFromRow(def), changed: false };
      const task = await this.rearmDefinition(ex, { ...def, paused: 0 }, opts.now);
      const next = task.recurrence?.nextOccurrenceAt ?? null;
      await this.insertEvents(ex, [
        {
          taskId: id,
          runId: null,
          at: opts.now,
          actor: opts.actor,
          type: 'task.resumed',
          from: 'waiting',
          to: task.status,
          reason:
            next === null
              ? 'no occurrence left'
              : `next occurrence ${new Date(next).toISOString()}; the ones that passed while paused are not run`,
        },
      ]);
      return { task, changed: true };
    });
  }

  async updateSchedule(id: number, owner: string | null, spec: ScheduleSpec, opts: { now: number; actor: string }): Promise<Task> {
    if (spec.type === 'once')
      throw validationError([
        { path: 'schedule.type', message: 'expected a recurring type (daily, weekly, monthly, annually or cron); cancel the task instead' },
      ]);
    return this.backend.tx(async (ex) => {
      const def = await this.lockDefinition(ex, id, owner, 'rescheduled');
      const before = def.schedule;
      await ex.all('UPDATE tasks SET schedule = ?, scheduling_type = ? WHERE id = ?', [JSON.stringify(spec), spec.type, id]);
      const row = { ...def, schedule: JSON.stringify(spec), scheduling_type: spec.type };
      // From the next occurrence after now: nothing between the old watermark and now is caught up.
      const task =
        Number(def.paused) === 1
          ? await this.saveDefinition(
              ex,
              row,
              { paused: 1, next: null, last: Math.max(Number(def.last_occurrence_at ?? 0), opts.now), status: 'waiting' },
              opts.now,
            )
          : await this.rearmDefinition(ex, row, opts.now);
      const next = task.recurrence?.nextOccurrenceAt ?? null;
      await this.insertEvents(ex, [
        {
          taskId: id,
          runId: null,
          at: opts.now,
          actor: opts.actor,
          type: 'task.schedule_changed',
          from: 'waiting',
          to: task.status,
          reason: `${before} → ${JSON.stringify(spec)}; ${Number(def.paused) === 1 ? 'paused' : next === null ? 'no occurrence left' : `next occurrence ${new Date(next).toISOString()}`}`,
        },
      ]);
      return task;
    });
  }

  /** Locks a recurring definition for pause/resume/edit: absent → TASK_NOT_FOUND, not recurring → NOT_RECURRING, over → TASK_FINISHED. */
  private async lockDefinition(ex: Exec, id: number, owner: string | null, verb: string): Promise<TaskRow> {
    const [def] = await this.lockTasks(ex, [id]);
    if (!def || (owner !== null && def.owner !== owner))
      throw new TschedError('TASK_NOT_FOUND', `task ${id} does not exist`, { details: { id } });
    if (Number(def.is_definition) !== 1) {
      const why =
        def.parent_id !== null
          ? `task ${id} is one occurrence of recurring task ${Number(def.parent_id)}; that task can be ${verb} instead`
          : `task ${id} runs once (schedule ${def.scheduling_type}); only recurring tasks can be ${verb}`;
      throw new TschedError('NOT_RECURRING', why, { details: { id, parentId: def.parent_id === null ? null : Number(def.parent_id) } });
    }
    if (def.status !== 'waiting')
      throw new TschedError('TASK_FINISHED', `recurring task ${id} is ${def.status}; it has no occurrences left and cannot be ${verb}`, {
        details: { id, status: def.status },
      });
    return def;
  }

  /** Writes a definition's recurrence columns (and status) and returns it. */
  private async saveDefinition(
    ex: Exec,
    def: TaskRow,
    v: { paused: number; next: number | null; last: number | null; status: TaskStatus },
    now: number,
  ): Promise<Task> {
    const dueAt = v.next ?? Number(def.due_at);
    const [row] = await ex.all<TaskRow>(
      'UPDATE tasks SET paused = ?, next_occurrence_at = ?, last_occurrence_at = ?, status = ?, due_at = ?, start_deadline = ?, ' +
        'finished_at = ?, updated_at = ? WHERE id = ? RETURNING *',
      [
        v.paused,
        v.next,
        v.last,
        v.status,
        dueAt,
        dueAt + Number(def.delay_tolerance),
        v.status === 'done' ? now : null,
        now,
        Number(def.id),
      ],
    );
    return taskFromRow(row as TaskRow);
  }

  /** An active definition continues from the first occurrence after now (done when there is none). */
  private async rearmDefinition(ex: Exec, def: TaskRow, now: number): Promise<Task> {
    const spec = JSON.parse(def.schedule as string) as ScheduleSpec;
    const last = Math.max(Number(def.last_occurrence_at ?? 0), now);
    const next = nextOccurrence(spec, last, Number(def.occurrences_created ?? 0));
    const status: TaskStatus = next === null ? transitionTask('waiting', 'exhaust') : 'waiting';
    if (next === null)
      await this.insertEvents(ex, [
        {
          taskId: Number(def.id),
          runId: null,
          at: now,
          actor: 'scheduler',
          type: 'task.done',
          from: 'waiting',
          to: 'done',
          reason: 'no occurrence left',
        },
      ]);
    return this.saveDefinition(ex, def, { paused: 0, next, last, status }, now);
  }

  /** A cancelled definition creates nothing more, and its waiting occurrences are cancelled with it. */
  private async cancelDefinition(ex: Exec, def: TaskRow, opts: { now: number; actor: string }): Promise<void> {
    await ex.all('UPDATE tasks SET next_occurrence_at = NULL WHERE id = ?', [Number(def.id)]);
    const waiting = await ex.all<{ id: number }>(
      "SELECT id FROM tasks WHERE parent_id = ? AND parent_id IS NOT NULL AND status = 'waiting' ORDER BY id",
      [Number(def.id)],
    );
    await this.cancelOccurrences(
      ex,
      waiting.map((r) => Number(r.id)),
      opts.now,
      opts.actor,
      `its recurring task ${Number(def.id)} was cancelled`,
    );
  }

  /** Cancels live occurrences inside a transaction, like cancelTask: live runs are asked to stop. */
  private async cancelOccurrences(ex: Exec, ids: number[], now: number, actor: string, reason: string): Promise<Run[]> {
    if (ids.length === 0) return [];
    const rows = (await this.lockTaskStates(ex, ids)).filter((t) => t.status === 'waiting' || t.status === 'in_progress');
    if (rows.length === 0) return [];
    const events: EventIn[] = [];
    for (const t of rows) {
      const from = t.status;
      t.status = transitionTask(t.status, 'cancel');
      t.updated_at = now;
      t.finished_at = now;
      t.current_run_id = null;
      events.push({ taskId: Number(t.id), runId: null, at: now, actor, type: 'task.cancelled', from, to: 'cancelled', reason });
    }
    await this.saveTasks(ex, rows);
    const runs = await this.selectIn<RunRow>(
      ex,
      `UPDATE runs SET cancel_requested = 1 WHERE state IN ${LIVE} AND task_id IN`,
      rows.map((t) => Number(t.id)),
      ' RETURNING *',
    );
    runs.sort((a, b) => Number(a.id) - Number(b.id));
    for (const r of runs)
      events.push({
        taskId: Number(r.task_id),
        runId: Number(r.id),
        at: now,
        actor,
        type: 'run.cancel_requested',
        from: r.state,
        to: r.state,
        reason,
      });
    await this.insertEvents(ex, events);
    return runs.map(runFromRow);
  }
}

/** Thrown inside an expansion whose compare-and-set lost: the transaction rolls back and the caller gets null. */
class ExpansionRaced extends Error {}
