// The placement core on a virtual clock, for what-if questions and benchmarks. Tasks have a true duration
// the scheduler cannot see; it only knows their execution caps. Two baselines run on the same clock:
// FIFO first-fit (strict arrival order, the head blocks) and EDF (earliest start deadline first, first fit,
// no blocking).

import type { Task } from '../domain/task.js';
import type { WorkerWithLoad } from '../domain/worker.js';
import type { SchedulerConfig } from './config.js';
import { MinHeap } from './heap.js';
import { plan } from './plan.js';
import { lognormal, makeTask, makeWorker, rng } from './synthetic.js';

export interface SimTask {
  id: number;
  owner: string;
  arrival: number; // ms on the virtual clock; also the task's due time
  cpus: number; // millicores
  memory: number; // bytes
  priority: number;
  delayTolerance: number; // ms
  duration: number; // true run time, ms (hidden from the scheduler)
  cap: number; // execution cap, ms (>= duration here)
}

export interface SimWorker {
  id: string;
  cpus: number;
  memory: number;
}

export type Policy = 'tsched' | 'fifo' | 'edf';

export interface SimOptions {
  policy: Policy;
  config?: Partial<SchedulerConfig>;
  /** Candidates handed to one tsched pass, like Store.loadCandidates' limit. */
  candidateLimit?: number;
}

export interface SimResult {
  policy: Policy;
  makespan: number;
  meanWait: number;
  p99Wait: number;
  /** Share of tasks started by their start deadline (arrival + delay tolerance). */
  hitRate: number;
  passes: number;
  /** Start time per task id. */
  starts: Map<number, number>;
}

interface Running {
  end: number;
  worker: number;
  task: SimTask;
  start: number;
}

/** Min-heap by end time (then task id, for determinism). */
/** Running tasks by when they end (then by id, so the order is deterministic). */
const endHeap = () => new MinHeap<Running>((x, y) => x.end < y.end || (x.end === y.end && x.task.id < y.task.id));

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

/** max(longest task, Σ cpu·time ÷ cpu capacity, Σ memory·time ÷ memory capacity): no schedule can beat it. */
export function makespanLowerBound(workers: SimWorker[], tasks: SimTask[]): number {
  const capC = workers.reduce((s, w) => s + w.cpus, 0);
  const capM = workers.reduce((s, w) => s + w.memory, 0);
  let longest = 0;
  let cpuTime = 0;
  let memTime = 0;
  for (const t of tasks) {
    longest = Math.max(longest, t.duration);
    cpuTime += t.cpus * t.duration;
    memTime += t.memory * t.duration;
  }
  return Math.max(longest, cpuTime / capC, memTime / capM);
}

export function simulate(workers: SimWorker[], tasks: SimTask[], opts: SimOptions): SimResult {
  const W = workers.length;
  const freeC = workers.map((w) => w.cpus);
  const freeM = workers.map((w) => w.memory);
  const live: Array<Map<number, Running>> = workers.map(() => new Map());
  const arrivals = [...tasks].sort((a, b) => a.arrival - b.arrival || a.id - b.id);
  const running = endHeap();
  const starts = new Map<number, number>();
  const domainTasks = new Map<number, Task>();
  let waiting: SimTask[] = [];
  let next = 0;
  let now = arrivals.length > 0 ? arrivals[0].arrival : 0;
  let passes = 0;
  let lastEnd = now;
  const limit = opts.candidateLimit ?? 10_000;
  const cfg: Partial<SchedulerConfig> = { explain: false, ...opts.config };

  const start = (t: SimTask, w: number) => {
    freeC[w] -= t.cpus;
    freeM[w] -= t.memory;
    const r: Running = { end: now + Math.min(t.duration, t.cap), worker: w, task: t, start: now };
    live[w].set(t.id, r);
    running.push(r);
    starts.set(t.id, now);
  };
  const firstFit = (t: SimTask): number => {
    for (let w = 0; w < W; w++) if (freeC[w] >= t.cpus && freeM[w] >= t.memory) return w;
    return -1;
  };
  const toTask = (t: SimTask): Task => {
    let d = domainTasks.get(t.id);
    if (!d) {
      d = makeTask({
        id: t.id,
        owner: t.owner,
        cpus: t.cpus,
        memory: t.memory,
        priority: t.priority,
        dueAt: t.arrival,
        delayTolerance: t.delayTolerance,
        executionCap: t.cap,
      });
      domainTasks.set(t.id, d);
    }
    return d;
  };

  while (next < arrivals.length || waiting.length > 0 || running.size > 0) {
    // Advance to the next event: an arrival or a completion.
    const na = next < arrivals.length ? arrivals[next].arrival : Number.POSITIVE_INFINITY;
    const nc = running.size > 0 ? (running.peek() as Running).end : Number.POSITIVE_INFINITY;
    const t = Math.min(na, nc);
    if (t === Number.POSITIVE_INFINITY) break; // waiting tasks that can never fit
    now = Math.max(now, t);
    while (running.size > 0 && (running.peek() as Running).end <= now) {
      const r = running.pop();
      freeC[r.worker] += r.task.cpus;
      freeM[r.worker] += r.task.memory;
      live[r.worker].delete(r.task.id);
      lastEnd = Math.max(lastEnd, r.end);
    }
    while (next < arrivals.length && arrivals[next].arrival <= now) waiting.push(arrivals[next++]);
    if (waiting.length === 0) continue;
    passes++;
    if (opts.policy === 'fifo') {
      let k = 0;
      while (k < waiting.length) {
        const w = firstFit(waiting[k]);
        if (w < 0) break;
        start(waiting[k], w);
        k++;
      }
      waiting = waiting.slice(k);
    } else if (opts.policy === 'edf') {
      waiting.sort((a, b) => a.arrival + a.delayTolerance - (b.arrival + b.delayTolerance) || a.id - b.id);
      waiting = waiting.filter((t) => {
        const w = firstFit(t);
        if (w < 0) return true;
        start(t, w);
        return false;
      });
    } else {
      // What the store would hand in: best first by priority, then start deadline, then id.
      let candidates = waiting;
      if (waiting.length > limit) {
        waiting.sort((a, b) => b.priority - a.priority || a.arrival + a.delayTolerance - (b.arrival + b.delayTolerance) || a.id - b.id);
        candidates = waiting.slice(0, limit);
      }
      const snapshot: WorkerWithLoad[] = workers.map((w, i) =>
        makeWorker({
          id: w.id,
          cpus: w.cpus,
          memory: w.memory,
          ports: null,
          live: [...live[i].values()].map((r) => ({
            runId: r.task.id,
            taskId: r.task.id,
            cpus: r.task.cpus,
            memory: r.task.memory,
            endsBy: r.start + r.task.cap,
            owner: r.task.owner,
          })),
        }),
      );
      const p = plan({ workers: snapshot, tasks: candidates.map(toTask) }, now, cfg);
      if (p.placements.length > 0) {
        const byId = new Map(candidates.map((t) => [t.id, t]));
        const index = new Map(workers.map((w, i) => [w.id, i]));
        const placed = new Set<number>();
        for (const d of p.placements) {
          start(byId.get(d.taskId) as SimTask, index.get(d.workerId) as number);
          placed.add(d.taskId);
        }
        waiting = waiting.filter((t) => !placed.has(t.id));
      }
    }
  }

  const waits: number[] = [];
  let hits = 0;
  let first = Number.POSITIVE_INFINITY;
  for (const t of tasks) {
    first = Math.min(first, t.arrival);
    const s = starts.get(t.id);
    if (s === undefined) continue;
    waits.push(s - t.arrival);
    if (s <= t.arrival + t.delayTolerance) hits++;
  }
  waits.sort((a, b) => a - b);
  return {
    policy: opts.policy,
    makespan: lastEnd - (tasks.length > 0 ? first : 0),
    meanWait: waits.reduce((s, x) => s + x, 0) / Math.max(1, waits.length),
    p99Wait: percentile(waits, 0.99),
    hitRate: tasks.length > 0 ? hits / tasks.length : 1,
    passes,
    starts,
  };
}

export interface WorkloadSpec {
  seed: number;
  tasks: number;
  workers: number;
  workerCpus?: number;
  workerMemory?: number;
  owners?: number;
  /** Offered load as a fraction of capacity (Poisson arrivals); omit for a batch that all arrives at 0. */
  load?: number;
  /** Median delay tolerance, ms. */
  toleranceMedianMs?: number;
}

/** A seeded synthetic workload: lognormal cpu, memory and durations; caps 1–3× the true duration. */
export function workload(spec: WorkloadSpec): { workers: SimWorker[]; tasks: SimTask[] } {
  const rand = rng(spec.seed);
  const wc = spec.workerCpus ?? 16_000;
  const wm = spec.workerMemory ?? 64 * 1024 ** 3;
  const workers: SimWorker[] = Array.from({ length: spec.workers }, (_, i) => ({
    id: `w${String(i).padStart(4, '0')}`,
    cpus: wc,
    memory: wm,
  }));
  const owners = spec.owners ?? 4;
  const tasks: SimTask[] = [];
  for (let i = 0; i < spec.tasks; i++) {
    const cpus = Math.min(wc, Math.max(100, Math.round(lognormal(rand, 1000, 0.8) / 50) * 50));
    const memory = Math.min(wm, Math.max(64 * 1024 ** 2, Math.round(lognormal(rand, 2 * 1024 ** 3, 0.9))));
    const duration = Math.min(3_600_000, Math.max(1000, Math.round(lognormal(rand, 60_000, 1.0))));
    const cap = Math.round(duration * (1 + 2 * rand()));
    const delayTolerance = Math.max(10_000, Math.round(lognormal(rand, spec.toleranceMedianMs ?? 600_000, 1.0)));
    tasks.push({
      id: i + 1,
      owner: `u${Math.floor(rand() * owners)}`,
      arrival: 0,
      cpus,
      memory,
      priority: 50,
      delayTolerance,
      duration,
      cap,
    });
  }
  if (spec.load !== undefined) {
    // Arrival rate that offers `load` of the bottleneck resource.
    const capC = wc * spec.workers;
    const capM = wm * spec.workers;
    const meanC = tasks.reduce((s, t) => s + t.cpus * t.duration, 0) / tasks.length;
    const meanM = tasks.reduce((s, t) => s + t.memory * t.duration, 0) / tasks.length;
    const rate = spec.load * Math.min(capC / meanC, capM / meanM); // tasks per ms
    let t = 0;
    for (const task of tasks) {
      t += -Math.log(1 - rand()) / rate;
      task.arrival = Math.round(t);
    }
  }
  return { workers, tasks };
}
