// The one state machine every task and run transition goes through. Pure.

import { TschedError } from './errors.js';

export type TaskStatus = 'waiting' | 'in_progress' | 'done' | 'failed' | 'cancelled';
export const TASK_STATUSES: readonly TaskStatus[] = ['waiting', 'in_progress', 'done', 'failed', 'cancelled'];
export const TERMINAL_TASK_STATUSES: readonly TaskStatus[] = ['done', 'failed', 'cancelled'];

/** What can happen to a task. */
export type TaskEvent =
  | 'claim' // a run was allocated on a worker: waiting → in_progress
  | 'succeed' // the run succeeded: in_progress → done
  | 'retry' // the run failed and attempts remain: in_progress → waiting
  | 'fail' // the run failed and no attempts remain, or the deadline policy expired it
  | 'cancel' // a user removed it
  | 'requeue' // `tsched retry`: a failed or cancelled task is queued again with fresh attempts
  | 'exhaust'; // a recurring definition has no occurrence left (endAt, maxOccurrences): waiting → done

const TASK_TRANSITIONS: Record<TaskEvent, Partial<Record<TaskStatus, TaskStatus>>> = {
  claim: { waiting: 'in_progress' },
  succeed: { in_progress: 'done' },
  retry: { in_progress: 'waiting' },
  fail: { in_progress: 'failed', waiting: 'failed' },
  cancel: { waiting: 'cancelled', in_progress: 'cancelled' },
  requeue: { failed: 'waiting', cancelled: 'waiting' },
  exhaust: { waiting: 'done' },
};

/** The next status, or null when the event is illegal in this status. */
export function nextTaskStatus(from: TaskStatus, event: TaskEvent): TaskStatus | null {
  return TASK_TRANSITIONS[event][from] ?? null;
}

/** Like nextTaskStatus, but throws a 409 INVALID_TRANSITION (or TASK_FINISHED) that says why. */
export function transitionTask(from: TaskStatus, event: TaskEvent): TaskStatus {
  const to = nextTaskStatus(from, event);
  if (to) return to;
  if (TERMINAL_TASK_STATUSES.includes(from) && (event === 'cancel' || event === 'claim')) {
    throw new TschedError('TASK_FINISHED', `the task is already ${from}; it cannot be ${event === 'cancel' ? 'cancelled' : 'started'}`, {
      details: { status: from, event },
    });
  }
  throw new TschedError('INVALID_TRANSITION', `a ${from} task cannot ${event}`, { details: { status: from, event } });
}

export function isTerminalTaskStatus(s: TaskStatus): boolean {
  return TERMINAL_TASK_STATUSES.includes(s);
}

/** A run is live while assigned or running; then it ends with exactly one outcome. */
export type RunState = 'assigned' | 'running' | RunOutcome;
export type RunOutcome = 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'lost';
export const RUN_OUTCOMES: readonly RunOutcome[] = ['succeeded', 'failed', 'timed_out', 'cancelled', 'lost'];
export const RUN_STATES: readonly RunState[] = ['assigned', 'running', ...RUN_OUTCOMES];

export type RunEvent = 'start' | RunOutcome;

export function nextRunState(from: RunState, event: RunEvent): RunState | null {
  if (event === 'start') return from === 'assigned' ? 'running' : null;
  if (from === 'assigned' || from === 'running') return event;
  return null;
}

export function isLiveRunState(s: RunState): s is 'assigned' | 'running' {
  return s === 'assigned' || s === 'running';
}

/** The task event a finished run leads to, given how many attempts the task has left. */
export function taskEventForOutcome(outcome: RunOutcome, attemptsLeft: number, retryable: boolean): TaskEvent {
  if (outcome === 'succeeded') return 'succeed';
  // A user's cancel ends the task at once (it never waits for its run), so a run that still owns its task
  // and ends `cancelled` was stopped by the infrastructure — a worker draining or shutting down. That is
  // not the user's wish: the task is retried elsewhere like any interrupted attempt.
  if (outcome === 'cancelled') return attemptsLeft > 0 ? 'retry' : 'fail';
  return attemptsLeft > 0 && retryable ? 'retry' : 'fail';
}
