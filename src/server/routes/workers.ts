// The worker protocol (see src/protocol/worker-api.ts) and the workers' admin API.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TschedError } from '../../domain/errors.js';
import type { RunOutcome } from '../../domain/status.js';
import type { Executor } from '../../domain/task.js';
import type { Worker, WorkerState } from '../../domain/worker.js';
import {
  type WorkerPollBody,
  WorkerPollSchema,
  WorkerRegisterSchema,
  type WorkerReportBody,
  WorkerReportSchema,
} from '../../protocol/schemas.js';
import type { PollResponse, RegisterResponse, ReportResponse, WireAssignment } from '../../protocol/worker-api.js';
import type { Assignment, HeartbeatResult } from '../../store/port.js';
import { requireRole } from '../auth.js';
import type { Control } from '../control.js';

const WorkerIdParams = {
  type: 'object',
  properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
  required: ['id'],
  additionalProperties: false,
};

export function toWire(a: Assignment): WireAssignment {
  const t = a.task;
  return {
    runId: a.run.id,
    token: a.run.leaseToken,
    taskId: t.id,
    attempt: a.run.attempt,
    name: t.name,
    executor: t.executor,
    command: t.command,
    shell: t.shell,
    script: t.script,
    scriptPath: t.scriptPath,
    image: t.image,
    env: t.env,
    allocation: a.run.allocation,
    capRemainingMs: a.capRemainingMs,
    executionCap: t.executionCap,
    retry: t.retry,
  };
}

/** A poll this soon after the worker's last store heartbeat on this replica skips writing another one. */
const BEAT_SKIP_MS = 1000;

const inHand = (list: Assignment[]) => list.map((a) => a.run.id);

/** Assignments from memory first, then from the store, without repeating a run. */
function merge(a: Assignment[], b: Assignment[]): Assignment[] {
  if (a.length === 0) return b;
  const seen = new Set(a.map((x) => x.run.id));
  return [...a, ...b.filter((x) => !seen.has(x.run.id))];
}

export function workerRoutes(app: FastifyInstance, c: Control): void {
  /** When each worker last heartbeated through this replica (epoch ms, local clock). */
  const beats = new Map<string, number>();
  const workerOnly = (req: FastifyRequest) => requireRole(req.principal, ['admin', 'worker'], 'speak the worker protocol');
  const mustWorker = async (id: string): Promise<Worker> => {
    const w = await c.store.getWorker(id);
    if (!w) throw new TschedError('WORKER_NOT_FOUND', `no worker ${id}; register again`);
    return w;
  };

  /** Tells the mail when the write carrying a worker's delivered marks has ended (see Wakeups.marked). */
  const marking = <T>(workerId: string, ids: number[], write: Promise<T>): Promise<T> => {
    if (ids.length === 0) return write;
    return write.then(
      (v) => {
        c.wakeups.marked(workerId, ids, true);
        return v;
      },
      (e) => {
        c.wakeups.marked(workerId, ids, false);
        throw e;
      },
    );
  };

  app.post(
    '/v1/workers/register',
    { schema: { summary: 'Register (or re-register) a worker', tags: ['worker protocol'], body: WorkerRegisterSchema } },
    async (req) => {
      workerOnly(req);
      const b = req.body as {
        name: string;
        capacity: Worker['capacity'];
        labels?: Record<string, string>;
        executors: Executor[];
        enforcement?: Worker['enforcement'];
        version?: string;
        hostname?: string;
      };
      if (b.capacity.ports && b.capacity.ports.from > b.capacity.ports.to)
        throw new TschedError('VALIDATION_FAILED', 'capacity.ports: expected from ≤ to', {
          issues: [{ path: 'capacity.ports', message: 'expected from ≤ to' }],
        });
      const now = await c.now();
      const { worker, orphaned } = await c.store.registerWorker(
        {
          name: b.name,
          capacity: b.capacity,
          labels: b.labels ?? {},
          executors: b.executors,
          enforcement: b.enforcement ?? { memory: 'none', cpu: 'none' },
          version: b.version ?? 'unknown',
          hostname: b.hostname ?? '',
        },
        now,
      );
      if (orphaned.length > 0)
        req.log.warn({ worker: worker.name, runs: orphaned.map((r) => r.id) }, 'worker restarted: its live runs end lost');
      c.kick();
      const res: RegisterResponse = {
        worker,
        orphaned: orphaned.map((r) => r.id),
        heartbeatMs: c.config.heartbeatMs,
        leaseMs: c.config.leaseMs,
      };
      return res;
    },
  );

  app.post(
    '/v1/workers/:id/poll',
    {
      schema: {
        summary: 'Long-poll for assignments and cancels (also a heartbeat)',
        tags: ['worker protocol'],
        params: WorkerIdParams,
        body: WorkerPollSchema,
      },
    },
    async (req, reply): Promise<PollResponse> => {
      workerOnly(req);
      const { id } = req.params as { id: string };
      const b = req.body as WorkerPollBody;
      const max = b.max ?? 100;
      const wait = Math.min(b.wait ?? 0, c.config.maxPollWaitMs);
      const carriesReport = Boolean(b.started?.length || b.logs?.length || b.results?.length);
      // Listen before looking, so that an assignment committed between the look and the wait still wakes us.
      // (A poll that carries a report never parks.)
      // What the look below reads stays true until a nudge (see Wakeups.nudges).
      let nudges = c.wakeups.nudges(id);
      const w = wait > 0 && !carriesReport ? c.wakeups.waitWorker(id, wait) : null;
      let assignments: Assignment[] = [];
      let hb: Pick<HeartbeatResult, 'acks' | 'cancel'>;
      let acks: Pick<PollResponse, 'started' | 'logs' | 'results'> = {};
      const fromStore = (list: Assignment[]) => {
        const handed = c.wakeups.takenFromStoreNow(
          id,
          list.map((a) => a.run.id),
        );
        return handed.size === 0 ? list : list.filter((a) => !handed.has(a.run.id));
      };
      /** Takes what the store holds beyond what is in hand, if `beyond` says there is any. */
      const topUp = async (beyond: (known: Set<number>) => boolean | Promise<boolean>) => {
        if (!takes || assignments.length >= max) return;
        const known = new Set([...inHand(assignments), ...c.wakeups.pendingMailed(id)]);
        if (await beyond(known))
          assignments = merge(assignments, fromStore(await c.store.takeAssignments(id, max - assignments.length, now)));
      };
      const inStore = (known: Set<number>) => c.store.hasUndelivered(id, [...known]);
      // A look read at most `limit` ids: all of them known means there is none other only if it read fewer.
      const seenBeyond = (l: { undelivered: number[]; limit: number }) => (known: Set<number>) =>
        l.undelivered.some((r) => !known.has(r)) || (l.undelivered.length === l.limit && known.size >= l.limit);
      /** One read for a poll that does not heartbeat: state, undelivered runs, cancels. */
      const look = async () => {
        const limit = c.wakeups.pendingMailed(id).length + c.wakeups.mailCount(id) + assignments.length + 1;
        const l = await c.store.lookAtWorker(id, limit);
        if (!l.state) throw new TschedError('WORKER_NOT_FOUND', `no worker ${id}; register again`);
        return { ...l, state: l.state, limit };
      };
      // A poll that carries a report learns the worker's state from the report's heartbeat (one read fewer
      // per cycle); a bare poll looks first.
      let seen: Awaited<ReturnType<typeof look>> | null = null;
      if (!carriesReport) {
        try {
          seen = await look();
        } catch (e) {
          w?.cancel();
          throw e;
        }
      }
      let state: WorkerState = seen ? seen.state : 'active';
      let now = await c.now();
      // A lost worker that speaks again (back from a partition or a pause) is active again: the heartbeat
      // re-activates it. Its old runs already ended as lost, and their late results will be refused.
      let wasLost = state === 'lost';
      let takes = state === 'active' || wasLost;
      if (carriesReport) {
        // Report and poll in one request: the report is the heartbeat, and the pass its results kick rides
        // the same commit (SQLite); once that pass has ended, what it placed here is in the mail.
        // The pass its results kick posts its runs for this worker here, not to the parked poll.
        const release = b.results?.length ? c.claimMail(id) : () => {};
        try {
          const r = await report(id, b, now);
          acks = { started: r.started, logs: r.logs, results: r.results };
          hb = { acks: r.running, cancel: r.cancel };
          wasLost = r.stateBefore === 'lost';
          takes = r.stateBefore === 'active' || wasLost;
          state = wasLost ? 'active' : r.stateBefore;
          await r.passed;
          if (takes) assignments = c.wakeups.takeMail(id, max);
        } finally {
          release();
        }
        await topUp(inStore);
      } else {
        if (takes) assignments = c.wakeups.takeMail(id, max);
        const last = beats.get(id) ?? 0;
        if (!wasLost && Date.now() - last < BEAT_SKIP_MS && seen) {
          // Its report heartbeated a moment ago: spare the write; the look already read the cancels and
          // the undelivered runs. Delivered marks wait for the worker's next write (its report of those
          // runs, or a poll past BEAT_SKIP_MS): a write here would hold this poll for a commit before it
          // parks, while the mail it would catch waits.
          hb = { acks: [], cancel: seen.cancel };
          await topUp(seenBeyond(seen));
        } else {
          const delivered = c.wakeups.takeMailed(id);
          const polled = await marking(
            id,
            delivered,
            c.store.workerPoll(id, b.running ?? [], takes ? max - assignments.length : 0, now, c.config.leaseMs, delivered),
          );
          beats.set(id, Date.now());
          hb = polled.heartbeat;
          assignments = merge(assignments, fromStore(polled.assignments));
        }
      }
      if (wasLost) {
        state = (await c.store.getWorker(id))?.state ?? state;
        c.kick();
      }
      // A poll that carried a report does not park: its acks go back at once (the worker holds its results
      // until they are acked), and the worker polls again if it got nothing.
      if (assignments.length > 0 || hb.cancel.length > 0 || carriesReport) w?.cancel();
      else if (w) {
        // Park until the scheduler assigns something, a cancel arrives, or the wait ends.
        // The response's close (not the request's, which fires once the body is read) tells that the
        // worker hung up: a dead worker's parked poll must not heartbeat on its behalf afterwards.
        let gone = false;
        let waiter = w;
        const onClose = () => {
          gone = true;
          waiter.cancel();
        };
        reply.raw.on('close', onClose);
        const until = Date.now() + wait;
        for (;;) {
          await waiter.promise;
          if (gone || req.raw.socket?.destroyed) break;
          if (c.wakeups.nudges(id) === nudges && Date.now() < until) {
            // Woken for mail alone: the state and cancels this poll read still hold, so it takes the mail
            // without reading the store.
            const mailed = c.wakeups.mailCount(id);
            assignments = c.wakeups.takeMail(id, max);
            waiter = c.wakeups.waitWorker(id, Math.max(1, until - Date.now()));
            if (assignments.length > 0 && (assignments.length === max || assignments.length === mailed)) break;
            // Nothing left for it (park again), or mail that expired unread: those runs are in the store.
            if (assignments.length === 0 && mailed === 0) continue;
          } else waiter = c.wakeups.waitWorker(id, Math.max(1, until - Date.now()));
          nudges = c.wakeups.nudges(id);
          // Not a heartbeat: the request proves the worker was alive when it was sent, not now (a paused or
          // partitioned worker's poll can sit here), so only read what must be stopped.
          const l = await look();
          state = l.state;
          now = await c.now();
          if (state === 'active') {
            assignments = merge(assignments, c.wakeups.takeMail(id, max - assignments.length));
            await topUp(seenBeyond(l));
          }
          hb.cancel.push(...l.cancel);
          // A wake whose news another request of this worker already took (its report-and-poll got the
          // mail) parks again rather than answering empty-handed and costing the worker another round trip.
          if (assignments.length > 0 || hb.cancel.length > 0 || state !== 'active' || Date.now() >= until || gone) break;
        }
        waiter.cancel();
        reply.raw.off('close', onClose);
        if (gone || req.raw.socket?.destroyed) return { assignments: [], cancel: [], acks: hb.acks, drain: false, ...acks };
      }
      return {
        assignments: assignments.map(toWire),
        cancel: [...new Set(hb.cancel)],
        acks: hb.acks,
        drain: state === 'draining',
        ...acks,
      };
    },
  );

  /**
   * A worker's batched report (the report route, or riding on a poll): one store transaction, which also
   * writes the delivered marks of runs handed out from memory since. `passed` resolves when the scheduling
   * pass its results kicked has ended (at once when there were none).
   */
  async function report(id: string, b: WorkerReportBody, now: number) {
    const delivered = c.wakeups.takeMailed(id);
    const pending = c.store.workerReport(
      id,
      {
        started: b.started ?? [],
        logs: b.logs ?? [],
        results: (b.results ?? []).map((r) => ({
          ...r,
          outcome: r.outcome as RunOutcome,
          usage: r.usage ?? { peakMemory: null, cpuSeconds: null },
        })),
        running: b.running ?? [],
        delivered,
      },
      now,
      { leaseMs: c.config.leaseMs, maxLogBytesPerRun: c.config.maxLogBytesPerRun },
    );
    marking(id, delivered, pending).catch(() => {});
    // Results free resources (a pass, unless no task waits for room) and may make tasks wait again (retries).
    const passed = b.results?.length ? c.kickForRoom(pending) : Promise.resolve();
    const rep = await pending;
    // A retry needs a pass: now if it is due, else to set the timer for its backoff (one more pass when the
    // room's pass, sharing the report's commit, already saw it: retries are the rare case).
    if (rep.results.changed.some((x) => x.status === 'waiting')) c.kick();
    beats.set(id, Date.now());
    const touched = new Set([...(b.logs ?? []).map((l) => l.runId), ...(b.results ?? []).map((r) => r.runId)]);
    for (const runId of touched) c.wakeups.wakeLogs(runId);
    if (touched.size > 0) c.notifyLogs([...touched]);
    (b.results ?? []).forEach((r, i) => {
      if (rep.results.acks[i]?.ok) c.metrics.runsFinished.inc({ outcome: r.outcome });
    });
    return {
      started: rep.started,
      logs: rep.logs,
      results: rep.results.acks,
      running: rep.running.acks,
      cancel: rep.running.cancel,
      stateBefore: rep.running.stateBefore,
      passed,
    };
  }

  app.post(
    '/v1/workers/:id/report',
    {
      schema: {
        summary: 'Batched starts, log chunks, results and heartbeats',
        tags: ['worker protocol'],
        params: WorkerIdParams,
        body: WorkerReportSchema,
      },
    },
    async (req): Promise<ReportResponse> => {
      workerOnly(req);
      const { id } = req.params as { id: string };
      await mustWorker(id);
      const { passed: _, stateBefore: _s, ...res } = await report(id, req.body as WorkerReportBody, await c.now());
      return res;
    },
  );

  app.post(
    '/v1/workers/:id/drain',
    { schema: { summary: 'Drain a worker (id or name): it takes nothing new', tags: ['workers'], params: WorkerIdParams } },
    async (req) => {
      requireRole(req.principal, ['admin', 'worker'], 'drain workers');
      const { id } = req.params as { id: string };
      let w = await c.store.getWorker(id);
      if (!w) w = (await c.store.listWorkers()).find((x) => x.name === id) ?? null;
      if (!w) throw new TschedError('WORKER_NOT_FOUND', `no worker with id or name ${id}`);
      const updated = await c.store.setWorkerState(w.id, 'draining', await c.now());
      c.wakeups.wakeWorker(w.id);
      c.notifyWorkers([w.id]);
      return { worker: updated };
    },
  );

  app.get(
    '/v1/workers',
    { schema: { summary: 'Every worker with capacity, allocated and free resources', tags: ['workers'] } },
    async (req) => {
      requireRole(req.principal, ['admin', 'user', 'worker'], 'list workers');
      return { workers: await c.store.listWorkers() };
    },
  );
}
