// Scale benchmark of the placement core: 10,000 workers and 1,000,000 waiting tasks.
// The 1M waiting tasks live in compact typed arrays in a stand-in "store" that hands each pass its best K
// candidates (priority, start deadline, id), as Store.loadCandidates does; only plan() is timed.
// Runs complete on a virtual clock (true durations hidden from the scheduler) so room keeps freeing up.
// Run: npm run build && node --expose-gc bench/scheduler/scale.mjs [--workers 10000] [--tasks 1000000] [--batch 4000] [--explain true]
import { plan } from '../../dist/scheduler/index.js';
import { lognormal, makeTask, makeWorker, rng } from '../../dist/scheduler/synthetic.js';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const W = Number(arg('workers', '10000'));
const N = Number(arg('tasks', '1000000'));
const K = Number(arg('batch', '4000'));
const EXPLAIN = arg('explain', 'true') === 'true';
const MAX_PASSES = Number(arg('passes', '100000'));
const GiB = 1024 ** 3;
const rand = rng(42);

// ---- workers
const ZONES = ['a', 'b', 'c', 'd'];
const workers = [];
for (let i = 0; i < W; i++) {
  workers.push(
    makeWorker({
      id: `w${String(i).padStart(5, '0')}`,
      cpus: 16_000,
      memory: 64 * GiB,
      ports: { from: 20000, to: 20999 },
      labels: { zone: ZONES[i % 4] },
      executors: i % 2 === 0 ? ['shell', 'docker'] : ['shell'],
      state: i % 500 === 7 ? 'draining' : 'active',
    }),
  );
}

// ---- the waiting tasks, compact
const cpus = new Int32Array(N);
const mem = new Float64Array(N);
const prio = new Uint8Array(N);
const due = new Float64Array(N);
const tol = new Float64Array(N);
const cap = new Float64Array(N);
const dur = new Float64Array(N);
const owner = new Uint16Array(N);
const kind = new Uint8Array(N); // 0 plain, 1 zone constraint, 2 docker
const zone = new Uint8Array(N);
const ports = new Uint8Array(N);
for (let i = 0; i < N; i++) {
  cpus[i] = Math.min(16_000, Math.max(100, Math.round(lognormal(rand, 1000, 0.8) / 50) * 50));
  mem[i] = Math.min(64 * GiB, Math.max(64 * 1024 ** 2, Math.round(lognormal(rand, 2 * GiB, 0.9))));
  const p = rand();
  prio[i] = p < 0.1 ? 75 : p < 0.2 ? 25 : 50;
  due[i] = 0;
  tol[i] = Math.max(10_000, Math.round(lognormal(rand, 600_000, 1.0)));
  dur[i] = Math.min(3_600_000, Math.max(1000, Math.round(lognormal(rand, 60_000, 1.0))));
  cap[i] = Math.round(dur[i] * (1 + 2 * rand()));
  owner[i] = Math.floor(rand() * 100);
  const k = rand();
  kind[i] = k < 0.15 ? 1 : k < 0.25 ? 2 : 0;
  zone[i] = Math.floor(rand() * 4);
  ports[i] = rand() < 0.2 ? 1 + Math.floor(rand() * 2) : 0;
}
// The store's index: priority desc, start deadline asc, id asc.
const order = new Int32Array(N);
for (let i = 0; i < N; i++) order[i] = i;
order.sort((a, b) => prio[b] - prio[a] || due[a] + tol[a] - (due[b] + tol[b]) || a - b);

const ZC = ZONES.map((z) => ({ zone: z }));
const toTask = (i) =>
  makeTask({
    id: i + 1,
    owner: `u${owner[i]}`,
    cpus: cpus[i],
    memory: mem[i],
    ports: ports[i],
    priority: prio[i],
    dueAt: due[i],
    delayTolerance: tol[i],
    executionCap: cap[i],
    executor: kind[i] === 2 ? 'docker' : 'shell',
    constraints: kind[i] === 1 ? ZC[zone[i]] : undefined,
  });

// ---- completions on the virtual clock: a binary min-heap of [end, worker, runId, taskIndex]
const heap = [];
const hpush = (e) => {
  heap.push(e);
  let i = heap.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (heap[p][0] <= heap[i][0]) break;
    const t = heap[p]; // (a destructuring swap would allocate, and the harness's garbage is collected on plan's clock)
    heap[p] = heap[i];
    heap[i] = t;
    i = p;
  }
};
const hpop = () => {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && heap[l][0] < heap[m][0]) m = l;
      if (r < heap.length && heap[r][0] < heap[m][0]) m = r;
      if (m === i) break;
      const t = heap[m];
      heap[m] = heap[i];
      heap[i] = t;
      i = m;
    }
  }
  return top;
};

const widx = new Map(workers.map((w, i) => [w.id, i]));
// Per-owner usage, kept by the "store" as runs start and end (Snapshot.ownerUsage).
const ownerUsage = {};
const use = (o, c, m) => {
  const u = ownerUsage[o] ?? { cpus: 0, memory: 0 };
  u.cpus += c;
  u.memory += m;
  ownerUsage[o] = u;
};
let carried = []; // unplaced candidates from the last pass, as Task objects
let cursor = 0;
let now = 0;
let runId = 1;
let placed = 0;
let planMs = 0;
// CPU time of plan() (user + system, all threads): on a shared machine wall time also counts waiting for a core.
let planCpuMs = 0;
const passMs = [];
let peakHeap = 0;
let passes = 0;
let explanations = 0;
// Steady state: passes that start with candidates left over from the last one (the cluster is full).
let steadyPlaced = 0;
let steadyMs = 0;
let steadyPasses = 0;
const sampleExplanations = [];
const t0 = performance.now();
while (placed < N && passes < MAX_PASSES) {
  // Runs that ended by now free their resources.
  const touched = new Set();
  while (heap.length > 0 && heap[0][0] <= now) {
    const [, wi, rid] = hpop();
    const w = workers[wi];
    const k = w.live.findIndex((r) => r.runId === rid);
    const r = w.live[k];
    w.live[k] = w.live[w.live.length - 1];
    w.live.pop();
    w.allocated.cpus -= r.cpus;
    w.allocated.memory -= r.memory;
    use(r.owner, -r.cpus, -r.memory);
    touched.add(wi);
  }
  for (const wi of touched) workers[wi].allocated.ports = workers[wi].live.flatMap((r) => r.ports);
  // The store hands in the best K waiting candidates.
  const full = carried.length > 0;
  const tasks = carried;
  while (tasks.length < K && cursor < N) tasks.push(toTask(order[cursor++]));
  const a = performance.now();
  const cpuA = process.cpuUsage();
  const p = plan({ workers, tasks, ownerUsage }, now, { explain: EXPLAIN });
  const ms = performance.now() - a;
  const cpu = process.cpuUsage(cpuA);
  planCpuMs += (cpu.user + cpu.system) / 1000;
  planMs += ms;
  passMs.push(ms);
  passes++;
  if (full) {
    steadyPlaced += p.placements.length;
    steadyMs += ms;
    steadyPasses++;
  }
  explanations += p.explanations.size;
  if (sampleExplanations.length < 3 && p.explanations.size > 0 && passes > 5)
    sampleExplanations.push([...p.explanations.values()][0].message);
  // Apply the plan (the store's job).
  const placedIds = new Set();
  for (const d of p.placements) {
    const i = d.taskId - 1;
    const wi = widx.get(d.workerId);
    const w = workers[wi];
    const rid = runId++;
    w.live.push({
      runId: rid,
      taskId: d.taskId,
      cpus: d.allocation.cpus,
      memory: d.allocation.memory,
      ports: d.allocation.ports,
      endsBy: now + cap[i],
      owner: `u${owner[i]}`,
    });
    w.allocated.cpus += d.allocation.cpus;
    w.allocated.memory += d.allocation.memory;
    use(`u${owner[i]}`, d.allocation.cpus, d.allocation.memory);
    for (const port of d.allocation.ports) w.allocated.ports.push(port);
    hpush([now + Math.min(dur[i], cap[i]), wi, rid, i]);
    placedIds.add(d.taskId);
  }
  placed += p.placements.length;
  carried = tasks.filter((t) => !placedIds.has(t.id));
  const h = process.memoryUsage().heapUsed;
  if (h > peakHeap) peakHeap = h;
  if (passes % 100 === 0)
    console.log(
      `pass ${passes}: placed ${placed}, ${(placed / (planMs / 1000)).toFixed(0)} placements/s, heap ${(h / 2 ** 20).toFixed(0)} MiB`,
    );
  now += 1000;
}
passMs.sort((x, y) => x - y);
const result = {
  workers: W,
  waitingTasks: N,
  candidatesPerPass: K,
  explanations: EXPLAIN,
  passes,
  placed,
  explanationsBuilt: explanations,
  placementsPerSecond: Math.round(placed / (planMs / 1000)),
  placementsPerCpuSecond: Math.round(placed / (planCpuMs / 1000)),
  loadAverage: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)),
  steadyPasses,
  steadyPlacementsPerPass: Math.round(steadyPlaced / Math.max(1, steadyPasses)),
  steadyPlacementsPerSecond: Math.round(steadyPlaced / (steadyMs / 1000)),
  meanPassMs: +(planMs / passes).toFixed(2),
  p50PassMs: +passMs[Math.floor(passes * 0.5)].toFixed(2),
  p99PassMs: +passMs[Math.min(passes - 1, Math.ceil(passes * 0.99) - 1)].toFixed(2),
  peakHeapMiB: Math.round(peakHeap / 2 ** 20),
  wallSeconds: +((performance.now() - t0) / 1000).toFixed(1),
  sampleExplanations,
};
console.log(JSON.stringify(result, null, 2));
if (arg('out', null)) (await import('node:fs')).writeFileSync(arg('out'), `${JSON.stringify(result, null, 2)}\n`);
