// Why a candidate was not placed, for machines (reason codes with worker counts) and people (one or two
// sentences). Built only for the unplaced candidates of a pass, from the pass's final state: per-class sorted
// free amounts make the per-filter counts a binary search, and start estimates are memoised per shape.

import { priorityName } from '../domain/priority.js';
import { formatCpus, formatDuration, formatSize } from '../domain/units.js';
import type { SchedulerConfig } from './config.js';
import type { PassState, Ranked, Snapshot, TaskClass } from './plan.js';
import { plan } from './plan.js';
import type { ReasonCode } from './reasons.js';

export interface ExplanationReason {
  code: ReasonCode;
  /** How many workers this reason ruled out (0 for reasons about the task or its owner). */
  workers: number;
  detail?: string;
}

export interface Explanation {
  taskId: number;
  reasons: ExplanationReason[];
  /** 1-based position in its band's processing order this pass. */
  rank: number;
  /** The band's name ("urgent", "normal", or the number). */
  band: string;
  /** True when the task was promoted to the urgent band because its start deadline is near. */
  promoted: boolean;
  /** Epoch ms when it is expected to start, or null when nothing running now would make room. */
  estimatedStart: number | null;
  message: string;
}

interface FinalView {
  sortedC: Float64Array;
  sortedM: Float64Array;
  sortedP: Float64Array;
  best: { cpus: number; memory: number; ports: number };
  bestAt: { cpus: number; memory: number; ports: number };
}

const finals = new WeakMap<TaskClass, FinalView>();

function finalView(st: PassState, cls: TaskClass): FinalView {
  let v = finals.get(cls);
  if (v) return v;
  const members = cls.members;
  const n = members.length;
  const sortedC = new Float64Array(n);
  const sortedM = new Float64Array(n);
  const sortedP = new Float64Array(n);
  const best = { cpus: Number.NEGATIVE_INFINITY, memory: Number.NEGATIVE_INFINITY, ports: Number.NEGATIVE_INFINITY };
  const bestAt = { cpus: -1, memory: -1, ports: -1 };
  for (let k = 0; k < n; k++) {
    const i = members[k];
    sortedC[k] = st.freeC[i];
    sortedM[k] = st.freeM[i];
    sortedP[k] = st.portsFree(i);
    if (st.freeC[i] > best.cpus) [best.cpus, bestAt.cpus] = [st.freeC[i], i];
    if (st.freeM[i] > best.memory) [best.memory, bestAt.memory] = [st.freeM[i], i];
    if (sortedP[k] > best.ports) [best.ports, bestAt.ports] = [sortedP[k], i];
  }
  sortedC.sort();
  sortedM.sort();
  sortedP.sort();
  v = { sortedC, sortedM, sortedP, best, bestAt };
  finals.set(cls, v);
  return v;
}

/** How many values are < x in a sorted array. */
function countBelow(a: Float64Array, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function ordinal(n: number): string {
  const s = n % 100;
  if (s >= 11 && s <= 13) return `${n}th`;
  return `${n}${['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'}`;
}

/** "14:05 UTC (in 12m)", with the date when it is not the same UTC day as now. */
export function formatWhen(at: number, now: number): string {
  const iso = new Date(at).toISOString();
  const sameDay = iso.slice(0, 10) === new Date(now).toISOString().slice(0, 10);
  const clock = sameDay ? `${iso.slice(11, 16)} UTC` : `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
  return at <= now ? `${clock} (now)` : `${clock} (in ${formatDuration(at - now)})`;
}

const STATIC_WORDS: Partial<Record<ReasonCode, string>> = {
  draining: 'draining',
  lost: 'lost',
  stopped: 'stopped',
  executor: 'without its executor',
  labels: 'not matching its constraints',
};

/**
 * The explanation of one unplaced candidate. taskId, rank, band and promoted are set at once; reasons,
 * estimatedStart and message are rendered on first read (strings cost more than the whole placement, and
 * most explanations are never looked at). Rendering only reads the pass's final state and the estimates
 * prepareEstimates() made in rank order, so it gives the same result whenever it happens.
 */
export function buildExplanation(st: PassState, e: Ranked, bandSize: number): Explanation {
  const out = { taskId: e.task.id, rank: e.rank, band: priorityName(e.band), promoted: e.promoted } as Explanation;
  let cache: Pick<Explanation, 'reasons' | 'estimatedStart' | 'message'> | null = null;
  const get = () => {
    cache ??= render(st, e, bandSize);
    return cache;
  };
  Object.defineProperties(out, {
    reasons: { enumerable: true, get: () => get().reasons },
    estimatedStart: { enumerable: true, get: () => get().estimatedStart },
    message: { enumerable: true, get: () => get().message },
  });
  return out;
}

/** Computes, in rank order and within the pass's budget, the start estimates explanations will show. */
export function prepareEstimates(st: PassState, ranked: Ranked[]): void {
  const res = st.reservation;
  for (const e of ranked) {
    const o = e.outcome;
    if (o.kind !== 'unfit' || o.cls.members.length === 0 || (res && res.taskId === e.task.id)) continue;
    const r = e.task.resources;
    const nPorts = r.ports + r.portNames.length;
    if (r.cpus > o.cls.capMax.cpus || r.memory > o.cls.capMax.memory || nPorts > o.cls.capMax.ports) continue;
    if (st.estimate(o.cls, r.cpus, r.memory, nPorts) === undefined) return; // budget spent
  }
}

function render(st: PassState, e: Ranked, bandSize: number): Pick<Explanation, 'reasons' | 'estimatedStart' | 'message'> {
  const t = e.task;
  const now = st.now;
  const cfg = st.cfg;
  const r = t.resources;
  const nPorts = r.ports + r.portNames.length;
  const band = priorityName(e.band);
  const reasons: Explanation['reasons'] = [];
  let estimatedStart: number | null = null;
  let why = '';
  let when = '';
  const o = e.outcome;
  if (o.kind === 'deferred') {
    const slack = t.startDeadline - now;
    reasons.push({
      code: 'deferred_off_peak',
      workers: 0,
      detail: `utilization ${Math.round(o.utilization * 100)}% > ${Math.round(cfg.deferralThreshold * 100)}%; slack ${formatDuration(slack)} > ${formatDuration(cfg.deferralSlackMs)}`,
    });
    why = `Deferred to off-peak: the cluster is ${Math.round(o.utilization * 100)}% busy (threshold ${Math.round(cfg.deferralThreshold * 100)}%) and it has ${formatDuration(slack)} of slack`;
    const bySlack = t.startDeadline - cfg.deferralSlackMs;
    const byHold = t.dueAt + cfg.deferralMaxHoldMs;
    estimatedStart = Math.max(now, Math.min(bySlack, byHold));
    when =
      bySlack <= byHold
        ? `at the latest ≈ ${formatWhen(estimatedStart, now)}, when its slack falls to ${formatDuration(cfg.deferralSlackMs)}, or sooner if utilization drops`
        : `at the latest ≈ ${formatWhen(estimatedStart, now)}, when it has been held ${formatDuration(cfg.deferralMaxHoldMs)}, or sooner if utilization drops`;
  } else if (o.kind === 'quota') {
    const dim = o.code === 'quota_cpu' ? 'cpus' : 'memory';
    const fmt = dim === 'cpus' ? (x: number) => `${formatCpus(x)} cpus` : formatSize;
    const need = o.used + (dim === 'cpus' ? r.cpus : r.memory) - o.limit;
    reasons.push({
      code: o.code,
      workers: 0,
      detail: `${t.owner} uses ${fmt(o.used)} of ${fmt(o.limit)}; this task needs ${fmt(dim === 'cpus' ? r.cpus : r.memory)}`,
    });
    why = `Held by quota: ${t.owner} already runs ${fmt(o.used)} of its ${fmt(o.limit)} ${dim} quota`;
    estimatedStart = st.quotaRelief(t.owner, dim, need);
    if (estimatedStart !== null) when = `≈ ${formatWhen(estimatedStart, now)}, when enough of ${t.owner}'s running tasks reach their caps`;
  } else if (o.kind === 'pass_limit') {
    reasons.push({ code: 'pass_limit', workers: 0, detail: `maxPlacementsPerPass = ${cfg.maxPlacementsPerPass}` });
    why = 'This pass reached its placement limit';
    estimatedStart = now;
    when = 'it is considered in the next pass';
  } else if (o.kind === 'unfit') {
    const cls = o.cls;
    const n = cls.members.length;
    const statics: string[] = [];
    for (const code of ['draining', 'lost', 'stopped', 'executor', 'labels'] as ReasonCode[]) {
      const k = cls.staticCounts.get(code);
      if (k) {
        reasons.push({ code, workers: k, detail: code === 'executor' ? `needs ${t.executor}` : undefined });
        statics.push(`${k} ${STATIC_WORDS[code]}`);
      }
    }
    if (st.W === 0) {
      reasons.push({ code: 'no_workers', workers: 0 });
      why = 'No worker is registered';
    } else if (n === 0) {
      why = `No worker can run it (${statics.join(', ')})`;
    } else {
      const v = finalView(st, cls);
      const name = (i: number) => (i >= 0 ? st.workers[i].name : '?');
      const parts: string[] = [];
      const tooBig: string[] = [];
      if (r.cpus > cls.capMax.cpus) tooBig.push(`${formatCpus(r.cpus)} cpus (largest worker: ${formatCpus(cls.capMax.cpus)})`);
      if (r.memory > cls.capMax.memory) tooBig.push(`${formatSize(r.memory)} memory (largest worker: ${formatSize(cls.capMax.memory)})`);
      if (nPorts > cls.capMax.ports) tooBig.push(`${nPorts} ports (largest range: ${cls.capMax.ports})`);
      if (tooBig.length > 0) {
        reasons.push({ code: 'too_large', workers: n, detail: tooBig.join('; ') });
        parts.push(`it needs more than any worker has: ${tooBig.join(', ')}`);
      } else {
        const cores = (x: number) => formatCpus(x);
        const count = (x: number) => String(x);
        const dims: Array<[ReasonCode, Float64Array, number, number, number, (x: number) => string, string]> = [
          ['cpu', v.sortedC, r.cpus, v.best.cpus, v.bestAt.cpus, cores, 'cpus'],
          ['memory', v.sortedM, r.memory, v.best.memory, v.bestAt.memory, formatSize, 'memory'],
          ['ports', v.sortedP, nPorts, v.best.ports, v.bestAt.ports, count, 'ports'],
        ];
        for (const [code, sorted, need, best, at, fmt, noun] of dims) {
          if (need <= 0) continue;
          const short = countBelow(sorted, need);
          if (short === 0) continue;
          const largest = `${fmt(Math.max(0, best))}${noun === 'memory' ? '' : ` ${noun}`} on ${name(at)}`;
          reasons.push({ code, workers: short, detail: `needs ${fmt(need)} ${noun}; largest free: ${largest}` });
          parts.push(
            short === n
              ? `no worker has ${fmt(need)} ${noun} free (largest free: ${largest})`
              : `${short} of ${n} workers lack ${fmt(need)} ${noun}`,
          );
        }
        if (o.blockedByReservation && st.reservation) {
          const res = st.reservation;
          reasons.push({
            code: 'reserved',
            workers: 1,
            detail: `${name(res.worker)} is held for task ${res.taskId} from ${new Date(res.at).toISOString()}`,
          });
          parts.push(`${name(res.worker)} has room but is held for task ${res.taskId} (it would delay that task's start)`);
        }
        if (parts.length === 0) parts.push('no single worker has cpu, memory and ports free together');
      }
      why = `Waiting: ${parts.join('; ')}`;
      if (statics.length > 0) why += `; also ${statics.join(', ')}`;
      if (tooBig.length === 0) {
        const res = st.reservation;
        if (res && res.taskId === t.id) {
          estimatedStart = res.at;
          when = `reserved on ${name(res.worker)}: ≈ ${formatWhen(res.at, now)}, when ${res.cause}`;
        } else {
          const est = st.estimate(cls, r.cpus, r.memory, nPorts);
          if (est) {
            estimatedStart = est.at;
            when = `≈ ${formatWhen(est.at, now)} at the earliest, when ${est.cause}`;
          } else if (est === undefined) when = 'no start estimate this pass (estimate budget spent)';
        }
      }
    }
  }
  const rankText = `${ordinal(e.rank)} of ${bandSize} in band ${band}${e.promoted ? ' (promoted: its start deadline is near)' : ''}`;
  const message = `${why}. ${rankText}${when ? `; ${when}` : ''}.`;
  return { reasons, estimatedStart, message };
}

/**
 * Why one task would wait if a pass ran now, or null when the task is not among the snapshot's candidates.
 * A task that would be placed gets an explanation with no reasons and estimatedStart = now.
 */
export function explain(snapshot: Snapshot, taskId: number, now: number, config?: Partial<SchedulerConfig>): Explanation | null {
  const task = snapshot.tasks.find((t) => t.id === taskId);
  if (!task) return null;
  const p = plan(snapshot, now, config);
  const e = p.explanations.get(taskId);
  if (e) return e;
  const d = p.placements.find((x) => x.taskId === taskId);
  const worker = snapshot.workers.find((w) => w.id === d?.workerId);
  return {
    taskId,
    reasons: [],
    rank: 0,
    band: priorityName(task.priority),
    promoted: false,
    estimatedStart: now,
    message: `It would start now on ${worker?.name ?? d?.workerId}.`,
  };
}
