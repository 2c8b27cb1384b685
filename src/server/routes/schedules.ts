// Recurring tasks: preview a schedule, list a task's next occurrences, pause, resume and edit its schedule.
// The occurrences themselves are ordinary tasks (GET /v1/tasks?parent=ID lists them).

import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TschedError } from '../../domain/errors.js';
import { normalizeSchedule } from '../../domain/occurrences.js';
import { previewOccurrences } from '../../domain/recurrence.js';
import type { Task } from '../../domain/task.js';
import type { TaskInput } from '../../domain/task-spec.js';
import { IdParamsSchema, TaskInputSchema } from '../../protocol/schemas.js';
import { ownerScope, requireRole } from '../auth.js';
import type { Control } from '../control.js';

type ScheduleInput = NonNullable<TaskInput['schedule']>;

// The same schema piece a submit validates `schedule` with.
const ScheduleSchema = TaskInputSchema.properties.schedule;
const Instant = T.Union([T.String({ minLength: 1, maxLength: 64 }), T.Number()], { description: 'ISO-8601 instant or epoch milliseconds' });
const Count = T.Integer({ minimum: 1, maximum: 1000, description: 'how many occurrences (default 10)' });
const NextQuerySchema = T.Object({ count: T.Optional(Count) }, { additionalProperties: false });
const PreviewBodySchema = T.Object(
  { schedule: ScheduleSchema, count: T.Optional(Count), after: T.Optional(Instant) },
  { additionalProperties: false },
);

function parseAfter(v: string | number | undefined, now: number): number {
  if (v === undefined) return now;
  const t = typeof v === 'number' ? v : Date.parse(v);
  if (!Number.isFinite(t) || t < 0)
    throw new TschedError('VALIDATION_FAILED', 'after: expected an ISO-8601 instant or epoch milliseconds', {
      issues: [{ path: 'after', message: 'expected an ISO-8601 instant or epoch milliseconds' }],
    });
  return t;
}

/** The next `count` occurrences of a definition, from where it stands (maxOccurrences included). */
export function nextOccurrencesOf(task: Task, now: number, count: number) {
  const spec = task.schedule;
  const r = task.recurrence;
  if (!spec || !r || task.status !== 'waiting') return [];
  // Active: from its next instant on. Paused: what would follow a resume now.
  const after = task.paused || r.nextOccurrenceAt === null ? Math.max(now, r.lastOccurrenceAt ?? now) : r.nextOccurrenceAt - 1;
  return previewOccurrences(spec, after, count, r.occurrencesCreated);
}

export function scheduleRoutes(app: FastifyInstance, c: Control): void {
  const userOnly = (req: FastifyRequest, what: string) => requireRole(req.principal, ['admin', 'user'], what);

  const loadDefinition = async (req: FastifyRequest): Promise<Task> => {
    userOnly(req, 'read tasks');
    const { id } = req.params as { id: number };
    const task = await c.store.getTask(id, ownerScope(req.principal));
    if (!task) throw new TschedError('TASK_NOT_FOUND', `no task ${id}`, { details: { id } });
    if (!task.recurrence)
      throw new TschedError(
        'NOT_RECURRING',
        task.parentId !== null
          ? `task ${id} is one occurrence of recurring task ${task.parentId}; ask for task ${task.parentId}'s occurrences instead`
          : `task ${id} runs once (schedule ${task.schedulingType}); it has no recurring occurrences`,
        { details: { id, parentId: task.parentId } },
      );
    return task;
  };

  app.get(
    '/v1/tasks/:id/next',
    {
      schema: {
        summary: "A recurring task's next occurrences, in its time zone and in UTC",
        tags: ['schedules'],
        params: IdParamsSchema,
        querystring: NextQuerySchema,
      },
    },
    async (req) => {
      const task = await loadDefinition(req);
      const { count } = req.query as { count?: number };
      return {
        taskId: task.id,
        status: task.status,
        paused: task.paused,
        timezone: task.schedule?.timezone ?? 'UTC',
        occurrences: nextOccurrencesOf(task, await c.now(), count ?? 10),
      };
    },
  );

  app.post(
    '/v1/tasks/:id/pause',
    { schema: { summary: 'Pause a recurring task: no new occurrences until resumed', tags: ['schedules'], params: IdParamsSchema } },
    async (req) => {
      userOnly(req, 'pause tasks');
      const { id } = req.params as { id: number };
      return c.store.pauseSchedule(id, ownerScope(req.principal), { now: await c.now(), actor: req.principal.userId });
    },
  );

  app.post(
    '/v1/tasks/:id/resume',
    {
      schema: {
        summary: 'Resume a paused recurring task from its next occurrence after now',
        tags: ['schedules'],
        params: IdParamsSchema,
      },
    },
    async (req) => {
      userOnly(req, 'resume tasks');
      const { id } = req.params as { id: number };
      const r = await c.store.resumeSchedule(id, ownerScope(req.principal), { now: await c.now(), actor: req.principal.userId });
      if (r.changed) c.kickOccurrences?.();
      return r;
    },
  );

  app.patch(
    '/v1/tasks/:id/schedule',
    {
      schema: {
        summary: "Replace a recurring task's schedule; it takes effect from the next occurrence",
        tags: ['schedules'],
        params: IdParamsSchema,
        body: ScheduleSchema,
      },
    },
    async (req) => {
      userOnly(req, 'edit tasks');
      const { id } = req.params as { id: number };
      const spec = normalizeSchedule(req.body as ScheduleInput);
      const task = await c.store.updateSchedule(id, ownerScope(req.principal), spec, { now: await c.now(), actor: req.principal.userId });
      c.kickOccurrences?.();
      return { task };
    },
  );

  app.post(
    '/v1/schedules/preview',
    {
      schema: {
        summary: 'The next occurrences of a schedule, without a task',
        tags: ['schedules'],
        body: PreviewBodySchema,
      },
    },
    async (req) => {
      userOnly(req, 'preview schedules');
      const body = req.body as { schedule: ScheduleInput; count?: number; after?: string | number };
      const spec = normalizeSchedule(body.schedule);
      const after = parseAfter(body.after, await c.now());
      // Strictly after `after`; startAt (inclusive) and endAt bound it as they bound a task.
      return { timezone: spec.timezone, occurrences: previewOccurrences(spec, after, body.count ?? 10) };
    },
  );
}
