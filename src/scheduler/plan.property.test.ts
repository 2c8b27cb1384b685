import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Task } from '../domain/task.js';
import type { WorkerWithLoad } from '../domain/worker.js';
import { effectivePriority, plan, type SchedulerConfig } from './index.js';
import { makeTask, makeWorker } from './synthetic.js';

const GiB = 1024 ** 3;
const NOW = 1_700_000_000_000;
const MIN = 60_000;
const OWNERS = ['alice', 'bob', 'carol'];

const workerArb = (id: number) =>
  fc
    .record({
      cpus: fc.integer({ min: 0, max: 16 }).map((x) => x * 500),
      memory: fc.integer({ min: 0, max: 16 }).map((x) => x * (GiB / 2)),
      ports: fc.option(fc.integer({ min: 0, max: 5 }), { nil: null }),
      state: fc.constantFrom<WorkerWithLoad['state']>('active', 'active', 'active', 'draining', 'lost'),
      executors: fc.constantFrom<Array<'shell' | 'docker'>>(['shell'], ['shell', 'docker'], ['docker']),
      zone: fc.constantFrom('a', 'b', undefined),
      live: fc.array(
        fc.record({
          cpuFrac: fc.double({ min: 0, max: 0.5, noNaN: true }),
          memFrac: fc.double({ min: 0, max: 0.5, noNaN: true }),
          ports: fc.integer({ min: 0, max: 2 }),
          endsIn: fc.integer({ min: -1, max: 120 }),
          owner: fc.option(fc.constantFrom(...OWNERS), { nil: undefined }),
        }),
        { maxLength: 2 },
      ),
    })
    .map((w) => {
      const range = w.ports === null ? null : { from: 9000, to: 9000 + w.ports };
      let nextPort = 9000;
      const live = w.live.map((r, k) => {
        const ports: number[] = [];
        // Live runs use ports from the range, skipping one now and then so the free ones are not contiguous.
        for (let j = 0; range && j < r.ports && nextPort <= range.to; j++) {
          ports.push(nextPort);
          nextPort += 2;
        }
        return {
          runId: id * 10 + k,
          taskId: 1000 + id * 10 + k,
          cpus: Math.floor(w.cpus * r.cpuFrac),
          memory: Math.floor(w.memory * r.memFrac),
          ports,
          endsBy: NOW + r.endsIn * MIN,
          owner: r.owner,
        };
      });
      return makeWorker({
        id: `w${id}`,
        cpus: w.cpus,
        memory: w.memory,
        ports: range,
        state: w.state,
        executors: w.executors,
        labels: w.zone ? { zone: w.zone } : {},
        live,
      });
    });

const taskArb = (id: number) =>
  fc
    .record({
      cpus: fc.integer({ min: 1, max: 12 }).map((x) => x * 250),
      memory: fc.integer({ min: 1, max: 12 }).map((x) => x * (GiB / 4)),
      ports: fc.integer({ min: 0, max: 2 }),
      named: fc.boolean(),
      priority: fc.constantFrom(0, 25, 50, 50, 75, 100),
      dueAgo: fc.integer({ min: 0, max: 120 }),
      tolerance: fc.integer({ min: 0, max: 180 }),
      cap: fc.integer({ min: 1, max: 90 }),
      executor: fc.constantFrom<'shell' | 'docker'>('shell', 'shell', 'docker'),
      zone: fc.constantFrom('a', 'b', undefined, undefined),
      owner: fc.constantFrom(...OWNERS),
      placement: fc.constantFrom<'binpack' | 'spread' | null>(null, null, 'spread', 'binpack'),
    })
    .map((t) =>
      makeTask({
        id,
        owner: t.owner,
        cpus: t.cpus,
        memory: t.memory,
        ports: t.ports,
        portNames: t.named ? ['http'] : [],
        priority: t.priority,
        dueAt: NOW - t.dueAgo * MIN,
        delayTolerance: t.tolerance * MIN,
        executionCap: t.cap * MIN,
        executor: t.executor,
        constraints: t.zone ? { zone: t.zone } : {},
        placement: t.placement,
      }),
    );

const configArb: fc.Arbitrary<Partial<SchedulerConfig>> = fc.record({
  placement: fc.constantFrom<'binpack' | 'spread'>('binpack', 'spread'),
  deferralThreshold: fc.double({ min: 0.3, max: 1, noNaN: true }),
  deferralSlackMs: fc.integer({ min: 0, max: 120 }).map((x) => x * MIN),
  deferralMaxHoldMs: fc.integer({ min: 0, max: 120 }).map((x) => x * MIN),
  lateDemotionMs: fc.integer({ min: 0, max: 30 }).map((x) => x * MIN),
  urgencyWindowMs: fc.integer({ min: 0, max: 30 }).map((x) => x * MIN),
  quotas: fc.constantFrom<SchedulerConfig['quotas']>({}, { alice: { cpus: 3000 } }, { bob: { memory: 2 * GiB } }),
  maxPlacementsPerPass: fc.constantFrom(undefined, undefined, 3),
});

const scenarioArb = fc.record({
  workers: fc.integer({ min: 0, max: 6 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => workerArb(i)))),
  tasks: fc.integer({ min: 0, max: 25 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => taskArb(i + 1)))),
  config: configArb,
});

function usedPorts(w: WorkerWithLoad): Set<number> {
  const s = new Set(w.allocated.ports);
  for (const r of w.live) for (const p of r.ports) s.add(p);
  return s;
}

function feasible(w: WorkerWithLoad, t: Task): boolean {
  return w.state === 'active' && w.executors.includes(t.executor) && Object.entries(t.constraints).every(([k, v]) => w.labels[k] === v);
}

const HELD = new Set(['deferred_off_peak', 'quota_cpu', 'quota_memory', 'pass_limit', 'reserved']);

describe('plan properties', () => {
  it('never overcommits, never places on an infeasible worker, never double-books a port, never skips a fitting higher band', () => {
    fc.assert(
      fc.property(scenarioArb, ({ workers, tasks, config }) => {
        const p = plan({ workers, tasks }, NOW, config);
        const byId = new Map(tasks.map((t) => [t.id, t]));
        const wById = new Map(workers.map((w) => [w.id, w]));
        const placed = new Set<number>();
        const used = new Map(workers.map((w) => [w.id, { cpus: w.allocated.cpus, memory: w.allocated.memory, ports: usedPorts(w) }]));
        for (const d of p.placements) {
          const t = byId.get(d.taskId) as Task;
          const w = wById.get(d.workerId) as WorkerWithLoad;
          expect(placed.has(t.id)).toBe(false);
          placed.add(t.id);
          expect(feasible(w, t)).toBe(true);
          expect(d.allocation.cpus).toBe(t.resources.cpus);
          expect(d.allocation.memory).toBe(t.resources.memory);
          expect(d.allocation.ports.length).toBe(t.resources.ports + t.resources.portNames.length);
          const u = used.get(w.id) as { cpus: number; memory: number; ports: Set<number> };
          u.cpus += d.allocation.cpus;
          u.memory += d.allocation.memory;
          for (const port of d.allocation.ports) {
            expect(u.ports.has(port)).toBe(false);
            expect(w.capacity.ports && port >= w.capacity.ports.from && port <= w.capacity.ports.to).toBe(true);
            u.ports.add(port);
          }
          for (const name of t.resources.portNames) expect(d.allocation.ports).toContain(d.allocation.namedPorts[name]);
          expect(u.cpus).toBeLessThanOrEqual(w.capacity.cpus);
          expect(u.memory).toBeLessThanOrEqual(w.capacity.memory);
        }
        // Every candidate is either placed or explained.
        for (const t of tasks) expect(placed.has(t.id) !== p.explanations.has(t.id)).toBe(true);
        // A task left waiting for lack of room did not fit even with only the same-or-higher-band placements
        // taken: so no lower band started while it could have.
        const cfg = { urgencyWindowMs: 120_000, ...config };
        for (const [id, e] of p.explanations) {
          if (e.reasons.some((r) => HELD.has(r.code))) continue;
          const t = byId.get(id) as Task;
          const band = effectivePriority(t, NOW, cfg);
          const free = new Map(
            workers.map((w) => [
              w.id,
              { cpus: w.capacity.cpus - w.allocated.cpus, memory: w.capacity.memory - w.allocated.memory, ports: usedPorts(w) },
            ]),
          );
          for (const d of p.placements) {
            if (effectivePriority(byId.get(d.taskId) as Task, NOW, cfg) < band) continue;
            const f = free.get(d.workerId) as { cpus: number; memory: number; ports: Set<number> };
            f.cpus -= d.allocation.cpus;
            f.memory -= d.allocation.memory;
            for (const port of d.allocation.ports) f.ports.add(port);
          }
          for (const w of workers) {
            if (!feasible(w, t)) continue;
            const f = free.get(w.id) as { cpus: number; memory: number; ports: Set<number> };
            let freePorts = 0;
            if (w.capacity.ports) for (let x = w.capacity.ports.from; x <= w.capacity.ports.to; x++) if (!f.ports.has(x)) freePorts++;
            const fitsHere =
              f.cpus >= t.resources.cpus && f.memory >= t.resources.memory && freePorts >= t.resources.ports + t.resources.portNames.length;
            expect(fitsHere, `task ${id} fits on ${w.id} but waits: ${e.message}`).toBe(false);
          }
        }
        // A reservation belongs to an unplaced candidate on a feasible worker.
        for (const r of p.reservations) {
          expect(p.explanations.has(r.taskId)).toBe(true);
          expect(feasible(wById.get(r.workerId) as WorkerWithLoad, byId.get(r.taskId) as Task)).toBe(true);
          expect(r.at).toBeGreaterThanOrEqual(NOW);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('gives identical plans for identical inputs', () => {
    fc.assert(
      fc.property(scenarioArb, ({ workers, tasks, config }) => {
        const a = plan(structuredClone({ workers, tasks }), NOW, structuredClone(config));
        const b = plan(structuredClone({ workers, tasks }), NOW, structuredClone(config));
        expect(b).toEqual(a);
        expect([...b.explanations.keys()]).toEqual([...a.explanations.keys()]);
      }),
      { numRuns: 1000 },
    );
  });
});
