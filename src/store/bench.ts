// Store micro-benchmark: submit N, place N, deliver, start, finish N — in batches as the server does.
// Build and run: see docs/store.md ("Benchmark").

import { normalizeTask } from '../domain/task-spec.js';
import { openStore } from './index.js';
import type { Store } from './port.js';

async function timed(label: string, n: number, fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  const ms = performance.now() - t;
  const rate = Math.round((n / ms) * 1000);
  console.log(`  ${label.padEnd(28)} ${String(n).padStart(6)} in ${ms.toFixed(0).padStart(6)} ms  = ${String(rate).padStart(7)}/s`);
  return rate;
}

export async function benchStore(store: Store, n: number, batch: number): Promise<void> {
  await store.migrate();
  const workers: Array<{ id: string }> = [];
  for (let i = 0; i < 20; i++) {
    const reg = {
      name: `bench-${i}`,
      capacity: { cpus: 1_000_000, memory: 1e15, ports: null },
      labels: {},
      executors: ['shell' as const],
      enforcement: { memory: 'none', cpu: 'none' },
      version: 'b',
      hostname: 'h',
    };
    workers.push((await store.registerWorker(reg, Date.now())).worker);
  }
  const spec = normalizeTask({ command: ['true'] });
  const now = Date.now();
  const ids: number[] = [];
  await timed(`submit (batches of ${batch})`, n, async () => {
    for (let i = 0; i < n; i += batch) {
      const r = await store.submitTasks(
        'bench',
        Array.from({ length: Math.min(batch, n - i) }, () => spec),
        { now, actor: 'bench' },
      );
      ids.push(...r.tasks.map((t) => t.id));
    }
  });
  await timed('submit (one per call)', 2000, async () => {
    for (let i = 0; i < 2000; i++) await store.submitTasks('bench', [spec], { now, actor: 'bench' });
  });
  const runs: Array<{ runId: number; token: string }> = [];
  await timed(`loadCandidates+applyPlan ${batch}`, n, async () => {
    let w = 0;
    while (runs.length < n) {
      const cands = await store.loadCandidates(now, batch, now);
      const plan = cands.slice(0, n - runs.length).map((t) => ({
        taskId: t.id,
        workerId: workers[w++ % workers.length]!.id,
        allocation: { cpus: 10, memory: 1000, ports: [], namedPorts: {} },
      }));
      const res = await store.applyPlan(plan, { now, leaseMs: 60_000, epoch: null, actor: 'scheduler' });
      runs.push(...res.runs.map((r) => ({ runId: r.id, token: r.leaseToken })));
    }
  });
  await timed('takeAssignments', n, async () => {
    for (const w of workers) while ((await store.takeAssignments(w.id, batch, now)).length > 0);
  });
  await timed(`startRuns (batches of ${batch})`, n, async () => {
    for (let i = 0; i < n; i += batch)
      await store.startRuns(
        runs.slice(i, i + batch).map((r) => ({ ...r, at: now })),
        now,
      );
  });
  await timed(`heartbeat (batches of ${batch})`, n, async () => {
    for (let i = 0; i < n; i += batch) await store.heartbeat(workers[0]!.id, runs.slice(i, i + batch), now, 60_000);
  });
  await timed(`appendLogs (batches of ${batch})`, n, async () => {
    for (let i = 0; i < n; i += batch)
      await store.appendLogs(
        runs.slice(i, i + batch).map((r) => ({ ...r, stream: 'stdout' as const, at: now, data: 'hello world\n' })),
        1e6,
      );
  });
  await timed(`finishRuns (batches of ${batch})`, n, async () => {
    for (let i = 0; i < n; i += batch) {
      await store.finishRuns(
        runs.slice(i, i + batch).map((r) => ({
          ...r,
          outcome: 'succeeded' as const,
          exitCode: 0,
          reason: null,
          startedAt: now,
          finishedAt: now,
          usage: { peakMemory: null, cpuSeconds: null },
        })),
        now,
      );
    }
  });
  const counts = await store.countTasks(null);
  if (counts.done !== n) throw new Error(`expected ${n} done, got ${JSON.stringify(counts)}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.argv[2] ?? ':memory:';
  const n = Number(process.argv[3] ?? 20_000);
  const batch = Number(process.argv[4] ?? 500);
  console.log(`store bench on ${url.replace(/\/\/[^@]*@/, '//…@')}: n=${n}`);
  const store = openStore({ url });
  await benchStore(store, n, batch);
  await store.close();
}
