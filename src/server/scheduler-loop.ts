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
  /**
   * Called after runs were created, so that other replicas can wake their workers too: with the workers
   * whose long poll is not parked on this replica (the others got the runs by mail here).
   */
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
    this.kicks++;
    return this.loop.kick();
  }

  /**
   * Whether the last pass placed every task that was due (its window not full) and nothing has kicked a
   * pass since: then no task waits for room, and room freed now needs no pass (see kickForRoom).
   */
  private drained = false;
  private kicks = 0;

  /**
   * A kick for room that a write frees (a worker's results): none while the queue is drained, for then the
   * pass would find nothing to place. At a low rate that was a second pass per task, and on PostgreSQL a
   * round trip more in the report's commit, which the next submit waited for. Work the write itself adds
   * (a retry) is the caller's to kick for. Returns null when no pass was asked for.
   */
  kickForRoom(): Promise<void> | null {
    return this.drained ? null : this.kick();
  }

  private passes = 0;
  /** The number the next pass to start will have: a kick made now is answered when that pass ends. */
  nextPass(): number {
    return this.passes + 1;
  }

  /** One pass. Returns true when it placed a whole batch (so another pass should follow at once). */
  async pass(): Promise<boolean> {
    const { store, config } = this.deps;
    const seq = ++this.passes;
    const t0 = performance.now();
    // Drained only if nothing kicked while this pass ran (a submit after its snapshot, say).
    this.drained = false;
    const kicks = this.kicks;
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
    if (res.skipped === 'no_tasks') this.drained = this.kicks === kicks;
    if (res.skipped !== null) {
      await this.armDueTimer(now, res.nextDueAt);
      return false;
    }
    const tasks = res.tasks;
    this.stats.passes++;
    if (res.runs.length === 0 && res.rejected.length === 0) {
      this.resize(tasks, [], limit);
      await this.armDueTimer(now, res.nextDueAt);
      this.stats.lastPassMs = performance.now() - t0;
      // A full window of which nothing could start: the next pass looks deeper, at once (see resize).
      return this.grew;
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
    // Other replicas hear only of workers not parked here: on PostgreSQL a NOTIFY per placing pass (and
    // the replica hearing its own) was two more wake-ups per task at low rates.
    const elsewhere: string[] = [];
    for (const id of workerIds) {
      const box = mail.get(id);
      if (box) {
        if (!this.deps.wakeups.post(id, box, Date.now(), seq)) elsewhere.push(id);
      } else {
        this.deps.wakeups.wakeWorker(id);
        elsewhere.push(id);
      }
    }
    if (elsewhere.length > 0) this.deps.onAssigned?.(elsewhere);
    this.stats.lastPassMs = performance.now() - t0;
    this.deps.metrics?.passSeconds.observe(this.stats.lastPassMs / 1000);
    this.resize(tasks, res.runs, limit);
    this.drained = this.kicks === kicks && tasks.length < limit && res.runs.length === tasks.length && res.rejected.length === 0;
    // A window that was not full held every task due now; one due later (a delayed start, a retry's backoff)
    // needs the timer as after an empty pass, or it would wait for the next kick or the fallback interval.
    // The pass read it when it could; otherwise not awaited: the kickers waiting on this pass (a report's
    // answer) need nothing from it. A failed read is retried by the next pass; while stopping, the store may
    // already be closed.
    if (tasks.length < limit)
      void this.armDueTimer(now, res.nextDueAt).catch((err) => {
        if (!this.loop.isStopped) this.deps.log.warn({ err }, 'could not read the next due time; the next pass will');
      });
    // Rejections mean the snapshot was stale (a concurrent change): plan again with fresh state.
    return res.rejected.length > 0 || this.grew;
  }

  private grew = false;
  /**
   * Sizes the next pass's window: as deep as this pass's placements reached in the candidate order, plus a
   * margin (loading rows that cannot start is the cost to avoid), and twice as deep when the placements
   * reached the end of a full window (a burst of room: more may fit) or when a full window held nothing that
   * could start (a blocked head of the queue must not hide the tasks behind it that fit: no head-of-line
   * blocking at the window's edge either). Never beyond schedulerBatch.
   */
  private resize(tasks: readonly { id: number }[], runs: readonly { taskId: number }[], limit: number): void {
    const batch = this.deps.config.schedulerBatch;
    const placed = new Set(runs.map((r) => r.taskId));
    let deepest = 0;
    for (let i = 0; i < tasks.length; i++) if (placed.has(tasks[i]!.id)) deepest = i + 1;
    const full = tasks.length >= limit;
    this.grew = full && this.window < batch && (runs.length === 0 || deepest >= limit);
    this.window = this.grew
      ? Math.min(batch, this.window * 2)
      : runs.length === 0 && full
        ? this.window // already as deep as allowed, and still blocked: stay there
        : Math.max(MIN_WINDOW, Math.min(this.window, Math.ceil(deepest * 1.25)));
  }

  schedulerConfig(): Partial<SchedulerConfig> {
    const c = this.deps.config;
    return {
      urgencyWindowMs: c.urgencyWindowMs,
      deferralThreshold: c.deferralThreshold,
      deferralSlackMs: c.deferralSlackMs,
      deferralMaxHoldMs: c.deferralMaxHoldMs,
      lateDemotionMs: c.lateDemotionMs,
      placement: c.placement,
      quotas: c.quotas,
    };
  }

  /** Wake up when the next delayed or backed-off task becomes due (`known`: as the pass read it). */
  private async armDueTimer(now: number, known?: number | null): Promise<void> {
    this.loop.wakeAt(known !== undefined ? known : await this.deps.store.nextDueAt(now), now);
  }
}
