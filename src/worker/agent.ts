// The worker agent: registers with the control plane, long-polls for assignments and cancels, runs each
// assignment through its executor, and ships starts, logs, results and heartbeats back in batches.
//
// Two loops share one registration:
//  - poll: POST /poll with the live runs' tokens (a heartbeat too), returns assignments and cancels;
//  - report: one report in flight at a time; while it flies, new items pile up for the next one. A
//    batch is resent as-is until the server answers, so order is kept. Results go out at once (and are
//    spooled to disk first), logs at most every `logFlushMs`, heartbeats at least every heartbeatMs.
//    A report rides on a poll that does not wait, so the work its results made room for comes back in
//    its response; the long poll meanwhile stays parked for work that arrives on its own.
// Every result stays in the spool until the server acks it; a stale ack for a live run means a newer attempt
// stands, so that run is killed at once and its result never sent.

import { promises as fsp, readFileSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import type { RunOutcome } from '../domain/status.js';
import type { WorkerReportBody } from '../protocol/schemas.js';
import {
  type PollResponse,
  type RegisterResponse,
  type ReportResponse,
  type WireAssignment,
  WORKER_PATHS,
} from '../protocol/worker-api.js';
import type { ItemAck } from '../store/port.js';
import { type Cgroups, detectCgroups } from './cgroups.js';
import { backoffDelay, isTransient, isWorkerNotFound, ProtocolClient, ProtocolError } from './client.js';
import { ShellExecutor } from './executors/shell.js';
import type { ExecResult, Executor, RunningRun } from './executors/types.js';
import { DEFAULT_LOG_CAP, RunLogBuffer } from './log-buffer.js';
import { PidRecords } from './pids.js';
import { RssWatcher } from './rss-watch.js';
import { type ResultItem, ResultSpool } from './spool.js';

export interface WorkerLogger {
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
  debug?(obj: unknown, msg?: string): void;
}

export interface WorkerOptions {
  /** Base URL of the control plane, e.g. http://127.0.0.1:7420 */
  server: string;
  token: string;
  /** Default: the hostname. Same name → same worker id on the server. */
  name?: string;
  /** Cores (fractional allowed). Default: os.availableParallelism(). */
  cpus?: number;
  /** Bytes. Default: total memory less a reserve of 10% (at least 256 MiB). */
  memory?: number;
  /** Ports handed to tasks. Default 20000–20999; null: none. */
  ports?: { from: number; to: number } | null;
  labels?: Record<string, string>;
  executors?: Array<'shell' | 'docker'>;
  /** Runs' directories and the worker's state (results spool, pid records). */
  workDir: string;
  scriptsRoot?: string;
  keepFailedWorkDirs?: boolean;
  /** Where run directories go (as runsDir/<name>/<runId>); default workDir/runs. A tmpfs (e.g. /dev/shm/tsched) makes many short runs much cheaper. */
  runsDir?: string;
  /** Long-poll wait, ms. Default 25 000. */
  pollWaitMs?: number;
  /** Between SIGTERM and SIGKILL when a run is stopped. Default 10 000. */
  killGraceMs?: number;
  /** Bytes of output shipped per run. Default 10 MiB. */
  logCapBytes?: number;
  /** Longest a log line waits before it is shipped, ms. Default 150. */
  logFlushMs?: number;
  /** Most assignments per poll. Default 1000. */
  pollMax?: number;
  logger?: WorkerLogger;
  /** Docker executor settings (the worker's own configuration: a task can never ask for these). */
  docker?: {
    socketPath?: string;
    pullPolicy?: 'if-not-present' | 'always' | 'never';
    allowPrivileged?: boolean;
    allowHostNetwork?: boolean;
    allowDockerSocket?: boolean;
  };
}

export interface WorkerHandle {
  id: string;
  name: string;
  /** Drain: take nothing new, let running runs finish up to the timeout, then stop them (they end lost). */
  stop(opts?: { drainTimeoutMs?: number }): Promise<void>;
  running(): number;
}

type StartItem = NonNullable<WorkerReportBody['started']>[number];
type LogItem = NonNullable<WorkerReportBody['logs']>[number];

interface LiveRun {
  a: WireAssignment;
  run: RunningRun;
  logs: RunLogBuffer;
  /** No longer ours (stale lease / orphaned): its result is never sent. */
  orphaned: boolean;
}

const VERSION: string = (() => {
  // src/worker/agent.ts and dist/src/worker/agent.js both sit below the package root.
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'tsched' && pkg.version) return pkg.version;
    } catch {
      /* next */
    }
  }
  return '0.0.0';
})();

const MAX_LOG_BYTES_PER_REPORT = 4 * 1024 * 1024;
const MAX_RESULTS_PER_REPORT = 5000;
const MAX_STARTS_PER_REPORT = 20_000;

export function defaultMemory(): number {
  const total = totalmem();
  return Math.max(256 * 1024 * 1024, total - Math.max(Math.floor(total * 0.1), 256 * 1024 * 1024));
}

function workerName(name: string | undefined): string {
  const n = (name ?? hostname()).replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return (n || 'worker').slice(0, 128);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((res) => {
    const t = setTimeout(res, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      res();
    });
  });

function consoleLogger(): WorkerLogger {
  return {
    info: (o, m) => console.log(m ?? '', o),
    warn: (o, m) => console.warn(m ?? '', o),
    error: (o, m) => console.error(m ?? '', o),
  };
}

export async function startWorker(opts: WorkerOptions): Promise<WorkerHandle> {
  const agent = new Agent(opts);
  await agent.start();
  return {
    get id() {
      return agent.id;
    },
    name: agent.name,
    stop: (o) => agent.stop(o?.drainTimeoutMs),
    running: () => agent.live.size,
  };
}

class Agent {
  readonly name: string;
  id = '';
  readonly live = new Map<number, LiveRun>();
  private readonly log: WorkerLogger;
  private readonly client: ProtocolClient;
  private readonly workDir: string;
  private readonly spool: ResultSpool;
  private readonly pids: PidRecords;
  private cgroups: Cgroups | null = null;
  private rss: RssWatcher | null = null;
  private executors = new Map<string, Executor>();
  private heartbeatMs = 10_000;

  // report loop state
  private starts: StartItem[] = [];
  private readonly dirtyLogs = new Set<LiveRun>();
  private finishedLogs: LogItem[] = [];
  /** Results not yet in a report. */
  private newResults: ResultItem[] = [];
  /** Finished results not yet on disk. */
  private toSpool: ResultItem[] = [];
  private spooling: Promise<void> | null = null;
  /** Results sent (or being sent) and not yet acked; resent after a re-register. */
  private readonly unacked = new Map<number, ResultItem>();
  private inFlight: Promise<void> | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private flushImmediate: NodeJS.Immediate | null = null;
  private lastHeartbeat = 0;
  private heartbeatTimer: NodeJS.Timeout | null = null;

  private registering: Promise<void> | null = null;
  private stopping = false;
  private readonly stopCtl = new AbortController();
  private pollLoop: Promise<void> | null = null;
  private readonly runDone = new Set<Promise<void>>();

  constructor(private readonly opts: WorkerOptions) {
    this.name = workerName(opts.name);
    this.log = opts.logger ?? consoleLogger();
    this.client = new ProtocolClient(opts.server, opts.token);
    this.workDir = resolve(opts.workDir);
    this.spool = new ResultSpool(this.workDir);
    this.pids = new PidRecords(this.workDir);
  }

  async start(): Promise<void> {
    // A shared runsDir is split per worker, so that cleaning up leftovers never touches another worker's runs.
    const runsDir = this.opts.runsDir ? join(resolve(this.opts.runsDir), this.name) : join(this.workDir, 'runs');
    await fsp.mkdir(runsDir, { recursive: true });
    await this.pids.init();
    // A previous life of this worker may have left processes, cgroups and results behind.
    const killed = await this.pids.killLeftovers();
    for (const k of killed)
      this.log.warn({ runId: k.runId, processes: k.killed }, 'killed processes a previous run of this worker left behind');
    this.cgroups = await detectCgroups(this.name);
    if (this.cgroups) {
      const n = await this.cgroups.sweepLeftovers();
      if (n > 0) this.log.warn({ cgroups: n }, 'removed run cgroups a previous run of this worker left behind');
    }
    const leftovers = await fsp.readdir(runsDir).catch(() => [] as string[]);
    if (!this.opts.keepFailedWorkDirs)
      await Promise.all(leftovers.map((d) => fsp.rm(join(runsDir, d), { recursive: true, force: true }).catch(() => {})));
    if (!this.cgroups?.memory) this.rss = new RssWatcher(250);
    const shell = new ShellExecutor({
      workDir: this.workDir,
      runsDir,
      scriptsRoot: this.opts.scriptsRoot,
      keepFailedWorkDirs: this.opts.keepFailedWorkDirs,
      killGraceMs: this.opts.killGraceMs,
      cgroups: this.cgroups,
      rssWatcher: this.rss,
      pids: this.pids,
      onWarning: (msg, err) => this.log.warn({ err: err instanceof Error ? err.message : err }, msg),
    });
    this.executors.set('shell', shell);
    const wanted = this.opts.executors ?? ['shell'];
    if (wanted.includes('docker')) {
      // Loaded only when asked for, so a shell-only worker never touches dockerode or the Docker socket.
      const docker = await import('./executors/docker.js');
      if (!(await docker.dockerAvailable(this.opts.docker?.socketPath)))
        throw new Error('executors: "docker" was asked for but the Docker Engine does not answer (is dockerd running?)');
      const removed = await docker.cleanupDockerLeftovers(this.name).catch(() => [] as string[]);
      if (removed.length > 0) this.log.warn({ containers: removed }, 'removed containers a previous run of this worker left behind');
      this.executors.set(
        'docker',
        docker.createDockerExecutor({
          workerName: this.name,
          workDir: this.workDir,
          scriptsRoot: this.opts.scriptsRoot,
          killGraceMs: this.opts.killGraceMs,
          ...this.opts.docker,
          onWarning: (msg, err) => this.log.warn({ err: err instanceof Error ? err.message : err }, msg),
        }),
      );
    }
    for (const e of wanted) if (!this.executors.has(e)) throw new Error(`executors: "${e}" is not available; expected "shell" or "docker"`);

    for (const r of await this.spool.init()) this.unacked.set(r.runId, r);
    if (this.unacked.size > 0) this.log.info({ results: this.unacked.size }, 'resending results spooled by a previous run of this worker');

    await this.register(true);
    this.log.info({ id: this.id, name: this.name, enforcement: this.enforcement(), workDir: this.workDir }, 'worker registered');
    this.heartbeatTimer = setInterval(
      () => {
        if (Date.now() - this.lastHeartbeat >= this.heartbeatMs * 0.8) this.scheduleFlush(true);
      },
      Math.max(50, Math.floor(this.heartbeatMs / 4)),
    );
    if (this.unacked.size > 0) {
      this.unackedPendingResend = true;
      this.scheduleFlush(true);
    }
    this.pollLoop = this.runPollLoop();
  }

  private enforcement() {
    const c = this.cgroups;
    return { memory: c?.memory ? c.mode : 'rss-watch', cpu: c?.cpu ? c.mode : 'none' };
  }

  // ---- registration

  private register(initial = false): Promise<void> {
    if (!this.registering) {
      this.registering = this.doRegister(initial).finally(() => {
        this.registering = null;
      });
    }
    return this.registering;
  }

  private async doRegister(initial: boolean): Promise<void> {
    const cpus = this.opts.cpus ?? availableParallelism();
    const body = {
      name: this.name,
      capacity: {
        cpus: Math.max(1, Math.round(cpus * 1000)),
        memory: Math.max(1, Math.round(this.opts.memory ?? defaultMemory())),
        ports: this.opts.ports === undefined ? { from: 20000, to: 20999 } : this.opts.ports,
      },
      labels: this.opts.labels ?? {},
      executors: this.opts.executors ?? ['shell'],
      enforcement: this.enforcement(),
      version: VERSION,
      hostname: hostname(),
    };
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.client.post<RegisterResponse>(WORKER_PATHS.register, body, { signal: this.stopCtl.signal });
        this.id = res.worker.id;
        this.heartbeatMs = res.heartbeatMs > 0 ? res.heartbeatMs : 10_000;
        if (res.orphaned.length > 0) await this.killOrphaned(res.orphaned);
        return;
      } catch (e) {
        if (this.stopCtl.signal.aborted) throw e;
        if (!isTransient(e)) {
          if (initial) throw e;
          this.log.error({ err: (e as Error).message }, 'register refused; retrying');
        } else if (attempt % 10 === 0) this.log.warn({ err: (e as Error).message, attempt }, 'control plane unreachable; retrying');
        await sleep(backoffDelay(attempt), this.stopCtl.signal);
      }
    }
  }

  private async killOrphaned(ids: number[]): Promise<void> {
    const set = new Set(ids);
    for (const id of ids) {
      const lr = this.live.get(id);
      if (lr) this.orphan(lr);
    }
    const killed = await this.pids.killLeftovers(set);
    this.log.warn({ runs: ids, killedLeftovers: killed }, 'server ended these runs as lost when this worker (re)registered: killed them');
  }

  private orphan(lr: LiveRun): void {
    if (lr.orphaned) return;
    lr.orphaned = true;
    lr.run.kill('orphaned');
    this.log.warn({ runId: lr.a.runId }, 'lease is stale (a newer attempt stands): killed the run');
  }

  // ---- poll loop

  private async runPollLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopCtl.signal.aborted) {
      try {
        if (this.registering) await this.registering;
        const sentAt = Date.now();
        const running = [...this.live.values()].filter((r) => !r.orphaned).map((r) => ({ runId: r.a.runId, token: r.a.token }));
        const res = await this.client.post<PollResponse>(
          WORKER_PATHS.poll(this.id),
          { max: this.opts.pollMax ?? 1000, wait: this.stopping ? 1000 : (this.opts.pollWaitMs ?? 25_000), running },
          { signal: this.stopCtl.signal, timeoutMs: (this.opts.pollWaitMs ?? 25_000) + 30_000 },
        );
        failures = 0;
        // The server extends leases when the poll arrives, not when it returns.
        if (sentAt > this.lastHeartbeat) this.lastHeartbeat = sentAt;
        this.handleAcks(res.acks);
        this.handleCancels(res.cancel);
        for (const a of res.assignments) this.accept(a);
      } catch (e) {
        if (this.stopCtl.signal.aborted) return;
        if (isWorkerNotFound(e)) {
          this.log.warn({}, 'server does not know this worker: registering again');
          await this.register().catch(() => {});
          this.scheduleFlush(true);
          continue;
        }
        if (!isTransient(e)) this.log.error({ err: (e as Error).message }, 'poll refused');
        else if (failures % 10 === 0) this.log.warn({ err: (e as Error).message }, 'poll failed; retrying with backoff');
        await sleep(backoffDelay(failures++), this.stopCtl.signal);
      }
    }
  }

  private handleAcks(acks: ItemAck[] | undefined): void {
    for (const ack of acks ?? []) {
      if (ack.ok) continue;
      const lr = this.live.get(ack.runId);
      if (lr) this.orphan(lr);
    }
  }

  private handleCancels(ids: number[] | undefined): void {
    for (const id of ids ?? []) this.live.get(id)?.run.kill('cancelled');
  }

  private accept(a: WireAssignment): void {
    if (this.live.has(a.runId)) return; // a redelivery of what we already run
    if (this.stopping) {
      // Draining: hand it back at once so it runs elsewhere.
      this.pushResult({
        runId: a.runId,
        token: a.token,
        outcome: 'lost',
        exitCode: null,
        reason: 'worker_stopping',
        startedAt: null,
        finishedAt: Date.now(),
        usage: { peakMemory: null, cpuSeconds: null },
      });
      return;
    }
    const ex = this.executors.get(a.executor);
    if (!ex) {
      this.pushResult({
        runId: a.runId,
        token: a.token,
        outcome: 'failed',
        exitCode: null,
        reason: `executor_unavailable: ${a.executor}`,
        startedAt: null,
        finishedAt: Date.now(),
        usage: { peakMemory: null, cpuSeconds: null },
      });
      return;
    }
    const lr = {} as LiveRun;
    lr.a = a;
    lr.orphaned = false;
    lr.logs = new RunLogBuffer(this.opts.logCapBytes ?? DEFAULT_LOG_CAP, undefined, () => {
      this.dirtyLogs.add(lr);
      this.scheduleFlush(false);
    });
    lr.run = ex.start(a, {
      logs: lr.logs,
      onStarted: (at) => {
        this.starts.push({ runId: a.runId, token: a.token, at });
        // Not urgent: a start rides with the next result or log flush (at most logFlushMs later), so a short
        // run costs the server one report, not two.
        this.scheduleFlush(false);
      },
    });
    this.live.set(a.runId, lr);
    const p = lr.run.done.then((r) => this.finished(lr, r));
    this.runDone.add(p);
    void p.finally(() => this.runDone.delete(p));
  }

  private finished(lr: LiveRun, r: ExecResult): void {
    this.live.delete(lr.a.runId);
    this.dirtyLogs.delete(lr);
    if (lr.orphaned) return; // a newer attempt stands: nothing of ours to report
    for (const c of lr.logs.take())
      this.finishedLogs.push({ runId: lr.a.runId, token: lr.a.token, stream: c.stream, at: c.at, data: c.data });
    this.pushResult({
      runId: lr.a.runId,
      token: lr.a.token,
      outcome: r.outcome as RunOutcome,
      exitCode: r.exitCode,
      reason: r.reason,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      usage: r.usage,
    });
  }

  private pushResult(r: ResultItem): void {
    this.toSpool.push(r);
    this.spooling ??= this.spoolLoop().finally(() => {
      this.spooling = null;
    });
  }

  /**
   * Spools finished results at once, many per write and fsync, apart from the report loop: a result is durable
   * even while an earlier report is still being retried, and the fsync overlaps the report in flight. A result
   * joins a report only once it is on disk.
   */
  private async spoolLoop(): Promise<void> {
    while (this.toSpool.length > 0) {
      const batch = this.toSpool;
      this.toSpool = [];
      const fresh = batch.filter((r) => !this.unacked.has(r.runId));
      try {
        await this.spool.append(fresh);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'could not spool results; sending them anyway');
      }
      for (const r of fresh) this.unacked.set(r.runId, r);
      this.newResults.push(...batch);
      this.scheduleFlush(true);
    }
  }

  // ---- report loop

  private scheduleFlush(urgent: boolean): void {
    if (this.inFlight) return; // the in-flight report reschedules when it lands
    if (urgent) {
      if (this.flushTimer) {
        clearTimeout(this.flushTimer);
        this.flushTimer = null;
      }
      this.flushImmediate ??= setImmediate(() => {
        this.flushImmediate = null;
        void this.flush();
      });
    } else if (!this.flushTimer && !this.flushImmediate) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        void this.flush();
      }, this.opts.logFlushMs ?? 150);
    }
  }

  private hasUrgent(): boolean {
    return this.newResults.length > 0 || this.finishedLogs.length > 0 || Date.now() - this.lastHeartbeat >= this.heartbeatMs * 0.8;
  }

  private flush(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    if (!this.id) return Promise.resolve();
    this.inFlight = this.sendOne().finally(() => {
      this.inFlight = null;
      if (this.hasUrgent() || this.unackedPendingResend) this.scheduleFlush(true);
      else if (this.dirtyLogs.size > 0 || this.starts.length > 0) this.scheduleFlush(false);
    });
    return this.inFlight;
  }

  /** Reports ride on non-waiting polls (see sendOne) unless the server turned that down once. */
  private rideOnPoll = true;

  /** Set after a re-register: results already sent once must go again. */
  private unackedPendingResend = false;

  private buildBatch(): WorkerReportBody {
    const started = this.starts.splice(0, MAX_STARTS_PER_REPORT);
    const logs: LogItem[] = [];
    let bytes = 0;
    while (this.finishedLogs.length > 0 && bytes < MAX_LOG_BYTES_PER_REPORT) {
      const l = this.finishedLogs.shift() as LogItem;
      bytes += l.data.length;
      logs.push(l);
    }
    for (const lr of this.dirtyLogs) {
      if (bytes >= MAX_LOG_BYTES_PER_REPORT) break;
      this.dirtyLogs.delete(lr);
      for (const c of lr.logs.take()) {
        bytes += c.data.length;
        logs.push({ runId: lr.a.runId, token: lr.a.token, stream: c.stream, at: c.at, data: c.data });
      }
    }
    const results = this.newResults.splice(0, MAX_RESULTS_PER_REPORT);
    if (this.unackedPendingResend) {
      this.unackedPendingResend = false;
      results.push(...this.unacked.values());
    }
    const body: WorkerReportBody = {};
    if (started.length) body.started = started;
    if (logs.length) body.logs = logs;
    if (results.length) body.results = results;
    // Only when a heartbeat is due: a report's starts and results need no lease extension, and every
    // heartbeat is a write on the server.
    if (Date.now() - this.lastHeartbeat >= this.heartbeatMs * 0.8) {
      body.running = [...this.live.values()].filter((r) => !r.orphaned).map((r) => ({ runId: r.a.runId, token: r.a.token }));
    }
    return body;
  }

  private async sendOne(): Promise<void> {
    const body = this.buildBatch();
    const fresh = (body.results ?? []).filter((r) => !this.unacked.has(r.runId));
    if (!body.started && !body.logs && !body.results && !body.running) return;
    // Never lose a finished result: on disk before it leaves.
    if (fresh.length > 0) {
      try {
        await this.spool.append(fresh);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'could not spool results; sending them anyway');
      }
      for (const r of fresh) this.unacked.set(r.runId, r);
    }
    for (let attempt = 0; ; attempt++) {
      if (body.running)
        body.running = [...this.live.values()].filter((r) => !r.orphaned).map((r) => ({ runId: r.a.runId, token: r.a.token }));
      const sentAt = Date.now();
      // The report rides on a poll that does not wait: the work its results made room for comes back in the
      // same response (one round trip per finished run instead of a report, a wake and a poll). While
      // stopping, or against a server that predates it, a plain report.
      const ride = this.rideOnPoll && !this.stopping;
      try {
        const res = ride
          ? await this.client.post<PollResponse>(
              WORKER_PATHS.poll(this.id),
              { ...body, max: this.opts.pollMax ?? 1000, wait: 0 },
              { signal: this.stopCtl.signal },
            )
          : await this.client.post<ReportResponse>(WORKER_PATHS.report(this.id), body, { signal: this.stopCtl.signal });
        if (body.running && sentAt > this.lastHeartbeat) this.lastHeartbeat = sentAt;
        this.handleAcks(res.started);
        this.handleAcks(res.logs);
        this.handleAcks('running' in res ? res.running : res.acks);
        this.handleCancels(res.cancel);
        if ('assignments' in res) for (const a of res.assignments) this.accept(a);
        const done: number[] = [];
        for (const ack of res.results ?? []) {
          // ok, or refused as stale/unknown: either way the server has the final word on it.
          done.push(ack.runId);
          this.unacked.delete(ack.runId);
          if (!ack.ok) this.log.debug?.({ runId: ack.runId, code: ack.code }, 'result refused');
        }
        this.spool.ack(done);
        return;
      } catch (e) {
        if (this.stopCtl.signal.aborted) return;
        if (isWorkerNotFound(e)) {
          await this.register().catch(() => {});
          continue;
        }
        if (ride && e instanceof ProtocolError && e.status === 400 && (e.code === 'UNKNOWN_FIELD' || e.code === 'VALIDATION_FAILED')) {
          // An older server: its poll takes no report. Send this batch, and the next ones, as plain reports.
          this.log.warn({ err: e.message }, 'the server takes no report on a poll; sending reports on their own');
          this.rideOnPoll = false;
          continue;
        }
        if (e instanceof ProtocolError && !isTransient(e)) {
          // A 4xx we cannot fix by retrying (e.g. validation): drop logs/starts, keep results for a later resend.
          this.log.error({ err: e.message, code: e.code }, 'report refused; dropping that batch (results stay spooled)');
          this.unackedPendingResend = false;
          return;
        }
        if (attempt % 10 === 0) this.log.warn({ err: (e as Error).message, attempt }, 'report failed; retrying with backoff');
        await sleep(backoffDelay(attempt), this.stopCtl.signal);
      }
    }
  }

  // ---- stop

  async stop(drainTimeoutMs = 30_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.id) await this.client.post(WORKER_PATHS.drain(this.id), {}, { timeoutMs: 5000 }).catch(() => {});
    const deadline = Date.now() + drainTimeoutMs;
    while (this.live.size > 0 && Date.now() < deadline) await sleep(Math.min(100, Math.max(1, deadline - Date.now())));
    for (const lr of this.live.values()) lr.run.kill('shutdown');
    await Promise.all([...this.runDone]);
    // Ship what is left: results are spooled anyway, so give the server a bounded while.
    const flushDeadline = Date.now() + 5000;
    while (Date.now() < flushDeadline && (this.inFlight || this.hasPending())) {
      await (this.inFlight ?? this.flush());
      if (this.hasPending()) await sleep(20);
    }
    this.stopCtl.abort();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    await this.pollLoop?.catch(() => {});
    await Promise.all([...this.executors.values()].map((e) => e.close?.()));
    await this.cgroups?.close?.().catch(() => {});
    await this.spool.close().catch(() => {});
    this.client.close();
    this.rss?.close();
  }

  private hasPending(): boolean {
    return (
      this.starts.length > 0 ||
      this.newResults.length > 0 ||
      this.toSpool.length > 0 ||
      this.spooling !== null ||
      this.finishedLogs.length > 0 ||
      this.dirtyLogs.size > 0 ||
      this.unacked.size > 0
    );
  }
}
