// Wires a store, the HTTP app and the control loops into one running control plane. Both modes use it:
// embedded (`tsched up`, SQLite) and cluster (`tsched server`, PostgreSQL).

import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { type Explanation, plan } from '../scheduler/index.js';
import type { Store } from '../store/port.js';
import { buildApp } from './app.js';
import { Authenticator } from './auth.js';
import { type Bus, type Leadership, LocalBus, SoleLeader } from './cluster-seams.js';
import { resolveConfig, type ServerConfig } from './config.js';
import type { Control } from './control.js';
import { Metrics } from './metrics.js';
import { Monitor } from './monitor.js';
import { Notifier } from './notifier.js';
import { OccurrenceLoop } from './occurrences.js';
import { SchedulerLoop } from './scheduler-loop.js';
import { VERSION } from './version.js';
import { Wakeups } from './wakeups.js';

export interface ControlPlaneOptions {
  store: Store;
  config?: Partial<ServerConfig>;
  host?: string;
  port?: number;
  log?: Logger;
  /** Injected clock for tests; default the store's clock. */
  now?: () => Promise<number>;
  /** Cluster mode: leader election and the wake-up bus between replicas. Default: sole leader, no bus. */
  leadership?: Leadership;
  bus?: Bus;
  /** Called with the URL once the HTTP server listens, before leadership starts (names the replica). */
  onListening?: (url: string) => void;
}

export interface ControlPlane {
  url: string;
  port: number;
  control: Control;
  scheduler: SchedulerLoop;
  monitor: Monitor;
  /** Recurring tasks: creates their occurrences (leader only). */
  occurrences: OccurrenceLoop;
  close(): Promise<void>;
}

export function defaultLogger(): Logger {
  return pino({ level: process.env.TSCHED_LOG_LEVEL ?? 'info' }, pino.destination({ dest: 2, sync: false }));
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const config = resolveConfig(opts.config);
  const log = opts.log ?? defaultLogger();
  const store = opts.store;
  const wakeups = new Wakeups();
  const now = opts.now ?? (() => store.now());
  const leadership: Leadership = opts.leadership ?? new SoleLeader();
  const bus = opts.bus ?? new LocalBus();
  let scheduler: SchedulerLoop | undefined;
  let occurrences: OccurrenceLoop | undefined;

  // On the leader a kick runs a pass here; on a follower it travels to the leader over the bus.
  const kick = (): void => {
    if (leadership.isLeader()) void scheduler?.kick();
    else bus.publish({ kind: 'kick' });
  };
  /**
   * A pass for the queued write `pending`: on the leader `pass` asks for it at once (both stores commit
   * queued writes in order, group commit, so a pass queued now sees the write); a follower's kick goes to
   * the leader once the write has committed.
   */
  const kickBehind = async (pending: Promise<unknown>, pass: (s: SchedulerLoop) => Promise<void>): Promise<void> => {
    if (!leadership.isLeader() || !scheduler) {
      await pending.then(kick, () => {});
      return;
    }
    return pass(scheduler);
  };
  const control: Control = {
    store,
    config,
    wakeups,
    auth: new Authenticator(store),
    log,
    metrics: new Metrics(store),
    now,
    version: VERSION,
    kick,
    kickAfter: (pending) => kickBehind(pending, (s) => s.kick()),
    kickForRoom: (pending) => kickBehind(pending, (s) => s.kickForRoom() ?? Promise.resolve()),
    claimMail: (workerId) => (leadership.isLeader() && scheduler ? wakeups.claimMail(workerId, scheduler.nextPass()) : () => {}),
    // A follower relies on the leader's 1 s occurrence tick.
    kickOccurrences: () => (leadership.isLeader() ? occurrences?.kick() : undefined),
    notifyWorkers: (ids) => bus.publish({ kind: 'workers', ids }),
    notifyLogs: (runIds) => bus.publish({ kind: 'logs', runIds }),
    isLeader: () => leadership.isLeader(),
    ...(leadership.describe ? { describeCluster: () => leadership.describe!() } : {}),
    explain: async (taskId, owner) => {
      const task = await store.getTask(taskId, owner);
      if (task?.status !== 'waiting') return null;
      const t = await now();
      if (task.dueAt > t) {
        return {
          taskId,
          reasons: [{ code: 'not_due', workers: 0, detail: new Date(task.dueAt).toISOString() }],
          rank: 0,
          band: String(task.priority),
          promoted: false,
          estimatedStart: task.dueAt,
          message: `not due yet: it becomes due at ${new Date(task.dueAt).toISOString()}${task.attempts > 0 ? ' (retry backoff)' : ''}`,
        } as unknown as Explanation;
      }
      const workers = await store.loadWorkers();
      const candidates = await store.loadCandidates(t, config.schedulerBatch, t + config.urgencyWindowMs);
      if (!candidates.some((c) => c.id === taskId)) candidates.push(task);
      const p = plan({ workers, tasks: candidates }, t, scheduler?.schedulerConfig() ?? {});
      const e = p.explanations.get(taskId);
      if (e) return e;
      if (p.placements.some((x) => x.taskId === taskId))
        return {
          taskId,
          reasons: [],
          rank: 0,
          band: String(task.priority),
          promoted: false,
          estimatedStart: t,
          message: 'it fits now and will start on the next scheduling pass',
        };
      return null;
    },
  };

  scheduler = new SchedulerLoop({
    store,
    config,
    wakeups,
    log,
    now,
    epoch: () => leadership.epoch(),
    metrics: control.metrics,
    onAssigned: (ids) => bus.publish({ kind: 'workers', ids }),
    stampAtCommit: opts.now === undefined,
  });
  const monitor = new Monitor({
    store,
    config,
    wakeups,
    log,
    now,
    metrics: control.metrics,
    onChange: () => scheduler?.kick(),
    epoch: () => leadership.epoch(),
    onEnded: (ids) => bus.publish({ kind: 'workers', ids }),
  });
  occurrences = new OccurrenceLoop({
    store,
    log,
    now,
    metrics: control.metrics,
    epoch: () => leadership.epoch(),
    onCreated: () => scheduler?.kick(),
    onCancelled: (ids) => {
      for (const id of ids) wakeups.wakeWorker(id);
      bus.publish({ kind: 'workers', ids });
    },
  });
  const app = await buildApp(control);
  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 7420 });
  const addr = app.server.address() as AddressInfo;
  const host = opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
  opts.onListening?.(url);
  const notifier = new Notifier({ store, secret: config.webhookSecret, log, metrics: control.metrics, now });
  if (!config.webhookSecret) log.warn('no webhook secret configured: webhook signatures use an empty key');

  // Wake-ups from other replicas.
  bus.subscribe((msg) => {
    if (msg.kind === 'kick') {
      if (leadership.isLeader()) scheduler?.kick();
    } else if (msg.kind === 'workers') for (const id of msg.ids) wakeups.wakeWorker(id);
    else if (msg.kind === 'logs') for (const id of msg.runIds) wakeups.wakeLogs(id);
  });
  await bus.start();
  // The control loops run only on the leader; every replica serves the API and the workers.
  let loopsRunning = false;
  let closed = false;
  leadership.onChange((leader) => {
    if (leader && !loopsRunning) {
      loopsRunning = true;
      log.info({ epoch: leadership.epoch() }, 'this replica is the scheduling leader');
      scheduler?.start();
      monitor.start();
      notifier.start();
      occurrences?.start();
    } else if (!leader && loopsRunning) {
      loopsRunning = false;
      // Stepping down on close is expected; losing the lease while running is worth a warning.
      if (closed) log.info('this replica stepped down as scheduling leader (shutting down)');
      else log.warn('this replica lost scheduling leadership');
      void scheduler?.stop();
      monitor.stop();
      notifier.stop();
      void occurrences?.stop();
    }
  });
  await leadership.start();

  return {
    url,
    port: addr.port,
    control,
    scheduler,
    monitor,
    occurrences,
    close: async () => {
      if (closed) return;
      closed = true;
      monitor.stop();
      notifier.stop();
      await occurrences?.stop();
      await scheduler?.stop();
      await leadership.stop();
      await bus.stop();
      wakeups.wakeAllWorkers(); // release long-polls so that close does not wait for them
      await app.close();
    },
  };
}
