// What the HTTP routes need from the control plane, in one place, so routes stay thin.

import type { Logger } from 'pino';
import type { Explanation } from '../scheduler/index.js';
import type { Store } from '../store/port.js';
import type { Authenticator } from './auth.js';
import type { ServerConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { Wakeups } from './wakeups.js';

export interface Control {
  store: Store;
  config: Readonly<ServerConfig>;
  wakeups: Wakeups;
  auth: Authenticator;
  log: Logger;
  metrics: Metrics;
  /** The store's clock, or an injected one in tests. */
  now(): Promise<number>;
  /** Something changed that may let tasks start: ask the scheduler for a pass. */
  kick(): void;
  /**
   * Like kick, for work that the queued write `pending` adds or frees. The pass is queued behind the write
   * at once: both stores run queued write transactions in order and group-commit them, so the pass sees
   * the write and shares its commit. Resolves when that pass has ended on this replica (at once on a
   * follower, whose kick goes to the leader, after the write's commit).
   */
  kickAfter(pending: Promise<unknown>): Promise<void>;
  /**
   * Like kickAfter, for room the queued write `pending` frees (a worker's results): on the leader, no pass
   * while the last one placed every due task (SchedulerLoop.kickForRoom), and then resolved at once.
   */
  kickForRoom(pending: Promise<unknown>): Promise<void>;
  /**
   * Before a kickAfter whose answer will take the worker's mail: mail the pass it kicks posts then does not
   * wake the worker's parked poll (see Wakeups.claimMail). Returns the release. A no-op on a follower.
   */
  claimMail(workerId: string): () => void;
  /** A recurring task was submitted, edited or resumed: ask the occurrence loop for a pass. */
  kickOccurrences?(): void;
  /** Why a waiting task is not running. */
  explain(taskId: number, owner: string | null): Promise<Explanation | null>;
  /** Tell other replicas (cluster mode) that these workers have news. */
  notifyWorkers(workerIds: string[]): void;
  /** Tell other replicas that these runs have new output (their log followers may be elsewhere). */
  notifyLogs(runIds: number[]): void;
  isLeader(): boolean;
  /** Cluster mode: this replica's name, the leader's, and the current epoch (absent in embedded mode). */
  describeCluster?: () => { replica: string; leaderReplica: string | null; epoch: number | null };
  version: string;
}
