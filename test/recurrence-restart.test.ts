// A frequently recurring task against the REAL `tsched up` and a real worker process: every scheduled
// instant of the window is handled exactly once across a restart of the server — run once, or recorded as
// missed or skipped — and none is silently dropped.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, cli, startUp, startWorkerProc, tempDir, type UpProcess, type WorkerProcess, waitFor } from './helpers/processes.js';

const EVERY = 2000;

describe('recurring task across a server restart (real server, real worker)', () => {
  const dataDir = tempDir('tsched-recur-up-');
  let up: UpProcess;
  let worker: WorkerProcess | undefined;

  beforeAll(async () => {
    up = await startUp({ dataDir, args: ['--no-local-worker'] });
  });
  afterAll(async () => {
    await worker?.stop('SIGKILL');
    await up?.stop('SIGKILL');
  });

  it('fires exactly once per occurrence; the instants of the downtime are run or recorded, never dropped', async () => {
    worker = await startWorkerProc(up, { name: 'recur-w', args: ['--cpus', '2', '--memory', '1GiB'] });
    let call = api(up.url, up.token);
    const sub = await call('POST', '/v1/tasks', {
      name: 'tick',
      command: ['sh', '-c', 'echo tick'],
      delayTolerance: '10s',
      schedule: { type: 'cron', cron: '*/2 * * * * *' },
    });
    expect(sub.status, JSON.stringify(sub.json)).toBe(201);
    const id = sub.json.task.id as number;
    const first = sub.json.task.recurrence.nextOccurrenceAt as number;

    const occurrences = async () =>
      (await call('GET', `/v1/tasks?parent=${id}&limit=1000`)).json.tasks as Array<{ id: number; occurrenceAt: number; status: string }>;
    await waitFor('three occurrences to be done', async () => (await occurrences()).filter((o) => o.status === 'done').length >= 3, 30_000);

    // Restart the server on the same data directory (a new free port, so the worker is restarted too).
    await worker.stop('SIGTERM');
    expect(await up.stop('SIGINT')).toBe(0);
    await new Promise((r) => setTimeout(r, 5 * EVERY)); // down across several occurrences
    up = await startUp({ dataDir, args: ['--no-local-worker'] });
    call = api(up.url, up.token);
    worker = await startWorkerProc(up, { name: 'recur-w', args: ['--cpus', '2', '--memory', '1GiB'] });
    const restartedAt = Date.now();
    await waitFor(
      'three more occurrences after the restart',
      async () => (await occurrences()).filter((o) => o.status === 'done' && o.occurrenceAt > restartedAt - EVERY).length >= 3,
      30_000,
    );
    // Stop creating more, so the window is closed when we look.
    expect((await call('POST', `/v1/tasks/${id}/pause`)).status).toBe(200);
    const def = (await call('GET', `/v1/tasks/${id}`)).json.task;
    const until = def.recurrence.lastOccurrenceAt as number;

    const occ = await occurrences();
    const events = (await call('GET', `/v1/tasks/${id}/events`)).json.events as Array<{ type: string; reason: string | null }>;
    const instantOf = (reason: string | null) => Date.parse((reason ?? '').split(': ')[0] as string);
    const missed = events.filter((e) => e.type === 'occurrence.missed').map((e) => instantOf(e.reason));
    const skipped = events.filter((e) => e.type === 'occurrence.skipped').map((e) => instantOf(e.reason));
    const created = occ.map((o) => o.occurrenceAt);

    // Exactly once: no instant has two occurrences, and none is both run and recorded.
    expect(new Set(created).size).toBe(created.length);
    const all = [...created, ...missed, ...skipped];
    expect(new Set(all).size, 'an instant handled twice').toBe(all.length);
    // Nothing silently dropped: every instant of the window is accounted for.
    const expected: number[] = [];
    for (let t = first; t <= until; t += EVERY) expected.push(t);
    expect([...all].sort((a, b) => a - b)).toEqual(expected);
    // The downtime left a trace: at least one instant was recorded missed (only the newest within tolerance runs).
    expect(missed.length).toBeGreaterThanOrEqual(1);
    // Every created occurrence ran at most once, and ran.
    for (const o of occ.filter((x) => x.status === 'done')) {
      const runs = (await call('GET', `/v1/tasks/${o.id}`)).json.runs as Array<{ outcome: string }>;
      expect(runs.filter((r) => r.outcome === 'succeeded')).toHaveLength(1);
    }
    // The CLI shows the schedule's next occurrences from the same server.
    const env = { TSCHED_CONFIG: up.configPath };
    const r = await cli(['resume', String(id)], env);
    expect(r.code, r.stderr).toBe(0);
    const next = await cli(['next', String(id), '--count', '3', '--json'], env);
    expect(next.code, next.stderr).toBe(0);
    expect(JSON.parse(next.stdout).occurrences).toHaveLength(3);
    const metrics = await (await fetch(`${up.url}/metrics`)).text();
    expect(metrics).toMatch(/tsched_occurrences_missed_total [1-9]/);
  });
});
