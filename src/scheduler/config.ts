// Scheduler configuration: defaults, and validation that names the field and what was expected.

import { type FieldIssue, validationError } from '../domain/errors.js';
import type { Placement } from '../domain/task.js';

export interface Quota {
  /** Concurrent millicores. */
  cpus?: number;
  /** Concurrent bytes. */
  memory?: number;
}

export interface SchedulerConfig {
  /** A task whose start deadline is within this window (ms) is promoted to the urgent band. */
  urgencyWindowMs: number;
  /** Cluster utilization (0–1] above which tasks with ample slack are deferred. */
  deferralThreshold: number;
  /** "Ample slack": a task is deferrable only while its slack exceeds this (ms). */
  deferralSlackMs: number;
  /**
   * Longest deferral holds a task past its due time (ms); then it competes like any other. Holding work
   * until its slack runs low helps urgent work under sustained overload, but at high yet bearable load it
   * only stretches the tail of waits (see bench/scheduler/RESULTS.md).
   */
  deferralMaxHoldMs: number;
  /**
   * For this long after its start deadline passed (ms), a task ranks behind the tasks of its band that can
   * still start in time: under overload, starting the late one first only makes them late too (EDF's
   * domino effect). Then it ranks by its deadline again, i.e. first, which bounds its extra wait. 0: off.
   */
  lateDemotionMs: number;
  /** Default scoring: best-fit (binpack) or least-loaded (spread). A task's own `placement` wins. */
  placement: Placement;
  /** Per-owner limits on concurrent cpus (millicores) and memory (bytes). */
  quotas: Record<string, Quota>;
  /** Limits for owners not named in `quotas`. */
  defaultQuota?: Quota;
  /** Stop after this many placements in one pass (the rest wait for the next pass). */
  maxPlacementsPerPass?: number;
  /** How many distinct start estimates one pass computes for unplaced tasks (each costs a scan of the workers). */
  maxEstimatesPerPass?: number;
  /** Build explanations for unplaced candidates (default true). Simulations and benchmarks may turn this off. */
  explain?: boolean;
}

export const DEFAULT_SCHEDULER_CONFIG: SchedulerConfig = Object.freeze({
  urgencyWindowMs: 120_000,
  deferralThreshold: 0.8,
  deferralSlackMs: 10 * 60_000,
  deferralMaxHoldMs: 60_000,
  lateDemotionMs: 10 * 60_000,
  placement: 'binpack',
  quotas: Object.freeze({}) as Record<string, Quota>,
  maxEstimatesPerPass: 32,
}) as SchedulerConfig;

function checkQuota(path: string, q: unknown, issues: FieldIssue[]): void {
  if (typeof q !== 'object' || q === null) {
    issues.push({ path, message: 'expected an object like { cpus?: millicores, memory?: bytes }' });
    return;
  }
  for (const k of ['cpus', 'memory'] as const) {
    const v = (q as Quota)[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) {
      issues.push({ path: `${path}.${k}`, message: 'expected a number >= 0' });
    }
  }
}

/** Merges a partial config over the defaults and validates it; throws VALIDATION_FAILED naming the field. */
export function resolveConfig(partial: Partial<SchedulerConfig> = {}): SchedulerConfig {
  const c: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG, ...partial };
  const issues: FieldIssue[] = [];
  const nonNeg = (k: keyof SchedulerConfig) => {
    const v = c[k];
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      issues.push({ path: `scheduler.${k}`, message: 'expected a number >= 0' });
  };
  nonNeg('urgencyWindowMs');
  nonNeg('deferralSlackMs');
  nonNeg('deferralMaxHoldMs');
  nonNeg('lateDemotionMs');
  if (!(typeof c.deferralThreshold === 'number' && c.deferralThreshold > 0 && c.deferralThreshold <= 1)) {
    issues.push({ path: 'scheduler.deferralThreshold', message: 'expected a number in (0, 1], e.g. 0.8' });
  }
  if (c.placement !== 'binpack' && c.placement !== 'spread')
    issues.push({ path: 'scheduler.placement', message: 'expected "binpack" or "spread"' });
  for (const k of ['maxPlacementsPerPass', 'maxEstimatesPerPass'] as const) {
    const v = c[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) issues.push({ path: `scheduler.${k}`, message: 'expected an integer >= 0' });
  }
  if (c.explain !== undefined && typeof c.explain !== 'boolean')
    issues.push({ path: 'scheduler.explain', message: 'expected true or false' });
  if (typeof c.quotas !== 'object' || c.quotas === null)
    issues.push({ path: 'scheduler.quotas', message: 'expected an object of owner → quota' });
  else for (const [owner, q] of Object.entries(c.quotas)) checkQuota(`scheduler.quotas.${owner}`, q, issues);
  if (c.defaultQuota !== undefined) checkQuota('scheduler.defaultQuota', c.defaultQuota, issues);
  if (issues.length > 0) throw validationError(issues);
  return c;
}
