import { describe, expect, it } from 'vitest';
import { TschedError } from '../domain/errors.js';
import type { Task } from '../domain/task.js';
import type { WorkerWithLoad } from '../domain/worker.js';
import { DEFAULT_SCHEDULER_CONFIG, explain, plan, resolveConfig } from './index.js';
import { makeTask, makeWorker } from './synthetic.js';

const GiB = 1024 ** 3;
const MIN = 60_000;
const NOW = Date.UTC(2025, 0, 15, 14, 0, 0);

const placedIds = (p: ReturnType<typeof plan>) => p.placements.map((d) => d.taskId);

describe('order', () => {
  it('serves higher bands first, then least slack, then FIFO by id', () => {
    const w = makeWorker({ id: 'w1', cpus: 100_000, memory: 100 * GiB });
    const tasks = [
      makeTask({ id: 1, priority: 25, dueAt: NOW, delayTolerance: 60 * MIN }),
      makeTask({ id: 2, priority: 75, dueAt: NOW, delayTolerance: 60 * MIN }),
      makeTask({ id: 3, priority: 50, dueAt: NOW, delayTolerance: 30 * MIN }),
      makeTask({ id: 4, priority: 50, dueAt: NOW, delayTolerance: 10 * MIN }),
      makeTask({ id: 6, priority: 50, dueAt: NOW, delayTolerance: 20 * MIN }),
      makeTask({ id: 5, priority: 50, dueAt: NOW, delayTolerance: 20 * MIN }),
    ];
    const p = plan({ workers: [w], tasks }, NOW, { deferralThreshold: 1 });
    expect(placedIds(p)).toEqual([2, 4, 5, 6, 3, 1]);
  });

  it('promotes a task whose start deadline is within the urgency window above every band', () => {
    const w = makeWorker({ id: 'w1', cpus: 1000, memory: GiB });
    const tasks = [
      makeTask({ id: 1, priority: 75, dueAt: NOW, delayTolerance: 60 * MIN }),
      makeTask({ id: 2, priority: 10, dueAt: NOW - 59 * MIN, delayTolerance: 60 * MIN }), // 1 min left
    ];
    const p = plan({ workers: [w], tasks }, NOW, { urgencyWindowMs: 2 * MIN });
    expect(placedIds(p)).toEqual([2]);
    const e = p.explanations.get(1);
    expect(e?.band).toBe('high');
    // Without promotion the high task wins.
    expect(placedIds(plan({ workers: [w], tasks }, NOW, { urgencyWindowMs: 0 }))).toEqual([1]);
  });

  it('serves a task that can still start in time before one already late, for lateDemotionMs', () => {
    const w = makeWorker({ id: 'w1', cpus: 1000, memory: GiB });
    const late = (by: number) => makeTask({ id: 1, dueAt: NOW - 10 * MIN - by, delayTolerance: 10 * MIN });
    const inTime = makeTask({ id: 2, dueAt: NOW, delayTolerance: MIN }); // 1 min left
    // Late by 5 min: EDF would start it (earliest deadline) and make task 2 late as well.
    const p = plan({ workers: [w], tasks: [late(5 * MIN), inTime] }, NOW);
    expect(placedIds(p)).toEqual([2]);
    expect(p.explanations.get(1)?.band).toBe('urgent'); // still above every lower band
    // Late for longer than lateDemotionMs (10 min): it ranks by its deadline again, first.
    expect(placedIds(plan({ workers: [w], tasks: [late(11 * MIN), inTime] }, NOW))).toEqual([1]);
    expect(placedIds(plan({ workers: [w], tasks: [late(5 * MIN), inTime] }, NOW, { lateDemotionMs: 0 }))).toEqual([1]);
  });
});

describe('no head-of-line blocking', () => {
  it('places smaller tasks behind one that fits nowhere', () => {
    const workers = [makeWorker({ id: 'w1', cpus: 4000, memory: 8 * GiB }), makeWorker({ id: 'w2', cpus: 4000, memory: 8 * GiB })];
    const tasks = [
      makeTask({ id: 1, cpus: 8000, memory: GiB, dueAt: NOW - 10 * MIN }),
      makeTask({ id: 2, cpus: 2000, memory: GiB, dueAt: NOW }),
      makeTask({ id: 3, cpus: 2000, memory: GiB, dueAt: NOW }),
      makeTask({ id: 4, cpus: 4000, memory: GiB, dueAt: NOW }),
    ];
    const p = plan({ workers, tasks }, NOW);
    expect(placedIds(p).sort()).toEqual([2, 3, 4]);
    const e = p.explanations.get(1);
    expect(e?.reasons.map((r) => r.code)).toEqual(['too_large']);
    expect(e?.message).toContain('needs more than any worker has');
    expect(e?.estimatedStart).toBeNull();
  });
});

describe('reservation and EASY backfill', () => {
  // One 4-cpu worker; 2 cpus busy until minute 6. A 4-cpu task waits; 1-cpu tasks keep arriving.
  function simulate(smallCapMs: number, passes: number) {
    let live: Array<{ runId: number; taskId: number; cpus: number; memory: number; endsBy: number }> = [
      { runId: 1, taskId: 100, cpus: 2000, memory: GiB, endsBy: NOW + 6 * MIN },
    ];
    const waiting = new Map<number, Task>([[1, makeTask({ id: 1, cpus: 4000, memory: GiB, dueAt: NOW - MIN, delayTolerance: 60 * MIN })]]);
    let nextId = 2;
    let runId = 2;
    let bigStartedAt: number | null = null;
    let backfilled = 0;
    const reservations: number[] = [];
    for (let k = 0; k < passes; k++) {
      const now = NOW + k * MIN;
      live = live.filter((r) => r.endsBy > now);
      for (let j = 0; j < 2; j++) {
        const id = nextId++;
        waiting.set(id, makeTask({ id, cpus: 1000, memory: GiB / 4, dueAt: now, delayTolerance: 60 * MIN, executionCap: smallCapMs }));
      }
      const w = makeWorker({ id: 'w1', cpus: 4000, memory: 16 * GiB, live });
      const p = plan({ workers: [w], tasks: [...waiting.values()] }, now);
      for (const r of p.reservations) reservations.push(r.at);
      for (const d of p.placements) {
        const t = waiting.get(d.taskId) as Task;
        waiting.delete(d.taskId);
        if (t.id === 1) bigStartedAt = now;
        else backfilled++;
        live.push({ runId: runId++, taskId: t.id, cpus: t.resources.cpus, memory: t.resources.memory, endsBy: now + t.executionCap });
      }
    }
    return { bigStartedAt, backfilled, reservations };
  }

  it('starts the big task when the running work reaches its cap, despite a stream of long small tasks', () => {
    const r = simulate(30 * MIN, 12);
    expect(r.reservations[0]).toBe(NOW + 6 * MIN);
    expect(r.bigStartedAt).toBe(NOW + 6 * MIN);
  });

  it('backfills short tasks that end before the reservation', () => {
    const r = simulate(90_000, 12);
    expect(r.bigStartedAt).not.toBeNull();
    expect(r.bigStartedAt as number).toBeLessThanOrEqual(NOW + 6 * MIN);
    expect(r.backfilled).toBeGreaterThan(0);
  });

  it('backfills on the reserved worker when the room left at the reservation time suffices', () => {
    // 8-cpu worker, 6 busy until +6m; big task wants 4 → at +6m there are 8 free, 4 spare for backfill.
    const w = makeWorker({
      id: 'w1',
      cpus: 8000,
      memory: 16 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 6000, memory: GiB, endsBy: NOW + 6 * MIN }],
    });
    const tasks = [
      makeTask({ id: 1, cpus: 4000, memory: GiB, dueAt: NOW - MIN }),
      makeTask({ id: 2, cpus: 1000, memory: GiB, executionCap: 60 * MIN, dueAt: NOW }),
      makeTask({ id: 3, cpus: 1000, memory: GiB, executionCap: 60 * MIN, dueAt: NOW }),
    ];
    const p = plan({ workers: [w], tasks }, NOW, { deferralThreshold: 1 });
    expect(p.reservations).toEqual([{ taskId: 1, workerId: 'w1', at: NOW + 6 * MIN }]);
    expect(placedIds(p)).toEqual([2, 3]);
    const tasks2 = [
      ...tasks,
      makeTask({ id: 4, cpus: 1000, memory: GiB, executionCap: 60 * MIN, dueAt: NOW }),
      makeTask({ id: 5, cpus: 1000, memory: GiB, executionCap: 60 * MIN, dueAt: NOW }),
    ];
    const w2 = makeWorker({
      id: 'w1',
      cpus: 8000,
      memory: 16 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 5000, memory: GiB, endsBy: NOW + 6 * MIN }],
    });
    const p2 = plan({ workers: [w2], tasks: tasks2 }, NOW, { deferralThreshold: 1 });
    // 3 free now, 8 at +6m: 4 spare for long backfills → tasks 2,3,4 fit now (3 cpus), all within spare.
    expect(placedIds(p2)).toEqual([2, 3, 4]);
    expect(p2.explanations.get(5)?.reasons.map((r) => r.code)).toEqual(['cpu']);
  });
});

describe('fair share (DRF)', () => {
  it('splits a cluster between two owners by dominant share, counting what they already run', () => {
    const w = makeWorker({
      id: 'w1',
      cpus: 10_000,
      memory: 100 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 2000, memory: GiB, endsBy: NOW + MIN, owner: 'alice' }],
    });
    const tasks: Task[] = [];
    // alice's tasks all have less slack: plain EDF would give her everything.
    for (let i = 0; i < 8; i++) tasks.push(makeTask({ id: 1 + i, owner: 'alice', cpus: 1000, memory: GiB, delayTolerance: 10 * MIN }));
    for (let i = 0; i < 8; i++) tasks.push(makeTask({ id: 20 + i, owner: 'bob', cpus: 1000, memory: GiB, delayTolerance: 50 * MIN }));
    const p = plan({ workers: [w], tasks }, 0, { deferralThreshold: 1 });
    const ids = placedIds(p);
    const alice = ids.filter((id) => id < 20).length;
    const bob = ids.filter((id) => id >= 20).length;
    expect(alice + bob).toBe(8);
    expect(alice + 2).toBe(bob); // alice already runs 2 cpus: 3 + 2 = 5 = bob
    expect(bob).toBe(5);
  });

  it('takes per-owner usage from Snapshot.ownerUsage when the store provides it', () => {
    const w = makeWorker({
      id: 'w1',
      cpus: 10_000,
      memory: 100 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 2000, memory: GiB, endsBy: NOW + MIN }],
    });
    const tasks: Task[] = [];
    for (let i = 0; i < 8; i++) tasks.push(makeTask({ id: 1 + i, owner: 'alice', cpus: 1000, memory: GiB, delayTolerance: 10 * MIN }));
    for (let i = 0; i < 8; i++) tasks.push(makeTask({ id: 20 + i, owner: 'bob', cpus: 1000, memory: GiB, delayTolerance: 50 * MIN }));
    const p = plan({ workers: [w], tasks, ownerUsage: { alice: { cpus: 2000, memory: GiB } } }, 0, { deferralThreshold: 1 });
    expect(placedIds(p).filter((id) => id >= 20).length).toBe(5);
  });
});

describe('quotas', () => {
  it('holds tasks past an owner quota on cpu or memory with a named reason', () => {
    const w = makeWorker({
      id: 'w1',
      cpus: 64_000,
      memory: 256 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 1000, memory: GiB, endsBy: NOW + 5 * MIN, owner: 'alice' }],
    });
    const tasks = [1, 2, 3].map((id) => makeTask({ id, owner: 'alice', cpus: 1000, memory: GiB }));
    tasks.push(
      makeTask({ id: 10, owner: 'bob', cpus: 1000, memory: 4 * GiB }),
      makeTask({ id: 11, owner: 'bob', cpus: 1000, memory: 4 * GiB }),
    );
    tasks.push(makeTask({ id: 20, owner: 'carol', cpus: 3000, memory: GiB }));
    const p = plan({ workers: [w], tasks }, NOW, {
      quotas: { alice: { cpus: 3000 }, bob: { memory: 6 * GiB } },
      defaultQuota: { cpus: 2000 },
    });
    expect(placedIds(p).sort((a, b) => a - b)).toEqual([1, 2, 10]);
    const a3 = p.explanations.get(3);
    expect(a3?.reasons[0]?.code).toBe('quota_cpu');
    expect(a3?.estimatedStart).toBe(NOW + 5 * MIN);
    expect(a3?.message).toContain('quota');
    expect(p.explanations.get(11)?.reasons[0]?.code).toBe('quota_memory');
    expect(p.explanations.get(20)?.reasons[0]?.code).toBe('quota_cpu');
    expect(p.stats.quotaBlocked).toBe(3);
  });
});

describe('off-peak deferral', () => {
  const busy = (fraction: number) =>
    makeWorker({
      id: 'w1',
      cpus: 10_000,
      memory: 10 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 10_000 * fraction, memory: GiB, endsBy: NOW + 10 * MIN }],
    });
  const tasks = () => [
    makeTask({ id: 1, cpus: 100, memory: 1, dueAt: NOW, delayTolerance: 120 * MIN }), // ample slack, normal
    makeTask({ id: 2, cpus: 100, memory: 1, dueAt: NOW, delayTolerance: 10 * MIN }), // little slack
    makeTask({ id: 3, cpus: 100, memory: 1, dueAt: NOW, delayTolerance: 120 * MIN, priority: 75 }), // high
  ];

  it('holds delayable tasks while utilization is above the threshold and other work needs the room', () => {
    const needy = makeTask({ id: 4, cpus: 5000, memory: 1, dueAt: NOW, delayTolerance: 5 * MIN }); // fits nowhere now
    const p = plan({ workers: [busy(0.85)], tasks: [...tasks(), needy] }, NOW);
    expect(placedIds(p).sort()).toEqual([2, 3]);
    const e = p.explanations.get(1);
    expect(e?.reasons[0]?.code).toBe('deferred_off_peak');
    expect(e?.estimatedStart).toBe(NOW + MIN); // held at most deferralMaxHoldMs (1 min) past its due time
    expect(e?.message).toMatch(/^Deferred to off-peak: the cluster is 8\d% busy \(threshold 80%\) and it has 2h of slack/);
    expect(e?.message).toMatch(/when it has been held 1m/);
    expect(p.stats.deferred).toBe(1);
    // Without the cap it would wait until its 2 h of slack falls to the 10 min deferral slack.
    const uncapped = plan({ workers: [busy(0.85)], tasks: [...tasks(), needy] }, NOW, { deferralMaxHoldMs: 24 * 60 * MIN });
    expect(uncapped.explanations.get(1)?.estimatedStart).toBe(NOW + 110 * MIN);
  });

  it('holds a task at most deferralMaxHoldMs past its due time, then it competes like any other', () => {
    const needy = makeTask({ id: 4, cpus: 5000, memory: 1, dueAt: NOW, delayTolerance: 5 * MIN });
    const held = makeTask({ id: 1, cpus: 100, memory: 1, dueAt: NOW - 59_000, delayTolerance: 120 * MIN });
    expect(placedIds(plan({ workers: [busy(0.85)], tasks: [held, needy] }, NOW))).toEqual([]);
    const late = makeTask({ id: 1, cpus: 100, memory: 1, dueAt: NOW - 61_000, delayTolerance: 120 * MIN });
    expect(placedIds(plan({ workers: [busy(0.85)], tasks: [late, needy] }, NOW))).toEqual([1]);
    expect(placedIds(plan({ workers: [busy(0.85)], tasks: [late, needy] }, NOW, { deferralMaxHoldMs: 120_000 }))).toEqual([]);
  });

  it('lets them go when nothing else waits for room, or once utilization drops', () => {
    expect(placedIds(plan({ workers: [busy(0.85)], tasks: tasks() }, NOW)).sort()).toEqual([1, 2, 3]);
    const needy = makeTask({ id: 4, cpus: 4000, memory: 1, dueAt: NOW, delayTolerance: 5 * MIN });
    expect(placedIds(plan({ workers: [busy(0.5)], tasks: [...tasks(), needy] }, NOW)).sort()).toEqual([1, 2, 3, 4]);
  });
});

describe('scoring', () => {
  const workers = () => [
    makeWorker({ id: 'empty', cpus: 8000, memory: 16 * GiB }),
    makeWorker({
      id: 'half',
      cpus: 8000,
      memory: 16 * GiB,
      live: [{ runId: 1, taskId: 100, cpus: 4000, memory: 8 * GiB, endsBy: NOW + MIN }],
    }),
  ];
  it('binpack picks the fullest worker that fits; spread the emptiest', () => {
    const t = [makeTask({ id: 1, cpus: 1000, memory: GiB })];
    expect(plan({ workers: workers(), tasks: t }, NOW).placements[0].workerId).toBe('half');
    expect(plan({ workers: workers(), tasks: t }, NOW, { placement: 'spread' }).placements[0].workerId).toBe('empty');
  });
  it("a task's own placement overrides the server's", () => {
    const t = [makeTask({ id: 1, cpus: 1000, memory: GiB, placement: 'spread' })];
    expect(plan({ workers: workers(), tasks: t }, NOW, { placement: 'binpack' }).placements[0].workerId).toBe('empty');
  });
  it('binpack leaves the big hole for the big task', () => {
    const ws = [makeWorker({ id: 'a', cpus: 2000, memory: 64 * GiB }), makeWorker({ id: 'b', cpus: 8000, memory: 64 * GiB })];
    const t = [makeTask({ id: 1, cpus: 2000, memory: GiB }), makeTask({ id: 2, cpus: 8000, memory: GiB, dueAt: 1 })];
    const p = plan({ workers: ws, tasks: t }, NOW);
    expect(p.placements.map((d) => [d.taskId, d.workerId])).toEqual([
      [1, 'a'],
      [2, 'b'],
    ]);
  });
});

describe('filters and ports', () => {
  it('honours state, executor and label constraints', () => {
    const ws: WorkerWithLoad[] = [
      makeWorker({ id: 'drain', cpus: 8000, memory: 8 * GiB, state: 'draining', executors: ['shell', 'docker'], labels: { gpu: 'yes' } }),
      makeWorker({ id: 'shell', cpus: 8000, memory: 8 * GiB, labels: { gpu: 'yes' } }),
      makeWorker({ id: 'docker', cpus: 8000, memory: 8 * GiB, executors: ['shell', 'docker'], labels: { gpu: 'no' } }),
      makeWorker({ id: 'ok', cpus: 8000, memory: 8 * GiB, executors: ['docker'], labels: { gpu: 'yes', zone: 'a' } }),
    ];
    const t = [
      makeTask({ id: 1, executor: 'docker', constraints: { gpu: 'yes' } }),
      makeTask({ id: 2, executor: 'docker', constraints: { gpu: 'yes', zone: 'b' } }),
    ];
    const p = plan({ workers: ws, tasks: t }, NOW);
    expect(p.placements.map((d) => d.workerId)).toEqual(['ok']);
    const e = p.explanations.get(2);
    expect(e?.reasons).toEqual([
      { code: 'draining', workers: 1, detail: undefined },
      { code: 'executor', workers: 1, detail: 'needs docker' },
      { code: 'labels', workers: 2, detail: undefined },
    ]);
    expect(e?.message).toContain('No worker can run it (1 draining, 1 without its executor, 2 not matching its constraints)');
  });

  it('hands out the lowest free ports, skipping live and earlier placements, with names', () => {
    const w = makeWorker({
      id: 'w1',
      cpus: 8000,
      memory: 8 * GiB,
      ports: { from: 100, to: 106 },
      live: [{ runId: 1, taskId: 100, cpus: 1000, memory: GiB, ports: [100, 102], endsBy: NOW + MIN }],
    });
    const t = [
      makeTask({ id: 1, ports: 1, portNames: ['http'] }),
      makeTask({ id: 2, ports: 2, dueAt: 1 }),
      makeTask({ id: 3, ports: 1, dueAt: 2 }),
    ];
    const p = plan({ workers: [w], tasks: t }, NOW);
    expect(p.placements.map((d) => d.allocation)).toEqual([
      { cpus: 1000, memory: GiB, ports: [101, 103], namedPorts: { http: 101 } },
      { cpus: 1000, memory: GiB, ports: [104, 105], namedPorts: {} },
      { cpus: 1000, memory: GiB, ports: [106], namedPorts: {} },
    ]);
    const p2 = plan({ workers: [w], tasks: [...t, makeTask({ id: 4, ports: 1, dueAt: 3 })] }, NOW);
    expect(p2.explanations.get(4)?.reasons.map((r) => r.code)).toEqual(['ports']);
  });

  it('passes over the best-fitting worker when its ports are all taken (counted only when a task needs ports)', () => {
    // w1 is the tighter fit but its two ports are held; w2 has room and ports.
    const w1 = makeWorker({
      id: 'w1',
      cpus: 2000,
      memory: 2 * GiB,
      ports: { from: 100, to: 101 },
      live: [{ runId: 1, taskId: 100, cpus: 500, memory: GiB / 2, ports: [100, 101], endsBy: NOW + MIN }],
    });
    const w2 = makeWorker({ id: 'w2', cpus: 8000, memory: 8 * GiB, ports: { from: 100, to: 101 } });
    const p = plan(
      {
        workers: [w1, w2],
        tasks: [makeTask({ id: 1, cpus: 1000, memory: GiB, ports: 1 }), makeTask({ id: 2, cpus: 1000, memory: GiB, dueAt: 1 })],
      },
      NOW,
    );
    expect(p.placements.map((d) => [d.taskId, d.workerId, d.allocation.ports])).toEqual([
      [1, 'w2', [100]],
      [2, 'w1', []],
    ]);
  });
});

describe('inconsistent snapshots', () => {
  it('never hands out a port a live run holds, even when allocated.ports misses it', () => {
    const w = makeWorker({
      id: 'w1',
      cpus: 8000,
      memory: 8 * GiB,
      ports: { from: 100, to: 101 },
      live: [{ runId: 1, taskId: 100, cpus: 1000, memory: GiB, ports: [100], endsBy: NOW + MIN }],
      allocated: { cpus: 1000, memory: GiB, ports: [] },
    });
    const two = plan({ workers: [w], tasks: [makeTask({ id: 1, ports: 2, dueAt: NOW })] }, NOW);
    expect(two.placements).toEqual([]);
    expect(two.explanations.get(1)?.reasons.map((r) => r.code)).toEqual(['ports']);
    const one = plan({ workers: [w], tasks: [makeTask({ id: 1, ports: 1, dueAt: NOW })] }, NOW);
    expect(one.placements[0]?.allocation.ports).toEqual([101]);
  });
});

describe('explanations', () => {
  it('says why, with counts per filter, rank in band and an estimate from the caps, for a full cluster', () => {
    const ws = [
      makeWorker({
        id: 'w1',
        cpus: 8000,
        memory: 16 * GiB,
        live: [{ runId: 80, taskId: 180, cpus: 6000, memory: 14 * GiB, endsBy: NOW + 20 * MIN }],
      }),
      makeWorker({
        id: 'w2',
        cpus: 8000,
        memory: 16 * GiB,
        live: [{ runId: 81, taskId: 181, cpus: 4000, memory: 12 * GiB, endsBy: NOW + 5 * MIN }],
      }),
      makeWorker({
        id: 'w3',
        cpus: 8000,
        memory: 16 * GiB,
        live: [{ runId: 82, taskId: 182, cpus: 8000, memory: 10 * GiB, endsBy: NOW + 60 * MIN }],
      }),
      makeWorker({ id: 'w4', cpus: 8000, memory: 16 * GiB, state: 'draining' }),
    ];
    const tasks = [
      makeTask({ id: 7, cpus: 2000, memory: 8 * GiB, dueAt: NOW - MIN }),
      makeTask({ id: 8, cpus: 1000, memory: 8 * GiB, dueAt: NOW }),
    ];
    const p = plan({ workers: ws, tasks }, NOW);
    expect(p.placements).toEqual([]);
    const e = p.explanations.get(8);
    expect(e).toBeDefined();
    expect(e?.rank).toBe(2);
    expect(e?.band).toBe('normal');
    expect(e?.reasons).toEqual([
      { code: 'draining', workers: 1, detail: undefined },
      { code: 'cpu', workers: 1, detail: 'needs 1 cpus; largest free: 4 cpus on w2' },
      { code: 'memory', workers: 3, detail: 'needs 8GiB memory; largest free: 6GiB on w3' },
    ]);
    expect(e?.estimatedStart).toBe(NOW + 5 * MIN);
    expect(e?.message).toBe(
      'Waiting: 1 of 3 workers lack 1 cpus; no worker has 8GiB memory free (largest free: 6GiB on w3); also 1 draining. ' +
        '2nd of 2 in band normal; ≈ 14:05 UTC (in 5m) at the earliest, when run r-81 (task 181) reaches its cap.',
    );
    // The head of the band holds the reservation.
    expect(p.reservations).toEqual([{ taskId: 7, workerId: 'w2', at: NOW + 5 * MIN }]);
    expect(p.explanations.get(7)?.message).toContain('reserved on w2');
    expect(explain({ workers: ws, tasks }, 8, NOW)).toEqual(e);
    expect(explain({ workers: ws, tasks }, 99, NOW)).toBeNull();
  });
});

describe('config', () => {
  it('rejects bad values naming the field', () => {
    expect(() => resolveConfig({ deferralThreshold: 1.5 })).toThrow(TschedError);
    expect(() => resolveConfig({ deferralThreshold: 1.5 })).toThrow(/scheduler\.deferralThreshold/);
    expect(() => resolveConfig({ quotas: { alice: { cpus: -1 } } })).toThrow(/scheduler\.quotas\.alice\.cpus/);
    expect(() => resolveConfig({ placement: 'random' as 'spread' })).toThrow(/scheduler\.placement/);
    expect(resolveConfig()).toEqual(DEFAULT_SCHEDULER_CONFIG);
  });
});
