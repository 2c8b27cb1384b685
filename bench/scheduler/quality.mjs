// Scheduling quality on seeded synthetic workloads, tsched side by side with FIFO first-fit and EDF.
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
const POLICIES = ['tsched', 'fifo', 'edf'];
const WORKERS = Number(arg('workers', '40'));
const TASKS = Number(arg('tasks', '4000'));

const rows = [];
for (const seed of seeds) {
  // 1. Batch: everything due at once; makespan against the lower bound.
  const batch = workload({ seed, tasks: TASKS, workers: WORKERS });
  const lb = makespanLowerBound(batch.workers, batch.tasks);
  // 2. Poisson arrivals at 90% load: waits.
  const steady = workload({ seed: seed + 1000, tasks: TASKS, workers: WORKERS, load: 0.9 });
  // 3. Overload (120% offered): share started within delay tolerance.
  const over = workload({ seed: seed + 2000, tasks: TASKS, workers: WORKERS, load: 1.2 });
  for (const policy of POLICIES) {
    const t0 = performance.now();
    const b = simulate(batch.workers, batch.tasks, { policy });
    const s = simulate(steady.workers, steady.tasks, { policy });
    const o = simulate(over.workers, over.tasks, { policy });
    rows.push({
      seed,
      policy,
      makespanRatio: b.makespan / lb,
      meanWaitS: s.meanWait / 1000,
      p99WaitS: s.p99Wait / 1000,
      steadyHitRate: s.hitRate,
      overloadHitRate: o.hitRate,
      simSeconds: (performance.now() - t0) / 1000,
    });
    const r = rows[rows.length - 1];
    console.log(
      `seed ${seed} ${policy.padEnd(6)} makespan/LB ${r.makespanRatio.toFixed(3)}  wait mean ${r.meanWaitS.toFixed(1)}s p99 ${r.p99WaitS.toFixed(1)}s  hit@90% ${(r.steadyHitRate * 100).toFixed(1)}%  hit@120% ${(r.overloadHitRate * 100).toFixed(1)}%  (${r.simSeconds.toFixed(1)}s)`,
    );
  }
}

// Verdicts per seed: targets from the issue.
const verdicts = [];
for (const seed of seeds) {
  const get = (p) => rows.find((r) => r.seed === seed && r.policy === p);
  const t = get('tsched');
  const f = get('fifo');
  const e = get('edf');
  verdicts.push({
    seed,
    makespanWithin1_2: t.makespanRatio <= 1.2,
    hitRateAtLeastEdf: t.overloadHitRate >= e.overloadHitRate,
    beatsFifoEverywhere:
      t.makespanRatio <= f.makespanRatio && t.meanWaitS < f.meanWaitS && t.p99WaitS < f.p99WaitS && t.overloadHitRate > f.overloadHitRate,
  });
}
console.table(verdicts);
if (out) writeFileSync(out, JSON.stringify({ workers: WORKERS, tasks: TASKS, rows, verdicts }, null, 2));
