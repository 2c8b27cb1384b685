import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeTask, makeWorker } from './synthetic.js';
import { classKey, TaskClass, type WorkerView } from './task-class.js';

const GiB = 1024 ** 3;

function view(workers: ReturnType<typeof makeWorker>[]): WorkerView {
  return {
    workers,
    capC: Float64Array.from(workers, (w) => w.capacity.cpus),
    capM: Float64Array.from(workers, (w) => w.capacity.memory),
    capP: Float64Array.from(workers, (w) => (w.capacity.ports ? w.capacity.ports.to - w.capacity.ports.from + 1 : 0)),
  };
}

describe('classKey', () => {
  it('is the same for equal constraints in any key order, and differs by executor and value', () => {
    const a = makeTask({ id: 1, constraints: { zone: 'a', disk: 'ssd' } });
    const b = makeTask({ id: 2, constraints: { disk: 'ssd', zone: 'a' } });
    expect(classKey(a)).toBe(classKey(b));
    expect(classKey(makeTask({ id: 3, constraints: { zone: 'b', disk: 'ssd' } }))).not.toBe(classKey(a));
    expect(classKey(makeTask({ id: 4, executor: 'docker', constraints: { zone: 'a', disk: 'ssd' } }))).not.toBe(classKey(a));
    expect(classKey(makeTask({ id: 5 }))).toBe('shell');
  });
});

describe('TaskClass', () => {
  const workers = [
    makeWorker({ id: 'w0', cpus: 4000, memory: 8 * GiB, labels: { zone: 'a' }, executors: ['shell', 'docker'] }),
    makeWorker({ id: 'w1', cpus: 8000, memory: 4 * GiB, labels: { zone: 'a' }, executors: ['shell'] }),
    makeWorker({ id: 'w2', cpus: 16000, memory: 64 * GiB, labels: { zone: 'b' }, executors: ['shell', 'docker'] }),
    makeWorker({ id: 'w3', cpus: 32000, memory: 64 * GiB, labels: { zone: 'a' }, state: 'draining' }),
    makeWorker({ id: 'w4', cpus: 2000, memory: 2 * GiB, labels: {}, state: 'lost' }),
    makeWorker({ id: 'w5', cpus: 2000, memory: 16 * GiB, labels: { zone: 'a' }, executors: ['docker'], ports: null }),
  ];
  const v = view(workers);

  it('names the first static filter a worker fails, counts them, and keeps the largest member capacities', () => {
    const t = makeTask({ id: 1, executor: 'docker', constraints: { zone: 'a' } });
    const cls = new TaskClass(classKey(t), t, v);
    expect(workers.map((w) => cls.reject(w))).toEqual([null, 'executor', 'labels', 'draining', 'lost', null]);
    expect([...cls.members]).toEqual([0, 5]);
    expect(Object.fromEntries(cls.staticCounts)).toEqual({ executor: 1, labels: 1, draining: 1, lost: 1 });
    expect(cls.capMax).toEqual({ cpus: 4000, memory: 16 * GiB, ports: 100 });
    expect(cls.hasMembers()).toBe(true);
  });

  it('has no members when no active worker offers what the class needs', () => {
    const t = makeTask({ id: 1, constraints: { zone: 'z' } });
    const cls = new TaskClass(classKey(t), t, v);
    expect(cls.members.length).toBe(0);
    expect(cls.hasMembers()).toBe(false);
    expect(Object.fromEntries(cls.staticCounts)).toEqual({ labels: 3, executor: 1, draining: 1, lost: 1 });
  });

  it('keeps the smallest request of its candidates per resource', () => {
    const t = makeTask({ id: 1 });
    const cls = new TaskClass(classKey(t), t, v);
    cls.need(1000, 4 * GiB, 2);
    cls.need(3000, 1 * GiB, 0);
    expect([cls.minC, cls.minM, cls.minP]).toEqual([1000, 1 * GiB, 0]);
  });

  it('knows a shape fails exactly when it is at least one remembered shape (property)', () => {
    const shape = fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 3 }));
    fc.assert(
      fc.property(fc.array(shape, { maxLength: 30 }), fc.array(shape, { maxLength: 30 }), (remembered, queries) => {
        const t = makeTask({ id: 1 });
        const cls = new TaskClass(classKey(t), t, v);
        for (const [c, m, p] of remembered) cls.rememberFailure(c, m, p);
        // At most 7·7·4 shapes exist, and only an antichain is kept, so the 64-shape cap never drops one here.
        for (const [c, m, p] of [...queries, ...remembered]) {
          const expected = remembered.some(([fc2, fm, fp]) => c >= fc2 && m >= fm && p >= fp);
          expect(cls.knownToFail(c, m, p)).toBe(expected);
        }
        // No kept shape dominates another (the list holds only minimal shapes).
        const f = cls.failed;
        for (let a = 0; a < f.length; a += 3)
          for (let b = 0; b < f.length; b += 3)
            if (a !== b) expect(f[a] <= f[b] && f[a + 1] <= f[b + 1] && f[a + 2] <= f[b + 2]).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
