// A worker's results free room, and the pass they kick places what waited for it; but while the queue is
// drained (the last pass placed every task that was due) they kick none: it would find nothing. Through the
// real control plane (HTTP, SQLite store, scheduling loop) with the worker protocol spoken by hand, and the
// fallback pass pushed out to a minute so that only the kicks under test can place anything.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Embedded } from '../src/server/embedded.js';
import { type HandPlane, startHandPlane } from './helpers/hand-protocol.js';

const MiB = 1024 * 1024;

/** The parts of the answers this test reads. */
interface Answer {
  worker: { id: string };
  task: { id: number; status: string; attempts: number };
  tasks: Array<{ id: number }>;
  assignments: Array<{ taskId: number; runId: number; token: string; attempt: number }>;
  results: Array<{ ok: boolean }>;
}

describe('passes for freed room (real control plane, fallback pass a minute away)', () => {
  let plane: HandPlane<Answer>;
  let emb: Embedded;

  beforeAll(async () => {
    plane = await startHandPlane<Answer>('tsched-room-');
    emb = plane.emb;
  });
  afterAll(async () => {
    await plane?.close();
  });

  const call = (token: string, method: string, path: string, body?: unknown) => plane.call(token, method, path, body);

  /** A worker with room for `cores` one-core tasks. */
  const register = async (name: string, cores: number) => {
    const reg = await call(emb.workerToken, 'POST', `/v1/workers/register`, {
      name,
      capacity: { cpus: cores * 1000, memory: cores * 64 * MiB, ports: null },
      executors: ['shell'],
    });
    expect(reg.status).toBe(200);
    return reg.json.worker.id;
  };

  /** Takes a test's worker out of the placements of the tests after it. */
  const drain = async (wid: string) => expect((await call(emb.workerToken, 'POST', `/v1/workers/${wid}/drain`)).status).toBe(200);

  const spec = { command: ['/bin/true'], resources: { cpus: 1, memory: '32Mi' } };
  const result = (a: Answer['assignments'][number], outcome: 'succeeded' | 'failed') => {
    const at = Date.now();
    return {
      runId: a.runId,
      token: a.token,
      outcome,
      exitCode: outcome === 'succeeded' ? 0 : 1,
      reason: null,
      startedAt: at,
      finishedAt: at,
    };
  };

  it('places the task that waited for room as soon as a result frees it', async () => {
    const wid = await register('room-1', 1);
    const sub = await call(emb.token, 'POST', '/v1/tasks', { tasks: [spec, spec] });
    expect(sub.status).toBe(201);
    const [first, second] = sub.json.tasks.map((t) => t.id);
    const got = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 2, wait: 2000 });
    expect(got.json.assignments.map((a) => a.taskId)).toEqual([first]);
    // The report and poll in one request: the pass its result kicks places `second` in the freed core.
    const t0 = Date.now();
    const rep = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, {
      max: 1,
      wait: 0,
      results: [result(got.json.assignments[0]!, 'succeeded')],
    });
    expect(rep.json.results).toEqual([{ runId: got.json.assignments[0]!.runId, ok: true }]);
    let handed = rep.json.assignments;
    if (handed.length === 0)
      handed = (await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 1, wait: 3000 })).json.assignments;
    expect(handed.map((a) => a.taskId)).toEqual([second]);
    expect(Date.now() - t0).toBeLessThan(1000);
    await drain(wid);
  });

  it('runs no pass for a result while every due task is placed', async () => {
    const wid = await register('room-2', 4);
    const sub = await call(emb.token, 'POST', '/v1/tasks', spec);
    expect(sub.status).toBe(201);
    const got = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 4, wait: 2000 });
    expect(got.json.assignments.map((a) => a.taskId)).toEqual([sub.json.task.id]);
    // Let the pass that placed it end (its follow-ups, if any, too): the queue is then drained.
    await new Promise((r) => setTimeout(r, 200));
    const before = emb.plane.scheduler.nextPass();
    const rep = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/report`, {
      results: [result(got.json.assignments[0]!, 'succeeded')],
    });
    expect(rep.status).toBe(200);
    expect(rep.json.results[0]!.ok).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(emb.plane.scheduler.nextPass()).toBe(before);
    // A submit still kicks one, and it places the task.
    const next = await call(emb.token, 'POST', '/v1/tasks', spec);
    const again = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 4, wait: 2000 });
    expect(again.json.assignments.map((a) => a.taskId)).toEqual([next.json.task.id]);
    expect(emb.plane.scheduler.nextPass()).toBeGreaterThan(before);
    await drain(wid);
  });

  it('places a retry that a result makes due at once, though the queue was drained', async () => {
    const wid = await register('room-3', 4);
    const sub = await call(emb.token, 'POST', '/v1/tasks', { ...spec, totalAttempts: 2, retry: { backoff: 0 } });
    expect(sub.status).toBe(201);
    const got = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 4, wait: 2000 });
    expect(got.json.assignments.map((a) => [a.taskId, a.attempt])).toEqual([[sub.json.task.id, 1]]);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const rep = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/report`, { results: [result(got.json.assignments[0]!, 'failed')] });
    expect(rep.json.results[0]!.ok).toBe(true);
    // Without a pass for the retry it would wait for the fallback, a minute away (beyond this poll's wait).
    const again = await call(emb.workerToken, 'POST', `/v1/workers/${wid}/poll`, { max: 4, wait: 3000 });
    expect(again.json.assignments.map((a) => [a.taskId, a.attempt])).toEqual([[sub.json.task.id, 2]]);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
