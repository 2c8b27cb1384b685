// The queue manager's rules, pure: what a finished run means for its task, and when a retry is due.

import type { RunOutcome, TaskEvent } from './status.js';
import { taskEventForOutcome } from './status.js';
import type { RetryPolicy } from './task.js';

/**
 * Exponential backoff with full jitter (AWS architecture blog): delay = random(0, min(maxDelay, base·2^(n-1))).
 * `attempt` is the attempt that just failed, 1-based. `random` is in [0, 1).
 */
export function backoffDelay(policy: Pick<RetryPolicy, 'backoff' | 'maxDelay'>, attempt: number, random: number): number {
  const ceiling = Math.min(policy.maxDelay, policy.backoff * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random * ceiling);
}

export interface AfterRunInput {
  outcome: RunOutcome;
  exitCode: number | null;
  attempts: number; // attempts claimed so far, this one included
  totalAttempts: number;
  retry: RetryPolicy;
  now: number;
  random: number;
}

export interface AfterRunDecision {
  event: TaskEvent;
  /** For a retry: when the next attempt becomes due. */
  dueAt: number | null;
  /** Why, in words, for the event trail. */
  reason: string;
}

export function afterRun(i: AfterRunInput): AfterRunDecision {
  const retryable = !(i.outcome === 'failed' && i.exitCode !== null && i.retry.noRetryExitCodes.includes(i.exitCode));
  const left = i.totalAttempts - i.attempts;
  const event = taskEventForOutcome(i.outcome, left, retryable);
  if (event === 'retry') {
    const delay = backoffDelay(i.retry, i.attempts, i.random);
    return { event, dueAt: i.now + delay, reason: `attempt ${i.attempts} of ${i.totalAttempts} ${i.outcome}; retry in ${delay}ms` };
  }
  if (event === 'fail') {
    const why = !retryable
      ? `exit code ${i.exitCode} is not retryable`
      : `attempt ${i.attempts} of ${i.totalAttempts} ${i.outcome}; no attempts left`;
    return { event, dueAt: null, reason: why };
  }
  return { event, dueAt: null, reason: i.outcome };
}
