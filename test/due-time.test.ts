// A task due later starts at its due time, not at the next fallback pass, whatever else is waiting: through the real control plane
// (HTTP, SQLite store, scheduling loop) with the worker protocol spoken by hand, and the fallback pass
// pushed out to a minute so that only the due-time timer can start it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Embedded } from '../src/server/embedded.js';
import { type HandPlane, startHandPlane } from './helpers/hand-protocol.js';

const MiB = 1024 * 1024;

/** The parts of the answers this test reads. */
interface Answer {
  worker: { id: string };
  tasks: Array<{ id: number }>;
  assignments: Array<{ taskId: number }>;
}

describe('due times (real control plane, fallback pass a minute away)', () => {
  let plane: HandPlane<Answer>;
  let emb: Embedded;

  beforeAll(async () => {
    plane = await startHandPlane<Answer>('tsched-due-');
    emb = plane.emb;
  });
  afterAll(async () => {
    await plane?.close();
  });

  const call = (token: string, method: string, path: string, body?: unknown) => plane.call(token, method, path, body);

  it('starts a task due in 300 ms at that time when the pass that saw it waiting placed another task', async () => {
    const reg = await call(emb.workerToken, 'POST', '/v1/workers/register', {
      name: 'due-1',
      capacity: { cpus: 2000, memory: 128 * MiB, ports: null },
      executors: ['shell'],
    });
    expect(reg.status).toBe(200);
    const wid = reg.json.worker.id;
    const dueAt = Date.now() + 300;
    const spec = { command: ['/bin/true'], resources: { cpus: 1, memory: '32Mi' }, totalAttempts: 1 };
    // One request, so one pass sees both: it places `now` and finds `later` not due yet.
    const sub = await call(emb.token, 'POST', '/v1/tasks', {
      tasks: [
        { ...spec, name: 'now' },
        { ...spec, name: 'later', startAt: dueAt },
      ],
    });
    expect(sub.status).toBe(201);
    const [now, later] = sub.json.tasks.map((t) => t.id);

    const first = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 2, wait: 2000 });
    expect(first.json.assignments.map((a) => a.taskId)).toEqual([now]);
    // The slot `later` needs is free all along: only its due time holds it back.
    const second = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 2, wait: 3000 });
    const handedAt = Date.now();
    expect(second.json.assignments.map((a) => a.taskId)).toEqual([later]);
    expect(handedAt).toBeGreaterThanOrEqual(dueAt);
    // Without the timer it would wait for the fallback pass, a minute away (beyond this poll's 3 s wait).
    expect(handedAt - dueAt).toBeLessThan(1000);
  });

  it('a task due now that no worker can run does not hide the next due time', async () => {
    const reg = await call(emb.workerToken, 'POST', '/v1/workers/register', {
      name: 'due-2',
      capacity: { cpus: 2000, memory: 128 * MiB, ports: null },
      executors: ['shell'],
    });
    const wid = reg.json.worker.id;
    const dueAt = Date.now() + 300;
    const spec = { command: ['/bin/true'], resources: { cpus: 1, memory: '32Mi' }, totalAttempts: 1 };
    // `stuck` is due now and waits for a worker labelled zone=mars that never comes; a pass that finds it
    // places nothing, and must still set the timer for `later`.
    const sub = await call(emb.token, 'POST', '/v1/tasks', {
      tasks: [
        { ...spec, name: 'stuck', constraints: { zone: 'mars' } },
        { ...spec, name: 'later', startAt: dueAt },
      ],
    });
    expect(sub.status).toBe(201);
    const later = sub.json.tasks[1]!.id;
    const poll = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 2, wait: 3000 });
    const handedAt = Date.now();
    expect(poll.json.assignments.map((a) => a.taskId)).toEqual([later]);
    expect(handedAt).toBeGreaterThanOrEqual(dueAt);
    expect(handedAt - dueAt).toBeLessThan(1000);
  });
});
