// The Store port: domain operations only. No connection, transaction or SQL leaks out of an adapter.
// Every method that changes state does it in one transaction and writes its event rows in that same
// transaction, so "accepted means durable" and "every change is an event" hold together.
// Times are epoch milliseconds. Leases and due times are judged by the store's clock (`now()`), which the
// server reads once per operation and passes in, so that tests can inject a clock.

import type { Allocation } from '../domain/resources.js';
import type { RunOutcome, TaskStatus } from '../domain/status.js';
import type { NewTask, Run, RunUsage, ScheduleSpec, Task, TaskEventRecord } from '../domain/task.js';
import type { Worker, WorkerRegistration, WorkerState, WorkerWithLoad } from '../domain/worker.js';

export type Role = 'admin' | 'user' | 'worker';

export interface TokenRecord {
  tokenHash: string; // sha256 hex of the bearer token; the token itself is never stored
  userId: string;
  role: Role;
  name: string;
}

export interface TaskQuery {
  /** null: every owner (admin). */
  owner: string | null;
  status?: TaskStatus[];
  /** Only occurrences of this recurring task. */
  parentId?: number;
  /** Page size, 1–1000. */
  limit: number;
  /** Opaque cursor from a previous page. Pages go newest first. */
  cursor?: string | null;
}

export interface SubmitOptions {
  /** Per owner; a repeated key returns the original tasks instead of creating new ones (kept 24 h). */
  idempotencyKey?: string;
  /** A hash of the request body: the same key with a different body is IDEMPOTENCY_CONFLICT. */
  requestHash?: string;
  now: number;
  actor: string;
}

export interface SubmitResult {
  tasks: Task[];
  /** True when an idempotency key matched an earlier submit and nothing new was written. */
  replayed: boolean;
}

/** One placement the scheduler decided. */
export interface PlacementDecision {
  taskId: number;
  workerId: string;
  allocation: Allocation;
}

export interface ApplyContext {
  now: number;
  /** Lease given to a new run before its worker first heartbeats, ms. */
  leaseMs: number;
  /** Fencing epoch of the leader; the store refuses the whole plan if the epoch is no longer current. */
  epoch: number | null;
  actor: string;
  /**
   * Stamp the new runs (assigned_at, lease, cap) with the store's clock read after the capacity re-check,
   * when later than `now`: then the run history is exact — a run that ended just before the plan committed
   * never appears to overlap the run that took its place. For callers whose `now` is the store's clock.
   */
  stampAtCommit?: boolean;
}

export interface PassQuery {
  /** How many candidates to load (see loadCandidates). */
  limit: number;
  /** Tasks whose start deadline falls before this are loaded whatever their priority (see loadCandidates). */
  urgentBefore: number;
}

/** The pure planning step of a pass: snapshot in, decisions out. Must not do I/O. */
export type Planner = (snapshot: { workers: WorkerWithLoad[]; tasks: Task[] }) => PlacementDecision[];

export interface PassResult extends ApplyResult {
  /** Why the pass stopped before planning: no active worker, none with room, or nothing due. */
  skipped: 'no_workers' | 'no_room' | 'no_tasks' | null;
  /** The candidates planned over (empty when skipped). */
  tasks: Task[];
  /**
   * nextDueAt(now), read inside the pass when its window was not full (so it held every task due now):
   * the time for the scheduler's timer. Undefined when the pass did not read it.
   */
  nextDueAt?: number | null;
}

export interface ApplyResult {
  /** Runs created, one per accepted decision. */
  runs: Run[];
  /** Decisions refused on re-check, with a named reason (task_not_waiting, worker_unavailable, overcommit_cpu, overcommit_memory, port_taken). */
  rejected: Array<{ taskId: number; workerId: string; reason: string }>;
}

/** What a worker receives for one run. */
export interface Assignment {
  run: Run;
  task: Task;
  /** Time left of the execution cap, measured from allocation by the store's clock, ms. */
  capRemainingMs: number;
}

export interface RunToken {
  runId: number;
  token: string;
}

export interface LogChunkInput extends RunToken {
  stream: 'stdout' | 'stderr' | 'system';
  /** Worker-side time of the first byte. */
  at: number;
  data: string;
}

export interface LogChunk {
  runId: number;
  seq: number;
  /** Byte offset of this chunk in the run's log, for resuming. */
  offset: number;
  stream: 'stdout' | 'stderr' | 'system';
  at: number;
  data: string;
}

export interface RunResultInput extends RunToken {
  outcome: RunOutcome;
  exitCode: number | null;
  reason: string | null;
  startedAt: number | null;
  finishedAt: number;
  usage: RunUsage;
}

/** Per-item answer for batched worker reports: ok, or refused with a stable code. */
export interface ItemAck {
  runId: number;
  ok: boolean;
  /** LEASE_STALE when the token is not the run's current one or the run already ended; RUN_NOT_FOUND. */
  code?: 'LEASE_STALE' | 'RUN_NOT_FOUND';
}

export interface HeartbeatResult {
  acks: ItemAck[];
  /** Runs of this worker that must be stopped (cancel requested, or ended server-side). */
  cancel: number[];
  /** The worker's state before this heartbeat (a lost worker becomes active by speaking). */
  stateBefore: WorkerState;
}

/** See Store.lookAtWorker. */
export interface WorkerLook {
  state: WorkerState | null;
  undelivered: number[];
  cancel: number[];
}

export interface FinishResult {
  acks: ItemAck[];
  /** Tasks that changed status, for wake-ups and notifications. */
  changed: Array<{ taskId: number; status: TaskStatus }>;
  /** Acks of the start reports applied with the results (`starts`), in their order. */
  startAcks: ItemAck[];
}

export interface CancelResult {
  task: Task;
  /** Live runs that were asked to stop; their workers learn it on their next poll or heartbeat. */
  runsToStop: Run[];
  /** False when the task was already cancelled (cancel is idempotent). */
  changed: boolean;
}

/** Runs that the monitor ended: lease expired (lost) or past cap + grace (timed_out). */
export interface ReapResult {
  ended: Array<{ run: Run; outcome: RunOutcome; taskStatus: TaskStatus }>;
  lostWorkers: string[];
}

export interface WorkerPollResult {
  heartbeat: HeartbeatResult;
  assignments: Assignment[];
}

export interface WorkerReportInput {
  started: Array<RunToken & { at: number }>;
  logs: LogChunkInput[];
  results: RunResultInput[];
  running: RunToken[];
  /** Runs this worker was handed from memory since its last store write: marked delivered in the same transaction. */
  delivered?: number[];
}

export interface WorkerReportResult {
  started: ItemAck[];
  logs: ItemAck[];
  results: FinishResult;
  running: HeartbeatResult;
}

/** A webhook delivery in the durable outbox. */
export interface Notification {
  id: number;
  taskId: number;
  url: string;
  event: string;
  payload: unknown;
  attempts: number;
}

export interface DeadlineMiss {
  task: Task;
  /** True when the task's policy is `expire`: it was failed with reason deadline_missed. */
  expired: boolean;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Runs the versioned migrations that have not run yet. Safe to call from several replicas at once. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  /** The store's clock, epoch ms. */
  now(): Promise<number>;

  // ---- auth
  putToken(t: TokenRecord): Promise<void>;
  findToken(tokenHash: string): Promise<TokenRecord | null>;

  // ---- tasks
  submitTasks(owner: string, tasks: NewTask[], opts: SubmitOptions): Promise<SubmitResult>;
  /** owner null: any owner. Returns null when absent or owned by someone else. */
  getTask(id: number, owner: string | null): Promise<Task | null>;
  listTasks(q: TaskQuery): Promise<{ tasks: Task[]; next: string | null }>;
  countTasks(owner: string | null): Promise<Record<TaskStatus, number>>;
  listRuns(taskId: number): Promise<Run[]>;
  getRun(runId: number): Promise<Run | null>;
  listEvents(taskId: number, afterId?: number): Promise<TaskEventRecord[]>;
  /** Idempotent; a finished task → TschedError TASK_FINISHED. Absent → TASK_NOT_FOUND. */
  cancelTask(id: number, owner: string | null, opts: { now: number; actor: string; reason: string }): Promise<CancelResult>;
  /** `tsched retry`: a failed or cancelled task waits again with fresh attempts. */
  requeueTask(id: number, owner: string | null, opts: { now: number; actor: string }): Promise<Task>;

  // ---- resource manager
  /** Active and draining workers with what is allocated on each. */
  loadWorkers(): Promise<WorkerWithLoad[]>;
  /**
   * Waiting, unpaused tasks due at `now`, best first: priority desc, startDeadline asc, id asc — plus any
   * whose startDeadline falls before `urgentBefore` (they are about to be promoted). At most `limit` of each.
   */
  loadCandidates(now: number, limit: number, urgentBefore: number): Promise<Task[]>;
  /**
   * When the next waiting task becomes due after `after` (for the scheduler's timer), or null. A task due
   * already is a candidate, not a reason to wake: one that cannot be placed must not hide the next due time.
   */
  nextDueAt(after: number): Promise<number | null>;
  /** Applies a plan in one transaction, re-checking every decision against the store. */
  applyPlan(plan: PlacementDecision[], ctx: ApplyContext): Promise<ApplyResult>;
  /**
   * A whole scheduling pass in one write transaction: loads the workers and (unless none has room) the
   * candidates, hands both to `planner` (the pure core), and applies its decisions as applyPlan does.
   * One transaction instead of reads then a write: on SQLite it joins the group commit of the write that
   * kicked it (the submit or report that freed or added work), so both share one fsync.
   */
  schedulePass(q: PassQuery, planner: Planner, ctx: ApplyContext): Promise<PassResult>;

  // ---- worker protocol
  /** Same name → same id. Live runs of a previous life of this worker end as lost (and are retried). */
  registerWorker(reg: WorkerRegistration, now: number): Promise<{ worker: Worker; orphaned: Run[] }>;
  getWorker(id: string): Promise<Worker | null>;
  listWorkers(): Promise<WorkerWithLoad[]>;
  setWorkerState(id: string, state: WorkerState, now: number): Promise<Worker | null>;
  /** Marks the worker seen and extends the lease of every live run it holds that it names with a valid token. */
  heartbeat(workerId: string, runs: RunToken[], now: number, leaseMs: number): Promise<HeartbeatResult>;
  /**
   * heartbeat then takeAssignments, in one transaction (one commit per poll). `delivered` names runs the
   * server already handed to this worker from memory: they are marked delivered first, so the take does not
   * return them again.
   */
  workerPoll(
    workerId: string,
    running: RunToken[],
    max: number,
    now: number,
    leaseMs: number,
    delivered?: number[],
  ): Promise<WorkerPollResult>;
  /**
   * Whether this worker has assigned runs not yet delivered, other than `except` (runs in hand, handed from
   * memory, whose delivered mark is still to be written). Read-only and cheap: polls look before they take.
   */
  hasUndelivered(workerId: string, except?: number[]): Promise<boolean>;
  /** A worker's batched report in one transaction, in order: starts, log chunks, results, heartbeat. */
  workerReport(
    workerId: string,
    r: WorkerReportInput,
    now: number,
    opts: { leaseMs: number; maxLogBytesPerRun: number },
  ): Promise<WorkerReportResult>;
  /**
   * What a poll that does not heartbeat must know, in one read (one round trip on PostgreSQL): the worker's
   * state (null: not registered), the ids of its first `undeliveredLimit` assigned runs not yet delivered
   * (ascending), and its live runs whose cancel was requested (ascending).
   */
  lookAtWorker(workerId: string, undeliveredLimit: number): Promise<WorkerLook>;
  /** Assigned runs not yet delivered to this worker; marks them delivered. */
  takeAssignments(workerId: string, max: number, now: number): Promise<Assignment[]>;
  /** assigned → running. */
  startRuns(items: Array<RunToken & { at: number }>, now: number): Promise<ItemAck[]>;
  appendLogs(chunks: LogChunkInput[], maxBytesPerRun: number): Promise<ItemAck[]>;
  /** Ends runs and lets the queue manager decide each task's fate (done / retry with backoff / failed). */
  /** `starts`: start reports of runs among `results`, applied first (a run started and ended since the last report). */
  finishRuns(results: RunResultInput[], now: number, starts?: Array<RunToken & { at: number }>): Promise<FinishResult>;
  /** Log of one run from a byte offset. */
  readLogs(runId: number, offset: number, limit: number): Promise<{ chunks: LogChunk[]; nextOffset: number; ended: boolean }>;

  // ---- monitor
  /** Ends live runs whose lease expired (lost) or that are past cap + grace (timed_out); marks silent workers lost. */
  /** `opts.epoch`: the leader's fencing epoch; when given and no longer current, throws NOT_LEADER and changes nothing. */
  reap(now: number, opts: { workerSilenceMs: number; capGraceMs: number; epoch?: number | null }): Promise<ReapResult>;
  /**
   * Waiting tasks past their start deadline that were not yet reported: marks them, writes a
   * task.deadline_missed event, fails them (reason deadline_missed) when their policy is `expire`, and queues
   * their webhook notifications — all in one transaction, so each miss is reported exactly once.
   * `epoch`: the leader's fencing epoch; when given and no longer current, throws NOT_LEADER.
   */
  recordDeadlineMisses(now: number, limit: number, epoch?: number | null): Promise<DeadlineMiss[]>;

  // ---- notifications (durable outbox)
  /** Pending deliveries due at `now`, claimed for `leaseMs` so that no other replica sends them meanwhile. */
  claimNotifications(now: number, limit: number, leaseMs: number): Promise<Notification[]>;
  /** Delivered, or to be retried at `retryAt`, or given up (retryAt null and not ok). */
  settleNotification(id: number, r: { ok: boolean; now: number; retryAt: number | null; error: string | null }): Promise<void>;

  // ---- cluster leadership (a lease row per role; the epoch fences a deposed leader's writes)
  /**
   * Takes or renews the lease of `role` for `holder` for `ttlMs` by the store's clock. A holder whose lease
   * is still valid renews it with the same epoch; taking a free or expired lease (also one's own, once
   * expired) increments the epoch, so every write fenced with an older epoch is refused from then on.
   */
  acquireLeadership(role: string, holder: string, ttlMs: number): Promise<LeadershipState>;
  /** Gives the lease up at once (clean shutdown) so that a follower takes over without waiting for expiry. */
  releaseLeadership(role: string, holder: string): Promise<void>;
  /** Who holds the lease of `role` now (null when nobody holds a valid lease). */
  getLeadership(role: string): Promise<{ holder: string | null; epoch: number; expiresAt: number } | null>;

  // ---- recurring tasks (definitions and their occurrences)
  /** Active definitions whose next occurrence is due at `now` (ids, earliest first), and the earliest next instant overall. */
  dueDefinitions(now: number, limit: number): Promise<{ ids: number[]; nextAt: number | null }>;
  /**
   * Expands one due definition in one transaction: catch-up and the overlap policy (src/domain/occurrences),
   * occurrences created (each instant once: the unique index (parent_id, occurrence_at)), missed and skipped
   * instants recorded as events on the definition, live ones cancelled for `replace`, and the definition's
   * next instant advanced by compare-and-set. Null when it was not due (another replica got there first).
   */
  expandOccurrences(definitionId: number, now: number, opts: ExpandOptions): Promise<ExpandResult | null>;
  /** Overlap `queue`: releases the oldest held occurrence of every definition whose previous occurrence ended. */
  releaseQueuedOccurrences(now: number, limit: number): Promise<Task[]>;
  /** Stops creating occurrences (idempotent). NOT_RECURRING unless a recurring definition; TASK_FINISHED once done/cancelled. */
  pauseSchedule(id: number, owner: string | null, opts: { now: number; actor: string }): Promise<{ task: Task; changed: boolean }>;
  /** Continues from the first occurrence after now; the instants that passed while paused are not run. */
  resumeSchedule(id: number, owner: string | null, opts: { now: number; actor: string }): Promise<{ task: Task; changed: boolean }>;
  /** Replaces the schedule (already validated); it takes effect from the next occurrence after now. */
  updateSchedule(id: number, owner: string | null, spec: ScheduleSpec, opts: { now: number; actor: string }): Promise<Task>;
}

export interface ExpandOptions {
  actor: string;
  /** Leader's fencing epoch; when given and no longer current, NOT_LEADER and nothing changes. */
  epoch?: number | null;
  maxCatchUp?: number;
  maxEnumerate?: number;
  maxQueued?: number;
}

export interface ExpandResult {
  definition: Task;
  created: Task[];
  /** Instants recorded missed (downtime), counting the bulk record; an estimate when not exact. */
  missed: number;
  skipped: number;
  /** Runs of replaced occurrences asked to stop: wake their workers. */
  runsToStop: Run[];
}

export interface LeadershipState {
  leader: boolean;
  /** The current epoch of the role (this holder's fencing epoch when leader). */
  epoch: number;
  /** The current holder (this one when leader), null when the lease is free. */
  holder: string | null;
  /** When the lease ends by the store's clock. */
  expiresAt: number;
}
