// The resource manager's control loop (leader only): take a snapshot of workers and due candidates, let the
// pure core plan placements, apply the plan in one store transaction, then wake the workers concerned.
// Passes are triggered by events (submit, run ended, worker joined) and coalesced: while a pass runs, any
// number of kicks collapse into one follow-up pass. A slow timer is only a fallback, plus a timer for the
// next task that becomes due (delayed starts, retry backoff).

import type { Logger } from 'pino';
import { plan, type SchedulerConfig } from '../scheduler/index.js';
import type { Assignment, Store } from '../store/port.js';
import { CoalescedLoop } from './coalesced-loop.js';
import type { ServerConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { Wakeups } from './wakeups.js';

const MIN_WINDOW = 64;

export interface SchedulerLoopDeps {
  store: Store;
  config: Readonly<ServerConfig>;
  wakeups: Wakeups;
  log: Logger;
  metrics?: Metrics;
  /** The store's clock (injectable for tests). */
  now: () => Promise<number>;
  /** Fencing epoch of this leader, or null when not fenced (embedded mode). */
  epoch: () => number | null;
  /** Called after runs were created, so that other replicas can wake their workers too. */
  onAssigned?: (workerIds: string[]) => void;
  /** `now` is the store's clock: stamp new runs at commit (see ApplyContext.stampAtCommit). */
  stampAtCommit?: boolean;
}

export class SchedulerLoop {
  private readonly loop: CoalescedLoop;
  readonly stats = { passes: 0, placed: 0, rejected: 0, lastPassMs: 0 };
  /** How many candidates the next pass loads (adaptive, MIN_WINDOW … schedulerBatch). */
  private window = MIN_WINDOW;

  constructor(private deps: SchedulerLoopDeps) {
    this.loop = new CoalescedLoop(
      () => this.pass(),
      (err) => deps.log.warn({ err }, 'scheduling pass failed; retrying on the next kick'),
      deps.config.schedulerIntervalMs,
    );
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Ask for a pass soon. Cheap; call it on every event that may free resources or add work. Resolves when a pass started after the call has ended. */
  kick(): Promise<void> {
    return this.loop.kick();
  }

  /** One pass. Returns true when it placed a whole batch (so another pass should follow at once). */
  async pass(): Promise<boolean> {
    const { store, config } = this.deps;
    const t0 = performance.now();
    const now = await this.deps.now();
    // Load a window sized to what could start, not the whole batch: most passes free a few slots.
    const limit = Math.min(config.schedulerBatch, this.window);
    // Snapshot, plan and apply in one store transaction (see Store.schedulePass). Explanations are
    // computed on demand (GET /explain), not on the hot path.
    const schedulerConfig = { ...this.schedulerConfig(), explain: false };
    const res = await store.schedulePass(
      { limit, urgentBefore: now + config.urgencyWindowMs },
      (snapshot) => plan(snapshot, now, schedulerConfig).placements,
      {
        now,
        leaseMs: config.leaseMs,
        epoch: this.deps.epoch(),
        actor: 'scheduler',
        stampAtCommit: this.deps.stampAtCommit ?? false,
      },
    );
    if (res.skipped === 'no_room') return false;
    if (res.skipped !== null) {
      await this.armDueTimer(now);
      return false;
    }
    const tasks = res.tasks;
    this.stats.passes++;
    if (res.runs.length === 0 && res.rejected.length === 0) {
      await this.armDueTimer(now);
      this.stats.lastPassMs = performance.now() - t0;
      return false;
    }
    this.stats.placed += res.runs.length;
    this.deps.metrics?.placed.inc(res.runs.length);
    this.stats.rejected += res.rejected.length;
    const workerIds = [...new Set(res.runs.map((r) => r.workerId))];
    // Hand the new runs straight to parked polls on this replica (no store round trip on the way to start).
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const mail = new Map<string, Assignment[]>();
    for (const run of res.runs) {
      const task = byId.get(run.taskId);
      if (!task) continue;
      const a: Assignment = {
        run,
        task: { ...task, status: 'in_progress', attempts: run.attempt },
        capRemainingMs: Math.max(0, run.assignedAt + task.executionCap - now),
      };
      const box = mail.get(run.workerId) ?? [];
      box.push(a);
      mail.set(run.workerId, box);
    }
    for (const id of workerIds) {
      const box = mail.get(id);
      if (box) this.deps.wakeups.post(id, box);
      else this.deps.wakeups.wakeWorker(id);
    }
    if (workerIds.length > 0) this.deps.onAssigned?.(workerIds);
    this.stats.lastPassMs = performance.now() - t0;
    this.deps.metrics?.passSeconds.observe(this.stats.lastPassMs / 1000);
    // Grow the window while whole windows get placed (a burst of free capacity: more may fit), otherwise
    // size it to what this pass placed plus a margin — loading rows that cannot start is the cost to avoid.
    const windowFull = tasks.length >= limit && res.runs.length >= tasks.length;
    this.window = windowFull
      ? Math.min(config.schedulerBatch, this.window * 2)
      : Math.max(MIN_WINDOW, Math.min(this.window, Math.ceil(res.runs.length * 1.25)));
    // Rejections mean the snapshot was stale (a concurrent change): plan again with fresh state.
    return res.rejected.length > 0 || windowFull;
  }

  schedulerConfig(): Partial<SchedulerConfig> {
    const c = this.deps.config;
    return {
      urgencyWindowMs: c.urgencyWindowMs,
      deferralThreshold: c.deferralThreshold,
      deferralSlackMs: c.deferralSlackMs,
      deferralMaxHoldMs: c.deferralMaxHoldMs,
      placement: c.placement,
      quotas: c.quotas,
    };
  }

  /** Wake up when the next delayed or backed-off task becomes due. */
  private async armDueTimer(now: number): Promise<void> {
    this.loop.wakeAt(await this.deps.store.nextDueAt(), now);
  }
}
