// Issue 3 through the real server and a real worker: waiting with the right explanation, starting the
// moment resources free, urgent work overtaking, and a big task not starved by a stream of small ones.

import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { api, startUp, startWorkerProc, tempDir, type UpProcess, type WorkerProcess, waitFor } from './helpers/processes.js';

describe('resource manager (real server, real worker)', () => {
  let up: UpProcess;
  let call: ReturnType<typeof api>;
  let worker: WorkerProcess;
  const scratch = tempDir('tsched-rm-');
  let gate = 0;
  const gates: Array<() => void> = [];

  beforeAll(async () => {
    up = await startUp({ args: ['--no-local-worker'] });
    call = api(up.url, up.token);
    worker = await startWorkerProc(up, { name: 'rm-w', args: ['--cpus', '2', '--memory', '2GiB', '--kill-grace', '1s'] });
  });
  // A failed expectation must not leave blockers holding the worker for the next test.
  afterEach(() => {
    for (const g of gates.splice(0)) g();
  });
  afterAll(async () => {
    await worker?.stop('SIGKILL');
    await up?.stop('SIGKILL');
  });

  /** A task that holds its resources until its gate file appears. */
  const blocker = async (cpus: number, extra: Record<string, unknown> = {}) => {
    const file = join(scratch, `gate-${++gate}`);
    const r = await call('POST', '/v1/tasks', {
      command: ['sh', '-c', `while [ ! -f ${file} ]; do sleep 0.05; done`],
      resources: { cpus, memory: '64Mi' },
      executionCap: '2m',
      ...extra,
    });
    expect(r.status).toBe(201);
    const release = () => writeFileSync(file, '');
    gates.push(release);
    return { id: r.json.task.id as number, release };
  };
  const show = async (id: number) => (await call('GET', `/v1/tasks/${id}`)).json;
  const running = (id: number) =>
    waitFor(`task ${id} to run`, async () => ((await show(id)).runs[0]?.state === 'running' ? true : null), 20_000);
  const finished = (id: number) =>
    waitFor(
      `task ${id} to finish`,
      async () => {
        const s = await show(id);
        return ['done', 'failed', 'cancelled'].includes(s.task.status) ? s : null;
      },
      30_000,
    );

  it('keeps a task waiting with the right explanation and starts it the moment resources free', async () => {
    const a = await blocker(1);
    const b = await blocker(1);
    await running(a.id);
    await running(b.id);
    const c = await blocker(1);
    const waiting = await waitFor('an explanation', async () => {
      const s = await show(c.id);
      return s.explanation ? s : null;
    });
    expect(waiting.task.status).toBe('waiting');
    expect(waiting.explanation.reasons.map((r: { code: string }) => r.code)).toContain('cpu');
    expect(waiting.explanation.message).toMatch(/no worker has 1 cpus free \(largest free: 0 cpus on rm-w\)/);
    expect(waiting.explanation.message).toMatch(/in band normal/);
    expect(waiting.explanation.estimatedStart).toBeGreaterThan(Date.now());
    const ex = await call('GET', `/v1/tasks/${c.id}/explain`);
    // The same explanation, but for its relative time ("in 2m", later "in 1m59s"), which moves on between the reads.
    const stable = (m: string) => m.replace(/\(in [^)]*\)/, '(in …)');
    expect(stable(ex.json.explanation.message)).toBe(stable(waiting.explanation.message));

    a.release();
    const sa = await finished(a.id);
    const sc = await waitFor('c to be assigned', async () => {
      const s = await show(c.id);
      return s.runs[0] ? s : null;
    });
    // Freed resources are reused at once: a run ending triggers a pass.
    expect(sc.runs[0].assignedAt - sa.runs[0].finishedAt).toBeLessThan(1500);
    b.release();
    c.release();
    await finished(b.id);
    await finished(c.id);
  });

  it('an urgent task overtakes waiting normal ones', async () => {
    const x = await blocker(1);
    const y = await blocker(1);
    await running(x.id);
    await running(y.id);
    const normals = [await blocker(1), await blocker(1), await blocker(1)];
    const urgent = await blocker(1, { priority: 'urgent' });
    x.release();
    const s = await waitFor('the urgent task to start', async () => {
      const u = await show(urgent.id);
      return u.runs[0] ? u : null;
    });
    expect(s.runs).toHaveLength(1);
    for (const n of normals) expect((await show(n.id)).task.status).toBe('waiting');
    for (const t of [y, urgent, ...normals]) t.release();
    for (const t of [y, urgent, ...normals]) await finished(t.id);
  });

  it('a blocked head of the queue longer than a scheduling window does not hold back a task that fits behind it', async () => {
    // One cpu is taken for two minutes; 100 two-cpu tasks wait for the whole worker. A 1-cpu task submitted
    // after them fits now, and ends (its cap) long before the head's reservation: it must backfill, though
    // the server loads candidates in a window smaller than the blocked head.
    const hold = await blocker(1, { executionCap: '2m' });
    await running(hold.id);
    const heads = Array.from({ length: 100 }, (_, i) => ({
      name: `head-${i}`,
      command: ['true'],
      resources: { cpus: 2, memory: '64Mi' },
      executionCap: '10s',
    }));
    const r = await call('POST', '/v1/tasks', { tasks: heads });
    expect(r.status).toBe(201);
    const small = await call('POST', '/v1/tasks', { command: ['true'], resources: { cpus: 1, memory: '16Mi' }, executionCap: '10s' });
    await waitFor(
      'the small task to run behind the blocked head',
      async () => ((await show(small.json.task.id)).task.status === 'done' ? true : null),
      10_000,
    );
    expect((await show(r.json.tasks[0].id)).task.status).toBe('waiting');
    hold.release();
    for (const t of r.json.tasks as Array<{ id: number }>) await finished(t.id);
  }, 120_000);

  it('a big task is not starved by a stream of small ones', async () => {
    // Keep the worker busy with small 1-cpu tasks arriving faster than they finish; a 2-cpu task needs the
    // whole worker. Without a reservation it would wait as long as the stream lasts.
    const stopFile = join(scratch, 'stream-stop');
    const small = () =>
      call('POST', '/v1/tasks', { command: ['sleep', '0.4'], resources: { cpus: 1, memory: '16Mi' }, executionCap: '2s' });
    for (let i = 0; i < 4; i++) await small();
    const streaming = (async () => {
      const until = Date.now() + 15_000;
      while (!existsSync(stopFile) && Date.now() < until) {
        await small();
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    await new Promise((r) => setTimeout(r, 800));
    const bigAt = Date.now();
    const big = await call('POST', '/v1/tasks', { command: ['true'], resources: { cpus: 2, memory: '64Mi' }, executionCap: '10s' });
    const s = await waitFor(
      'the big task to run',
      async () => {
        const t = await show(big.json.task.id);
        return t.task.status === 'done' ? t : null;
      },
      20_000,
    );
    writeFileSync(stopFile, '');
    await streaming;
    // It starts once the small tasks running when it arrived reach their caps (2 s) at the latest.
    expect(s.runs[0].assignedAt - bigAt).toBeLessThan(4_000);
    const all = (await call('GET', '/v1/tasks?limit=1000')).json.tasks as Array<{ id: number; status: string }>;
    for (const t of all) if (t.status === 'waiting' || t.status === 'in_progress') await finished(t.id);
  });
});
