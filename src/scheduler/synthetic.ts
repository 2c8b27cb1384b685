// Builders and a seeded random source for the simulator, benchmarks and tests: full domain objects from the
// few fields that matter to placement, so that nothing else has to spell out a Task or a Worker.

import { DEFAULT_RETRY, type Executor, type Task } from '../domain/task.js';
import type { WorkerWithLoad } from '../domain/worker.js';

/** mulberry32: a small, fast, seeded PRNG; returns floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A lognormal sample with the given median and sigma (Box–Muller). */
export function lognormal(rand: () => number, median: number, sigma: number): number {
  const u = Math.max(rand(), 1e-12);
  const v = rand();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return median * Math.exp(sigma * z);
}

export interface TaskInit {
  id: number;
  owner?: string;
  cpus?: number; // millicores
  memory?: number; // bytes
  ports?: number;
  portNames?: string[];
  priority?: number;
  dueAt?: number;
  delayTolerance?: number;
  executionCap?: number;
  executor?: Executor;
  constraints?: Record<string, string>;
  placement?: 'binpack' | 'spread' | null;
}

const SHARED_ENV: Record<string, string> = Object.freeze({}) as Record<string, string>;
const SHARED_LABELS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const SHARED_CMD: string[] = Object.freeze(['true']) as unknown as string[];

export function makeTask(i: TaskInit): Task {
  const dueAt = i.dueAt ?? 0;
  const delayTolerance = i.delayTolerance ?? 3_600_000;
  return {
    id: i.id,
    owner: i.owner ?? 'alice',
    name: `t${i.id}`,
    command: SHARED_CMD,
    shell: false,
    script: null,
    scriptPath: null,
    image: null,
    executor: i.executor ?? 'shell',
    env: SHARED_ENV,
    resources: { category: null, cpus: i.cpus ?? 1000, memory: i.memory ?? 1024 ** 3, ports: i.ports ?? 0, portNames: i.portNames ?? [] },
    constraints: i.constraints ?? SHARED_LABELS,
    labels: SHARED_LABELS,
    priority: i.priority ?? 50,
    delayTolerance,
    executionCap: i.executionCap ?? 600_000,
    totalAttempts: 1,
    retry: DEFAULT_RETRY,
    schedulingType: 'once',
    schedule: null,
    placement: i.placement ?? null,
    notify: null,
    onDeadlineMiss: 'run',
    parentId: null,
    occurrenceAt: null,
    status: 'waiting',
    attempts: 0,
    dueAt,
    startDeadline: dueAt + delayTolerance,
    createdAt: dueAt,
    updatedAt: dueAt,
    finishedAt: null,
    lastError: null,
    deadlineMissed: false,
    paused: false,
  };
}

export interface LiveInit {
  runId: number;
  taskId: number;
  cpus: number;
  memory: number;
  ports?: number[];
  endsBy: number;
  owner?: string;
}

export interface WorkerInit {
  id: string;
  name?: string;
  cpus: number;
  memory: number;
  ports?: { from: number; to: number } | null;
  labels?: Record<string, string>;
  executors?: Executor[];
  state?: WorkerWithLoad['state'];
  live?: LiveInit[];
  /** Allocated beyond the live runs (defaults to their sum). */
  allocated?: { cpus: number; memory: number; ports: number[] };
}

export function makeWorker(i: WorkerInit): WorkerWithLoad {
  const live = (i.live ?? []).map((r) => ({ ...r, ports: r.ports ?? [] }));
  const allocated = i.allocated ?? {
    cpus: live.reduce((s, r) => s + r.cpus, 0),
    memory: live.reduce((s, r) => s + r.memory, 0),
    ports: live.flatMap((r) => r.ports),
  };
  return {
    id: i.id,
    name: i.name ?? i.id,
    capacity: { cpus: i.cpus, memory: i.memory, ports: i.ports === undefined ? { from: 20000, to: 20099 } : i.ports },
    labels: i.labels ?? {},
    executors: i.executors ?? ['shell'],
    enforcement: { memory: 'none', cpu: 'none' },
    version: 'sim',
    hostname: i.id,
    state: i.state ?? 'active',
    registeredAt: 0,
    lastSeenAt: 0,
    allocated,
    live,
  };
}
