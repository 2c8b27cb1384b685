// The monitor: ends runs whose worker went silent past its lease (lost) or that run past their cap plus
// grace without the worker ending them (timed_out), marks silent workers lost, and hands the freed
// resources back to the scheduler at once.

import type { Logger } from 'pino';
import type { Store } from '../store/port.js';
import type { ServerConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { Wakeups } from './wakeups.js';

export class Monitor {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private deps: {
      store: Store;
      config: Readonly<ServerConfig>;
      wakeups: Wakeups;
      log: Logger;
      metrics?: Metrics;
      now: () => Promise<number>;
      onChange: () => void;
      /** Fencing epoch of this leader (cluster mode): a deposed leader's tick changes nothing. */
      epoch?: () => number | null;
      /** Workers whose runs the monitor ended, so that replicas holding their polls wake them too. */
      onEnded?: (workerIds: string[]) => void;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.deps.config.monitorIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { store, config } = this.deps;
      const now = await this.deps.now();
      const epoch = this.deps.epoch?.() ?? null;
      const res = await store.reap(now, { workerSilenceMs: config.leaseMs, capGraceMs: config.capGraceMs, epoch });
      for (const e of res.ended) {
        this.deps.log.warn(
          { runId: e.run.id, taskId: e.run.taskId, outcome: e.outcome, worker: e.run.workerName },
          'run ended by the monitor',
        );
        this.deps.wakeups.wakeWorker(e.run.workerId); // so it learns to kill what it still runs
        this.deps.metrics?.runsFinished.inc({ outcome: e.outcome });
      }
      for (const w of res.lostWorkers) this.deps.log.warn({ workerId: w }, 'worker lost: silent past its lease');
      if (res.ended.length > 0) this.deps.onEnded?.([...new Set(res.ended.map((e) => e.run.workerId))]);
      if (res.ended.length > 0 || res.lostWorkers.length > 0) this.deps.onChange();
      // Bounded waiting time: report (once) every task that passed its start deadline without starting.
      const misses = await store.recordDeadlineMisses(now, 500, epoch);
      for (const m of misses) {
        this.deps.metrics?.deadlineMissed.inc();
        this.deps.log.warn(
          { taskId: m.task.id, name: m.task.name, startDeadline: new Date(m.task.startDeadline).toISOString(), expired: m.expired },
          m.expired ? 'task missed its start deadline and expired' : 'task missed its start deadline; it will still run',
        );
      }
    } catch (err) {
      this.deps.log.warn({ err }, 'monitor tick failed');
    } finally {
      this.busy = false;
    }
  }
}
