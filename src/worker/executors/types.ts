// The seam between the agent and the things that run a task (shell today, docker later). An executor starts
// one assignment and hands back a RunningRun: a handle to kill it and a promise of how it ended. The agent
// owns everything protocol-related (tokens, reports, spooling); an executor only runs and observes.

import type { RunOutcome } from '../../domain/status.js';
import type { RunUsage } from '../../domain/task.js';
import type { WireAssignment } from '../../protocol/worker-api.js';

export type LogStream = 'stdout' | 'stderr' | 'system';

/** Where an executor writes what a run prints. Never blocks: the sink buffers and drops past its bounds. */
export interface LogSink {
  write(stream: LogStream, data: string, at?: number): void;
}

/** Why a run is being stopped from outside. */
export type KillReason = 'cancelled' | 'timed_out' | 'orphaned' | 'shutdown';

/** How a run stopped from outside ends, whatever executor ran it. */
export const KILL_OUTCOMES: Readonly<Record<KillReason, { outcome: RunOutcome; reason: string }>> = {
  timed_out: { outcome: 'timed_out', reason: 'execution_cap_exceeded' },
  cancelled: { outcome: 'cancelled', reason: 'cancelled' },
  orphaned: { outcome: 'lost', reason: 'lease_stale' },
  // The worker is draining: not the user's cancel, so the queue manager retries the task elsewhere.
  shutdown: { outcome: 'cancelled', reason: 'worker_drain' },
};

export interface ExecResult {
  outcome: RunOutcome;
  exitCode: number | null;
  reason: string | null;
  startedAt: number | null;
  finishedAt: number;
  usage: RunUsage;
}

export interface ExecContext {
  logs: LogSink;
  /** Called once the process exists (the run has started). */
  onStarted(at: number): void;
}

export interface RunningRun {
  readonly runId: number;
  /** Stops the run: SIGTERM to the whole tree, a grace period, then SIGKILL. Idempotent. */
  kill(reason: KillReason): void;
  /** Settles once the run has ended and everything it started is gone. Never rejects. */
  readonly done: Promise<ExecResult>;
}

export interface Executor {
  readonly name: 'shell' | 'docker';
  start(assignment: WireAssignment, ctx: ExecContext): RunningRun;
  /** Releases what the executor holds (watchers, timers). */
  close?(): Promise<void>;
}
