// Rows as the database holds them (snake_case, JSON as text, booleans as 0/1) and their domain shapes.

import { nextOccurrence } from '../domain/recurrence.js';
import type { Allocation } from '../domain/resources.js';
import type { RunOutcome, RunState, TaskStatus } from '../domain/status.js';
import type { NewTask, Run, ScheduleSpec, Task, TaskEventRecord } from '../domain/task.js';
import type { Worker, WorkerState } from '../domain/worker.js';

export interface TaskRow {
  id: number;
  owner: string;
  name: string;
  command: string;
  shell: number;
  script: string | null;
  script_path: string | null;
  image: string | null;
  executor: string;
  env: string;
  resources: string;
  constraints: string;
  labels: string;
  priority: number;
  delay_tolerance: number;
  execution_cap: number;
  total_attempts: number;
  retry: string;
  scheduling_type: string;
  schedule: string | null;
  placement: string | null;
  notify: string | null;
  on_deadline_miss: string;
  due_at: number;
  start_deadline: number;
  parent_id: number | null;
  occurrence_at: number | null;
  status: TaskStatus;
  attempts: number;
  current_run_id: number | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  last_error: string | null;
  deadline_missed: number;
  paused: number;
  /** Migration 4: recurring definitions (absent from narrow projections). */
  is_definition?: number;
  next_occurrence_at?: number | null;
  last_occurrence_at?: number | null;
  occurrences_created?: number;
}

export interface RunRow {
  id: number;
  task_id: number;
  attempt: number;
  worker_id: string;
  worker_name: string;
  lease_token: string;
  lease_expires_at: number;
  state: RunState;
  allocation: string;
  cpus: number;
  memory: number;
  ports: string;
  assigned_at: number;
  cap_at: number;
  started_at: number | null;
  finished_at: number | null;
  exit_code: number | null;
  outcome: RunOutcome | null;
  reason: string | null;
  cancel_requested: number;
  delivered: number;
  usage: string;
  log_bytes: number;
  log_seq: number;
  log_truncated: number;
}

export interface WorkerRow {
  id: string;
  name: string;
  capacity: string;
  labels: string;
  executors: string;
  enforcement: string;
  version: string;
  hostname: string;
  state: WorkerState;
  registered_at: number;
  last_seen_at: number;
}

export interface EventRow {
  id: number;
  task_id: number;
  run_id: number | null;
  at: number;
  actor: string;
  type: string;
  from_state: string | null;
  to_state: string | null;
  reason: string | null;
  /** Migration 6: the events after this one that share its row, as JSON (see eventRowsOf); null if none. */
  more?: string | null;
}

/** An event to write (its id is drawn by the insert). */
export interface EventIn {
  taskId: number;
  runId: number | null;
  at: number;
  actor: string;
  type: string;
  from: string | null;
  to: string | null;
  reason: string | null;
}

const json = (s: string | null): never => (s === null ? null : JSON.parse(s)) as never;
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/**
 * The spec columns: what a task is given at submit, never changed afterwards for a non-definition task
 * (only a definition's schedule is edited). The scheduling pass holds these per task (task-spec-cache.ts),
 * so a new column that can change after the insert belongs with the state columns below, not here.
 */
export const TASK_SPEC_COLUMNS = [
  'owner',
  'name',
  'command',
  'shell',
  'script',
  'script_path',
  'image',
  'executor',
  'env',
  'resources',
  'constraints',
  'labels',
  'priority',
  'delay_tolerance',
  'execution_cap',
  'total_attempts',
  'retry',
  'scheduling_type',
  'schedule',
  'placement',
  'notify',
  'on_deadline_miss',
  'parent_id',
  'occurrence_at',
] as const;

/** Column order of a task insert (the spec, then the state); values come from `taskInsertValues`. */
export const TASK_INSERT_COLUMNS = [
  ...TASK_SPEC_COLUMNS,
  'due_at',
  'start_deadline',
  'status',
  'attempts',
  'created_at',
  'updated_at',
  'deadline_missed',
  'paused',
  'is_definition',
  'next_occurrence_at',
  'last_occurrence_at',
] as const;

export function taskInsertValues(owner: string, t: NewTask, now: number): unknown[] {
  const def = definitionValues(t, now);
  // A definition is "due" at its next occurrence (informative: it is never placed itself); one with no
  // occurrence ahead (endAt already past) is done at once.
  const dueAt = def[0] === 1 ? (def[1] ?? now) : (t.dueAt ?? now);
  return [
    owner,
    t.name,
    JSON.stringify(t.command),
    t.shell ? 1 : 0,
    t.script,
    t.scriptPath,
    t.image,
    t.executor,
    JSON.stringify(t.env),
    JSON.stringify(t.resources),
    JSON.stringify(t.constraints),
    JSON.stringify(t.labels),
    t.priority,
    t.delayTolerance,
    t.executionCap,
    t.totalAttempts,
    JSON.stringify(t.retry),
    t.schedulingType,
    t.schedule === null ? null : JSON.stringify(t.schedule),
    t.placement,
    t.notify === null ? null : JSON.stringify(t.notify),
    t.onDeadlineMiss,
    t.parentId,
    t.occurrenceAt,
    dueAt,
    dueAt + t.delayTolerance,
    def[0] === 1 && def[1] === null ? 'done' : 'waiting',
    0,
    now,
    now,
    0,
    0,
    ...def,
  ];
}

/** Whether a new task is a recurring definition: it is never placed, its occurrences are. */
export function isDefinition(t: Pick<NewTask, 'schedule' | 'parentId'>): boolean {
  return t.schedule !== null && t.schedule.type !== 'once' && t.parentId === null;
}

/**
 * is_definition, next_occurrence_at, last_occurrence_at of a new task. A definition's watermark starts just
 * before max(now, startAt), so the first occurrence is the first one at or after that (none are "missed"
 * before the task existed).
 */
function definitionValues(t: NewTask, now: number): [number, number | null, number | null] {
  if (!isDefinition(t)) return [0, null, null];
  const spec = t.schedule as ScheduleSpec;
  const watermark = Math.max(now, spec.startAt ?? 0) - 1;
  return [1, nextOccurrence(spec, watermark, 0), watermark];
}

export function taskFromRow(r: TaskRow): Task {
  return {
    id: num(r.id),
    owner: r.owner,
    name: r.name,
    command: json(r.command),
    shell: num(r.shell) === 1,
    script: r.script,
    scriptPath: r.script_path,
    image: r.image,
    executor: r.executor as Task['executor'],
    env: json(r.env),
    resources: json(r.resources),
    constraints: json(r.constraints),
    labels: json(r.labels),
    priority: num(r.priority),
    delayTolerance: num(r.delay_tolerance),
    executionCap: num(r.execution_cap),
    totalAttempts: num(r.total_attempts),
    retry: json(r.retry),
    schedulingType: r.scheduling_type as Task['schedulingType'],
    schedule: json(r.schedule),
    placement: r.placement as Task['placement'],
    notify: json(r.notify),
    onDeadlineMiss: r.on_deadline_miss as Task['onDeadlineMiss'],
    dueAt: num(r.due_at),
    parentId: numOrNull(r.parent_id),
    occurrenceAt: numOrNull(r.occurrence_at),
    status: r.status,
    attempts: num(r.attempts),
    startDeadline: num(r.start_deadline),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    finishedAt: numOrNull(r.finished_at),
    lastError: r.last_error,
    deadlineMissed: num(r.deadline_missed) === 1,
    paused: num(r.paused) === 1,
    ...(num(r.is_definition) === 1
      ? {
          recurrence: {
            nextOccurrenceAt: numOrNull(r.next_occurrence_at),
            lastOccurrenceAt: numOrNull(r.last_occurrence_at),
            occurrencesCreated: num(r.occurrences_created ?? 0),
          },
        }
      : {}),
  };
}

/**
 * The state columns a scheduling pass reads for a task whose spec it holds (task-spec-cache.ts): what
 * changes after the insert, and created_at, which checks that the held spec is this task's.
 */
export const HELD_TASK_STATE_COLUMNS = [
  'id',
  'created_at',
  'status',
  'attempts',
  'due_at',
  'start_deadline',
  'updated_at',
  'finished_at',
  'last_error',
  'deadline_missed',
  'paused',
] as const;

export type TaskStateRow = Pick<TaskRow, (typeof HELD_TASK_STATE_COLUMNS)[number]>;

/**
 * A task's state columns as its row holds them (what taskFromSpec reads back), with what a pass's applier
 * also reads of a waiting task it placed: its current run (none yet) and its execution cap. One literal:
 * built as a spread that adds keys (`{ ...stateRow, current_run_id, execution_cap }`) it cost ~2 µs a row on
 * Node 20, 40 times this, ~100 µs of a pass placing 50 tasks.
 */
export function stateRowOf(t: Task): TaskStateRow & { current_run_id: null; execution_cap: number } {
  return {
    id: t.id,
    created_at: t.createdAt,
    status: t.status,
    attempts: t.attempts,
    current_run_id: null,
    due_at: t.dueAt,
    start_deadline: t.startDeadline,
    updated_at: t.updatedAt,
    finished_at: t.finishedAt,
    last_error: t.lastError,
    deadline_missed: t.deadlineMissed ? 1 : 0,
    paused: t.paused ? 1 : 0,
    execution_cap: t.executionCap,
  };
}

/**
 * A task from its held spec and its state columns: the fields of taskFromRow in the same order (one object
 * shape for the scheduler), without a spread, which cost more than the row it saved.
 */
export function taskFromSpec(s: TaskSpec, r: TaskStateRow): Task {
  return {
    id: num(r.id),
    owner: s.owner,
    name: s.name,
    command: s.command,
    shell: s.shell,
    script: s.script,
    scriptPath: s.scriptPath,
    image: s.image,
    executor: s.executor,
    env: s.env,
    resources: s.resources,
    constraints: s.constraints,
    labels: s.labels,
    priority: s.priority,
    delayTolerance: s.delayTolerance,
    executionCap: s.executionCap,
    totalAttempts: s.totalAttempts,
    retry: s.retry,
    schedulingType: s.schedulingType,
    schedule: s.schedule,
    placement: s.placement,
    notify: s.notify,
    onDeadlineMiss: s.onDeadlineMiss,
    dueAt: num(r.due_at),
    parentId: s.parentId,
    occurrenceAt: s.occurrenceAt,
    status: r.status,
    attempts: num(r.attempts),
    startDeadline: num(r.start_deadline),
    createdAt: s.createdAt,
    updatedAt: num(r.updated_at),
    finishedAt: numOrNull(r.finished_at),
    lastError: r.last_error,
    deadlineMissed: num(r.deadline_missed) === 1,
    paused: num(r.paused) === 1,
  };
}

/** The spec of a task: the fields that never change once a non-definition task is inserted. */
export type TaskSpec = Pick<
  Task,
  | 'owner'
  | 'name'
  | 'command'
  | 'shell'
  | 'script'
  | 'scriptPath'
  | 'image'
  | 'executor'
  | 'env'
  | 'resources'
  | 'constraints'
  | 'labels'
  | 'priority'
  | 'delayTolerance'
  | 'executionCap'
  | 'totalAttempts'
  | 'retry'
  | 'schedulingType'
  | 'schedule'
  | 'placement'
  | 'notify'
  | 'onDeadlineMiss'
  | 'parentId'
  | 'occurrenceAt'
  | 'createdAt'
>;

export function specOfTask(t: Task): TaskSpec {
  return {
    owner: t.owner,
    name: t.name,
    command: t.command,
    shell: t.shell,
    script: t.script,
    scriptPath: t.scriptPath,
    image: t.image,
    executor: t.executor,
    env: t.env,
    resources: t.resources,
    constraints: t.constraints,
    labels: t.labels,
    priority: t.priority,
    delayTolerance: t.delayTolerance,
    executionCap: t.executionCap,
    totalAttempts: t.totalAttempts,
    retry: t.retry,
    schedulingType: t.schedulingType,
    schedule: t.schedule,
    placement: t.placement,
    notify: t.notify,
    onDeadlineMiss: t.onDeadlineMiss,
    parentId: t.parentId,
    occurrenceAt: t.occurrenceAt,
    createdAt: t.createdAt,
  };
}

export function runFromRow(r: RunRow): Run {
  return runOf(r, json(r.allocation) as Allocation, json(r.usage));
}

/** A run from its row, with the JSON columns' values given: a caller that has just built the row holds them. */
export function runOf(r: RunRow, allocation: Allocation, usage: Run['usage']): Run {
  return {
    id: num(r.id),
    taskId: num(r.task_id),
    attempt: num(r.attempt),
    workerId: r.worker_id,
    workerName: r.worker_name,
    leaseToken: r.lease_token,
    leaseExpiresAt: num(r.lease_expires_at),
    state: r.state,
    allocation,
    assignedAt: num(r.assigned_at),
    startedAt: numOrNull(r.started_at),
    finishedAt: numOrNull(r.finished_at),
    exitCode: numOrNull(r.exit_code),
    outcome: r.outcome,
    reason: r.reason,
    cancelRequested: num(r.cancel_requested) === 1,
    usage,
  };
}

export function workerFromRow(r: WorkerRow): Worker {
  return {
    id: r.id,
    name: r.name,
    capacity: json(r.capacity),
    labels: json(r.labels),
    executors: json(r.executors),
    enforcement: json(r.enforcement),
    version: r.version,
    hostname: r.hostname,
    state: r.state,
    registeredAt: num(r.registered_at),
    lastSeenAt: num(r.last_seen_at),
  };
}

/**
 * Events share a row: a claim writes two per task and a finished run three, and a row per event was a heap
 * tuple and two index entries each (on PostgreSQL about a fifth of the drain). The events of one task in one
 * write go in one row, up to this many: the first in the columns, the rest in `more`. An event's id is its
 * row's id times this plus its place in the row, so ids stay unique and in the order the events happened.
 */
export const EVENTS_PER_ROW = 16;

/** A later event of a row: [runId, at, actor, type, from, to, reason]. */
type MoreEvent = [number | null, number, string, string, string | null, string | null, string | null];

/** The columns written for an event row, in this order. */
export const EVENT_COLUMNS = ['task_id', 'run_id', 'at', 'actor', 'type', 'from_state', 'to_state', 'reason', 'more'] as const;

/** The rows (EVENT_COLUMNS) for events written together: each task's events in order, one row per 16. */
export function eventRowsOf(events: readonly EventIn[]): unknown[][] {
  const rows: unknown[][] = [];
  const more: MoreEvent[][] = [];
  const open = new Map<number, number>(); // task id → index of its row, while the row takes more
  for (const e of events) {
    const i = open.get(e.taskId);
    if (i === undefined) {
      open.set(e.taskId, rows.length);
      rows.push([e.taskId, e.runId, e.at, e.actor, e.type, e.from, e.to, e.reason, null]);
      more.push([]);
      continue;
    }
    const m = more[i]!;
    m.push([e.runId, e.at, e.actor, e.type, e.from, e.to, e.reason]);
    if (m.length === EVENTS_PER_ROW - 1) open.delete(e.taskId);
  }
  for (let i = 0; i < rows.length; i++) if (more[i]!.length > 0) rows[i]![8] = JSON.stringify(more[i]);
  return rows;
}

/** The events a row holds, in order. */
export function eventsFromRow(r: EventRow): TaskEventRecord[] {
  const id = num(r.id) * EVENTS_PER_ROW;
  const taskId = num(r.task_id);
  const out: TaskEventRecord[] = [
    {
      id,
      taskId,
      runId: numOrNull(r.run_id),
      at: num(r.at),
      actor: r.actor,
      type: r.type,
      from: r.from_state,
      to: r.to_state,
      reason: r.reason,
    },
  ];
  if (r.more) {
    const more = JSON.parse(r.more) as MoreEvent[];
    for (let k = 0; k < more.length; k++) {
      const [runId, at, actor, type, from, to, reason] = more[k]!;
      out.push({ id: id + k + 1, taskId, runId, at, actor, type, from, to, reason });
    }
  }
  return out;
}
