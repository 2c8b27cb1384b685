import { describe, expect, it } from 'vitest';
import { makespanLowerBound, type SimTask, simulate, workload } from './simulator.js';

describe('simulator', () => {
  it('runs every task once, never beyond capacity, and never beats the lower bound', () => {
    const { workers, tasks } = workload({ seed: 7, tasks: 300, workers: 4, workerCpus: 8000, workerMemory: 32 * 1024 ** 3 });
    const lb = makespanLowerBound(workers, tasks);
    for (const policy of ['tsched', 'fifo', 'edf'] as const) {
      const r = simulate(workers, tasks, { policy });
      expect(r.starts.size).toBe(tasks.length);
      expect(r.makespan).toBeGreaterThanOrEqual(lb);
      // Replay the schedule: at every start, what runs must fit the cluster's total capacity.
      const byId = new Map(tasks.map((t) => [t.id, t]));
      const events: Array<[number, number, SimTask]> = [];
      for (const [id, s] of r.starts) {
        const t = byId.get(id) as SimTask;
        events.push([s, 1, t], [s + t.duration, -1, t]);
      }
      events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let cpu = 0;
      let mem = 0;
      for (const [, d, t] of events) {
        cpu += d * t.cpus;
        mem += d * t.memory;
        expect(cpu).toBeLessThanOrEqual(4 * 8000);
        expect(mem).toBeLessThanOrEqual(4 * 32 * 1024 ** 3);
      }
    }
  });

  it('is deterministic, and beats FIFO first-fit on a batch', () => {
    const { workers, tasks } = workload({ seed: 3, tasks: 400, workers: 4, workerCpus: 8000, workerMemory: 32 * 1024 ** 3 });
    for (const t of tasks) t.delayTolerance = 3_600_000;
    const a = simulate(workers, tasks, { policy: 'tsched' });
    const b = simulate(workers, tasks, { policy: 'tsched' });
    expect([...b.starts]).toEqual([...a.starts]);
    const fifo = simulate(workers, tasks, { policy: 'fifo' });
    const lb = makespanLowerBound(workers, tasks);
    expect(a.makespan).toBeLessThan(fifo.makespan);
    expect(a.makespan / lb).toBeLessThanOrEqual(1.2);
  });

  it('draws arrivals at the requested load', () => {
    const { tasks } = workload({ seed: 1, tasks: 2000, workers: 10, load: 0.9 });
    const span = tasks[tasks.length - 1].arrival - tasks[0].arrival;
    const work = tasks.reduce((s, t) => s + t.cpus * t.duration, 0);
    expect(work / (span * 10 * 16_000)).toBeGreaterThan(0.75);
    expect(work / (span * 10 * 16_000)).toBeLessThan(1.05);
  });
});
