// Recurring tasks under an injected clock, over a real SQLite store: the occurrence loop driven pass by pass
// (downtime across several occurrences, overlap policies), and the schedule API of a real control plane
// (next, pause, resume, edit, preview) with the same fake clock.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Task } from '../src/domain/task.js';
import { normalizeTask, type TaskInput } from '../src/domain/task-spec.js';
import { type ControlPlane, startControlPlane } from '../src/server/control-plane.js';
import { ensureCredentials } from '../src/server/credentials.js';
import { Metrics } from '../src/server/metrics.js';
import { OccurrenceLoop } from '../src/server/occurrences.js';
import { createSqliteStore, type KyselyStore } from '../src/store/index.js';
import { api } from './helpers/processes.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const iso = (t: number) => new Date(t).toISOString();
const at = (s: string) => Date.parse(s);
const quiet = pino({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'tsched-recur-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('occurrence loop with an injected clock (real SQLite store)', () => {
  let store: KyselyStore;
  let clock: number;
  let metrics: Metrics;
  let loop: OccurrenceLoop;
  let n = 0;

  beforeEach(async () => {
    store = createSqliteStore({ path: join(root, `loop-${n++}.db`) });
    await store.migrate();
    clock = 0;
    metrics = new Metrics(store);
    loop = new OccurrenceLoop({ store, log: quiet, metrics, now: async () => clock });
  });
  afterEach(async () => {
    await store.close();
  });

  const submit = async (input: TaskInput) => {
    const [t] = (await store.submitTasks('alice', [normalizeTask(input)], { now: clock, actor: 'alice' })).tasks;
    return t as Task;
  };
  const occurrences = async (id: number) =>
    (await store.listTasks({ owner: null, parentId: id, limit: 1000 })).tasks.sort((a, b) => a.occurrenceAt! - b.occurrenceAt!);
  const eventsOf = async (id: number, type: string) => (await store.listEvents(id)).filter((e) => e.type === type).map((e) => e.reason);
  const missedMetric = async () => (await metrics.occurrencesMissed.get()).values[0]?.value ?? 0;

  /** Runs an occurrence to success through the real store operations a worker's reports go through. */
  const runToSuccess = async (taskId: number) => {
    const { worker } = await store.registerWorker(
      {
        name: 'w1',
        capacity: { cpus: 4000, memory: 2 ** 31, ports: null },
        labels: {},
        executors: ['shell'],
        enforcement: { memory: 'none', cpu: 'none' },
        version: 't',
        hostname: 'h',
      },
      clock,
    );
    const [run] = (
      await store.applyPlan([{ taskId, workerId: worker.id, allocation: { cpus: 100, memory: 1024, ports: [], namedPorts: {} } }], {
        now: clock,
        leaseMs: 60_000,
        epoch: null,
        actor: 'scheduler',
      })
    ).runs;
    await store.finishRuns(
      [
        {
          runId: run!.id,
          token: run!.leaseToken,
          outcome: 'succeeded',
          exitCode: 0,
          reason: null,
          startedAt: clock,
          finishedAt: clock,
          usage: { peakMemory: null, cpuSeconds: null },
        },
      ],
      clock,
    );
  };

  it('server down across three occurrences: the one still within tolerance runs, the older ones are missed', async () => {
    clock = at('2026-01-01T08:00:00Z');
    const d = await submit({ command: ['true'], delayTolerance: '2h', schedule: { type: 'daily', at: '09:00' } });
    expect(d.recurrence?.nextOccurrenceAt).toBe(at('2026-01-01T09:00:00Z'));

    clock = at('2026-01-01T08:59:59Z');
    expect((await loop.pass()).created).toBe(0);
    clock = at('2026-01-01T09:00:00.200Z');
    expect(await loop.pass()).toMatchObject({ created: 1, missed: 0 });
    await runToSuccess((await occurrences(d.id))[0]!.id);

    // Down from Jan 1 10:00 to Jan 4 10:00: Jan 2, 3 and 4 at 09:00 fell due; Jan 4 is within its 2 h.
    clock = at('2026-01-04T10:00:00Z');
    expect(await loop.pass()).toMatchObject({ created: 1, missed: 2, skipped: 0 });
    const occ = await occurrences(d.id);
    expect(occ.map((o) => iso(o.occurrenceAt!))).toEqual(['2026-01-01T09:00:00.000Z', '2026-01-04T09:00:00.000Z']);
    expect(occ[1]).toMatchObject({ dueAt: at('2026-01-04T09:00:00Z'), startDeadline: at('2026-01-04T11:00:00Z'), status: 'waiting' });
    expect(await eventsOf(d.id, 'occurrence.missed')).toEqual([
      expect.stringMatching(/^2026-01-02T09:00:00.000Z: missed/),
      expect.stringMatching(/^2026-01-03T09:00:00.000Z: missed/),
    ]);
    expect(await missedMetric()).toBe(2);
    const def = (await store.getTask(d.id, null))!;
    expect(def.recurrence?.nextOccurrenceAt).toBe(at('2026-01-05T09:00:00Z'));
    // Nothing more until then, however often the loop runs.
    clock = at('2026-01-05T08:59:00Z');
    expect((await loop.pass()).created).toBe(0);
    await runToSuccess(occ[1]!.id);

    // Down past the tolerance of every instant (Jan 5, 6, 7 and 8): all missed, none runs, no burst.
    clock = at('2026-01-08T11:30:00Z');
    expect(await loop.pass()).toMatchObject({ created: 0, missed: 4 });
    expect((await occurrences(d.id)).length).toBe(2);
    expect(await missedMetric()).toBe(6);
    expect((await store.getTask(d.id, null))!.recurrence?.nextOccurrenceAt).toBe(at('2026-01-09T09:00:00Z'));
  });

  it('a year of downtime of a per-second cron is a bounded record, not a burst', async () => {
    clock = at('2026-01-01T00:00:00.500Z');
    const d = await submit({ command: ['true'], delayTolerance: '10s', schedule: { type: 'cron', cron: '* * * * * *' } });
    clock += 365 * DAY;
    const t0 = performance.now();
    const s = await loop.pass();
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(s.created).toBe(1);
    expect(s.missed).toBeGreaterThan(31_000_000);
    const missed = await eventsOf(d.id, 'occurrence.missed');
    expect(missed.length).toBe(101); // 100 listed one by one, then one bulk record
    expect(missed[100]).toMatch(/more between/);
  });

  it('overlap skip / queue / replace / allow, pass by pass', async () => {
    clock = at('2026-01-01T00:00:00.500Z');
    const mk = (overlap: 'skip' | 'queue' | 'replace' | 'allow') =>
      submit({ name: overlap, command: ['true'], schedule: { type: 'cron', cron: '* * * * *', overlap } });
    const skip = await mk('skip');
    const queue = await mk('queue');
    const replace = await mk('replace');
    const allow = await mk('allow');
    for (let k = 1; k <= 3; k++) {
      clock = at('2026-01-01T00:00:00.500Z') + k * 60_000;
      await loop.pass();
    }
    expect((await occurrences(skip.id)).length).toBe(1);
    expect(await eventsOf(skip.id, 'occurrence.skipped')).toHaveLength(2);
    const q = await occurrences(queue.id);
    expect(q.map((o) => o.paused)).toEqual([false, true, true]);
    const r = await occurrences(replace.id);
    expect(r.map((o) => o.status)).toEqual(['cancelled', 'cancelled', 'waiting']);
    expect((await occurrences(allow.id)).map((o) => o.status)).toEqual(['waiting', 'waiting', 'waiting']);
    // queue: the next held one is released when the previous ends, one at a time.
    await runToSuccess(q[0]!.id);
    expect((await loop.pass()).released).toBe(1);
    expect((await occurrences(queue.id)).map((o) => [o.status, o.paused])).toEqual([
      ['done', false],
      ['waiting', false],
      ['waiting', true],
    ]);
  });
});

describe('schedule API on a control plane with an injected clock', () => {
  let plane: ControlPlane;
  let store: KyselyStore;
  let clock = at('2026-03-07T12:00:00Z');
  let call: ReturnType<typeof api>;

  beforeEach(async () => {
    store = createSqliteStore({ path: join(root, `api-${Date.now()}.db`) });
    await store.migrate();
    const creds = await ensureCredentials(store, mkdtempSync(join(root, 'creds-')));
    plane = await startControlPlane({ store, port: 0, log: quiet, now: async () => clock });
    call = api(plane.url, creds.token);
  });
  afterEach(async () => {
    await plane.close();
    await store.close();
  });

  it('next, pause, resume, edit and preview, with stable errors', async () => {
    clock = at('2026-03-07T12:00:00Z');
    const sub = await call('POST', '/v1/tasks', {
      command: ['true'],
      schedule: { type: 'daily', at: '02:30', timezone: 'America/New_York' },
    });
    expect(sub.status).toBe(201);
    const id = sub.json.task.id as number;
    expect(sub.json.task.recurrence.nextOccurrenceAt).toBe(at('2026-03-08T07:00:00Z'));

    const next = await call('GET', `/v1/tasks/${id}/next?count=3`);
    expect(next.status).toBe(200);
    expect(next.json.timezone).toBe('America/New_York');
    // Spring forward on Mar 8: 02:30 does not exist and runs at 03:00 EDT.
    expect(next.json.occurrences).toEqual([
      { at: at('2026-03-08T07:00:00Z'), utc: '2026-03-08T07:00:00.000Z', local: '2026-03-08T03:00:00.000-04:00' },
      { at: at('2026-03-09T06:30:00Z'), utc: '2026-03-09T06:30:00.000Z', local: '2026-03-09T02:30:00.000-04:00' },
      { at: at('2026-03-10T06:30:00Z'), utc: '2026-03-10T06:30:00.000Z', local: '2026-03-10T02:30:00.000-04:00' },
    ]);
    expect((await call('GET', `/v1/tasks/${id}/next?count=0`)).json.error).toMatchObject({ code: 'VALIDATION_FAILED' });

    const p = await call('POST', `/v1/tasks/${id}/pause`);
    expect(p.json).toMatchObject({ changed: true, task: { paused: true } });
    // Paused over the next occurrence: nothing is created; resume continues after now.
    clock = at('2026-03-08T12:00:00Z');
    await plane.occurrences.pass();
    expect((await call('GET', `/v1/tasks?parent=${id}`)).json.tasks).toEqual([]);
    const r = await call('POST', `/v1/tasks/${id}/resume`);
    expect(r.json).toMatchObject({ changed: true, task: { paused: false, recurrence: { nextOccurrenceAt: at('2026-03-09T06:30:00Z') } } });

    const bad = await call('PATCH', `/v1/tasks/${id}/schedule`, { type: 'weekly', on: ['funday'], at: '09:00' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('VALIDATION_FAILED');
    expect(bad.json.error.issues[0].path).toBe('schedule.on');
    const unknown = await call('PATCH', `/v1/tasks/${id}/schedule`, { type: 'daily', when: '09:00' });
    expect(unknown.json.error.code).toBe('UNKNOWN_FIELD');
    const edit = await call('PATCH', `/v1/tasks/${id}/schedule`, { type: 'weekly', on: 'mon-fri', at: '09:00', timezone: 'Europe/London' });
    expect(edit.status).toBe(200);
    expect(edit.json.task).toMatchObject({ schedulingType: 'weekly', recurrence: { nextOccurrenceAt: at('2026-03-09T09:00:00Z') } });
    const types = (await call('GET', `/v1/tasks/${id}/events`)).json.events.map((e: { type: string }) => e.type);
    expect(types).toEqual(['task.submitted', 'task.paused', 'task.resumed', 'task.schedule_changed']);

    // The edited schedule takes effect: at Monday 09:00 London the occurrence is created.
    clock = at('2026-03-09T09:00:01Z');
    await plane.occurrences.pass();
    const occ = (await call('GET', `/v1/tasks?parent=${id}`)).json.tasks;
    expect(occ.map((t: Task) => [t.occurrenceAt, t.status])).toEqual([[at('2026-03-09T09:00:00Z'), expect.any(String)]]);

    // 409 for a task that is not a recurring definition.
    const once = (await call('POST', '/v1/tasks', { command: ['true'], resources: { cpus: 512 } })).json.task.id;
    for (const [m, path] of [
      ['GET', `/v1/tasks/${once}/next`],
      ['POST', `/v1/tasks/${once}/pause`],
      ['POST', `/v1/tasks/${occ[0].id}/resume`],
      ['PATCH', `/v1/tasks/${once}/schedule`],
    ] as const) {
      const res = await call(m, path, m === 'PATCH' ? { type: 'daily' } : undefined);
      expect(res.status, `${m} ${path}`).toBe(409);
      expect(res.json.error.code).toBe('NOT_RECURRING');
    }
    expect((await call('POST', '/v1/tasks/99999/pause')).json.error.code).toBe('TASK_NOT_FOUND');

    const prev = await call('POST', '/v1/schedules/preview', {
      schedule: { type: 'monthly', on: 31, at: '23:00' },
      count: 3,
      after: '2026-01-01T00:00:00Z',
    });
    expect(prev.json.occurrences.map((o: { utc: string }) => o.utc)).toEqual([
      '2026-01-31T23:00:00.000Z',
      '2026-02-28T23:00:00.000Z',
      '2026-03-31T23:00:00.000Z',
    ]);
    const badPrev = await call('POST', '/v1/schedules/preview', { schedule: { type: 'cron', cron: '0 0 30 2 *' } });
    expect(badPrev.status).toBe(400);
    expect(badPrev.json.error.issues[0]).toMatchObject({ path: 'schedule.cron', message: expect.stringMatching(/never/) });
  });
});
