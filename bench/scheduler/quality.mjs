// Scheduling quality on seeded synthetic workloads: tsched (defaults, and with off-peak deferral off) side by
// side with FIFO first-fit and EDF, on the same virtual clock.
// Run: npm run build && node bench/scheduler/quality.mjs [--seeds 1,2,3] [--out bench/scheduler/quality.json]
import { writeFileSync } from 'node:fs';
import { makespanLowerBound, simulate, workload } from '../../dist/scheduler/simulator.js';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const seeds = arg('seeds', '1,2,3').split(',').map(Number);
const out = arg('out', null);
const SPEC = { tasks: Number(arg('tasks', '3000')), workers: Number(arg('workers', '20')), workerCpus: 8000, workerMemory: 32 * 1024 ** 3 };
const POLICIES = [
  ['tsched', 'tsched', {}],
  ['tsched (no deferral)', 'tsched', { deferralThreshold: 1 }],
  ['fifo first-fit', 'fifo', {}],
  ['edf', 'edf', {}],
];

const rows = [];
for (const seed of seeds) {
  // 1. Batch: everything due at once with the same delay tolerance (1 h); makespan against the lower bound.
  const batch = workload({ ...SPEC, seed });
  for (const t of batch.tasks) t.delayTolerance = 3_600_000;
  const lb = makespanLowerBound(batch.workers, batch.tasks);
  // 2. Poisson arrivals at 90% load: waits. 3. Overload (130% offered): share started within delay tolerance.
  const steady = workload({ ...SPEC, seed: seed + 1000, load: 0.9 });
  const over = workload({ ...SPEC, seed: seed + 2000, load: 1.3 });
  for (const [name, policy, config] of POLICIES) {
    const t0 = performance.now();
    const b = simulate(batch.workers, batch.tasks, { policy, config });
    const s = simulate(steady.workers, steady.tasks, { policy, config });
    const o = simulate(over.workers, over.tasks, { policy, config });
    const r = {
      seed,
      policy: name,
      makespanRatio: b.makespan / lb,
      meanWaitS: s.meanWait / 1000,
      p99WaitS: s.p99Wait / 1000,
      steadyHitRate: s.hitRate,
      overloadHitRate: o.hitRate,
      simSeconds: (performance.now() - t0) / 1000,
    };
    rows.push(r);
    console.log(
      `seed ${seed} ${name.padEnd(20)} makespan/LB ${r.makespanRatio.toFixed(3)}  wait@90% mean ${r.meanWaitS.toFixed(1)}s p99 ${r.p99WaitS.toFixed(1)}s  in-tolerance@90% ${(r.steadyHitRate * 100).toFixed(1)}%  in-tolerance@130% ${(r.overloadHitRate * 100).toFixed(1)}%  (${r.simSeconds.toFixed(1)}s)`,
    );
  }
}

// The targets, per seed and per tsched variant.
const verdicts = [];
for (const seed of seeds) {
  const get = (p) => rows.find((r) => r.seed === seed && r.policy === p);
  const f = get('fifo first-fit');
  const e = get('edf');
  for (const variant of ['tsched', 'tsched (no deferral)']) {
    const t = get(variant);
    verdicts.push({
      seed,
      variant,
      'makespan <= 1.2 LB': t.makespanRatio <= 1.2,
      'hit rate >= EDF': t.overloadHitRate >= e.overloadHitRate,
      'makespan < FIFO': t.makespanRatio < f.makespanRatio,
      'mean wait < FIFO': t.meanWaitS < f.meanWaitS,
      'p99 wait < FIFO': t.p99WaitS < f.p99WaitS,
      'hit rate > FIFO': t.overloadHitRate > f.overloadHitRate,
    });
  }
}
console.table(verdicts);
if (out) writeFileSync(out, `${JSON.stringify({ spec: SPEC, rows, verdicts }, null, 2)}\n`);
