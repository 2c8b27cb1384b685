// Feasibility classes (Nomad's "computed class"): tasks with the same executor and constraints pass the same
// static filters (worker state, executor, labels), so the filters run once per class and pass, not per task.
//
// A class keeps two views of its workers:
// - the fit index, over only the members with room for the class's smallest candidate this pass. Free room
//   only shrinks during a pass, so a worker left out could never take any of the class's candidates; on a
//   busy cluster most workers are full and the index is a fraction of the cluster.
// - every member with the static filters' counts and the largest capacities, built on first use: only
//   reservations, start estimates and explanations need them.

import type { Executor, Task } from '../domain/task.js';
import type { WorkerWithLoad } from '../domain/worker.js';
import type { FitIndex } from './fit-index.js';
import type { ReasonCode } from './reasons.js';

/** The pass's workers, as a class reads them. */
export interface WorkerView {
  readonly workers: WorkerWithLoad[];
  readonly capC: Float64Array;
  readonly capM: Float64Array;
  readonly capP: Float64Array;
}

/** A candidate that found no room in its class (placement's outcome); one shared object per class and flag. */
export interface UnfitOutcome {
  readonly kind: 'unfit';
  readonly cls: TaskClass;
  /** The only room was on the worker reserved for a higher-ranked task. */
  readonly blockedByReservation: boolean;
}

interface Statics {
  members: Int32Array;
  staticCounts: Map<ReasonCode, number>;
  capMax: { cpus: number; memory: number; ports: number };
}

/** The class key: the executor, then the constraints sorted by label. */
export function classKey(t: Task): string {
  const c = t.constraints;
  // Most tasks have no constraints: their key is the executor, with no key list to build.
  let empty = true;
  for (const _ in c) {
    empty = false;
    break;
  }
  if (empty) return t.executor;
  let key: string = t.executor;
  for (const k of Object.keys(c).sort()) key += `\u0000${k}\u0001${c[k]}`;
  return key;
}

export class TaskClass {
  readonly executor: Executor;
  private readonly ckeys: string[];
  private readonly cvals: string[];
  /** The smallest request (cpu, memory, ports) among this pass's candidates of the class. */
  minC = Number.POSITIVE_INFINITY;
  minM = Number.POSITIVE_INFINITY;
  minP = Number.POSITIVE_INFINITY;
  /** Slot → worker index of the fit index, in worker order (set when the index is built). */
  slots: Int32Array = new Int32Array(0);
  index: FitIndex | null = null;
  /** Shapes known to fit nowhere in this pass, as flat (cpu, memory, ports) triples; only minimal ones. */
  readonly failed: number[] = [];
  // The least cpu, memory and ports over the failed shapes: a request below any of them is not known to fail.
  private failLowC = Number.POSITIVE_INFINITY;
  private failLowM = Number.POSITIVE_INFINITY;
  private failLowP = Number.POSITIVE_INFINITY;
  private statics: Statics | null = null;
  // Outcomes are read-only, so the thousands of unplaced candidates of a pass share these.
  readonly unfit: UnfitOutcome = Object.freeze({ kind: 'unfit', cls: this, blockedByReservation: false });
  readonly unfitReserved: UnfitOutcome = Object.freeze({ kind: 'unfit', cls: this, blockedByReservation: true });

  constructor(
    readonly key: string,
    t: Task,
    private readonly view: WorkerView,
  ) {
    this.executor = t.executor;
    this.ckeys = Object.keys(t.constraints).sort();
    this.cvals = this.ckeys.map((k) => t.constraints[k]);
  }

  /** Counts a candidate's request towards the class's smallest one. */
  need(c: number, m: number, p: number): void {
    if (c < this.minC) this.minC = c;
    if (m < this.minM) this.minM = m;
    if (p < this.minP) this.minP = p;
  }

  /** The first static filter worker w fails, or null when it passes them all. */
  reject(w: WorkerWithLoad): ReasonCode | null {
    if (w.state !== 'active') return w.state === 'lost' ? 'lost' : w.state === 'stopped' ? 'stopped' : 'draining';
    if (!w.executors.includes(this.executor)) return 'executor';
    const labels = w.labels;
    for (let k = 0; k < this.ckeys.length; k++) {
      const key = this.ckeys[k];
      if (!Object.hasOwn(labels, key) || labels[key] !== this.cvals[k]) return 'labels';
    }
    return null;
  }

  /** Worker indexes that pass the static filters, in worker order. */
  get members(): Int32Array {
    return this.loadStatics().members;
  }

  /** Workers failing a static filter, counted by the first filter they fail. */
  get staticCounts(): Map<ReasonCode, number> {
    return this.loadStatics().staticCounts;
  }

  /** Largest total capacity among the members, for "too large" verdicts. */
  get capMax(): { cpus: number; memory: number; ports: number } {
    return this.loadStatics().capMax;
  }

  /** Whether any worker passes the static filters. */
  hasMembers(): boolean {
    return this.slots.length > 0 || this.members.length > 0;
  }

  /** Static membership does not change during a pass, so one scan of the workers serves the whole pass. */
  private loadStatics(): Statics {
    if (this.statics) return this.statics;
    const { workers, capC, capM, capP } = this.view;
    const members = new Int32Array(workers.length);
    let n = 0;
    const staticCounts = new Map<ReasonCode, number>();
    let cpus = 0;
    let memory = 0;
    let ports = 0;
    for (let i = 0; i < workers.length; i++) {
      const why = this.reject(workers[i]);
      if (why !== null) {
        staticCounts.set(why, (staticCounts.get(why) ?? 0) + 1);
        continue;
      }
      members[n++] = i;
      if (capC[i] > cpus) cpus = capC[i];
      if (capM[i] > memory) memory = capM[i];
      if (capP[i] > ports) ports = capP[i];
    }
    this.statics = { members: members.subarray(0, n), staticCounts, capMax: { cpus, memory, ports } };
    return this.statics;
  }

  /** Whether a shape at least as large as one that fit nowhere this pass (so it fits nowhere either). */
  knownToFail(c: number, m: number, p: number): boolean {
    if (c < this.failLowC || m < this.failLowM || p < this.failLowP) return false;
    const f = this.failed;
    for (let j = 0; j < f.length; j += 3) if (c >= f[j] && m >= f[j + 1] && p >= f[j + 2]) return true;
    return false;
  }

  /**
   * Remembers a shape that fits nowhere this pass. Free room only shrinks during a pass, so any shape at
   * least as large fails too; only minimal shapes are kept, so the list stays short on a full cluster.
   */
  rememberFailure(c: number, m: number, p: number): void {
    if (this.knownToFail(c, m, p)) return;
    const f = this.failed;
    let k = 0;
    for (let j = 0; j < f.length; j += 3) {
      if (!(f[j] >= c && f[j + 1] >= m && f[j + 2] >= p)) {
        // keep shapes the new one does not dominate from below
        f[k++] = f[j];
        f[k++] = f[j + 1];
        f[k++] = f[j + 2];
      }
    }
    f.length = k;
    if (k < 64 * 3) {
      f.push(c, m, p);
      // Dropped shapes were at least as large as this one, so the lows only go down.
      if (c < this.failLowC) this.failLowC = c;
      if (m < this.failLowM) this.failLowM = m;
      if (p < this.failLowP) this.failLowP = p;
    }
  }
}
