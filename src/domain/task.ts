// The task and run model: every field of the seed's table, plus what users expect. Pure types.

import type { Allocation, ResourceRequest } from './resources.js';
import type { RunOutcome, RunState, TaskStatus } from './status.js';

export type SchedulingType = 'once' | 'daily' | 'weekly' | 'monthly' | 'annually' | 'cron';
export const SCHEDULING_TYPES: readonly SchedulingType[] = ['once', 'daily', 'weekly', 'monthly', 'annually', 'cron'];

export type Executor = 'shell' | 'docker';
export const EXECUTORS: readonly Executor[] = ['shell', 'docker'];

export type OverlapPolicy = 'skip' | 'queue' | 'allow' | 'replace';
export type Placement = 'binpack' | 'spread';
export type DeadlineMissPolicy = 'run' | 'expire';

/** A recurrence. `once` with a future startAt is a delayed task. Expanded by src/domain/recurrence. */
export interface ScheduleSpec {
  type: SchedulingType;
  /** Local time of day "HH:MM" (daily, weekly, monthly, annually). */
  at?: string;
  /** weekly: weekdays ("mon".."sun"); monthly: day of month 1–31 or "last"; annually: "MM-DD". */
  on?: string | number | Array<string | number>;
  /** cron: a 5- or 6-field expression (seconds first when 6). */
  cron?: string;
  /** IANA zone; default UTC. */
  timezone: string;
  startAt?: number; // epoch ms
  endAt?: number; // epoch ms
  maxOccurrences?: number;
  overlap: OverlapPolicy;
}

export interface RetryPolicy {
  /** Base of the exponential backoff, ms. */
  backoff: number;
  /** Cap of one backoff delay, ms. */
  maxDelay: number;
  /** Exit codes that fail the task at once, whatever attempts remain. */
  noRetryExitCodes: number[];
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({ backoff: 1000, maxDelay: 300_000, noRetryExitCodes: [] });

export interface NotifySpec {
  url: string;
  events: string[];
}

/** A task after validation and normalisation: what the store writes. */
export interface NewTask {
  name: string;
  /** argv, run without a shell unless `shell` is set. Empty when `script` or `scriptPath` is used. */
  command: string[];
  shell: boolean;
  /** An inline script stored with the task, written into the run's directory. */
  script: string | null;
  /** A script under the worker's scripts root. */
  scriptPath: string | null;
  image: string | null;
  executor: Executor;
  env: Record<string, string>;
  resources: ResourceRequest;
  /** Constraints on worker labels: every key must equal on the worker. */
  constraints: Record<string, string>;
  labels: Record<string, string>;
  priority: number;
  delayTolerance: number; // ms
  executionCap: number; // ms
  totalAttempts: number; // maximum executions, first included
  retry: RetryPolicy;
  schedulingType: SchedulingType;
  schedule: ScheduleSpec | null;
  placement: Placement | null;
  notify: NotifySpec | null;
  onDeadlineMiss: DeadlineMissPolicy;
  /** When the task becomes due (epoch ms); null means "now" as judged by the store's clock at insert. */
  dueAt: number | null;
  /** For an occurrence of a recurring task: its parent and scheduled instant. */
  parentId: number | null;
  occurrenceAt: number | null;
}

export interface Task extends Omit<NewTask, 'dueAt'> {
  id: number;
  owner: string;
  status: TaskStatus;
  /** Attempts claimed so far (a run was allocated). */
  attempts: number;
  dueAt: number;
  /** dueAt + delayTolerance of the current occurrence/attempt window. */
  startDeadline: number;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  lastError: string | null;
  /** Whether a deadline-missed event was already raised for this task. */
  deadlineMissed: boolean;
  /** Whether a recurring task is paused (on an occurrence: held back by overlap `queue`). */
  paused: boolean;
  /** Only on a recurring definition (schedule not once, no parent): where its occurrences stand. */
  recurrence?: RecurrenceState;
}

/** A recurring definition is never placed itself; the occurrence loop creates its occurrences. */
export interface RecurrenceState {
  /** The next scheduled instant; null when paused or when the schedule is over. */
  nextOccurrenceAt: number | null;
  /** Watermark: every instant up to here was handled (created, missed or skipped). */
  lastOccurrenceAt: number | null;
  /** Occurrences created so far (what maxOccurrences counts). */
  occurrencesCreated: number;
}

export interface RunUsage {
  peakMemory: number | null; // bytes
  cpuSeconds: number | null;
}

export interface Run {
  id: number;
  taskId: number;
  attempt: number;
  workerId: string;
  workerName: string;
  /** Fencing token: every heartbeat, log write and result must carry it. */
  leaseToken: string;
  leaseExpiresAt: number;
  state: RunState;
  allocation: Allocation;
  assignedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  exitCode: number | null;
  outcome: RunOutcome | null;
  reason: string | null;
  cancelRequested: boolean;
  usage: RunUsage;
}

/** One entry of the audit trail: every change of a task or a run. */
export interface TaskEventRecord {
  id: number;
  taskId: number;
  runId: number | null;
  at: number;
  actor: string; // user id, "scheduler", "worker:<name>", "monitor"
  type: string; // e.g. task.submitted, task.claimed, run.started, run.succeeded, task.retry_scheduled, task.deadline_missed
  from: string | null;
  to: string | null;
  reason: string | null;
}
