// The placement pass: order the candidates, filter workers, score, reserve for the blocked head, backfill,
// and say why for everything left waiting. Pure: no I/O, no clock (`now` comes in), no randomness, and no
// iteration over hash maps whose order depends on anything but the input, so equal inputs give equal plans.

import { PRIORITY_NAMES, URGENT_PRIORITY } from '../domain/priority.js';
import type { Allocation } from '../domain/resources.js';
import type { Task } from '../domain/task.js';
import type { WorkerWithLoad } from '../domain/worker.js';
import type { PlacementDecision } from '../store/port.js';
import { type Quota, resolveConfig, type SchedulerConfig } from './config.js';
import { buildExplanation, type Explanation, prepareEstimates } from './explain.js';
import { type Dominant, FitIndex, type Mode } from './fit-index.js';
import { MinHeap } from './heap.js';
import { classKey, TaskClass, type UnfitOutcome } from './task-class.js';

export { TaskClass, type UnfitOutcome } from './task-class.js';

export interface Snapshot {
  /** Workers with what is allocated on them (any state; only active ones take tasks). */
  workers: WorkerWithLoad[];
  /** Waiting, due candidates handed in by the store. */
  tasks: Task[];
  /**
   * What each owner runs now (cpus in millicores, memory in bytes), for fair share and quotas. When absent,
   * it is summed from the live runs' `owner` fields; a store that keeps it per owner saves that scan.
   */
  ownerUsage?: Record<string, { cpus: number; memory: number }>;
}

export interface Reservation {
  taskId: number;
  workerId: string;
  /** When the task is expected to fit there (from the execution caps of what runs on it). */
  at: number;
}

export interface PlanStats {
  candidates: number;
  placed: number;
  unplaced: number;
  deferred: number;
  quotaBlocked: number;
  passLimited: number;
  /** Placements refused on the reserved worker because they would delay the reservation. */
  reservationBlocked: number;
  /** Distinct (executor, constraints) classes, each with its own feasible-worker index. */
  classes: number;
  /** max(cpu, memory) allocated ÷ capacity over active workers, before and after this plan. */
  utilizationBefore: number;
  utilizationAfter: number;
}

export interface Plan {
  placements: PlacementDecision[];
  explanations: Map<number, Explanation>;
  reservations: Reservation[];
  stats: PlanStats;
}

/** What happened to one candidate. */
export type Outcome =
  | { kind: 'placed' }
  | { kind: 'deferred'; utilization: number }
  | { kind: 'quota'; code: 'quota_cpu' | 'quota_memory'; used: number; limit: number }
  | { kind: 'pass_limit' }
  | UnfitOutcome;

interface PassRun {
  endsBy: number;
  cpus: number;
  memory: number;
  ports: number;
  runId: number | null;
  taskId: number;
  owner: string;
}

/** A live run (ports as a list) or a run placed in this pass (ports as a count), referenced, not copied. */
type TimelineEvent = WorkerWithLoad['live'][number] | PassRun;

const portsOf = (e: TimelineEvent): number => (typeof e.ports === 'number' ? e.ports : e.ports.length);

interface Scratch {
  f: Float64Array;
  n: Int32Array;
  u: Uint8Array;
}
/** Free per-worker arrays by worker count (see PassState). */
const SCRATCH = new Map<number, Scratch[]>();

/** A set of ports within a worker's range, as bits: cheaper to make and probe than a Set for a few ports. */
class PortBits {
  private readonly bits: Uint32Array;
  constructor(
    private readonly from: number,
    private readonly to: number,
  ) {
    this.bits = new Uint32Array((Math.max(0, to - from + 1) >>> 5) + 1);
  }

  has(p: number): boolean {
    if (p < this.from || p > this.to) return false;
    const k = p - this.from;
    return (this.bits[k >> 5] & (1 << (k & 31))) !== 0;
  }

  /** Ports outside the range are not tracked: they are never handed out. */
  add(p: number): void {
    if (p < this.from || p > this.to) return;
    const k = p - this.from;
    this.bits[k >> 5] |= 1 << (k & 31);
  }
}

/** Mutable state of one pass; shared with explain.ts. */
export class PassState {
  readonly cfg: SchedulerConfig;
  readonly workers: WorkerWithLoad[];
  readonly W: number;
  readonly freeC: Float64Array;
  readonly freeM: Float64Array;
  /**
   * Free ports per worker, counted on first use (NaN until then): counting reads each worker's port list, and
   * most workers never need it in a pass.
   */
  private readonly freeP: Float64Array;
  readonly capC: Float64Array;
  readonly capM: Float64Array;
  readonly capP: Float64Array;
  readonly active: Uint8Array;
  totalC = 0;
  totalM = 0;
  allocC = 0;
  allocM = 0;
  /** Active workers, for the mean capacity that scales cpu against memory in scores. */
  activeCount = 0;
  readonly classes = new Map<string, TaskClass>();
  private readonly classList: TaskClass[] = [];
  // Which class indexes hold worker i, as linked lists in flat arrays (no per-worker objects): entries from
  // linkHead[i] through linkNext, each naming a class (position in classList) and the slot there.
  private readonly linkHead: Int32Array;
  private linkNext = new Int32Array(0);
  private linkClass = new Int32Array(0);
  private linkSlot = new Int32Array(0);
  // Per-worker state of the few workers a pass touches, by worker index (maps, not arrays over all workers).
  private readonly usedPorts = new Map<number, PortBits>();
  private readonly nextPort: Int32Array;
  readonly passRuns = new Map<number, PassRun[]>();
  private readonly timelines = new Map<number, TimelineEvent[]>();
  /** Per worker: when its first run reaches its cap (NaN: not computed yet). */
  private readonly releaseAt: Float64Array;
  /** Where the per-worker arrays came from (returned by release()). */
  private scratch: Scratch | null;
  readonly ownerUse = new Map<string, OwnerUse>();
  reservation: {
    taskId: number;
    rank: number;
    worker: number;
    at: number;
    extraC: number;
    extraM: number;
    extraP: number;
    cause: string;
  } | null = null;
  private ownerRuns: Map<string, Array<{ endsBy: number; cpus: number; memory: number }>> | null = null;
  estimatesLeft: number;
  readonly estimateMemo = new Map<string, { at: number; cause: string } | null>();

  constructor(
    snapshot: Snapshot,
    readonly now: number,
    cfg: SchedulerConfig,
  ) {
    this.cfg = cfg;
    this.workers = snapshot.workers;
    const W = this.workers.length;
    this.W = W;
    // Per-worker arrays come from a pool: a pass over 10,000 workers needs ~700 KB of them, and allocating
    // that afresh every pass makes the garbage collector run more often. Contents are reset here.
    const b = SCRATCH.get(W)?.pop() ?? { f: new Float64Array(7 * W), n: new Int32Array(2 * W), u: new Uint8Array(W) };
    this.scratch = b;
    b.f.fill(0);
    this.freeC = b.f.subarray(0, W);
    this.freeM = b.f.subarray(W, 2 * W);
    this.freeP = b.f.subarray(2 * W, 3 * W);
    this.capC = b.f.subarray(3 * W, 4 * W);
    this.capM = b.f.subarray(4 * W, 5 * W);
    this.capP = b.f.subarray(5 * W, 6 * W);
    this.releaseAt = b.f.subarray(6 * W, 7 * W).fill(Number.NaN);
    this.active = b.u.fill(0);
    this.linkHead = b.n.subarray(0, W).fill(-1);
    this.nextPort = b.n.subarray(W, 2 * W).fill(0);
    this.estimatesLeft = cfg.maxEstimatesPerPass ?? Number.POSITIVE_INFINITY;
    for (let i = 0; i < W; i++) {
      const w = this.workers[i];
      const cap = w.capacity;
      this.capC[i] = cap.cpus;
      this.capM[i] = cap.memory;
      this.freeC[i] = cap.cpus - w.allocated.cpus;
      this.freeM[i] = cap.memory - w.allocated.memory;
      const range = cap.ports;
      if (range && range.to >= range.from) {
        this.capP[i] = range.to - range.from + 1;
        this.nextPort[i] = range.from;
        this.freeP[i] = Number.NaN;
      }
      if (w.state === 'active') {
        this.active[i] = 1;
        this.activeCount++;
        this.totalC += cap.cpus;
        this.totalM += cap.memory;
        this.allocC += w.allocated.cpus;
        this.allocM += w.allocated.memory;
      }
      if (!snapshot.ownerUsage) {
        for (let k = 0; k < w.live.length; k++) {
          const r = w.live[k];
          if (r.owner !== undefined) this.addOwnerUse(r.owner, r.cpus, r.memory);
        }
      }
    }
    if (snapshot.ownerUsage) {
      for (const owner of Object.keys(snapshot.ownerUsage).sort()) {
        const u = snapshot.ownerUsage[owner];
        this.addOwnerUse(owner, u.cpus, u.memory);
      }
    }
  }

  /** Gives the per-worker arrays back to the pool; the state must not be used afterwards. */
  release(): void {
    const b = this.scratch;
    if (!b) return;
    this.scratch = null;
    const list = SCRATCH.get(this.W) ?? [];
    if (list.length < 4) list.push(b);
    SCRATCH.set(this.W, list);
  }

  /** Free ports on worker i. */
  portsFree(i: number): number {
    let f = this.freeP[i];
    if (Number.isNaN(f)) {
      // allocated.ports is the union of the live runs' ports in a consistent snapshot; if a live run holds
      // a port missing there, take() finds out, corrects the count and the search runs again.
      const range = this.workers[i].capacity.ports as { from: number; to: number };
      const taken = this.workers[i].allocated.ports;
      let used = 0;
      for (let k = 0; k < taken.length; k++) if (taken[k] >= range.from && taken[k] <= range.to) used++;
      f = this.capP[i] - used;
      this.freeP[i] = f;
    }
    return f;
  }

  /**
   * What the fit indexes hold for worker i's free ports: the count once made, else the whole range. An index
   * may thus offer a worker short of ports; take() then counts, corrects the index and the search runs again.
   */
  private portsBound(i: number): number {
    const f = this.freeP[i];
    return Number.isNaN(f) ? this.capP[i] : f;
  }

  utilization(): number {
    const c = this.totalC > 0 ? this.allocC / this.totalC : 0;
    const m = this.totalM > 0 ? this.allocM / this.totalM : 0;
    return Math.max(c, m);
  }

  addOwnerUse(owner: string, cpus: number, memory: number): void {
    const u = this.ownerUse.get(owner);
    if (u) {
      u.cpus += cpus;
      u.memory += memory;
    } else this.ownerUse.set(owner, { cpus, memory, quota: this.quotaFor(owner) ?? null });
  }

  /** What an owner runs, as a record this pass updates in place (made, at zero, on first use). */
  useOf(owner: string): OwnerUse {
    let u = this.ownerUse.get(owner);
    if (!u) {
      u = { cpus: 0, memory: 0, quota: this.quotaFor(owner) ?? null };
      this.ownerUse.set(owner, u);
    }
    return u;
  }

  /** Dominant resource share of an owner's use (DRF). */
  shareOf(u: OwnerUse): number {
    return Math.max(this.totalC > 0 ? u.cpus / this.totalC : 0, this.totalM > 0 ? u.memory / this.totalM : 0);
  }

  quotaFor(owner: string): Quota | undefined {
    return Object.hasOwn(this.cfg.quotas, owner) ? this.cfg.quotas[owner] : this.cfg.defaultQuota;
  }

  /** Ports taken on worker i (by its allocation or a live run), made on first use. */
  private portSet(i: number): PortBits {
    let s = this.usedPorts.get(i);
    if (!s) {
      const w = this.workers[i];
      const range = w.capacity.ports as { from: number; to: number };
      s = new PortBits(range.from, range.to);
      const taken = w.allocated.ports;
      for (let k = 0; k < taken.length; k++) s.add(taken[k]);
      const live = w.live;
      for (let k = 0; k < live.length; k++) {
        const ports = live[k].ports;
        for (let j = 0; j < ports.length; j++) s.add(ports[j]);
      }
      this.usedPorts.set(i, s);
    }
    return s;
  }

  /** The task's feasibility class (created on first use; its index is built by indexOf). */
  classOf(t: Task): TaskClass {
    const key = classKey(t);
    let cls = this.classes.get(key);
    if (!cls) {
      cls = new TaskClass(key, t, this);
      this.classes.set(key, cls);
    }
    return cls;
  }

  /**
   * The class's fit index. The first call builds every class's index in one sweep over the workers with room
   * (each worker's labels and executors are read once, while in cache); every candidate must have been
   * counted with cls.need() before.
   */
  indexOf(cls: TaskClass): FitIndex {
    if (!cls.index) this.buildIndexes();
    return cls.index as FitIndex;
  }

  private buildIndexes(): void {
    const classes = [...this.classes.values()];
    let c = Number.POSITIVE_INFINITY;
    let m = Number.POSITIVE_INFINITY;
    let p = Number.POSITIVE_INFINITY;
    for (const cls of classes) {
      c = Math.min(c, cls.minC);
      m = Math.min(m, cls.minM);
      p = Math.min(p, cls.minP);
    }
    const slots: number[][] = classes.map(() => []);
    for (let i = 0; i < this.W; i++) {
      // Free room only shrinks in a pass: a worker without room for the smallest candidate never takes one.
      if (!this.active[i] || this.freeC[i] < c || this.freeM[i] < m || this.portsBound(i) < p) continue;
      const w = this.workers[i];
      for (let k = 0; k < classes.length; k++) {
        const cls = classes[k];
        if (this.freeC[i] < cls.minC || this.freeM[i] < cls.minM || this.portsBound(i) < cls.minP) continue;
        if (cls.reject(w) === null) slots[k].push(i);
      }
    }
    const unitC = this.totalC > 0 ? this.totalC / this.activeCount : 1;
    const unitM = this.totalM > 0 ? this.totalM / this.activeCount : 1;
    let links = 0;
    for (const mine of slots) links += mine.length;
    this.linkNext = new Int32Array(links);
    this.linkClass = new Int32Array(links);
    this.linkSlot = new Int32Array(links);
    let link = 0;
    for (let k = 0; k < classes.length; k++) {
      const mine = slots[k];
      const n = mine.length;
      let topC = 0;
      let topM = 0;
      for (const i of mine) {
        if (this.capC[i] > topC) topC = this.capC[i];
        if (this.capM[i] > topM) topM = this.capM[i];
      }
      const index = new FitIndex(n, unitC, unitM, topC, topM);
      const id = this.classList.length;
      this.classList.push(classes[k]);
      for (let pos = 0; pos < n; pos++) {
        const i = mine[pos];
        index.setLeaf(pos, this.freeC[i], this.freeM[i], this.portsBound(i), this.capC[i], this.capM[i]);
        this.linkNext[link] = this.linkHead[i];
        this.linkClass[link] = id;
        this.linkSlot[link] = pos;
        this.linkHead[i] = link++;
      }
      index.rebuild();
      classes[k].slots = Int32Array.from(mine);
      classes[k].index = index;
    }
  }

  /**
   * Takes resources on worker i for task t; returns the allocation with concrete ports, or null (changing
   * nothing but the worker's corrected free-port count) when the worker has fewer free ports than counted.
   */
  take(i: number, e: Ranked): Allocation | null {
    const nPorts = e.ports;
    // Most tasks ask for no ports: they share one frozen empty list and map (allocations are read-only).
    const ports: number[] = nPorts > 0 ? [] : NO_PORTS;
    // (Names count among the ports: with none asked for, the names list is not even read.)
    const namedPorts: Record<string, number> = nPorts > 0 && e.portNames.length > 0 ? {} : NO_NAMED_PORTS;
    if (nPorts > 0) {
      const range = this.workers[i].capacity.ports;
      if (!range) return null; // the index never offers such a worker
      const used = this.portSet(i);
      let p = this.nextPort[i];
      while (p <= range.to && used.has(p)) p++;
      this.nextPort[i] = p; // everything below is taken
      while (ports.length < nPorts && p <= range.to) {
        if (!used.has(p)) ports.push(p);
        p++;
      }
      if (ports.length < nPorts) {
        let free = 0;
        for (let q = this.nextPort[i]; q <= range.to; q++) if (!used.has(q)) free++;
        this.freeP[i] = free;
        this.reindex(i);
        return null;
      }
      for (const q of ports) used.add(q);
      const names = e.portNames;
      for (let k = 0; k < names.length; k++) namedPorts[names[k]] = ports[k];
    }
    const cpus = e.cpus;
    const memory = e.memory;
    this.freeC[i] -= cpus;
    this.freeM[i] -= memory;
    if (nPorts > 0) this.freeP[i] = this.portsFree(i) - nPorts;
    this.allocC += cpus;
    this.allocM += memory;
    e.use.cpus += cpus;
    e.use.memory += memory;
    let runs = this.passRuns.get(i);
    if (!runs) {
      runs = [];
      this.passRuns.set(i, runs);
    }
    const endsBy = this.now + e.cap;
    runs.push({ endsBy, cpus, memory, ports: nPorts, runId: null, taskId: e.id, owner: e.owner });
    this.timelines.delete(i);
    if (!Number.isNaN(this.releaseAt[i])) this.releaseAt[i] = Math.min(this.releaseAt[i], endsBy);
    this.reindex(i);
    return { cpus, memory, ports, namedPorts };
  }

  /** Pushes worker i's free amounts into every class index that holds it. */
  private reindex(i: number): void {
    for (let e = this.linkHead[i]; e >= 0; e = this.linkNext[e]) {
      const index = this.classList[this.linkClass[e]].index as FitIndex;
      index.update(this.linkSlot[e], this.freeC[i], this.freeM[i], this.portsBound(i), this.capC[i], this.capM[i]);
    }
  }

  /** Runs on worker i ordered by when they free their resources at the latest. */
  private timeline(i: number): TimelineEvent[] {
    let tl = this.timelines.get(i);
    if (!tl) {
      const mine = this.passRuns.get(i);
      tl = mine ? [...this.workers[i].live, ...mine] : this.workers[i].live.slice();
      tl.sort((a, b) => a.endsBy - b.endsBy || a.taskId - b.taskId);
      this.timelines.set(i, tl);
    }
    return tl;
  }

  /**
   * When worker i will have room for (c, m, p) at the latest, counting only the execution caps of what runs
   * there, and which run's end makes the room. null when it never can (too small).
   */
  earliestFit(i: number, c: number, m: number, p: number): { at: number; cause: string; free: [number, number, number] } | null {
    if (this.capC[i] < c || this.capM[i] < m || this.capP[i] < p) return null;
    let fc = this.freeC[i];
    let fm = this.freeM[i];
    let fp = this.portsFree(i);
    if (fc >= c && fm >= m && fp >= p) return { at: this.now, cause: 'now', free: [fc, fm, fp] };
    for (const e of this.timeline(i)) {
      fc += e.cpus;
      fm += e.memory;
      fp += portsOf(e);
      if (fc >= c && fm >= m && fp >= p) {
        const cause =
          e.runId !== null
            ? `run r-${e.runId} (task ${e.taskId}) reaches its cap`
            : `task ${e.taskId}, placed in this pass, reaches its cap`;
        return { at: Math.max(this.now, e.endsBy), cause, free: [fc, fm, fp] };
      }
    }
    return null; // allocations not backed by live runs never free up in this view
  }

  /** When the first run on worker i reaches its cap (no earlier can it gain room); +Infinity when none runs. */
  private firstRelease(i: number): number {
    let t = this.releaseAt[i];
    if (Number.isNaN(t)) {
      t = Number.POSITIVE_INFINITY;
      for (const r of this.workers[i].live) if (r.endsBy < t) t = r.endsBy;
      const mine = this.passRuns.get(i);
      if (mine) for (const r of mine) if (r.endsBy < t) t = r.endsBy;
      t = Math.max(this.now, t);
      this.releaseAt[i] = t;
    }
    return t;
  }

  /**
   * Earliest fit over a class's workers, and the worker. On a big class only the `limit` workers closest to
   * fitting now (smallest shortfall) are examined: the answer is then "soon", not provably "soonest".
   */
  earliestInClass(
    cls: TaskClass,
    c: number,
    m: number,
    p: number,
    limit: number,
    candidates?: Int32Array,
  ): { worker: number; at: number; cause: string; free: [number, number, number] } | null {
    if (c > cls.capMax.cpus || m > cls.capMax.memory || p > cls.capMax.ports) return null;
    let best: { worker: number; at: number; cause: string; free: [number, number, number] } | null = null;
    for (const i of candidates ?? this.closest(cls, c, m, p, limit)) {
      if (this.capC[i] < c || this.capM[i] < m || this.capP[i] < p) continue;
      // Cheap lower bound first (the earliest cap on the worker), so exact timelines are built for few workers.
      if (best !== null && this.firstRelease(i) >= best.at) continue;
      const e = this.earliestFit(i, c, m, p);
      if (e && (best === null || e.at < best.at || (e.at === best.at && i < best.worker))) best = { worker: i, ...e };
    }
    return best;
  }

  /** The members with the largest free shares (cpu + memory), at most `limit` of them, in index order. */
  private roomiest(cls: TaskClass, limit: number): Int32Array {
    const members = cls.members;
    const n = members.length;
    if (n <= limit) return members;
    const d = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const i = members[k];
      d[k] = -(Math.max(0, this.freeC[i]) / (this.capC[i] || 1) + Math.max(0, this.freeM[i]) / (this.capM[i] || 1));
    }
    return this.pick(cls, d, limit);
  }

  /** The `limit` members with the smallest keys, ties by index, in index order. */
  private pick(cls: TaskClass, d: Float64Array, limit: number): Int32Array {
    const members = cls.members;
    const n = members.length;
    const threshold = kthSmallest(Float64Array.from(d), limit - 1);
    const out = new Int32Array(limit);
    let k2 = 0;
    for (let k = 0; k < n && k2 < limit; k++) if (d[k] < threshold) out[k2++] = members[k];
    for (let k = 0; k < n && k2 < limit; k++) if (d[k] === threshold) out[k2++] = members[k];
    return out.subarray(0, k2);
  }

  /** The members with the smallest shortfall for (c, m, p), at most `limit` of them, in index order. */
  private closest(cls: TaskClass, c: number, m: number, p: number, limit: number): Int32Array {
    const members = cls.members;
    const n = members.length;
    if (n <= limit) return members;
    const d = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const i = members[k];
      if (this.capC[i] < c || this.capM[i] < m || this.capP[i] < p) d[k] = Number.POSITIVE_INFINITY;
      else {
        d[k] = Math.max(0, c - this.freeC[i]) / (this.capC[i] || 1) + Math.max(0, m - this.freeM[i]) / (this.capM[i] || 1);
        if (p > 0) d[k] += Math.max(0, p - this.portsFree(i)) / (this.capP[i] || 1);
      }
    }
    return this.pick(cls, d, limit);
  }

  private readonly shortlists = new Map<TaskClass, Int32Array>();

  /** Memoised, budgeted estimate of when a shape fits somewhere in its class. */
  estimate(cls: TaskClass, c: number, m: number, p: number): { at: number; cause: string } | null | undefined {
    const key = `${cls.key}\u0002${c}\u0002${m}\u0002${p}`;
    if (this.estimateMemo.has(key)) return this.estimateMemo.get(key);
    if (this.estimatesLeft <= 0) return undefined;
    this.estimatesLeft--;
    // Estimates come after the pass: one shortlist per class (the workers with the most room) serves them all.
    let shortlist = this.shortlists.get(cls);
    if (!shortlist) {
      shortlist = this.roomiest(cls, ESTIMATE_WORKERS);
      this.shortlists.set(cls, shortlist);
    }
    const e = this.earliestInClass(cls, c, m, p, ESTIMATE_WORKERS, shortlist);
    const v = e ? { at: e.at, cause: e.cause } : null;
    this.estimateMemo.set(key, v);
    return v;
  }

  /** When enough of an owner's running work reaches its cap for `need` more to fit under the quota. */
  quotaRelief(owner: string, dim: 'cpus' | 'memory', need: number): number | null {
    if (!this.ownerRuns) {
      this.ownerRuns = new Map();
      for (let i = 0; i < this.W; i++) {
        for (const r of this.workers[i].live) {
          if (r.owner === undefined) continue;
          const list = this.ownerRuns.get(r.owner) ?? [];
          list.push({ endsBy: r.endsBy, cpus: r.cpus, memory: r.memory });
          this.ownerRuns.set(r.owner, list);
        }
        for (const r of this.passRuns.get(i) ?? []) {
          const list = this.ownerRuns.get(r.owner) ?? [];
          list.push({ endsBy: r.endsBy, cpus: r.cpus, memory: r.memory });
          this.ownerRuns.set(r.owner, list);
        }
      }
      for (const list of this.ownerRuns.values()) list.sort((a, b) => a.endsBy - b.endsBy);
    }
    let freed = 0;
    for (const r of this.ownerRuns.get(owner) ?? []) {
      freed += r[dim];
      if (freed >= need) return Math.max(this.now, r.endsBy);
    }
    return null;
  }
}

/** How many of the workers closest to fitting a reservation (an estimate) examines on a big cluster. */
const RESERVATION_WORKERS = 512;
const ESTIMATE_WORKERS = 64;

/** The k-th smallest value (0-based) of a, by quickselect; reorders a. */
function kthSmallest(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/** The effective band: the task's priority, or the urgent band when its start deadline is near. */
export function effectivePriority(t: Task, now: number, cfg: Pick<SchedulerConfig, 'urgencyWindowMs'>): number {
  return t.startDeadline - now <= cfg.urgencyWindowMs ? Math.max(t.priority, URGENT_PRIORITY) : t.priority;
}

/** What an owner runs: cpus in millicores, memory in bytes. */
export interface OwnerUse {
  cpus: number;
  memory: number;
  /** The owner's quota, looked up once per pass (null: none). */
  quota: Quota | null;
}

interface OwnerQueue {
  use: OwnerUse;
  entries: Ranked[];
  head: number;
  share: number;
}

/** Owner queues by (dominant share, head's slack, head's id). */
function ownerLess(a: OwnerQueue, b: OwnerQueue): boolean {
  if (a.share !== b.share) return a.share < b.share;
  const c = entrySlack(a.entries[a.head], b.entries[b.head]);
  return c < 0;
}

/**
 * Within an owner's queue and between equals: tasks that can still start in time before recently late ones
 * (lateDemotionMs), then least slack (earliest start deadline) first, then FIFO by id. Among equal slack, the longest execution cap goes first: in a batch it bounds the makespan (LPT). Reads the
 * entries' copies of those fields, so sorting and queueing touch no task object.
 */
function entrySlack(a: Ranked, b: Ranked): number {
  return a.late - b.late || a.deadline - b.deadline || b.cap - a.cap || a.id - b.id;
}

function isSorted<T>(a: T[], cmp: (x: T, y: T) => number): boolean {
  for (let k = 1; k < a.length; k++) if (cmp(a[k - 1], a[k]) > 0) return false;
  return true;
}

/** Per-candidate bookkeeping: made once per candidate, read by placement and explanations. */
export interface Ranked {
  task: Task;
  // Copies of the task's ordering fields, read many times per pass (the task object itself is cold).
  deadline: number;
  /** 1 while its start deadline passed less than lateDemotionMs ago: it then ranks behind in-time tasks. */
  late: number;
  dueAt: number;
  cap: number;
  id: number;
  owner: string;
  /** The owner's running use, updated as this pass places its tasks. */
  use: OwnerUse;
  // ...and of its request and scoring, read by placement.
  cpus: number;
  memory: number;
  mode: Mode;
  /** Its feasibility class. */
  cls: TaskClass;
  /** Ports it needs (counted and named), and the names. */
  ports: number;
  portNames: string[];
  band: number;
  promoted: boolean;
  /** 1-based position in its band's processing order. */
  rank: number;
  outcome: Outcome;
}

const NOT_TRIED: Outcome = Object.freeze({ kind: 'pass_limit' });
const PLACED: Outcome = Object.freeze({ kind: 'placed' });
const NO_PORTS: number[] = Object.freeze([]) as unknown as number[];
const NO_NAMED_PORTS: Record<string, number> = Object.freeze({});

export function plan(snapshot: Snapshot, now: number, config?: Partial<SchedulerConfig>): Plan {
  const cfg = resolveConfig(config);
  const st = new PassState(snapshot, now, cfg);
  const utilizationBefore = st.utilization();
  const placements: PlacementDecision[] = [];
  const ranked: Ranked[] = [];
  const stats: PlanStats = {
    candidates: snapshot.tasks.length,
    placed: 0,
    unplaced: 0,
    deferred: 0,
    quotaBlocked: 0,
    passLimited: 0,
    reservationBlocked: 0,
    classes: 0,
    utilizationBefore,
    utilizationAfter: utilizationBefore,
  };
  const maxPlacements = cfg.maxPlacementsPerPass ?? Number.POSITIVE_INFINITY;
  const high = PRIORITY_NAMES.high;

  // Bands, highest first; each band sorted once by slack so owner queues come out sorted. Each candidate's
  // class counts its request, so the class's index leaves out workers too full for all of its candidates.
  const bands = new Map<number, Ranked[]>();
  for (const t of snapshot.tasks) {
    const band = effectivePriority(t, now, cfg);
    const r = t.resources;
    const ports = r.ports + r.portNames.length;
    const cls = st.classOf(t);
    cls.need(r.cpus, r.memory, ports);
    const entry: Ranked = {
      task: t,
      deadline: t.startDeadline,
      late: t.startDeadline < now && now - t.startDeadline < cfg.lateDemotionMs ? 1 : 0,
      dueAt: t.dueAt,
      cap: t.executionCap,
      id: t.id,
      owner: t.owner,
      use: st.useOf(t.owner),
      cpus: r.cpus,
      memory: r.memory,
      mode: t.placement ?? cfg.placement,
      cls,
      ports,
      portNames: r.portNames,
      band,
      promoted: band !== t.priority,
      rank: 0,
      outcome: NOT_TRIED,
    };
    const list = bands.get(band);
    if (list) list.push(entry);
    else bands.set(band, [entry]);
  }
  const bandKeys = [...bands.keys()].sort((a, b) => b - a);

  // The task currently being placed, read by the backfill check (avoids a closure per task).
  let current: Ranked | null = null;
  let rejectedByReservation = false;
  const accept =
    (cls: TaskClass) =>
    (pos: number): boolean => {
      const res = st.reservation;
      if (res === null || cls.slots[pos] !== res.worker || current === null) return true;
      // EASY backfill: either it is gone (by its cap) before the reserved task's start...
      if (now + current.cap <= res.at) return true;
      // ...or the room left at that time is enough for both.
      if (current.cpus <= res.extraC && current.memory <= res.extraM && current.ports <= res.extraP) return true;
      rejectedByReservation = true;
      return false;
    };
  const acceptors = new Map<TaskClass, (pos: number) => boolean>();

  const held: Ranked[] = [];
  /** How many placements existed when each held task was held back (parallel to held). */
  const heldAt: number[] = [];
  /** The resource a request needs the larger share of, cluster-wide. */
  const dominant = (c: number, m: number): Dominant => (st.totalC > 0 && st.totalM > 0 && m / st.totalM > c / st.totalC ? 1 : 0);
  /** Low enough band and ample slack: may wait for off-peak. */
  const delayable = (e: Ranked) => e.band < high && e.deadline - now > cfg.deferralSlackMs && now - e.dueAt < cfg.deferralMaxHoldMs;

  /** Quota, then feasibility and scoring; places the task or records why not. */
  function attempt(entry: Ranked, mayReserve: boolean): boolean {
    const { cpus, memory, ports: nPorts } = entry;
    if (stats.placed >= maxPlacements) {
      entry.outcome = { kind: 'pass_limit' };
      stats.passLimited++;
      return false;
    }
    const use = entry.use;
    const quota = use.quota;
    if (quota !== null) {
      if (quota.cpus !== undefined && use.cpus + cpus > quota.cpus) {
        entry.outcome = { kind: 'quota', code: 'quota_cpu', used: use.cpus, limit: quota.cpus };
        stats.quotaBlocked++;
        return false;
      }
      if (quota.memory !== undefined && use.memory + memory > quota.memory) {
        entry.outcome = { kind: 'quota', code: 'quota_memory', used: use.memory, limit: quota.memory };
        stats.quotaBlocked++;
        return false;
      }
    }
    const cls = entry.cls;
    const index = st.indexOf(cls);
    const dom = dominant(cpus, memory);
    let acc = acceptors.get(cls);
    if (!acc) {
      acc = accept(cls);
      acceptors.set(cls, acc);
    }
    let pos = -1;
    rejectedByReservation = false;
    const knownFail = cls.knownToFail(cpus, memory, nPorts);
    if (!knownFail && index.n > 0) {
      current = entry;
      pos = index.findBest(cpus, memory, nPorts, entry.mode, dom, st.reservation ? acc : null);
      current = null;
    }
    let allocation: Allocation | null = null;
    while (pos >= 0) {
      const i = cls.slots[pos];
      const res = st.reservation;
      allocation = st.take(i, entry);
      if (allocation) {
        if (res !== null && res.worker === i && now + entry.cap > res.at) {
          res.extraC -= cpus;
          res.extraM -= memory;
          res.extraP -= nPorts;
        }
        break;
      }
      // The worker had fewer free ports than its snapshot said; its count is corrected, search again.
      current = entry;
      pos = index.findBest(cpus, memory, nPorts, entry.mode, dom, st.reservation ? acc : null);
      current = null;
    }
    if (pos >= 0 && allocation) {
      const i = cls.slots[pos];
      placements.push({ taskId: entry.id, workerId: snapshot.workers[i].id, allocation });
      entry.outcome = PLACED;
      stats.placed++;
      return true;
    }
    entry.outcome = rejectedByReservation ? cls.unfitReserved : cls.unfit;
    if (rejectedByReservation) stats.reservationBlocked++;
    else if (!knownFail) cls.rememberFailure(cpus, memory, nPorts);
    // The highest-ranked task blocked on resources gets a reservation where it fits soonest, so a stream of
    // smaller tasks cannot starve it (EASY backfilling).
    if (mayReserve && st.reservation === null && !rejectedByReservation && cls.members.length > 0) {
      const e = st.earliestInClass(cls, cpus, memory, nPorts, RESERVATION_WORKERS);
      if (e) {
        st.reservation = {
          taskId: entry.id,
          rank: entry.rank,
          worker: e.worker,
          at: e.at,
          extraC: e.free[0] - cpus,
          extraM: e.free[1] - memory,
          extraP: e.free[2] - nPorts,
          cause: e.cause,
        };
      }
    }
    return false;
  }

  for (const band of bandKeys) {
    const entries = bands.get(band) as Ranked[];
    // The store hands candidates in mostly in this order already; a check is cheaper than a sort's buffers.
    if (!isSorted(entries, entrySlack)) entries.sort(entrySlack);
    // One queue per owner, keyed by the owner's use record (one per owner in a pass).
    const queues = new Map<OwnerUse, OwnerQueue>();
    const order: OwnerQueue[] = [];
    for (const e of entries) {
      let q = queues.get(e.use);
      if (!q) {
        q = { use: e.use, entries: [], head: 0, share: 0 };
        queues.set(e.use, q);
        order.push(q);
      }
      q.entries.push(e);
    }
    const heap = new MinHeap<OwnerQueue>(ownerLess);
    for (const q of order) {
      q.share = st.shareOf(q.use);
      heap.push(q);
    }
    let rank = 0;
    while (heap.size > 0) {
      const q = heap.peek() as OwnerQueue;
      const entry = q.entries[q.head++];
      entry.rank = ++rank;
      ranked.push(entry);
      if (delayable(entry) && st.utilization() > cfg.deferralThreshold) {
        // Off-peak candidate: decided after every other candidate (see below).
        entry.outcome = { kind: 'deferred', utilization: st.utilization() };
        held.push(entry);
        heldAt.push(placements.length);
      } else if (attempt(entry, true)) q.share = st.shareOf(q.use);
      // The queue's key (share, head) changed in place: re-sift it, or drop it when empty.
      if (q.head < q.entries.length) heap.fixTop();
      else heap.pop();
    }
  }

  // Deferral holds delayable work back so that urgent work finds room. When every other candidate that could
  // use the room got it, there is nothing to make room for, and the held tasks go now (in rank order). A held
  // task that then finds no room stays deferred when tasks placed after it was held may have taken the room;
  // when nothing was placed meanwhile, it would not have fit anyway, and its explanation says what is short.
  const pressure = ranked.some((e) => e.outcome.kind === 'unfit' && !delayable(e) && e.outcome.cls.hasMembers());
  for (let h = 0; h < held.length; h++) {
    const entry = held[h];
    if (pressure) {
      stats.deferred++;
      continue;
    }
    const deferred = entry.outcome;
    const placedBefore = heldAt[h];
    if (!attempt(entry, false)) {
      if (entry.outcome.kind === 'unfit' && placements.length > placedBefore) entry.outcome = deferred;
      if (entry.outcome.kind === 'deferred') stats.deferred++;
    }
  }

  const explanations = new Map<number, Explanation>();
  if (cfg.explain !== false) {
    const bandSizes = new Map<number, number>();
    for (const e of ranked) bandSizes.set(e.band, (bandSizes.get(e.band) ?? 0) + 1);
    prepareEstimates(st, ranked);
    for (const e of ranked) {
      if (e.outcome.kind === 'placed') continue;
      explanations.set(e.task.id, buildExplanation(st, e, bandSizes.get(e.band) ?? 0));
    }
  }
  for (const cls of st.classes.values()) cls.index?.release();
  stats.unplaced = snapshot.tasks.length - stats.placed;
  stats.classes = st.classes.size;
  stats.utilizationAfter = st.utilization();
  st.release();
  const res = st.reservation;
  const reservations: Reservation[] = res ? [{ taskId: res.taskId, workerId: snapshot.workers[res.worker].id, at: res.at }] : [];
  return { placements, explanations, reservations, stats };
}
