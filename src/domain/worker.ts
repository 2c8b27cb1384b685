// Worker nodes as the control plane sees them. Pure types.

import type { Capacity } from './resources.js';
import type { Executor } from './task.js';

export type WorkerState = 'active' | 'draining' | 'lost' | 'stopped';

/** How the worker enforces limits; shown by `tsched workers`. */
export interface Enforcement {
  /** "cgroup-v2", "cgroup-v1", "rss-watch" or "none". */
  memory: string;
  /** "cgroup-v2", "cgroup-v1" or "none". */
  cpu: string;
}

export interface WorkerRegistration {
  name: string;
  capacity: Capacity;
  labels: Record<string, string>;
  executors: Executor[];
  enforcement: Enforcement;
  version: string;
  hostname: string;
}

export interface Worker extends WorkerRegistration {
  id: string;
  state: WorkerState;
  registeredAt: number;
  lastSeenAt: number;
}

/** A worker plus what is allocated on it right now: the resource manager's view. */
export interface WorkerWithLoad extends Worker {
  allocated: { cpus: number; memory: number; ports: number[] };
  /** Live runs on it, with when each will have freed its resources at the latest (assignedAt + cap). */
  /** `owner` (optional, backward compatible) lets the scheduler count per-owner usage for fair share and quotas. */
  live: Array<{ runId: number; taskId: number; cpus: number; memory: number; ports: number[]; endsBy: number; owner?: string }>;
}
