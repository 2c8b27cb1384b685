// The task API: submit, list, show, events, logs (with live follow), cancel, retry, explain.

import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TschedError } from '../../domain/errors.js';
import type { TaskStatus } from '../../domain/status.js';
import { TASK_STATUSES } from '../../domain/status.js';
import type { NewTask } from '../../domain/task.js';
import { normalizeTask, type TaskInput } from '../../domain/task-spec.js';
import { IdParamsSchema, LogsQuerySchema, SubmitBatchSchema, TaskInputSchema, TaskListQuerySchema } from '../../protocol/schemas.js';
import { ownerScope, type Principal, requireRole } from '../auth.js';
import type { Control } from '../control.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

const SubmitBody = { anyOf: [TaskInputSchema, SubmitBatchSchema], 'x-tsched-dispatch': 'tasks' };

export function taskRoutes(app: FastifyInstance, c: Control): void {
  const userOnly = (req: FastifyRequest, what: string) => requireRole(req.principal, ['admin', 'user'], what);

  app.post(
    '/v1/tasks',
    {
      schema: {
        summary: 'Submit a task, or a batch of tasks as { tasks: [...] } (all or nothing)',
        tags: ['tasks'],
        body: SubmitBody,
        headers: { type: 'object', properties: { 'idempotency-key': { type: 'string', maxLength: 200 } } },
      },
    },
    async (req, reply) => {
      userOnly(req, 'submit tasks');
      const body = req.body as TaskInput | { tasks: TaskInput[] };
      const isBatch = typeof body === 'object' && body !== null && 'tasks' in body && Array.isArray((body as { tasks: unknown }).tasks);
      const inputs: TaskInput[] = isBatch ? (body as { tasks: TaskInput[] }).tasks : [body as TaskInput];
      // Validate everything before writing anything: a batch is all or nothing.
      const tasks: NewTask[] = inputs.map((t, i) => normalizeTask(t, c.config.spec, isBatch ? `tasks[${i}].` : ''));
      const key = req.headers['idempotency-key'];
      const idempotencyKey = typeof key === 'string' && key.length > 0 ? key : undefined;
      const requestHash = idempotencyKey ? createHash('sha256').update(JSON.stringify(req.body)).digest('hex') : undefined;
      const now = await c.now();
      const pending = c.store.submitTasks(req.principal.userId, tasks, {
        now,
        actor: req.principal.userId,
        ...(idempotencyKey ? { idempotencyKey } : {}),
        ...(requestHash ? { requestHash } : {}),
      });
      c.kickAfter(pending);
      const res = await pending;
      if (!res.replayed) {
        c.metrics.submitted.inc(res.tasks.length);
        if (res.tasks.some((t) => t.recurrence)) c.kickOccurrences?.();
      }
      reply.status(res.replayed ? 200 : 201);
      if (res.replayed) reply.header('Idempotent-Replayed', 'true');
      return isBatch ? { tasks: res.tasks } : { task: res.tasks[0] };
    },
  );

  app.get(
    '/v1/tasks',
    { schema: { summary: 'List tasks, newest first', tags: ['tasks'], querystring: TaskListQuerySchema } },
    async (req) => {
      userOnly(req, 'list tasks');
      const q = req.query as { status?: string; limit?: number; cursor?: string; parent?: number; all?: boolean };
      let status: TaskStatus[] | undefined;
      if (q.status) {
        status = q.status.split(',').map((s) => s.trim()) as TaskStatus[];
        const bad = status.find((s) => !TASK_STATUSES.includes(s));
        if (bad !== undefined)
          throw new TschedError('VALIDATION_FAILED', `querystring.status: "${bad}" is not a status; expected ${TASK_STATUSES.join(', ')}`, {
            issues: [{ path: 'querystring.status', message: `expected a comma-separated list of ${TASK_STATUSES.join(', ')}` }],
          });
      }
      const res = await c.store.listTasks({
        owner: ownerScope(req.principal, q.all ?? false),
        limit: q.limit ?? 50,
        cursor: q.cursor ?? null,
        ...(status ? { status } : {}),
        ...(q.parent ? { parentId: q.parent } : {}),
      });
      return res;
    },
  );

  const load = async (req: FastifyRequest) => {
    userOnly(req, 'read tasks');
    const { id } = req.params as { id: number };
    const task = await c.store.getTask(id, ownerScope(req.principal));
    if (!task) throw new TschedError('TASK_NOT_FOUND', `no task ${id}`, { details: { id } });
    return task;
  };

  app.get(
    '/v1/tasks/:id',
    { schema: { summary: 'A task with every run and, if waiting, why', tags: ['tasks'], params: IdParamsSchema } },
    async (req) => {
      const task = await load(req);
      const runs = await c.store.listRuns(task.id);
      const explanation = task.status === 'waiting' ? await c.explain(task.id, ownerScope(req.principal)) : null;
      return { task, runs, explanation };
    },
  );

  app.get(
    '/v1/tasks/:id/events',
    { schema: { summary: 'The audit trail of a task', tags: ['tasks'], params: IdParamsSchema } },
    async (req) => {
      const task = await load(req);
      return { events: await c.store.listEvents(task.id) };
    },
  );

  app.get(
    '/v1/tasks/:id/explain',
    { schema: { summary: 'Why a task is not running', tags: ['tasks'], params: IdParamsSchema } },
    async (req) => {
      const task = await load(req);
      return { explanation: task.status === 'waiting' ? await c.explain(task.id, ownerScope(req.principal)) : null, status: task.status };
    },
  );

  app.post(
    '/v1/tasks/:id/cancel',
    { schema: { summary: 'Cancel (remove) a task', tags: ['tasks'], params: IdParamsSchema } },
    async (req) => {
      userOnly(req, 'cancel tasks');
      const { id } = req.params as { id: number };
      const now = await c.now();
      const res = await c.store.cancelTask(id, ownerScope(req.principal), {
        now,
        actor: req.principal.userId,
        reason: 'cancelled by user',
      });
      const workers = [...new Set(res.runsToStop.map((r) => r.workerId))];
      for (const w of workers) c.wakeups.wakeWorker(w);
      if (workers.length > 0) c.notifyWorkers(workers);
      return { task: res.task, changed: res.changed };
    },
  );

  app.post(
    '/v1/tasks/:id/retry',
    { schema: { summary: 'Queue a failed or cancelled task again with fresh attempts', tags: ['tasks'], params: IdParamsSchema } },
    async (req) => {
      userOnly(req, 'retry tasks');
      const { id } = req.params as { id: number };
      const task = await c.store.requeueTask(id, ownerScope(req.principal), { now: await c.now(), actor: req.principal.userId });
      c.kick();
      return { task };
    },
  );

  app.get(
    '/v1/tasks/:id/logs',
    {
      schema: {
        summary: 'Output of a run (default: the latest); follow=true streams server-sent events',
        tags: ['tasks'],
        params: IdParamsSchema,
        querystring: LogsQuerySchema,
      },
    },
    async (req, reply) => {
      const task = await load(req);
      const q = req.query as { offset?: number; run?: number; follow?: boolean; limit?: number };
      const pickRun = async (): Promise<number | null> => {
        if (q.run) return q.run;
        const runs = await c.store.listRuns(task.id);
        return runs.length > 0 ? (runs[runs.length - 1]?.id ?? null) : null;
      };
      if (q.run) {
        const run = await c.store.getRun(q.run);
        if (!run || run.taskId !== task.id) throw new TschedError('RUN_NOT_FOUND', `task ${task.id} has no run ${q.run}`);
      }
      if (!q.follow) {
        const runId = await pickRun();
        if (runId === null)
          return { runId: null, chunks: [], nextOffset: 0, ended: task.status !== 'waiting' && task.status !== 'in_progress' };
        const res = await c.store.readLogs(runId, q.offset ?? 0, q.limit ?? 1000);
        return { runId, ...res };
      }
      return followLogs(c, req, reply, task.id, pickRun, q.offset ?? 0);
    },
  );
}

/** Server-sent events: `log` per chunk, `end` with the outcome, `: ping` comments to keep proxies open. */
async function followLogs(
  c: Control,
  req: FastifyRequest,
  reply: FastifyReply,
  taskId: number,
  pickRun: () => Promise<number | null>,
  offset: number,
) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let closed = false;
  req.raw.on('close', () => {
    closed = true;
  });
  const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  let lastPing = Date.now();
  try {
    // Wait for the first run if the task has not started yet.
    let runId = await pickRun();
    while (runId === null && !closed) {
      const t = await c.store.getTask(taskId, null);
      if (!t || (t.status !== 'waiting' && t.status !== 'in_progress')) break;
      await new Promise((r) => setTimeout(r, 250));
      runId = await pickRun();
      if (Date.now() - lastPing > 15_000) {
        res.write(': ping\n\n');
        lastPing = Date.now();
      }
    }
    let off = offset;
    while (runId !== null && !closed) {
      const w = c.wakeups.waitLogs(runId, 500);
      const page = await c.store.readLogs(runId, off, 1000);
      for (const ch of page.chunks) send('log', ch);
      off = page.nextOffset;
      if (page.ended && page.chunks.length === 0) {
        const run = await c.store.getRun(runId);
        // A retry may follow: switch to the next run of the same task if there is one.
        const task = await c.store.getTask(taskId, null);
        const runs = await c.store.listRuns(taskId);
        const newer = runs.filter((r) => r.id > runId!);
        if (newer.length > 0) {
          w.cancel();
          runId = newer[0]!.id;
          off = 0;
          send('run', { runId });
          continue;
        }
        if (task && (task.status === 'waiting' || task.status === 'in_progress')) {
          await w.promise; // waiting for a retry to be placed
          continue;
        }
        w.cancel();
        send('end', { runId, outcome: run?.outcome ?? null, status: task?.status ?? null });
        break;
      }
      if (page.chunks.length === 0) await w.promise;
      else w.cancel();
      if (Date.now() - lastPing > 15_000) {
        res.write(': ping\n\n');
        lastPing = Date.now();
      }
    }
    if (runId === null && !closed) send('end', { runId: null, outcome: null });
  } catch (err) {
    c.log.warn({ err }, 'log follow failed');
  } finally {
    res.end();
  }
}
