// The resource manager's pure placement core. The server calls plan() once per pass with a snapshot the
// store loaded, then hands plan.placements to Store.applyPlan (which re-checks them in one transaction).

export { DEFAULT_SCHEDULER_CONFIG, type Quota, resolveConfig, type SchedulerConfig } from './config.js';
export { type Explanation, type ExplanationReason, explain, formatWhen } from './explain.js';
export { effectivePriority, type Plan, type PlanStats, plan, type Reservation, type Snapshot } from './plan.js';
export { REASONS, type ReasonCode } from './reasons.js';
