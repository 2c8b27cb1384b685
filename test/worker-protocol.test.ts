// The worker protocol through the real server (`tsched up`, no local worker), spoken by hand over HTTP:
// a report riding on a poll is stored and acked, and the work its freed resources allowed comes back in
// the same response; runs in hand are never handed out twice; bad items are refused by name.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, startUp, type UpProcess } from './helpers/processes.js';

const MiB = 1024 * 1024;

describe('worker protocol: a report riding on a poll (real server)', () => {
  let up: UpProcess;
  let user: ReturnType<typeof api>;
  let worker: ReturnType<typeof api>;

  beforeAll(async () => {
    up = await startUp({ args: ['--no-local-worker'] });
    user = api(up.url, up.token);
    worker = api(up.url, up.workerToken);
  });
  afterAll(async () => {
    await up?.stop('SIGKILL');
  });

  /** A worker with room for exactly `slots` tasks of 1 cpu; labelled so that each test's tasks go to its own. */
  const register = async (name: string, slots: number) => {
    const r = await worker('POST', '/v1/workers/register', {
      name,
      capacity: { cpus: slots * 1000, memory: slots * 64 * MiB, ports: null },
      labels: { lane: name },
      executors: ['shell'],
    });
    expect(r.status).toBe(200);
    return r.json.worker.id as string;
  };
  const submit = async (n: number, lane: string) => {
    const tasks = Array.from({ length: n }, (_, i) => ({
      name: `${lane}-${i}`,
      command: ['/bin/true'],
      resources: { cpus: 1, memory: '64Mi' },
      constraints: { lane },
      totalAttempts: 1,
    }));
    const r = await user('POST', '/v1/tasks', { tasks });
    expect(r.status).toBe(201);
    return r.json.tasks.map((t: { id: number }) => t.id) as number[];
  };
  const poll = (id: string, body: Record<string, unknown>) => worker('POST', `/v1/workers/${id}/poll`, body);
  const ok = (a: { runId: number; token: string }) => ({
    runId: a.runId,
    token: a.token,
    outcome: 'succeeded',
    exitCode: 0,
    reason: null,
    startedAt: Date.now(),
    finishedAt: Date.now(),
  });
  const status = async (taskId: number) => (await user('GET', `/v1/tasks/${taskId}`)).json.task.status as string;

  it('stores the results, acks them, and returns the next assignments in the same response', async () => {
    const wid = await register('ride-1', 2);
    const ids = await submit(4, 'ride-1');
    const first = await poll(wid, { max: 2, wait: 2000 });
    expect(first.status).toBe(200);
    expect(first.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual(ids.slice(0, 2));

    const t0 = Date.now();
    const second = await poll(wid, { max: 2, wait: 10_000, results: first.json.assignments.map(ok) });
    expect(second.status).toBe(200);
    // Answered as soon as the pass its results kicked had placed the next two, not after the 10 s wait.
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(second.json.results).toEqual(first.json.assignments.map((a: { runId: number }) => ({ runId: a.runId, ok: true })));
    expect(second.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual(ids.slice(2, 4));
    expect(await status(ids[0]!)).toBe('done');
    expect(await status(ids[1]!)).toBe('done');
    expect(await status(ids[2]!)).toBe('in_progress');

    // Nothing left to place: a poll carrying results answers at once with the acks, it does not park.
    const t1 = Date.now();
    const third = await poll(wid, { max: 2, wait: 10_000, results: second.json.assignments.map(ok) });
    expect(Date.now() - t1).toBeLessThan(5000);
    expect(third.json.assignments).toEqual([]);
    expect(third.json.results.every((x: { ok: boolean }) => x.ok)).toBe(true);
    for (const id of ids) expect(await status(id)).toBe('done');
  });

  it('never hands a run in hand out again, and a plain poll still finds work placed meanwhile', async () => {
    const wid = await register('ride-2', 2);
    const ids = await submit(4, 'ride-2');
    const a = await poll(wid, { max: 2, wait: 2000 });
    expect(a.json.assignments).toHaveLength(2);
    // Finish one: the freed slot takes the third task; the second is still in hand.
    const b = await poll(wid, { max: 2, wait: 2000, results: [ok(a.json.assignments[0])] });
    expect(b.json.assignments.map((x: { taskId: number }) => x.taskId)).toEqual([ids[2]]);
    // A plain poll must not repeat the two runs in hand; nothing else fits.
    const c = await poll(wid, { max: 2, wait: 0 });
    expect(c.status).toBe(200);
    expect(c.json.assignments).toEqual([]);
    // Finishing both places the fourth.
    const d = await poll(wid, { max: 2, wait: 2000, results: [ok(a.json.assignments[1]), ok(b.json.assignments[0])] });
    expect(d.json.assignments.map((x: { taskId: number }) => x.taskId)).toEqual([ids[3]]);
    expect(d.json.results.map((x: { ok: boolean }) => x.ok)).toEqual([true, true]);
  });

  it('hands out each run once when a report-and-poll and a parked long poll race for it', async () => {
    const wid = await register('ride-4', 1);
    const [x] = await submit(1, 'ride-4');
    const first = await poll(wid, { max: 1, wait: 2000 });
    expect(first.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual([x]);
    // The agent's shape: a long poll stays parked while the report of a finished run rides on a poll
    // that does not wait.
    const t0 = Date.now();
    const parked = poll(wid, { max: 1, wait: 3000 }).then((r) => ({ ...r, ms: Date.now() - t0 }));
    await new Promise((r) => setTimeout(r, 200));
    const [y] = await submit(1, 'ride-4'); // waits: the only slot is taken
    const rider = await poll(wid, { max: 1, wait: 0, results: [ok(first.json.assignments[0])] });
    const long = await parked;
    const got = [...rider.json.assignments, ...long.json.assignments].map((a: { taskId: number }) => a.taskId);
    expect(got).toEqual([y]);
    // When the rider took it, the parked poll's wake brought nothing: it parked again until its wait ended
    // instead of answering empty-handed at once.
    if (rider.json.assignments.length === 1) expect(long.ms).toBeGreaterThanOrEqual(2500);
    expect(await status(x!)).toBe('done');
    expect(await status(y!)).toBe('in_progress');
  });

  it('a poll right after a report takes mailed work without a write, and never hands those runs out again', async () => {
    const wid = await register('ride-7', 3);
    const [x] = await submit(1, 'ride-7');
    const first = await poll(wid, { max: 3, wait: 2000 });
    expect(first.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual([x]);
    // The report heartbeats: the polls just after it write nothing, and the delivered marks of what they
    // take from the mail wait for the worker's next write.
    const rep = await poll(wid, { max: 3, wait: 0, results: [ok(first.json.assignments[0])] });
    expect(rep.json.results).toEqual([{ runId: first.json.assignments[0].runId, ok: true }]);
    const take = async (wait: number) => {
      const parked = poll(wid, { max: 3, wait });
      await new Promise((r) => setTimeout(r, 150));
      const [id] = await submit(1, 'ride-7');
      return { id: id!, res: await parked };
    };
    const y = await take(3000);
    expect(y.res.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual([y.id]);
    // Its mark is not written yet; a plain poll must still not hand it out again.
    const again = await poll(wid, { max: 3, wait: 0 });
    expect(again.json.assignments).toEqual([]);
    const z = await take(3000);
    expect(z.res.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual([z.id]);
    const done = await poll(wid, { max: 3, wait: 0, results: [...y.res.json.assignments, ...z.res.json.assignments].map(ok) });
    expect(done.json.results.map((a: { ok: boolean }) => a.ok)).toEqual([true, true]);
    expect(await status(y.id)).toBe('done');
    expect(await status(z.id)).toBe('done');
  });

  it('the work a report-and-poll made room for comes back in its response; the parked long poll is not woken for it', async () => {
    const wid = await register('ride-8', 1);
    const [x, y] = await submit(2, 'ride-8');
    const first = await poll(wid, { max: 1, wait: 2000 });
    expect(first.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual([x]);
    const t0 = Date.now();
    const parked = poll(wid, { max: 1, wait: 1500 }).then((r) => ({ ...r, ms: Date.now() - t0 }));
    await new Promise((r) => setTimeout(r, 150));
    const rider = await poll(wid, { max: 1, wait: 0, results: [ok(first.json.assignments[0])] });
    expect(rider.json.assignments.map((a: { taskId: number }) => a.taskId)).toEqual([y]);
    const long = await parked;
    expect(long.json.assignments).toEqual([]);
    expect(long.ms).toBeGreaterThanOrEqual(1400);
  });

  it('a parked long poll is answered at once with a cancel of a run it holds, and with a drain', async () => {
    const wid = await register('ride-9', 2);
    const [x] = await submit(1, 'ride-9');
    const first = await poll(wid, { max: 2, wait: 2000 });
    const run = first.json.assignments[0];
    expect(run.taskId).toBe(x);
    // The parked poll read the worker's state and cancels before it parked; a cancel must reach it anyway.
    let t0 = Date.now();
    const parked = poll(wid, { max: 2, wait: 10_000 });
    await new Promise((r) => setTimeout(r, 150));
    expect((await user('POST', `/v1/tasks/${x}/cancel`, {})).status).toBe(200);
    const woke = await parked;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(woke.json.cancel).toEqual([run.runId]);
    // The worker stops it and says so; then it parks again, and a drain must reach it too.
    const stopped = await poll(wid, { max: 2, wait: 0, results: [{ ...ok(run), outcome: 'cancelled', exitCode: null }] });
    expect(stopped.json.results).toEqual([{ runId: run.runId, ok: true }]);
    t0 = Date.now();
    const parked2 = poll(wid, { max: 2, wait: 10_000 });
    await new Promise((r) => setTimeout(r, 150));
    expect((await worker('POST', `/v1/workers/${wid}/drain`)).status).toBe(200);
    const drained = await parked2;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(drained.json.drain).toBe(true);
  });

  it('refuses a stale token item by item, and a malformed result by field, changing nothing', async () => {
    const wid = await register('ride-3', 1);
    const [id] = await submit(1, 'ride-3');
    const a = await poll(wid, { max: 1, wait: 2000 });
    const run = a.json.assignments[0];
    const stale = await poll(wid, { max: 1, wait: 0, results: [{ ...ok(run), token: 'not-the-lease-token' }] });
    expect(stale.status).toBe(200);
    expect(stale.json.results).toEqual([expect.objectContaining({ runId: run.runId, ok: false, code: 'LEASE_STALE' })]);
    expect(await status(id!)).toBe('in_progress');

    const bad = await poll(wid, { max: 1, wait: 0, results: [{ ...ok(run), outcome: 'finished-ish' }] });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(bad.json.error)).toContain('results');
    expect(await status(id!)).toBe('in_progress');

    const good = await poll(wid, { max: 1, wait: 0, results: [ok(run)] });
    expect(good.json.results).toEqual([{ runId: run.runId, ok: true }]);
    expect(await status(id!)).toBe('done');
  });

  it('a report riding on a poll from a draining worker is stored and acked, but takes nothing new', async () => {
    const wid = await register('ride-5', 1);
    const ids = await submit(2, 'ride-5');
    const a = await poll(wid, { max: 1, wait: 2000 });
    expect(a.json.assignments.map((x: { taskId: number }) => x.taskId)).toEqual([ids[0]]);
    expect(a.json.drain).toBe(false);
    expect((await worker('POST', `/v1/workers/${wid}/drain`)).status).toBe(200);
    const b = await poll(wid, { max: 1, wait: 0, results: [ok(a.json.assignments[0])] });
    expect(b.status).toBe(200);
    expect(b.json.results).toEqual([{ runId: a.json.assignments[0].runId, ok: true }]);
    expect(b.json.drain).toBe(true);
    expect(b.json.assignments).toEqual([]);
    expect(await status(ids[0]!)).toBe('done');
    expect(await status(ids[1]!)).toBe('waiting');
  });

  it('a report riding on a poll from an unknown worker is refused by code, and nothing of it is stored', async () => {
    const wid = await register('ride-6', 1);
    const [id] = await submit(1, 'ride-6');
    const a = await poll(wid, { max: 1, wait: 2000 });
    const r = await poll('w_nobody', { max: 1, wait: 0, results: [ok(a.json.assignments[0])] });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('WORKER_NOT_FOUND');
    expect(await status(id!)).toBe('in_progress');
  });
});
