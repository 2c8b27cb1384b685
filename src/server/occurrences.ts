// The occurrence loop (leader only): turns recurring definitions into occurrences. Every second, on a
// timer for the earliest next occurrence, and when kicked (a definition was submitted, edited or resumed),
// it asks the store for the definitions that came due and expands each one in its own transaction
// (catch-up + overlap policy, src/domain/occurrences). It also releases occurrences held by overlap `queue`
// once their previous occurrence has ended. Occurrences are ordinary tasks from then on: the scheduler
// places them, so a pass that created some kicks the scheduler.

import type { Logger } from 'pino';
import type { Store } from '../store/port.js';
import { CoalescedLoop } from './coalesced-loop.js';
import type { Metrics } from './metrics.js';

export interface OccurrenceLoopDeps {
  store: Store;
  log: Logger;
  metrics?: Metrics;
  /** The store's clock (injectable for tests). */
  now: () => Promise<number>;
  /** Fencing epoch of this leader, or null when not fenced (embedded mode). */
  epoch?: () => number | null;
  /** Occurrences were created or released: ask the scheduler for a pass. */
  onCreated?: () => void;
  /** Replaced occurrences' runs were asked to stop: wake these workers. */
  onCancelled?: (workerIds: string[]) => void;
  intervalMs?: number;
  /** Catch-up after downtime: at most this many occurrences start at once (the most recent). Default 1. */
  maxCatchUp?: number;
  /** Definitions expanded per pass. */
  batch?: number;
}

export interface OccurrencePassStats {
  definitions: number;
  created: number;
  missed: number;
  skipped: number;
  released: number;
}

export class OccurrenceLoop {
  private readonly loop: CoalescedLoop;
  readonly stats = { passes: 0, created: 0, missed: 0, skipped: 0, released: 0 };

  constructor(private deps: OccurrenceLoopDeps) {
    this.loop = new CoalescedLoop(
      async () => this.passAt(await deps.now(), true),
      (err) => deps.log.warn({ err }, 'occurrence pass failed; retrying on the next tick'),
      deps.intervalMs ?? 1000,
    );
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Ask for a pass soon; kicks during a pass collapse into one follow-up pass. */
  kick(): void {
    void this.loop.kick();
  }

  /** One pass at the injected clock's time (tests call this directly). */
  async pass(): Promise<OccurrencePassStats> {
    const s = await this.collect(await this.deps.now(), false);
    return s;
  }

  private async passAt(now: number, arm: boolean): Promise<boolean> {
    const s = await this.collect(now, arm);
    return s.definitions >= (this.deps.batch ?? 200);
  }

  private async collect(now: number, arm: boolean): Promise<OccurrencePassStats> {
    const { store, log } = this.deps;
    const out: OccurrencePassStats = { definitions: 0, created: 0, missed: 0, skipped: 0, released: 0 };
    const released = await store.releaseQueuedOccurrences(now, 500);
    out.released = released.length;
    const due = await store.dueDefinitions(now, this.deps.batch ?? 200);
    const stopWorkers = new Set<string>();
    for (const id of due.ids) {
      try {
        const r = await store.expandOccurrences(id, now, {
          actor: 'scheduler',
          epoch: this.deps.epoch?.() ?? null,
          ...(this.deps.maxCatchUp !== undefined ? { maxCatchUp: this.deps.maxCatchUp } : {}),
        });
        if (!r) continue;
        out.definitions++;
        out.created += r.created.length;
        out.missed += r.missed;
        out.skipped += r.skipped;
        for (const run of r.runsToStop) stopWorkers.add(run.workerId);
        if (r.missed > 0 || r.skipped > 0)
          log.warn(
            { taskId: id, name: r.definition.name, missed: r.missed, skipped: r.skipped },
            'recurring task: occurrences recorded missed or skipped (see its events)',
          );
        if (r.definition.status === 'done') log.info({ taskId: id }, 'recurring task has no occurrence left: done');
      } catch (err) {
        // One bad definition must not stop the others.
        log.warn({ err, taskId: id }, 'expanding a recurring task failed');
      }
    }
    this.stats.passes++;
    this.stats.created += out.created;
    this.stats.missed += out.missed;
    this.stats.skipped += out.skipped;
    this.stats.released += out.released;
    // The metric counts every due instant that did not start: missed during downtime and skipped by overlap.
    if (out.missed + out.skipped > 0) this.deps.metrics?.occurrencesMissed.inc(out.missed + out.skipped);
    if (out.created > 0 || out.released > 0) this.deps.onCreated?.();
    if (stopWorkers.size > 0) this.deps.onCancelled?.([...stopWorkers]);
    if (arm) {
      // dueDefinitions ran before the expansions: read the earliest next instant again.
      const nextAt = out.definitions > 0 ? (await store.dueDefinitions(now, 0)).nextAt : due.nextAt;
      this.armNext(nextAt, now);
    }
    return out;
  }

  /** The 1 s tick would be up to a second late for a per-second cron: wake at the exact instant instead. */
  private armNext(nextAt: number | null, now: number): void {
    this.loop.wakeAt(nextAt, now);
  }
}
